//! [`FencingToken`]: the number a holder shows to a downstream resource so that the resource
//! can reject a holder whose turn has passed.

use std::fmt;
use std::str::FromStr;

/// A fencing token: strictly larger for every later acquisition of the same recipe path.
///
/// A lock is only advisory: a holder can pause (GC, SIGSTOP, a stalled VM) past its session
/// timeout, lose the lock without noticing, and then write. Fencing closes that gap: pass the
/// token with every write to the protected resource and let the resource reject any token lower
/// than the highest it has seen (see `examples/fencing.rs`).
///
/// # What the number is
///
/// The token is the contender node's **sequence number** qualified by an **epoch**, the `czxid`
/// (creating transaction id) of the recipe's directory node. ZooKeeper hands out sequence
/// numbers from a counter kept by the parent node, which starts again at 0 when the parent is
/// deleted and recreated — and an idle lock directory is a CONTAINER node that the server deletes
/// by itself. The recreated directory has a larger `czxid` (transaction ids only grow), so tokens
/// ordered by `(epoch, sequence)` keep increasing across recreations where the bare sequence
/// would go backwards.
///
/// # Text form
///
/// [`Display`](fmt::Display) writes the canonical text form `EEEEEEEEEEEEEEEE-SSSSSSSSSS`: the
/// epoch as 16 lowercase hex digits and the sequence as 10 decimal digits. Both are fixed width,
/// so comparing the strings byte by byte gives the same order as comparing tokens; a database
/// column or an environment variable can hold it as text. [`FromStr`] parses it back.
///
/// ```
/// use zk_recipes::FencingToken;
///
/// let earlier = FencingToken::new(0x1_0000_0002, 41);
/// let later = FencingToken::new(0x1_0000_0002, 42);
/// let after_recreation = FencingToken::new(0x1_0000_0100, 0);
/// assert!(earlier < later && later < after_recreation);
/// assert_eq!(later.to_string(), "0000000100000002-0000000042");
/// assert!(later.to_string() < after_recreation.to_string());
/// assert_eq!("0000000100000002-0000000042".parse::<FencingToken>(), Ok(later));
/// assert!(later.as_u128() < after_recreation.as_u128());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken {
    // Field order is the ordering: epoch first, then sequence.
    epoch: u64,
    sequence: u32,
}

impl FencingToken {
    /// Creates a token from an epoch (a directory node's `czxid`) and a sequence number.
    pub const fn new(epoch: u64, sequence: u32) -> Self {
        Self { epoch, sequence }
    }

    /// The epoch: the `czxid` of the recipe directory the contender node was created in.
    pub const fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The contender node's sequence number within its directory.
    pub const fn sequence(&self) -> u32 {
        self.sequence
    }

    /// The token as one number, `epoch * 2^32 + sequence`, ordered as the token is.
    ///
    /// Sequences are below 2^31, so this never overlaps between epochs.
    pub const fn as_u128(&self) -> u128 {
        ((self.epoch as u128) << 32) | self.sequence as u128
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{:010}", self.epoch, self.sequence)
    }
}

impl fmt::Debug for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FencingToken({self})")
    }
}

/// The error returned when text is not a canonical [`FencingToken`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid fencing token {0:?}: expected 16 hex digits, '-', 10 decimal digits \
     (e.g. \"0000000100000002-0000000042\")"
)]
pub struct ParseTokenError(String);

impl FromStr for FencingToken {
    type Err = ParseTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = || ParseTokenError(s.to_owned());
        let (epoch, sequence) = s.split_once('-').ok_or_else(fail)?;
        let canonical = epoch.len() == 16
            && sequence.len() == 10
            && epoch.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && sequence.bytes().all(|b| b.is_ascii_digit());
        if !canonical {
            return Err(fail());
        }
        let epoch = u64::from_str_radix(epoch, 16).map_err(|_| fail())?;
        let sequence = sequence.parse::<u32>().map_err(|_| fail())?;
        Ok(Self::new(epoch, sequence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_non_canonical_text() {
        for bad in [
            "",
            "1-2",
            "0000000100000002_0000000042",
            "0000000100000002-42",
            "0000000100000002-00000000042",
            "000000010000000G-0000000042",
            "0000000100000002-000000004x",
            "0000000100000002-9999999999",
            "00000001000000AB-0000000042",
            "+000000100000002-0000000042",
        ] {
            assert!(bad.parse::<FencingToken>().is_err(), "{bad:?} parsed");
        }
    }

    proptest! {
        #[test]
        fn text_round_trips(epoch in any::<u64>(), sequence in 0u32..=i32::MAX as u32) {
            let token = FencingToken::new(epoch, sequence);
            prop_assert_eq!(token.to_string().parse::<FencingToken>(), Ok(token));
        }

        #[test]
        fn text_and_number_order_equal_token_order(
            a in (any::<u64>(), 0u32..=i32::MAX as u32),
            b in (any::<u64>(), 0u32..=i32::MAX as u32),
        ) {
            let (a, b) = (FencingToken::new(a.0, a.1), FencingToken::new(b.0, b.1));
            prop_assert_eq!(a.cmp(&b), a.to_string().cmp(&b.to_string()));
            prop_assert_eq!(a.cmp(&b), a.as_u128().cmp(&b.as_u128()));
            prop_assert_eq!(a.cmp(&b), (a.epoch(), a.sequence()).cmp(&(b.epoch(), b.sequence())));
        }
    }
}

//! [`FencingToken`] as a PostgreSQL value: its canonical text form in `text`/`varchar`
//! columns, [`FencingToken::as_u128`] in `numeric` ones.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::FencingToken;

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for FencingToken {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if *ty == Type::NUMERIC {
            write_numeric(self.as_u128(), out);
        } else {
            out.put_slice(self.to_string().as_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TEXT | Type::VARCHAR | Type::NUMERIC)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for FencingToken {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        if *ty == Type::NUMERIC {
            let number = read_numeric(raw)?;
            return from_u128(number).ok_or_else(|| format!("numeric {number} is not a fencing token").into());
        }
        Ok(std::str::from_utf8(raw)?.parse()?)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TEXT | Type::VARCHAR | Type::NUMERIC)
    }
}

/// The token whose [`FencingToken::as_u128`] is `number`, if there is one.
fn from_u128(number: u128) -> Option<FencingToken> {
    let epoch = u64::try_from(number >> 32).ok()?;
    let sequence = u32::try_from(number & 0xffff_ffff).expect("masked to 32 bits");
    // Sequences are ZooKeeper's signed 32-bit counters, never negative.
    (sequence <= i32::MAX as u32).then(|| FencingToken::new(epoch, sequence))
}

// PostgreSQL's binary NUMERIC: digit count, weight of the first digit, sign and display scale
// (each 16 bits), then the digits in base 10,000, most significant first
// (src/backend/utils/adt/numeric.c, numeric_send).
const NBASE: u128 = 10_000;
const POSITIVE: u16 = 0x0000;

fn write_numeric(mut number: u128, out: &mut BytesMut) {
    let mut digits = Vec::new(); // least significant first
    while number > 0 {
        digits.push((number % NBASE) as i16);
        number /= NBASE;
    }
    let weight = digits.len() as i16 - 1;
    // Trailing zero digits are implied by the weight, as PostgreSQL itself writes them.
    let zeros = digits.iter().take_while(|&&d| d == 0).count();
    let significant = &digits[zeros..];
    out.put_i16(significant.len() as i16);
    out.put_i16(weight.max(0));
    out.put_u16(POSITIVE);
    out.put_u16(0); // scale 0: an integer
    for &digit in significant.iter().rev() {
        out.put_i16(digit);
    }
}

fn read_numeric(raw: &[u8]) -> Result<u128, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        let bytes = raw.get(2 * i..2 * i + 2).ok_or("truncated numeric")?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    };
    let count = usize::from(word(0)?);
    let weight = word(1)? as i16;
    if word(2)? != POSITIVE {
        return Err("a fencing token is a non-negative number, not NaN or infinite".into());
    }
    let mut number: u128 = 0;
    for i in 0..count {
        let digit = u128::from(word(4 + i)?);
        if weight < i as i16 {
            // A digit after the decimal point.
            if digit != 0 {
                return Err("a fencing token is an integer".into());
            }
            continue;
        }
        number = number.checked_mul(NBASE).and_then(|n| n.checked_add(digit)).ok_or("numeric too large")?;
    }
    // Digits that the weight implies after the last one written are zeros.
    for _ in count as i16..=weight {
        number = number.checked_mul(NBASE).ok_or("numeric too large")?;
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(number: u128) -> u128 {
        let mut out = BytesMut::new();
        write_numeric(number, &mut out);
        read_numeric(&out).unwrap()
    }

    #[test]
    fn numeric_encoding_of_known_values() {
        let mut out = BytesMut::new();
        write_numeric(1_0000_0000_0042, &mut out);
        // 1 0000 0000 0042: three digits after the first, weight 3; none trailing zero.
        let words: Vec<i16> = out.chunks(2).map(|c| i16::from_be_bytes([c[0], c[1]])).collect();
        assert_eq!(words, [4, 3, 0, 0, 1, 0, 0, 42]);
        out.clear();
        write_numeric(2_0000_0000, &mut out);
        let words: Vec<i16> = out.chunks(2).map(|c| i16::from_be_bytes([c[0], c[1]])).collect();
        assert_eq!(words, [1, 2, 0, 0, 2], "trailing zero digits implied by the weight");
        out.clear();
        write_numeric(0, &mut out);
        assert_eq!(&out[..], [0; 8]);
    }

    #[test]
    fn numeric_rejects_fractions_negatives_and_non_tokens() {
        // 1.5 as PostgreSQL sends it: 2 digits, weight 0, scale 1.
        let half = [0u8, 2, 0, 0, 0, 0, 0, 1, 0, 1, 0x13, 0x88];
        assert!(read_numeric(&half).is_err());
        let negative = [0u8, 1, 0, 0, 0x40, 0, 0, 0, 0, 1];
        assert!(read_numeric(&negative).is_err());
        assert_eq!(from_u128(1 << 96), None, "epochs are 64 bits");
        assert_eq!(from_u128((1 << 32) | 0x8000_0000), None, "sequences are below 2^31");
    }

    proptest! {
        #[test]
        fn numeric_round_trips(number in any::<u128>()) {
            prop_assert_eq!(round_trip(number), number);
        }

        #[test]
        fn numeric_is_the_token_as_a_number(epoch in any::<u64>(), sequence in 0u32..=i32::MAX as u32) {
            let token = FencingToken::new(epoch, sequence);
            prop_assert_eq!(from_u128(round_trip(token.as_u128())), Some(token));
        }
    }
}

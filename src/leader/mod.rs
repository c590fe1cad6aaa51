//! Leader election: [`LeaderLatch`] (Curator's `latch-` layout; a long-running candidacy) and
//! [`LeaderSelector`] (Curator's mutex layout; runs a task while leader). Both hand out a
//! [`Term`]: one period of leadership, with its fencing token and its loss. To hold a term the
//! way a guard holds a lock, and step down from it, take a [`Leadership`].

mod latch;
mod leadership;
mod selector;

use std::future::Future;
use std::time::Duration;

use backon::ExponentialBuilder;

pub use self::latch::{Candidate, LeaderLatch};
pub use self::leadership::Leadership;
pub use self::selector::LeaderSelector;
use crate::error::{Error, LossReason};
use crate::queue::{FencedWrite, Held};
use crate::token::FencingToken;

/// One period of leadership: from becoming leader until [`lost`](Term::lost) resolves.
///
/// A term does not own the leader's node — the election does, and deletes it when the term
/// ends — so a `Term` can be cloned and moved into tasks freely; keeping one does not prolong
/// leadership. To hold a term and step down from it, as a guard holds a lock, take a
/// [`Leadership`] ([`LeaderSelector::lead`], [`Candidate::lead`]).
#[derive(Debug, Clone)]
pub struct Term {
    held: Held,
}

impl Term {
    pub(crate) fn new(held: Held) -> Self {
        Self { held }
    }

    pub(crate) fn held(&self) -> &Held {
        &self.held
    }

    /// The term's fencing token: larger than that of every earlier leader on the path, so a
    /// resource that rejects tokens lower than the highest it has seen rejects every write of
    /// a leader that has been succeeded.
    pub fn token(&self) -> FencingToken {
        self.held.token()
    }

    /// The full path of the leader's node.
    pub fn node(&self) -> &str {
        self.held.node()
    }

    /// Resolves when the term ends or can no longer be proven to last, with the reason — the
    /// conditions of [`Hold::lost`](crate::Hold::lost); [`LossReason::Released`]
    /// when the leader stepped down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    pub fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        self.held.lost()
    }

    /// Resolves as soon as the connection to ZooKeeper drops (or the session ends): the term is
    /// then in doubt until the connection returns.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    pub fn suspended(&self) -> impl Future<Output = ()> + Send + 'static {
        self.held.suspended()
    }

    /// Whether the term can still be proven to last: not lost, the session alive and heard
    /// from within the session timeout. A `false` never turns `true` again.
    pub fn is_current(&self) -> bool {
        self.held.check_held().is_ok()
    }

    /// A ZooKeeper multi-op that commits only while the leader's node exists. See
    /// [`FencedWrite`].
    pub fn fenced_write(&self) -> FencedWrite<'_> {
        FencedWrite::new(&self.held)
    }
}

/// How long a participant waits before queueing again after an error (the session
/// re-establishing itself, typically): from 100 ms, doubling, at most 5 s.
fn rejoin_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
}

/// Errors that retrying cannot fix.
fn is_final(err: &Error) -> bool {
    matches!(
        err,
        Error::SessionClosed
            | Error::NoAuth { .. }
            | Error::AuthFailed
            | Error::SequenceOverflow { .. }
            | Error::InvalidPath { .. }
    )
}

//! [`WriteGuard`]: write guard of a [`ReadWriteLock`](crate::ReadWriteLock).

use std::future::Future;
use std::sync::Arc;

use crate::error::{Error, LossReason};
use crate::hold::Hold;
use crate::hold::sealed::Sealed;
use crate::queue::{FencedWrite, Holding};
use crate::token::FencingToken;

/// Proof of holding a [`ReadWriteLock`](crate::ReadWriteLock) for writing, alone; releases it
/// when dropped (as a best effort, like [`MutexGuard`](crate::MutexGuard)).
#[must_use = "the guard releases its node as soon as it is dropped"]
#[clippy::has_significant_drop]
#[derive(Debug)]
pub struct WriteGuard {
    holding: Holding,
    path: Arc<str>,
}

impl WriteGuard {
    pub(crate) fn new(holding: Holding, path: Arc<str>) -> Self {
        Self { holding, path }
    }

    /// This writer's fencing token, larger than that of every earlier writer and reader of the
    /// path.
    pub fn token(&self) -> FencingToken {
        self.holding.token()
    }

    /// The full path of the holder's node, e.g. `/locks/x/_c_…-lock-0000000007`.
    pub fn node(&self) -> &str {
        self.holding.node()
    }

    /// The recipe's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Resolves when holding is lost or can no longer be proven, with the reason: when the
    /// session ends, when someone else deletes the node, or when the session can no longer be
    /// proven alive. [`Hold::lost`] gives the conditions.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches. While pending, it keeps a watch on the holder's node.
    pub fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        self.holding.lost()
    }

    /// Resolves as soon as the connection to ZooKeeper drops (or the session ends); see
    /// [`Hold::suspended`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    pub fn suspended(&self) -> impl Future<Output = ()> + Send + 'static {
        self.holding.suspended()
    }

    /// A ZooKeeper multi-op that commits only while this guard's node exists. See
    /// [`FencedWrite`].
    pub fn fenced_write(&self) -> FencedWrite<'_> {
        FencedWrite::new(self.holding.held())
    }

    /// Releases by deleting the holder's node, retrying connection losses; `Ok` means the node
    /// lasted until then.
    ///
    /// # Errors
    ///
    /// As [`Hold::release`]: [`Error::Lost`] if holding had been lost (or cannot be proven to
    /// have lasted), [`Error::ZooKeeper`] if the delete failed otherwise.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, the node is deleted in the background.
    pub async fn release(self) -> Result<(), Error> {
        self.holding.release().await
    }
}

/// Forwards to the inherent methods of the same names; the trait documents them in full.
impl Hold for WriteGuard {
    fn token(&self) -> FencingToken {
        WriteGuard::token(self)
    }

    fn node(&self) -> &str {
        WriteGuard::node(self)
    }

    fn path(&self) -> &str {
        WriteGuard::path(self)
    }

    fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        WriteGuard::lost(self)
    }

    fn suspended(&self) -> impl Future<Output = ()> + Send + 'static {
        WriteGuard::suspended(self)
    }

    fn fenced_write(&self) -> FencedWrite<'_> {
        WriteGuard::fenced_write(self)
    }

    fn release(self) -> impl Future<Output = Result<(), Error>> + Send {
        WriteGuard::release(self)
    }
}

impl Sealed for WriteGuard {}

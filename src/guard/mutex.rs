//! [`MutexGuard`]: guard of a [`Mutex`](crate::Mutex).

use std::future::Future;
use std::sync::Arc;

use crate::error::{Error, LossReason};
use crate::queue::{FencedWrite, Holding};
use crate::token::FencingToken;

/// Proof of holding a [`Mutex`](crate::Mutex); releases it when dropped.
///
/// Release with [`release`](MutexGuard::release) to learn whether the lock was held until the
/// end. Dropping the guard releases the lock too, as a best effort: the session's background
/// task deletes the node (it never blocks or panics, even outside a runtime); should that
/// fail, the node goes when the session ends.
#[must_use = "the guard releases its node as soon as it is dropped"]
#[clippy::has_significant_drop]
#[derive(Debug)]
pub struct MutexGuard {
    holding: Holding,
    path: Arc<str>,
}

impl MutexGuard {
    pub(crate) fn new(holding: Holding, path: Arc<str>) -> Self {
        Self { holding, path }
    }

    /// This holder's fencing token, larger than that of every earlier holder of the path.
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

    /// Resolves when holding is lost or can no longer be proven, with the reason:
    ///
    /// - at once when the session expires or is closed;
    /// - when anyone else deletes the holder's node;
    /// - while the ZooKeeper leader may no longer hear of the session — the connection is
    ///   silent, or its server is cut off from the leader — at the latest when the leader
    ///   could have expired the session: the session timeout (less 2 % and the liveness
    ///   margin) after the send time of the latest request that a heartbeat answered by
    ///   the leader confirms (`recipes/mutex.md`, "Knowing when the lock is lost", gives
    ///   the rule and its assumptions);
    /// - with [`LossReason::Released`](crate::LossReason::Released) if the guard is
    ///   released meanwhile.
    ///
    /// Once resolved, holding stays lost: a later `lost()` returns the same reason at
    /// once, and [fenced writes](Self::fenced_write) are refused. The future is
    /// `'static`, so it can be moved into a task.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches. While pending, it keeps a watch on the holder's
    /// node.
    pub fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        self.holding.lost()
    }

    /// Resolves as soon as the connection to ZooKeeper drops (or the session ends):
    /// holding is then in doubt until the connection returns. Pause work that must not
    /// run unfenced; [`lost`](Self::lost) tells when to stop for good.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    pub fn suspended(&self) -> impl Future<Output = ()> + Send + 'static {
        self.holding.suspended()
    }

    /// A ZooKeeper multi-op that commits only while this guard's node exists. See
    /// [`FencedWrite`](crate::FencedWrite).
    pub fn fenced_write(&self) -> FencedWrite<'_> {
        FencedWrite::new(self.holding.held())
    }

    /// Releases by deleting the holder's node, retrying connection losses.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`](crate::Error::Lost) if holding had already been lost — the node
    /// was gone, the session had expired or was closed, or [`lost`](Self::lost) had
    /// reported a loss: work done under it may have overlapped with another holder's.
    /// (A silence that ended with the same ZooKeeper session answering again was no
    /// loss: the session, and with it the node, lived on.) Also `Error::Lost` with
    /// [`LossReason::Unconfirmed`](crate::LossReason::Unconfirmed) if the delete was
    /// cut off by a lost connection and its retry found no node: the client cannot
    /// tell whether its own delete ran or someone else's ran first — the node is gone
    /// either way. `Ok` means the delete was answered, so the node lasted until then.
    /// [`Error::ZooKeeper`](crate::Error::ZooKeeper) if the delete failed otherwise;
    /// the node is then deleted in the background.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, the node is deleted in the background.
    pub async fn release(self) -> Result<(), Error> {
        self.holding.release().await
    }
}

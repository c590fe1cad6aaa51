//! [`Hold`]: what every guard, lease and held leadership has in common.

use std::future::Future;
use std::pin::Pin;

use crate::error::{Error, LossReason};
use crate::guard::{MutexGuard, ReadGuard, WriteGuard};
use crate::leader::Leadership;
use crate::queue::FencedWrite;
use crate::semaphore::Lease;
use crate::token::FencingToken;

/// Something that holds a contender node of a recipe: a [`MutexGuard`](crate::MutexGuard), a
/// [`ReadGuard`](crate::ReadGuard) or [`WriteGuard`](crate::WriteGuard), a
/// [`Lease`](crate::Lease) (one node per permit), or a [`Leadership`](crate::Leadership) (one
/// term of a leader).
///
/// The trait lets code hold any of them alike — run a task until [`lost`](Hold::lost), fence
/// its writes, [`release`](Hold::release) — generically (`impl Hold`) or through
/// [`AnyHold`], which holds whichever one was acquired. Each type has the same
/// methods inherently too, so calling them needs no import of this trait. The trait is sealed:
/// only this crate implements it.
///
/// Dropping a holder releases it too, as a best effort: the session's background task deletes
/// the nodes (it never blocks or panics, even outside a runtime); should that fail, the nodes go
/// when the session ends.
pub trait Hold: sealed::Sealed + Send + Sync + 'static {
    /// The holder's fencing token. What it is larger than depends on the recipe: see each
    /// type's `token`.
    fn token(&self) -> FencingToken;

    /// The full path of the holder's node, e.g. `/locks/x/_c_…-lock-0000000007` (a lease's first
    /// node; [`Lease::nodes`](crate::Lease::nodes) lists them all).
    fn node(&self) -> &str;

    /// The recipe's path.
    fn path(&self) -> &str;

    /// Resolves when holding is lost or can no longer be proven, with the reason:
    ///
    /// - at once when the session expires or is closed;
    /// - when anyone else deletes a node of the holder's;
    /// - while the ZooKeeper leader may no longer hear of the session — the connection is
    ///   silent, or its server is cut off from the leader — at the latest when the leader
    ///   could have expired the session: the session timeout (less 2 % and the liveness
    ///   margin) after the send time of the latest request that a heartbeat answered by
    ///   the leader confirms (`recipes/mutex.md`, "Knowing when the lock is lost", gives
    ///   the rule and its assumptions);
    /// - with [`LossReason::Released`] if the holder is released meanwhile.
    ///
    /// Once resolved, holding stays lost: a later `lost()` returns the same reason at
    /// once, and [fenced writes](Hold::fenced_write) are refused. The future is
    /// `'static`, so it can be moved into a task.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches. While pending, it keeps a watch on the holder's
    /// nodes.
    fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static;

    /// Resolves as soon as the connection to ZooKeeper drops (or the session ends):
    /// holding is then in doubt until the connection returns. Pause work that must not
    /// run unfenced; [`lost`](Hold::lost) tells when to stop for good.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    fn suspended(&self) -> impl Future<Output = ()> + Send + 'static;

    /// A ZooKeeper multi-op that commits only while every node of the holder's exists. See
    /// [`FencedWrite`].
    fn fenced_write(&self) -> FencedWrite<'_>;

    /// Releases by deleting the holder's nodes, retrying connection losses.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] if holding had already been lost — a node was gone, the session had
    /// expired or was closed, or [`lost`](Hold::lost) had reported a loss: work done under it
    /// may have overlapped with another holder's. (A silence that ended with the same ZooKeeper
    /// session answering again was no loss: the session, and with it the nodes, lived on.) Also
    /// `Error::Lost` with [`LossReason::Unconfirmed`] if a delete was cut off by a lost
    /// connection and its retry found no node: the client cannot tell whether its own delete ran
    /// or someone else's ran first — the node is gone either way. `Ok` means every delete was
    /// answered, so the nodes lasted until then. [`Error::ZooKeeper`] if a delete failed
    /// otherwise; the node is then deleted in the background. A holder of several nodes reports
    /// the first node's error, and releases all nodes regardless.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, the nodes are deleted in the background.
    fn release(self) -> impl Future<Output = Result<(), Error>> + Send
    where
        Self: Sized;
}

/// Keeps [`Hold`] implemented by this crate only, so that methods can be added to it.
pub(crate) mod sealed {
    /// The private supertrait of [`Hold`](super::Hold).
    pub trait Sealed {}
}

/// Whichever holder was acquired, when the recipe is chosen at run time (a command-line tool,
/// a test driver): it implements [`Hold`] once, by forwarding to the holder inside.
///
/// ```no_run
/// use zk_recipes::{AnyHold, Hold, Mutex, Semaphore, Session};
///
/// # async fn example(session: Session, exclusive: bool) -> Result<(), zk_recipes::Error> {
/// let held: AnyHold = if exclusive {
///     Mutex::new(&session, "/jobs/reindex")?.lock().await?.into()
/// } else {
///     Semaphore::new(&session, "/jobs/reindex-pool", 4)?.acquire().await?.into()
/// };
/// println!("holding {} with token {}", held.node(), held.token());
/// held.release().await?;
/// # Ok(()) }
/// ```
#[must_use = "the holder releases its nodes as soon as it is dropped"]
#[clippy::has_significant_drop]
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyHold {
    /// A [`Mutex`](crate::Mutex)'s guard.
    Mutex(MutexGuard),
    /// A [`ReadWriteLock`](crate::ReadWriteLock)'s read guard.
    Read(ReadGuard),
    /// A [`ReadWriteLock`](crate::ReadWriteLock)'s write guard.
    Write(WriteGuard),
    /// A [`Semaphore`](crate::Semaphore)'s lease.
    Lease(Lease),
    /// A leader's term.
    Leadership(Leadership),
}

/// The one place that forwards to each holder.
impl Hold for AnyHold {
    fn token(&self) -> FencingToken {
        match self {
            AnyHold::Mutex(held) => held.token(),
            AnyHold::Read(held) => held.token(),
            AnyHold::Write(held) => held.token(),
            AnyHold::Lease(held) => held.token(),
            AnyHold::Leadership(held) => held.token(),
        }
    }

    fn node(&self) -> &str {
        match self {
            AnyHold::Mutex(held) => held.node(),
            AnyHold::Read(held) => held.node(),
            AnyHold::Write(held) => held.node(),
            AnyHold::Lease(held) => held.node(),
            AnyHold::Leadership(held) => held.node(),
        }
    }

    fn path(&self) -> &str {
        match self {
            AnyHold::Mutex(held) => held.path(),
            AnyHold::Read(held) => held.path(),
            AnyHold::Write(held) => held.path(),
            AnyHold::Lease(held) => held.path(),
            AnyHold::Leadership(held) => held.path(),
        }
    }

    fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        let lost: Pin<Box<dyn Future<Output = LossReason> + Send>> = match self {
            AnyHold::Mutex(held) => Box::pin(held.lost()),
            AnyHold::Read(held) => Box::pin(held.lost()),
            AnyHold::Write(held) => Box::pin(held.lost()),
            AnyHold::Lease(held) => Box::pin(held.lost()),
            AnyHold::Leadership(held) => Box::pin(held.lost()),
        };
        lost
    }

    fn suspended(&self) -> impl Future<Output = ()> + Send + 'static {
        let suspended: Pin<Box<dyn Future<Output = ()> + Send>> = match self {
            AnyHold::Mutex(held) => Box::pin(held.suspended()),
            AnyHold::Read(held) => Box::pin(held.suspended()),
            AnyHold::Write(held) => Box::pin(held.suspended()),
            AnyHold::Lease(held) => Box::pin(held.suspended()),
            AnyHold::Leadership(held) => Box::pin(held.suspended()),
        };
        suspended
    }

    fn fenced_write(&self) -> FencedWrite<'_> {
        match self {
            AnyHold::Mutex(held) => held.fenced_write(),
            AnyHold::Read(held) => held.fenced_write(),
            AnyHold::Write(held) => held.fenced_write(),
            AnyHold::Lease(held) => held.fenced_write(),
            AnyHold::Leadership(held) => held.fenced_write(),
        }
    }

    async fn release(self) -> Result<(), Error> {
        match self {
            AnyHold::Mutex(held) => held.release().await,
            AnyHold::Read(held) => held.release().await,
            AnyHold::Write(held) => held.release().await,
            AnyHold::Lease(held) => held.release().await,
            AnyHold::Leadership(held) => held.release().await,
        }
    }
}

impl sealed::Sealed for AnyHold {}

impl From<MutexGuard> for AnyHold {
    fn from(held: MutexGuard) -> Self {
        AnyHold::Mutex(held)
    }
}

impl From<ReadGuard> for AnyHold {
    fn from(held: ReadGuard) -> Self {
        AnyHold::Read(held)
    }
}

impl From<WriteGuard> for AnyHold {
    fn from(held: WriteGuard) -> Self {
        AnyHold::Write(held)
    }
}

impl From<Lease> for AnyHold {
    fn from(held: Lease) -> Self {
        AnyHold::Lease(held)
    }
}

impl From<Leadership> for AnyHold {
    fn from(held: Leadership) -> Self {
        AnyHold::Leadership(held)
    }
}

//! [`Mutex`]: a fair (FIFO) distributed mutex with fencing tokens, in Curator's
//! InterProcessMutex layout.

use std::time::Duration;

use crate::error::Error;
use crate::guard::MutexGuard;
use crate::queue::{Holding, Role};
use crate::recipe::Recipe;
use crate::session::Session;

/// Curator's node name for InterProcessMutex and LeaderSelector.
/// A fair distributed mutex: at most one holder at a time, granted in arrival order, each
/// holder with a [`FencingToken`](crate::FencingToken) larger than every earlier holder's.
///
/// Contenders create an ephemeral sequential node `<path>/_c_<uuid>-lock-<seq>` — the layout
/// of Apache Curator's `InterProcessMutex` and `LeaderSelector` — so a Rust process and a JVM
/// process using Curator can share the lock. The lowest node holds; every other contender
/// watches only the node just ahead of it, so a release wakes exactly one waiter. Nodes of
/// kazoo's dialect (`__lock__`) in the same directory count as contenders too. See
/// [`docs::mutex`](crate::docs::mutex) for the algorithm and what happens under each failure.
///
/// The mutex is not reentrant: locking it again from the same process queues behind the
/// first guard. Holding is advisory — pass the guard's [token](MutexGuard::token) to the
/// resources you change, or use [fenced writes](MutexGuard::fenced_write) for ZooKeeper itself.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), zk_recipes::Error> {
/// use zk_recipes::{Mutex, Session};
///
/// let session = Session::connect("127.0.0.1:2181").await?;
/// let mutex = Mutex::new(&session, "/locks/nightly-report")?;
/// let guard = mutex.lock().await?;
/// tokio::select! {
///     reason = guard.lost() => eprintln!("lock lost ({reason}); stopping"),
///     _ = run_report(guard.token()) => {}
/// }
/// guard.release().await?;
/// # Ok(()) }
/// # async fn run_report(_: zk_recipes::FencingToken) {}
/// ```
#[derive(Debug, Clone)]
pub struct Mutex {
    recipe: Recipe,
}

impl Mutex {
    /// A mutex on `path` (created on first use, as CONTAINER nodes, like Curator does).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] if `path` is not an absolute, canonical znode path, is the root,
    /// or lies under `/zookeeper`.
    pub fn new(session: &Session, path: &str) -> Result<Self, Error> {
        Ok(Self { recipe: Recipe::new(session, path)? })
    }

    /// Sets the data stored in this mutex's contender nodes (default: empty), for example a
    /// host name and process id, so that operators can see who holds or waits.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.recipe.set_data(data);
        self
    }

    /// The mutex's path.
    pub fn path(&self) -> &str {
        &self.recipe.path
    }

    /// Waits for the lock, in arrival order.
    ///
    /// # Errors
    ///
    /// - [`Error::SessionExpired`] if the ZooKeeper session expired while waiting (call again:
    ///   the session re-establishes itself), [`Error::Unreachable`] if no session could be
    ///   established within the connect timeout, [`Error::SessionClosed`] if the session is or
    ///   gets closed;
    /// - [`Error::NoAuth`] if an ACL forbids creating the node or its parents;
    /// - [`Error::Lost`] if someone deleted this contender's node while it waited;
    /// - [`Error::SequenceOverflow`] if the directory's sequence counter wrapped;
    /// - [`Error::ZooKeeper`] for other server errors.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. The mutex keeps a FIFO queue, so cancelling loses the place in it; the
    /// contender node (created, or possibly created) is deleted in the session's background
    /// task, retried until the delete succeeds or the session ends.
    pub async fn lock(&self) -> Result<MutexGuard, Error> {
        Ok(self.guard(self.recipe.wait(Role::Lock, None).await?))
    }

    /// Takes the lock only if nobody holds or waits for it.
    ///
    /// This costs what [`lock`](Mutex::lock) costs when uncontended; when contended, the
    /// contender node is created, found behind others, and deleted in the background.
    ///
    /// # Errors
    ///
    /// As [`lock`](Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`lock`](Mutex::lock).
    pub async fn try_lock(&self) -> Result<Option<MutexGuard>, Error> {
        Ok(self.recipe.try_hold(Role::Lock).await?.map(|held| self.guard(held)))
    }

    /// Waits for the lock for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the time is up. The contender node has been deleted by then,
    /// unless the connection is down or the delete takes over a second: then the call returns
    /// anyway (at most a second late) and the node is deleted in the background. Otherwise as
    /// [`lock`](Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`lock`](Mutex::lock).
    pub async fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard, Error> {
        Ok(self.guard(self.recipe.wait(Role::Lock, Some(timeout)).await?))
    }

    fn guard(&self, holding: Holding) -> MutexGuard {
        MutexGuard::new(holding, self.recipe.path.clone())
    }
}

//! [`ReadWriteLock`]: a fair distributed read-write lock with fencing tokens, in Curator's
//! InterProcessReadWriteLock layout.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::guard::{ReadGuard, WriteGuard};
use crate::queue::Role;
use crate::recipe::Recipe;
use crate::session::Session;

/// A fair distributed read-write lock: many readers or one writer at a time, granted in arrival
/// order, so that a writer is never starved by readers that arrive after it.
///
/// Contenders create ephemeral sequential nodes `<path>/_c_<uuid>-__READ__<seq>` and
/// `<path>/_c_<uuid>-__WRIT__<seq>` — the layout of Apache Curator's
/// `InterProcessReadWriteLock` — in one directory, so they share one order. A writer holds when
/// it is first of all nodes and watches the node just ahead of it; a reader holds when no
/// writer is ahead of it and otherwise watches the nearest writer ahead. kazoo's `__rlock__`
/// and `__lock__` nodes count as readers and writers; any other contender node counts as a
/// writer. See [`docs::rwlock`](crate::docs::rwlock) for the algorithm and what happens under
/// each failure.
///
/// Every guard has a [`FencingToken`](crate::FencingToken): writers' tokens strictly increase,
/// and a reader's token lies between those of the writers before and after it.
///
/// The lock is not reentrant, and a holder cannot switch sides: asking for the read lock while
/// holding the write lock (or the other way round) queues behind one's own node and waits
/// forever. Release first. (Curator lets a writer take the read lock to downgrade; this lock
/// respects such downgrades by Curator processes but does not offer them.)
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), zk_recipes::Error> {
/// use zk_recipes::{ReadWriteLock, Session};
///
/// let session = Session::connect("127.0.0.1:2181").await?;
/// let lock = ReadWriteLock::new(&session, "/locks/catalog")?;
/// let reader = lock.read().await?; // shared with other readers
/// println!("reading under token {}", reader.token());
/// reader.release().await?;
///
/// let writer = lock.write().await?; // alone
/// writer.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ReadWriteLock {
    recipe: Recipe,
}

impl ReadWriteLock {
    /// A read-write lock on `path` (created on first use, as CONTAINER nodes, like Curator
    /// does).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] if `path` is not an absolute, canonical znode path, is the root,
    /// or lies under `/zookeeper`.
    pub fn new(session: &Session, path: &str) -> Result<Self, Error> {
        Ok(Self { recipe: Recipe::new(session, path)? })
    }

    /// Sets the data stored in this lock's contender nodes (default: empty), for example a host
    /// name and process id, so that operators can see who holds or waits.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.recipe.set_data(data);
        self
    }

    /// The lock's path.
    pub fn path(&self) -> &str {
        &self.recipe.path
    }

    /// Waits for a read lock: until no writer that arrived earlier holds or waits.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the contender node (created, or possibly created) is deleted in the
    /// session's background task, retried until the delete succeeds or the session ends.
    pub async fn read(&self) -> Result<ReadGuard, Error> {
        Ok(ReadGuard::new(self.recipe.wait(Role::Read, None).await?, self.path_arc()))
    }

    /// Takes a read lock only if no writer holds or waits.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`read`](ReadWriteLock::read).
    pub async fn try_read(&self) -> Result<Option<ReadGuard>, Error> {
        Ok(self.recipe.try_hold(Role::Read).await?.map(|held| ReadGuard::new(held, self.path_arc())))
    }

    /// Waits for a read lock for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock_timeout`](crate::Mutex::lock_timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`read`](ReadWriteLock::read).
    pub async fn read_timeout(&self, timeout: Duration) -> Result<ReadGuard, Error> {
        Ok(ReadGuard::new(self.recipe.wait(Role::Read, Some(timeout)).await?, self.path_arc()))
    }

    /// Waits for the write lock: until every reader and writer that arrived earlier is gone.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`read`](ReadWriteLock::read).
    pub async fn write(&self) -> Result<WriteGuard, Error> {
        Ok(WriteGuard::new(self.recipe.wait(Role::Write, None).await?, self.path_arc()))
    }

    /// Takes the write lock only if nobody holds or waits for the lock.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`read`](ReadWriteLock::read).
    pub async fn try_write(&self) -> Result<Option<WriteGuard>, Error> {
        let held = self.recipe.try_hold(Role::Write).await?;
        Ok(held.map(|held| WriteGuard::new(held, self.path_arc())))
    }

    /// Waits for the write lock for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock_timeout`](crate::Mutex::lock_timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`read`](ReadWriteLock::read).
    pub async fn write_timeout(&self, timeout: Duration) -> Result<WriteGuard, Error> {
        Ok(WriteGuard::new(self.recipe.wait(Role::Write, Some(timeout)).await?, self.path_arc()))
    }

    fn path_arc(&self) -> Arc<str> {
        self.recipe.path.clone()
    }
}

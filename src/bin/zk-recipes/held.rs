//! Acquiring any of the recipes the tool runs commands under, and what it then holds.

use std::future::Future;
use std::pin::Pin;

use zk_recipes::{
    Error, FencingToken, Lease, LossReason, Mutex, MutexGuard, ReadGuard, ReadWriteLock, Semaphore, Session, WriteGuard,
};

use crate::args::Patience;

/// The recipe a command runs under.
#[derive(Debug, Clone)]
pub enum Recipe {
    Lock,
    Read,
    Write,
    Semaphore { permits: u32 },
    Elect { id: String },
}

/// What the tool holds while the command runs.
#[derive(Debug)]
pub enum Held {
    Mutex(MutexGuard),
    Read(ReadGuard),
    Write(WriteGuard),
    Lease(Lease),
}

/// Acquires `recipe` at `path`; `None` if it was not acquired in time.
///
/// Cancel safe, as the recipes are: dropping it deletes the contender node.
pub async fn acquire(
    session: &Session,
    recipe: &Recipe,
    path: &str,
    patience: Patience,
) -> Result<Option<Held>, Error> {
    /// Waits as `patience` says: the recipe's blocking, trying and timed forms.
    macro_rules! wait {
        ($wrap:expr, $forever:expr, $try:expr, $timed:expr) => {
            match patience {
                Patience::Forever => $forever.await.map(|held| Some($wrap(held))),
                Patience::NoWait => $try.await.map(|held| held.map($wrap)),
                Patience::For(timeout) => match $timed(timeout).await {
                    Ok(held) => Ok(Some($wrap(held))),
                    Err(Error::Timeout { .. }) => Ok(None),
                    Err(err) => Err(err),
                },
            }
        };
    }
    match recipe {
        Recipe::Lock | Recipe::Elect { .. } => {
            let mut mutex = Mutex::new(session, path)?;
            if let Recipe::Elect { id } = recipe {
                // Curator's LeaderSelector is this mutex with the participant id as node data.
                mutex = mutex.with_data(id.as_bytes());
            }
            wait!(Held::Mutex, mutex.lock(), mutex.try_lock(), |t| mutex.lock_timeout(t))
        }
        Recipe::Read => {
            let lock = ReadWriteLock::new(session, path)?;
            wait!(Held::Read, lock.read(), lock.try_read(), |t| lock.read_timeout(t))
        }
        Recipe::Write => {
            let lock = ReadWriteLock::new(session, path)?;
            wait!(Held::Write, lock.write(), lock.try_write(), |t| lock.write_timeout(t))
        }
        Recipe::Semaphore { permits } => {
            let semaphore = Semaphore::new(session, path, *permits)?;
            wait!(Held::Lease, semaphore.acquire(), semaphore.try_acquire(), |t| semaphore.acquire_timeout(t))
        }
    }
}

impl Held {
    pub fn token(&self) -> FencingToken {
        match self {
            Held::Mutex(guard) => guard.token(),
            Held::Read(guard) => guard.token(),
            Held::Write(guard) => guard.token(),
            Held::Lease(lease) => lease.token(),
        }
    }

    /// The full path of the node held (a lease's first node).
    pub fn node(&self) -> &str {
        match self {
            Held::Mutex(guard) => guard.node(),
            Held::Read(guard) => guard.node(),
            Held::Write(guard) => guard.node(),
            Held::Lease(lease) => lease.nodes().next().unwrap_or_default(),
        }
    }

    /// Resolves when holding is lost or can no longer be proven.
    pub fn lost(&self) -> Pin<Box<dyn Future<Output = LossReason> + Send>> {
        match self {
            Held::Mutex(guard) => Box::pin(guard.lost()),
            Held::Read(guard) => Box::pin(guard.lost()),
            Held::Write(guard) => Box::pin(guard.lost()),
            Held::Lease(lease) => Box::pin(lease.lost()),
        }
    }

    pub async fn release(self) -> Result<(), Error> {
        match self {
            Held::Mutex(guard) => guard.release().await,
            Held::Read(guard) => guard.release().await,
            Held::Write(guard) => guard.release().await,
            Held::Lease(lease) => lease.release().await,
        }
    }
}

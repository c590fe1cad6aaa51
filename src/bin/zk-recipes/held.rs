//! Acquiring any of the recipes the tool runs commands under, and what it then holds.

use zk_recipes::{AnyHold, Error, Mutex, ReadWriteLock, Semaphore, Session};

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

/// Acquires `recipe` at `path`; `None` if it was not acquired in time.
///
/// Cancel safe, as the recipes are: dropping it deletes the contender node.
pub async fn acquire(
    session: &Session,
    recipe: &Recipe,
    path: &str,
    patience: Patience,
) -> Result<Option<AnyHold>, Error> {
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
            wait!(AnyHold::Mutex, mutex.lock(), mutex.try_lock(), |t| mutex.lock_timeout(t))
        }
        Recipe::Read => {
            let lock = ReadWriteLock::new(session, path)?;
            wait!(AnyHold::Read, lock.read(), lock.try_read(), |t| lock.read_timeout(t))
        }
        Recipe::Write => {
            let lock = ReadWriteLock::new(session, path)?;
            wait!(AnyHold::Write, lock.write(), lock.try_write(), |t| lock.write_timeout(t))
        }
        Recipe::Semaphore { permits } => {
            let semaphore = Semaphore::new(session, path, *permits)?;
            wait!(AnyHold::Lease, semaphore.acquire(), semaphore.try_acquire(), |t| semaphore.acquire_timeout(t))
        }
    }
}

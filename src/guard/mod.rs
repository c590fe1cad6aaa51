//! The guard types of the single-node recipes, one file each: [`MutexGuard`] for a
//! [`Mutex`](crate::Mutex), [`ReadGuard`] and [`WriteGuard`] for a
//! [`ReadWriteLock`](crate::ReadWriteLock). Each owns a [`Holding`](crate::queue::Holding) and
//! the recipe's path.

mod mutex;
mod read;
mod write;

pub use self::mutex::MutexGuard;
pub use self::read::ReadGuard;
pub use self::write::WriteGuard;

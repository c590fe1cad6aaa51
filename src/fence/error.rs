//! [`FenceError`]: what a fenced write reports.

use crate::FencingToken;

/// Why a fenced write did not happen.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The token is older than the fence: a later holder has written. Roll the transaction
    /// back and stop; this holder has lost the lock (its guard's `lost()` says so too).
    #[error(
        "stale fencing token {presented}: the fence is at {current}, a later holder's; \
         roll back and stop, this holder has lost the lock"
    )]
    Stale {
        /// The token this write presented.
        presented: FencingToken,
        /// The token that won: the fence's value when the write was refused.
        current: FencingToken,
    },

    /// A guarded update found no row with that key.
    #[error("no row in {table} has that key; a guarded update only changes an existing row")]
    NoRow {
        /// The table, as given.
        table: String,
    },

    /// The write was refused, but the fence then read no later token than the one presented:
    /// something outside the fence protocol deleted the row or moved its fence backwards.
    #[error(
        "the write with fencing token {presented} was refused, yet the fence now reads {found:?}: \
         something outside the fence protocol changed it; roll back and check who writes there"
    )]
    FenceMovedBack {
        /// The token this write presented.
        presented: FencingToken,
        /// What the fence read afterwards (`None`: no row).
        found: Option<FencingToken>,
    },

    /// A table or column name is not a plain SQL identifier.
    #[error(
        "invalid SQL name {name:?}: use letters, digits and underscores, not starting with a \
         digit, optionally qualified by a schema (\"billing.fences\")"
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },

    /// PostgreSQL or the connection failed. At `REPEATABLE READ` or `SERIALIZABLE` a write
    /// that raced a later holder's fails here with SQLSTATE 40001 instead of
    /// [`Stale`](Self::Stale): also refused, and not worth retrying with the same token.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

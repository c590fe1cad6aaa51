//! Fencing at the resource: PostgreSQL checks the [`FencingToken`] in the same transaction as
//! the write it protects (feature `postgres`, on `tokio-postgres`).
//!
//! A lock holder can pause past its session timeout and wake believing it still holds the lock;
//! only the resource can tell a stale holder from the current one, by comparing tokens at the
//! moment of the write. This module is that comparison for PostgreSQL, as two idioms that run
//! inside the caller's own transaction ([`docs::fencing`](crate::docs::fencing) explains them
//! in full):
//!
//! - [`FenceTable::advance`]: one fence row per lock, moved forward with
//!   `INSERT … ON CONFLICT (lock_path) DO UPDATE … WHERE fences.token <= EXCLUDED.token`.
//!   Advance first in a transaction: the row stays locked until the transaction ends, so a later
//!   holder's transaction waits for this one, and everything this one does after the advance is
//!   fenced.
//! - [`FencedTable::update`]: a guarded `UPDATE … SET …, fence = $1 WHERE key = $2 AND fence <=
//!   $1` on a row that carries its own fence column, for a resource that is one row.
//!
//! A stale token is [`FenceError::Stale`], naming the token that won. Neither function begins,
//! commits or rolls back anything: pass a [`tokio_postgres::Transaction`] (or a `Client` for a
//! single statement in autocommit) and roll back on an error, as dropping the transaction does.
//! There is no connection pool here; any `&impl GenericClient` works.
//!
//! # The token as a SQL value
//!
//! Columns hold the token's canonical text form (`0000000100000002-0000000042`, see
//! [`FencingToken`]) as `text COLLATE "C"`. Fixed width and byte order make string comparison
//! token comparison, and the `C` collation makes PostgreSQL compare bytes whatever the
//! database's default collation is. Text was chosen over `numeric(39,0)` (which holds
//! [`FencingToken::as_u128`](crate::FencingToken::as_u128)) because it is the form every holder already has: the CLI's
//! `ZK_FENCING_TOKEN`, a `psql -v token=…`, a Java service's `String.format("%016x-%010d", …)`
//! — no arithmetic in SQL or the shell, and the epoch and sequence stay readable in the table.
//! [`FencingToken`] is also [`ToSql`](tokio_postgres::types::ToSql) and
//! [`FromSql`](tokio_postgres::types::FromSql) for `text`/`varchar` columns (the text form)
//! and `numeric` columns (the number), for tables that already store one of them.
//!
//! ```no_run
//! use zk_recipes::fence::{FenceTable, FencedTable};
//! use zk_recipes::{Mutex, Session};
//!
//! # async fn example(db: &mut tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let session = Session::connect("127.0.0.1:2181").await?;
//! let guard = Mutex::new(&session, "/locks/payments/order-42")?.lock().await?;
//!
//! let fences = FenceTable::new("fences")?;
//! let payments = FencedTable::new("payments", "id", "fence")?;
//! let tx = db.transaction().await?;
//! fences.advance(&tx, "/locks/payments/order-42", guard.token()).await?; // first
//! payments.update(&tx, guard.token(), &42_i64, "status = 'captured'", &[]).await?;
//! tx.commit().await?; // an error above dropped `tx`: rolled back
//! # Ok(()) }
//! ```
//!
//! [`FencingToken`]: crate::FencingToken

mod error;
mod ident;
mod row;
mod sql;
mod table;

pub use tokio_postgres;

pub use self::error::FenceError;
pub use self::row::FencedTable;
pub use self::table::FenceTable;

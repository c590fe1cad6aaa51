//! The per-lock fence row: [`FenceTable::advance`].

use tokio_postgres::GenericClient;

use super::FenceError;
use super::ident::Ident;
use crate::FencingToken;

/// A table of fences, one row per lock: the highest token that has written under that lock.
///
/// Its rows have a `lock_path text PRIMARY KEY` and a `token text COLLATE "C"` holding the
/// token's canonical text form (see [the module docs](super) for why text);
/// [`create_statement`](Self::create_statement) is the `CREATE TABLE`.
///
/// # The idiom
///
/// ```sql
/// INSERT INTO fences (lock_path, token) VALUES ($1, $2)
/// ON CONFLICT (lock_path) DO UPDATE SET token = EXCLUDED.token, updated_at = now()
/// WHERE fences.token <= EXCLUDED.token
/// RETURNING token
/// ```
///
/// No row back means a later holder's token is in the fence. Advance as the first statement
/// of the transaction whose writes it protects: the fence row then stays locked until that
/// transaction commits or rolls back, so a later holder's advance waits for it (and sees all of
/// it once it proceeds), and an earlier holder's advance that comes after a later one's
/// commit updates nothing — also at `READ COMMITTED`, where PostgreSQL re-checks the `WHERE`
/// on the row version the waiting statement finally gets ([`docs::fencing`](crate::docs::fencing)).
#[derive(Debug, Clone)]
pub struct FenceTable {
    table: Ident,
}

impl FenceTable {
    /// A fence table named `name` (`fences`, or schema-qualified `billing.fences`). Names are
    /// quoted in statements, so they are case-sensitive.
    ///
    /// # Errors
    ///
    /// [`FenceError::InvalidName`] unless `name` is plain letters, digits and underscores.
    pub fn new(name: &str) -> Result<Self, FenceError> {
        Ok(Self { table: Ident::table(name)? })
    }

    /// The `CREATE TABLE IF NOT EXISTS` statement for this table.
    ///
    /// The `CHECK` refuses anything but a canonical token, so that a malformed value (which
    /// could sort above every real token) never gets into a fence.
    pub fn create_statement(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\n    \
             lock_path text PRIMARY KEY,\n    \
             token text COLLATE \"C\" NOT NULL CHECK (token ~ '^[0-9a-f]{{16}}-[0-9]{{10}}$'),\n    \
             updated_at timestamptz NOT NULL DEFAULT now()\n)",
            self.table.quoted
        )
    }

    /// Runs [`create_statement`](Self::create_statement).
    ///
    /// # Errors
    ///
    /// [`FenceError::Postgres`] if PostgreSQL refuses (no permission, say).
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped, the table may or may not have been created.
    pub async fn create<C>(&self, client: &C) -> Result<(), FenceError>
    where
        C: GenericClient + Sync,
    {
        client.batch_execute(&self.create_statement()).await?;
        Ok(())
    }

    /// Moves the fence of `lock` (any key: the lock's path is the natural one) to `token`, or
    /// refuses if a later token is there. The same token again is accepted: a holder may
    /// advance in every transaction it runs.
    ///
    /// Runs in `client`'s transaction, if it has one, and ends nothing: commit to keep the
    /// writes that follow the advance; roll back on an error.
    ///
    /// # Errors
    ///
    /// - [`FenceError::Stale`] if the fence holds a later token; it names that token.
    /// - [`FenceError::FenceMovedBack`] if the write was refused but the fence then read no
    ///   later token: someone outside the protocol deleted or lowered it.
    /// - [`FenceError::Postgres`] if a statement fails; at `REPEATABLE READ` or above this is
    ///   also how a race with a later holder ends (SQLSTATE 40001), refused as well.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: once sent, the statement runs to its end in the caller's transaction
    /// even if this future is dropped, so whether the fence moved is unknown. Roll that
    /// transaction back (drop it) rather than commit it.
    pub async fn advance<C>(&self, client: &C, lock: &str, token: FencingToken) -> Result<(), FenceError>
    where
        C: GenericClient + Sync,
    {
        let advance = format!(
            "INSERT INTO {table} AS fences (lock_path, token) VALUES ($1, $2) \
             ON CONFLICT (lock_path) DO UPDATE SET token = EXCLUDED.token, updated_at = now() \
             WHERE fences.token <= EXCLUDED.token \
             RETURNING token",
            table = self.table.quoted
        );
        if client.query_opt(&advance, &[&lock, &token]).await?.is_some() {
            return Ok(());
        }
        // Refused. This is a new statement, so at READ COMMITTED it sees the winner's commit
        // that the refused one waited for.
        let current = self.current(client, lock).await?;
        Err(match current {
            Some(current) if current > token => FenceError::Stale { presented: token, current },
            found => FenceError::FenceMovedBack { presented: token, found },
        })
    }

    /// The token in the fence of `lock`, if any holder has advanced it.
    ///
    /// # Errors
    ///
    /// [`FenceError::Postgres`] if the query fails or the column holds no token.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn current<C>(&self, client: &C, lock: &str) -> Result<Option<FencingToken>, FenceError>
    where
        C: GenericClient + Sync,
    {
        let read = format!("SELECT token FROM {} WHERE lock_path = $1", self.table.quoted);
        Ok(client.query_opt(&read, &[&lock]).await?.map(|row| row.try_get(0)).transpose()?)
    }
}

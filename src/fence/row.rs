//! A row that carries its own fence column: [`FencedTable::update`].

use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::FenceError;
use super::ident::Ident;
use crate::FencingToken;

/// A table whose rows each carry a fence column: the token of the last holder that wrote the
/// row, for resources that are one row each (a payment, a shard's owner record).
///
/// The fence column is `text COLLATE "C"` with the canonical text form, like
/// [`FenceTable`](super::FenceTable)'s. A new row starts with any token no holder can have
/// lower than, such as `'0000000000000000-0000000000'`, or the creating holder's.
///
/// # The idiom
///
/// ```sql
/// UPDATE payments SET status = 'captured', fence = $1
/// WHERE id = $2 AND fence <= $1
/// ```
///
/// Zero rows updated, for a row that exists, means a later holder wrote it. A stale update
/// that waits behind a later holder's open transaction is checked again, at `READ
/// COMMITTED`, on the row as that transaction left it, and updates nothing. This fences one
/// row: to fence several, or inserts, use a [`FenceTable`](super::FenceTable) advance first.
#[derive(Debug, Clone)]
pub struct FencedTable {
    table: Ident,
    key: Ident,
    fence: Ident,
}

impl FencedTable {
    /// The table `table` (optionally schema-qualified), its rows found by `key_column`, their
    /// fences in `fence_column`. Names are quoted in statements, so they are case-sensitive.
    ///
    /// # Errors
    ///
    /// [`FenceError::InvalidName`] unless each is plain letters, digits and underscores.
    pub fn new(table: &str, key_column: &str, fence_column: &str) -> Result<Self, FenceError> {
        Ok(Self { table: Ident::table(table)?, key: Ident::column(key_column)?, fence: Ident::column(fence_column)? })
    }

    /// Updates the row whose key is `key` — `UPDATE table SET <set>, fence = $1 WHERE key = $2
    /// AND fence <= $1` — if `token` is not older than the row's fence, and sets its fence to
    /// `token`. `set` is the rest of the `SET` list, SQL of the caller's own (never text from
    /// outside); it may use `$3`, `$4`, … for `params`. Returns the rows updated: 1.
    ///
    /// Runs in `client`'s transaction, if it has one, and ends nothing.
    ///
    /// ```no_run
    /// # use zk_recipes::fence::FencedTable;
    /// # async fn f(tx: &tokio_postgres::Transaction<'_>, token: zk_recipes::FencingToken) -> Result<(), zk_recipes::fence::FenceError> {
    /// let payments = FencedTable::new("payments", "id", "fence")?;
    /// payments.update(tx, token, &42_i64, "status = 'captured', captured_by = $3", &[&"worker-b"]).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// - [`FenceError::Stale`] if the row's fence holds a later token; it names that token.
    /// - [`FenceError::NoRow`] if no row has that key.
    /// - [`FenceError::FenceMovedBack`] if the update was refused but the fence then read no
    ///   later token (someone outside the protocol lowered it).
    /// - [`FenceError::Postgres`] if a statement fails; at `REPEATABLE READ` or above this is
    ///   also how a race with a later holder ends (SQLSTATE 40001), refused as well.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: once sent, the update runs to its end in the caller's transaction even
    /// if this future is dropped, so whether the row changed is unknown. Roll that transaction
    /// back (drop it) rather than commit it.
    pub async fn update<C>(
        &self,
        client: &C,
        token: FencingToken,
        key: &(dyn ToSql + Sync),
        set: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, FenceError>
    where
        C: GenericClient + Sync,
    {
        let (table, key_column, fence) = (&self.table.quoted, &self.key.quoted, &self.fence.quoted);
        let set = if set.trim().is_empty() { String::new() } else { format!("{set}, ") };
        let update = format!("UPDATE {table} SET {set}{fence} = $1 WHERE {key_column} = $2 AND {fence} <= $1");
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&token, key];
        all.extend_from_slice(params);
        let updated = client.execute(&update, &all).await?;
        if updated > 0 {
            return Ok(updated);
        }
        // Refused, or no such row. A new statement: at READ COMMITTED it sees the commit that
        // the refused update waited for.
        let read = format!("SELECT {fence} FROM {table} WHERE {key_column} = $1");
        let Some(row) = client.query_opt(&read, &[key]).await? else {
            return Err(FenceError::NoRow { table: self.table.given.clone() });
        };
        let current: FencingToken = row.try_get(0)?;
        Err(if current > token {
            FenceError::Stale { presented: token, current }
        } else {
            FenceError::FenceMovedBack { presented: token, found: Some(current) }
        })
    }
}

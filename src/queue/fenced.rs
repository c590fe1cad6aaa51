//! Writes fenced by a holding: a multi-op that commits only while the holder's nodes exist.

use zookeeper_client as zk;

use super::holding::Held;
use crate::error::{Error, LossReason};

/// A multi-op on ZooKeeper that commits only while the holder still holds: its first operations
/// check that the holder's node exists — every node of a [`Lease`](crate::Lease), one per
/// permit. Built by [`Hold::fenced_write`](crate::Hold::fenced_write).
///
/// ```no_run
/// # async fn example(guard: zk_recipes::MutexGuard) -> Result<(), zk_recipes::Error> {
/// let mut write = guard.fenced_write();
/// write.set_data("/app/state", b"v2", None);
/// write.commit().await?; // Err(Error::Lost { .. }) once the lock is gone
/// # Ok(()) }
/// ```
#[must_use = "a fenced write does nothing until committed"]
#[derive(Debug)]
pub struct FencedWrite<'h> {
    /// The holder's nodes, never empty; all of one ZooKeeper session.
    holdings: Vec<&'h Held>,
    operations: Vec<Operation>,
}

#[derive(Debug)]
enum Operation {
    Create { path: String, data: Vec<u8>, mode: zk::CreateMode },
    SetData { path: String, data: Vec<u8>, version: Option<i32> },
    Delete { path: String, version: Option<i32> },
}

impl<'h> FencedWrite<'h> {
    pub(crate) fn new(holding: &'h Held) -> Self {
        Self::of_all(vec![holding])
    }

    /// A write fenced by every one of `holdings` (not empty, all of one session).
    pub(crate) fn of_all(holdings: Vec<&'h Held>) -> Self {
        assert!(!holdings.is_empty(), "a fenced write needs a node to check");
        Self { holdings, operations: Vec::new() }
    }

    /// Adds a create of `path` (with the session's ACLs).
    pub fn create(&mut self, path: &str, data: &[u8], mode: zk::CreateMode) -> &mut Self {
        self.operations.push(Operation::Create { path: path.to_owned(), data: data.to_vec(), mode });
        self
    }

    /// Adds a `setData` of `path`, optionally only at `version`.
    pub fn set_data(&mut self, path: &str, data: &[u8], version: Option<i32>) -> &mut Self {
        self.operations.push(Operation::SetData { path: path.to_owned(), data: data.to_vec(), version });
        self
    }

    /// Adds a delete of `path`, optionally only at `version`.
    pub fn delete(&mut self, path: &str, version: Option<i32>) -> &mut Self {
        self.operations.push(Operation::Delete { path: path.to_owned(), version });
        self
    }

    /// Commits all operations atomically, provided the holder's nodes still exist.
    ///
    /// # Errors
    ///
    /// - [`Error::Lost`] if a node of the holder's is gone, the session expired or was closed,
    ///   or holding can no longer be proven (then nothing is sent); nothing was applied;
    /// - [`Error::ZooKeeper`] (or [`Error::NoAuth`]) if one of the operations fails; nothing was
    ///   applied either;
    /// - [`Error::ZooKeeper`] with [`zk::Error::ConnectionLoss`]: the outcome is **unknown** —
    ///   the request may have committed before the connection dropped. Read the state back
    ///   before retrying a write that is not idempotent.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe in the sense that the request is sent on the first poll: a dropped future
    /// may still have committed.
    pub async fn commit(self) -> Result<Vec<zk::MultiWriteResult>, Error> {
        let holdings = &self.holdings;
        let first = holdings[0];
        // All nodes belong to one session, so the first one's client serves for all.
        let client = first.check_held()?;
        for holding in &holdings[1..] {
            holding.check_held()?;
        }
        let acls = first.session().acls();
        // Once lost, always lost: a loss found by a write is recorded like one `lost()` found.
        let lost =
            |holding: &Held, reason| Error::Lost { node: holding.node().to_owned(), reason: holding.lose(reason) };
        // The session's end ends every node's holding; the first node's loss is reported.
        let ended = |reason| {
            let error = lost(first, reason);
            for holding in &holdings[1..] {
                holding.lose(reason);
            }
            error
        };
        let mut writer = client.new_check_writer(first.node(), None).map_err(|e| Error::zk(first.node(), e))?;
        let checks = &holdings[1..];
        for holding in checks {
            writer.add_check_version(holding.node(), -1).map_err(|e| Error::zk(holding.node(), e))?;
        }
        for operation in &self.operations {
            let added = match operation {
                Operation::Create { path, data, mode } => writer.add_create(path, data, &mode.with_acls(acls)),
                Operation::SetData { path, data, version } => writer.add_set_data(path, data, *version),
                Operation::Delete { path, version } => writer.add_delete(path, *version),
            };
            added.map_err(|err| Error::zk(operation.path(), err))?;
        }
        match writer.commit().await {
            Ok(results) => Ok(results.into_iter().skip(checks.len()).collect()),
            Err(zk::CheckWriteError::CheckFailed { .. }) => Err(lost(first, LossReason::NodeDeleted)),
            Err(zk::CheckWriteError::RequestFailed { source: zk::Error::SessionExpired }) => {
                Err(ended(LossReason::SessionExpired))
            }
            Err(zk::CheckWriteError::RequestFailed { source: zk::Error::ClientClosed }) => {
                Err(ended(LossReason::SessionClosed))
            }
            Err(zk::CheckWriteError::RequestFailed { source }) => Err(Error::zk(first.node(), source)),
            // The checks of the other nodes come first, the caller's operations after them.
            Err(zk::CheckWriteError::OperationFailed { index, .. }) if index < checks.len() => {
                Err(lost(checks[index], LossReason::NodeDeleted))
            }
            Err(zk::CheckWriteError::OperationFailed { index, source }) => {
                Err(Error::zk(self.operations[index - checks.len()].path(), source))
            }
        }
    }
}

impl Operation {
    fn path(&self) -> &str {
        match self {
            Operation::Create { path, .. } | Operation::SetData { path, .. } | Operation::Delete { path, .. } => path,
        }
    }
}

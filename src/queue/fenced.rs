//! Writes fenced by a holding: a multi-op that commits only while the holder's node exists.

use zookeeper_client as zk;

use super::holding::Held;
use crate::error::{Error, LossReason};

/// A multi-op on ZooKeeper that commits only while the holder still holds: its first operation
/// checks that the holder's node exists. Built by `MutexGuard::fenced_write`.
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
    holding: &'h Held,
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
        Self { holding, operations: Vec::new() }
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

    /// Commits all operations atomically, provided the holder's node still exists.
    ///
    /// # Errors
    ///
    /// - [`Error::Lost`] if the holder's node is gone, the session expired or was closed, or
    ///   holding can no longer be proven (then nothing is sent); nothing was applied;
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
        let holding = self.holding;
        let client = holding.check_held()?;
        let acls = holding.session().acls();
        // Once lost, always lost: a loss found by a write is recorded like one `lost()` found.
        let lost = |reason| Error::Lost { node: holding.node().to_owned(), reason: holding.lose(reason) };
        let mut writer = client.new_check_writer(holding.node(), None).map_err(|e| Error::zk(holding.node(), e))?;
        for operation in &self.operations {
            let added = match operation {
                Operation::Create { path, data, mode } => writer.add_create(path, data, &mode.with_acls(acls)),
                Operation::SetData { path, data, version } => writer.add_set_data(path, data, *version),
                Operation::Delete { path, version } => writer.add_delete(path, *version),
            };
            added.map_err(|err| Error::zk(operation.path(), err))?;
        }
        match writer.commit().await {
            Ok(results) => Ok(results),
            Err(zk::CheckWriteError::CheckFailed { .. }) => Err(lost(LossReason::NodeDeleted)),
            Err(zk::CheckWriteError::RequestFailed { source: zk::Error::SessionExpired }) => {
                Err(lost(LossReason::SessionExpired))
            }
            Err(zk::CheckWriteError::RequestFailed { source: zk::Error::ClientClosed }) => {
                Err(lost(LossReason::SessionClosed))
            }
            Err(zk::CheckWriteError::RequestFailed { source }) => Err(Error::zk(holding.node(), source)),
            Err(zk::CheckWriteError::OperationFailed { index, source }) => {
                Err(Error::zk(self.operations[index].path(), source))
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

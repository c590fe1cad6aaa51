//! What every guard holds: a contender node that the recipe's rule lets proceed, under one
//! ZooKeeper session. Loss detection, release and fenced writes live here once for all recipes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};

use futures_util::FutureExt;
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::error::{Error, LossReason};
use crate::queue::cleanup::Target;
use crate::retry;
use crate::session::{Moment, Session, SessionState, end_of};
use crate::token::FencingToken;

/// What can be observed of a holding — its token, node and loss — cloneable, without owning
/// the node: a leader's term hands this out while the campaign task keeps the [`Holding`].
#[derive(Debug, Clone)]
pub(crate) struct Held {
    session: Session,
    generation: u64,
    node: Arc<str>,
    token: FencingToken,
    /// The first loss observed, shared with every `lost()` future.
    loss: Arc<OnceLock<LossReason>>,
    /// The `recipe` label of its metrics.
    label: &'static str,
    /// A watch on the node that the acquisition set already, for the first `lost()` to use.
    armed: Arc<Armed>,
}

/// A watch set already, waiting to be used — or what it saw, once it fired.
#[derive(Default)]
struct Armed(StdMutex<Option<NodeWatch>>);

impl Armed {
    fn take(&self) -> Option<NodeWatch> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Polls the watch once, without waiting; a watch that fired is replaced by its outcome,
    /// so that it is never polled after completing.
    fn poll(&self) -> Option<NodeEvent> {
        let mut armed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let event = armed.as_mut()?.as_mut().now_or_never()?;
        *armed = Some(Box::pin(std::future::ready(event)));
        Some(event)
    }

    /// The loss the watch has seen already, if any.
    fn fired(&self) -> Option<LossReason> {
        match self.poll()? {
            NodeEvent::Deleted => Some(LossReason::NodeDeleted),
            NodeEvent::Refused => Some(LossReason::Unwatchable),
            NodeEvent::Changed | NodeEvent::SessionEnded => None,
        }
    }

    /// Sends the watch's request now, so that it is armed before anyone asks.
    fn arm(&self) {
        self.poll();
    }
}

impl std::fmt::Debug for Armed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.lock().is_ok_and(|w| w.is_some()) { "Armed(watch)" } else { "Armed(none)" })
    }
}

impl Held {
    pub(crate) fn token(&self) -> FencingToken {
        self.token
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// Resolves when holding ends or can no longer be proven; see `MutexGuard::lost`.
    pub(crate) fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        let watch = LossWatch {
            session: self.session.clone(),
            generation: self.generation,
            node: self.node.to_string(),
            loss: self.loss.clone(),
            label: self.label,
            armed: self.armed.take(),
        };
        async move {
            let mut watch = watch;
            let reason = watch.run().await;
            record_loss(&watch.loss, &watch.node, watch.label, reason)
        }
    }

    /// Resolves as soon as the connection drops or the session ends.
    pub(crate) fn suspended(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut status = self.session.status();
        let generation = self.generation;
        async move {
            let _ = status.wait_for(|s| s.generation != generation || s.state != SessionState::Connected).await;
        }
    }

    /// The client of the ZooKeeper session the node belongs to, or why that session is over.
    fn client(&self) -> Result<zk::Client, LossReason> {
        if let Some(reason) = self.session.ended(self.generation) {
            return Err(reason);
        }
        self.session.client_of(self.generation).ok_or(LossReason::SessionExpired)
    }

    /// Checks what can be checked locally before a fenced write: an observed loss, and the
    /// liveness proof. A loss found here is recorded: once lost, always lost.
    pub(crate) fn check_held(&self) -> Result<zk::Client, Error> {
        let lost = |reason| Error::Lost {
            node: self.node.to_string(),
            reason: record_loss(&self.loss, &self.node, self.label, reason),
        };
        if let Some(&reason) = self.loss.get() {
            return Err(lost(reason));
        }
        let client = self.client().map_err(lost)?;
        match self.session.proven_until(self.generation) {
            Some(until) if !until.has_passed() => Ok(client),
            Some(_) => Err(lost(LossReason::Unconfirmed)),
            None => Err(lost(LossReason::SessionExpired)),
        }
    }
}

/// A contender node that the recipe's rule lets proceed, owned: releasing or dropping it
/// deletes the node.
#[derive(Debug)]
pub(crate) struct Holding {
    held: Held,
    since: Instant,
    /// Set once `release` took over the node's deletion.
    released: bool,
    /// Where a late duplicate of this node's create may appear, to look for it once done.
    strays: Option<Target>,
}

impl Holding {
    pub(crate) fn new(
        session: Session,
        generation: u64,
        node: String,
        token: FencingToken,
        label: &'static str,
        strays: Option<Target>,
    ) -> Self {
        let armed = Arc::default();
        let held = Held { session, generation, node: node.into(), token, loss: Arc::default(), label, armed };
        Self { held, since: Instant::now(), released: false, strays }
    }

    /// Watches the node from now on — with the watch the acquisition set, if it set one — so
    /// that a deletion is known to `lost()` and to `release()` even if nobody was listening
    /// then. A watch not set yet is sent at once, behind the acquisition's last request.
    pub(crate) fn watch(&mut self, watch: Option<NodeWatch>) {
        let held = &self.held;
        let watch =
            watch.unwrap_or_else(|| Box::pin(watch_node(held.session.clone(), held.generation, held.node.to_string())));
        *held.armed.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(watch);
        held.armed.arm();
    }

    /// Keeps a watch the acquisition set, without setting one if it set none: for holdings that
    /// are a means, not an end (a semaphore's internal mutex, given back at once).
    pub(crate) fn keep_watch(&mut self, watch: Option<NodeWatch>) {
        *self.held.armed.0.lock().unwrap_or_else(|e| e.into_inner()) = watch;
    }

    pub(crate) fn held(&self) -> &Held {
        &self.held
    }

    pub(crate) fn token(&self) -> FencingToken {
        self.held.token
    }

    pub(crate) fn node(&self) -> &str {
        &self.held.node
    }

    pub(crate) fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        self.held.lost()
    }

    pub(crate) fn suspended(&self) -> impl Future<Output = ()> + Send + 'static {
        self.held.suspended()
    }

    /// Deletes the node and reports whether holding lasted until now.
    ///
    /// If the future is dropped before the delete is confirmed, `Drop` schedules it again.
    pub(crate) async fn release(mut self) -> Result<(), Error> {
        let held = self.held.clone();
        // A deletion the watch on the node saw already is a loss, whoever deletes what is left.
        if let Some(reason) = held.armed.fired() {
            record_loss(&held.loss, &held.node, held.label, reason);
        }
        let earlier = *held.loss.get_or_init(|| LossReason::Released);
        let lost = |reason| {
            if earlier == LossReason::Released {
                // Found only now, by the release: nobody had watched `lost()`.
                tracing::warn!(node = %held.node, %reason, "lost");
                crate::metrics::lost(held.label, reason);
            }
            Err(Error::Lost { node: held.node.to_string(), reason })
        };
        let client = match held.client() {
            Ok(client) => client,
            Err(reason) => {
                self.released = true;
                return lost(reason);
            }
        };
        let deleted = self.target().delete(&client).await;
        self.released = true;
        self.clean_strays();
        match deleted {
            Ok(true) => {
                tracing::info!(node = %held.node, held_ms = self.since.elapsed().as_millis() as u64, "released");
                match earlier {
                    LossReason::Released => Ok(()),
                    // Deleted now, but holding was in doubt before: report it.
                    reason => lost(reason),
                }
            }
            Ok(false) => lost(LossReason::NodeDeleted),
            Err(zk::Error::SessionExpired) => lost(LossReason::SessionExpired),
            Err(zk::Error::ClientClosed) => lost(LossReason::SessionClosed),
            Err(err) => {
                // Hand the node to the background cleanup rather than leave it behind.
                self.target().schedule(&held.session, held.generation);
                Err(Error::zk(&held.node, err))
            }
        }
    }

    /// Gives the node up without waiting for the delete's reply. The delete is sent at once, so
    /// the server runs it before any later request of this session. For holdings that are a
    /// means, not an end (a semaphore's internal mutex).
    pub(crate) fn release_in_background(mut self) {
        self.released = true;
        let _ = self.held.loss.set(LossReason::Released);
        tracing::debug!(node = %self.held.node, held_ms = self.since.elapsed().as_millis() as u64, "handing back");
        // Without a client the session is over, and the node with it.
        if let Ok(client) = self.held.client() {
            let watch = self.held.armed.take();
            self.target().send_and_schedule(&client, &self.held.session, self.held.generation, watch);
        }
        self.clean_strays();
    }

    fn target(&self) -> Target {
        Target::Node(self.held.node.to_string())
    }

    /// Deletes, in the background, any late duplicate of this node's create.
    fn clean_strays(&mut self) {
        if let Some(strays) = self.strays.take() {
            strays.schedule(&self.held.session, self.held.generation);
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        crate::metrics::held(self.held.label, self.since.elapsed());
        if !self.released {
            let _ = self.held.loss.set(LossReason::Released);
            let held_ms = self.since.elapsed().as_millis() as u64;
            tracing::info!(node = %self.held.node, held_ms, "released on drop");
            self.target().schedule(&self.held.session, self.held.generation);
        }
        self.clean_strays();
    }
}

/// Records `reason` as the loss of `node` unless one was recorded before; the first loss.
fn record_loss(loss: &OnceLock<LossReason>, node: &str, label: &'static str, reason: LossReason) -> LossReason {
    match loss.set(reason) {
        Ok(()) => {
            if reason != LossReason::Released {
                tracing::warn!(node, %reason, "lost");
                crate::metrics::lost(label, reason);
            }
            reason
        }
        Err(_) => *loss.get().expect("set"),
    }
}

/// Everything a `lost()` future needs, owned so that the future is `'static`.
struct LossWatch {
    session: Session,
    generation: u64,
    node: String,
    loss: Arc<OnceLock<LossReason>>,
    label: &'static str,
    /// A watch on the node set already, used before setting another.
    armed: Option<NodeWatch>,
}

/// A watch on a node, from [`watch_node`].
pub(crate) type NodeWatch = Pin<Box<dyn Future<Output = NodeEvent> + Send>>;

/// What a watch on a node reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeEvent {
    Deleted,
    /// Its data changed (someone wrote to it): watch again.
    Changed,
    /// The session ended; the session state says how.
    SessionEnded,
    /// The server refused the watch for good (no READ permission on the node, since ZooKeeper
    /// 3.8.4 checks it on `exists`): the node's deletion would go unnoticed.
    Refused,
}

impl LossWatch {
    async fn run(&mut self) -> LossReason {
        let mut status = self.session.status();
        let mut watch: Option<NodeWatch> = self.armed.take();
        let mut watching = true;
        loop {
            if let Some(&reason) = self.loss.get() {
                return reason;
            }
            if let Some(reason) = end_of(&status.borrow_and_update(), self.generation) {
                return reason;
            }
            let Some(deadline) = self.session.proven_until(self.generation) else {
                return LossReason::SessionExpired;
            };
            if deadline.has_passed() {
                return LossReason::Unconfirmed;
            }
            if watching && watch.is_none() {
                watch = Some(Box::pin(watch_node(self.session.clone(), self.generation, self.node.clone())));
            }
            tokio::select! {
                changed = status.changed() => {
                    if changed.is_err() {
                        return LossReason::SessionClosed;
                    }
                }
                // The proof may have been extended meanwhile: re-check rather than conclude.
                _ = tokio::time::sleep(deadline.remaining()) => {}
                event = async { watch.as_mut().expect("armed above").await }, if watch.is_some() => {
                    watch = None;
                    match event {
                        // Once the proof has run out, the deletion may be the expiry's.
                        NodeEvent::Deleted if self.session.proven_until(self.generation).is_none_or(|u| u.has_passed()) => {
                            return LossReason::Unconfirmed;
                        }
                        NodeEvent::Deleted => return LossReason::NodeDeleted,
                        NodeEvent::Changed => {}
                        // The session state arrives through `status`.
                        NodeEvent::SessionEnded => watching = false,
                        // Fail closed: a deletion could no longer be seen.
                        NodeEvent::Refused => return LossReason::Unwatchable,
                    }
                }
            }
        }
    }
}

/// Watches a node of the session of `generation` until it is deleted or changes (`Deleted` at
/// once if it is gone). The exists that sets the watch is sent when the future is first polled.
pub(crate) async fn watch_node(session: Session, generation: u64, node: String) -> NodeEvent {
    // The client is taken anew for each try and dropped before waiting, so that a pending
    // watch never keeps a closed session open.
    let watch = || async {
        let client = session.client_of(generation).ok_or(zk::Error::ClientClosed)?;
        let sent = Moment::now();
        let reply = client.check_and_watch_stat(&node).await;
        if retry::is_answer(&reply) {
            session.answered(generation, sent);
        }
        reply
    };
    match retry::resend(watch).await {
        Ok((None, _)) => NodeEvent::Deleted,
        Ok((Some(_), watcher)) => match watcher.changed().await.event_type {
            zk::EventType::NodeDeleted => NodeEvent::Deleted,
            zk::EventType::Session => NodeEvent::SessionEnded,
            _ => NodeEvent::Changed,
        },
        // The driver may not have seen the end yet; the status tells the caller soon.
        Err(zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed) => NodeEvent::SessionEnded,
        Err(_) if session.ended(generation).is_some() => NodeEvent::SessionEnded,
        Err(err) => {
            tracing::error!(%node, error = %err, "cannot watch the node; its deletion would go unnoticed");
            NodeEvent::Refused
        }
    }
}

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
        let lost = |reason| Error::Lost {
            node: holding.node().to_owned(),
            reason: record_loss(&holding.loss, &holding.node, holding.label, reason),
        };
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

//! What every guard holds: a contender node that the recipe's rule lets proceed, under one
//! ZooKeeper session. Loss detection, release and fenced writes live here once for all recipes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};

use backon::{ExponentialBuilder, Retryable};
use futures_util::FutureExt;
use futures_util::future::Shared;
use tokio::time::Instant;
use zookeeper_client as zk;

use super::cleanup::{Deleted, Target};
use crate::error::{Error, LossReason};
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

/// The watch on a holding's node, shared by every `lost()` and by `release()`: whoever looks
/// sees the same event, however many looked before. A data change (someone wrote to the node)
/// spends it; the next look sets another.
struct Armed {
    session: Session,
    generation: u64,
    node: Arc<str>,
    watch: StdMutex<Option<Shared<NodeWatch>>>,
}

impl Armed {
    fn new(session: Session, generation: u64, node: Arc<str>) -> Self {
        Self { session, generation, node, watch: StdMutex::new(None) }
    }

    /// Starts watching with `watch` (a watch the acquisition set), or with a new one; either way
    /// its request goes out now, so that it is armed before anyone asks.
    fn start(&self, watch: Option<NodeWatch>) {
        let watch = watch.unwrap_or_else(|| self.new_watch()).shared();
        let _ = watch.clone().now_or_never();
        *self.watch.lock().unwrap_or_else(|e| e.into_inner()) = Some(watch);
    }

    fn new_watch(&self) -> NodeWatch {
        Box::pin(watch_node(self.session.clone(), self.generation, self.node.to_string()))
    }

    /// The current watch, set anew if the last one saw a data change. `None` if the holding
    /// keeps no watch (a semaphore's internal mutex).
    fn current(&self) -> Option<Shared<NodeWatch>> {
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        if watch.as_ref()?.peek() == Some(&NodeEvent::Changed) {
            *watch = Some(self.new_watch().shared());
        }
        watch.clone()
    }

    /// What the watch has seen so far, without waiting.
    fn seen(&self) -> Seen {
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        let Some(current) = watch.clone() else { return Seen::Blind };
        match current.now_or_never() {
            None => Seen::Nothing,
            Some(NodeEvent::Changed) => {
                // Spent by a data change: a deletion since then went unseen. Watch on.
                *watch = Some(self.new_watch().shared());
                Seen::Blind
            }
            Some(event) => loss_of(event, &self.session, self.generation).map_or(Seen::Nothing, Seen::Lost),
        }
    }

    /// Gives the watch up (to keep it alive until the node's delete is answered).
    fn take(&self) -> Option<Shared<NodeWatch>> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// What a holding's watch has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Nothing: the node was there as far as the watch can tell.
    Nothing,
    /// This loss.
    Lost(LossReason),
    /// It cannot tell: there was no watch all along.
    Blind,
}

/// The loss a watch event on a holding's node means, if any. A deletion while the session is
/// not proven alive may be the session's own expiry, which deletes its nodes: unconfirmed.
fn loss_of(event: NodeEvent, session: &Session, generation: u64) -> Option<LossReason> {
    match event {
        NodeEvent::Deleted if session.proven_until(generation).is_none_or(|until| until.has_passed()) => {
            Some(LossReason::Unconfirmed)
        }
        NodeEvent::Deleted => Some(LossReason::NodeDeleted),
        NodeEvent::Refused => Some(LossReason::Unwatchable),
        NodeEvent::Changed | NodeEvent::SessionEnded => None,
    }
}

impl std::fmt::Debug for Armed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let watching = self.watch.lock().is_ok_and(|w| w.is_some());
        f.debug_struct("Armed").field("node", &self.node).field("watching", &watching).finish()
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
            armed: self.armed.clone(),
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
        let node: Arc<str> = node.into();
        let armed = Arc::new(Armed::new(session.clone(), generation, node.clone()));
        let held = Held { session, generation, node, token, loss: Arc::default(), label, armed };
        Self { held, since: Instant::now(), released: false, strays }
    }

    /// Watches the node from now on — with the watch the acquisition set, if it set one — so
    /// that a deletion is known to `lost()` and to `release()` even if nobody was listening
    /// then. A watch not set yet is sent at once, behind the acquisition's last request.
    pub(crate) fn watch(&mut self, watch: Option<NodeWatch>) {
        self.held.armed.start(watch);
    }

    /// Keeps a watch the acquisition set, without setting one if it set none: for holdings that
    /// are a means, not an end (a semaphore's internal mutex, given back at once).
    pub(crate) fn keep_watch(&mut self, watch: Option<NodeWatch>) {
        if watch.is_some() {
            self.held.armed.start(watch);
        }
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
        let seen = held.armed.seen();
        if let Seen::Lost(reason) = seen {
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
            // Its own delete, as far as anyone can tell (`release` docs), unless the watch had
            // gone blind: then holding cannot be proven to the end.
            Ok(Deleted::Probably) if seen == Seen::Blind => lost(LossReason::Unconfirmed),
            Ok(Deleted::Yes | Deleted::Probably) => {
                tracing::info!(node = %held.node, held_ms = self.since.elapsed().as_millis() as u64, "released");
                match earlier {
                    LossReason::Released => Ok(()),
                    // Deleted now, but holding was in doubt before: report it.
                    reason => lost(reason),
                }
            }
            Ok(Deleted::Nothing) => lost(LossReason::NodeDeleted),
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
    /// The holding's watch on its node.
    armed: Arc<Armed>,
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
        // Holdings that keep no watch of their own (none do once handed out) get one here.
        if self.armed.current().is_none() {
            self.armed.start(None);
        }
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
            let watch = self.armed.current().filter(|_| watching);
            tokio::select! {
                changed = status.changed() => {
                    if changed.is_err() {
                        return LossReason::SessionClosed;
                    }
                }
                // The proof may have been extended meanwhile: re-check rather than conclude.
                _ = tokio::time::sleep(deadline.remaining()) => {}
                event = async { watch.expect("checked").await }, if watch.is_some() => {
                    if let Some(reason) = loss_of(event, &self.session, self.generation) {
                        return reason;
                    }
                    // Changed: `current` sets a new watch on the next turn. The session's end
                    // arrives through `status`.
                    watching = event != NodeEvent::SessionEnded;
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
    // Besides connection losses, the client can fail a request with an error of its own about
    // the connection (an unknown reply, say) and reconnect: worth retrying, with backoff. Only
    // the server's refusal and the session's end are final.
    let backoff = ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(20))
        .with_max_delay(std::time::Duration::from_secs(1))
        .without_max_times();
    let last = |err: &zk::Error| {
        matches!(err, zk::Error::NoAuth | zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed)
            || session.ended(generation).is_some()
    };
    match watch.retry(backoff).when(|err| !last(err)).await {
        Ok((None, _)) => NodeEvent::Deleted,
        Ok((Some(_), watcher)) => match watcher.changed().await.event_type {
            zk::EventType::NodeDeleted => NodeEvent::Deleted,
            zk::EventType::Session => NodeEvent::SessionEnded,
            _ => NodeEvent::Changed,
        },
        Err(err @ zk::Error::NoAuth) if session.ended(generation).is_none() => {
            tracing::error!(%node, error = %err, "cannot watch the node; its deletion would go unnoticed");
            NodeEvent::Refused
        }
        // The session ended (the driver may not have seen it yet; the status tells soon).
        Err(_) => NodeEvent::SessionEnded,
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

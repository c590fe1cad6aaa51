//! What every guard holds: a contender node that the recipe's rule lets proceed, under one
//! ZooKeeper session. Loss detection and release live here once for all recipes.

use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};

use futures_util::FutureExt;
use futures_util::future::Shared;
use tokio::time::Instant;
use zookeeper_client as zk;

#[cfg(test)]
use super::attempt::mutation::{self, Mutation};
use super::cleanup::{Deleted, Target};
use super::watch::{NodeEvent, NodeWatch, watch_node};
use crate::error::{Error, LossReason};
use crate::session::{Session, SessionState, end_of};
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

    /// The loss the watch has seen so far, if any, without waiting.
    fn seen(&self) -> Option<LossReason> {
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        match watch.clone()?.now_or_never()? {
            NodeEvent::Changed => {
                // Spent by a data change: a deletion since then went unseen. Watch on.
                *watch = Some(self.new_watch().shared());
                None
            }
            event => loss_of(event, &self.session, self.generation),
        }
    }

    /// Gives the watch up (to keep it alive until the node's delete is answered).
    fn take(&self) -> Option<Shared<NodeWatch>> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
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

    /// Records `reason` as the loss unless one was recorded before, and returns the first:
    /// once lost, always lost.
    pub(super) fn lose(&self, reason: LossReason) -> LossReason {
        record_loss(&self.loss, &self.node, self.label, reason)
    }

    /// The client of the ZooKeeper session the node belongs to, or why that session is over.
    fn client(&self) -> Result<zk::Client, LossReason> {
        if let Some(reason) = self.session.ended(self.generation) {
            return Err(reason);
        }
        self.session.client_of(self.generation).ok_or(LossReason::SessionExpired)
    }

    /// The first loss recorded, if any (`Released` once released without one).
    pub(crate) fn recorded_loss(&self) -> Option<LossReason> {
        self.loss.get().copied()
    }

    /// Checks what can be checked locally before a fenced write: an observed loss, and the
    /// liveness proof. A loss found here is recorded: once lost, always lost.
    pub(crate) fn check_held(&self) -> Result<zk::Client, Error> {
        let lost = |reason| Error::Lost { node: self.node.to_string(), reason: self.lose(reason) };
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
        if let Some(reason) = held.armed.seen() {
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
        match verdict(earlier, deleted) {
            Verdict::Held => {
                tracing::info!(node = %held.node, held_ms = self.since.elapsed().as_millis() as u64, "released");
                Ok(())
            }
            Verdict::Lost(reason) => lost(reason),
            Verdict::Failed(err) => {
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

/// What a release's delete proves about a holding.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// The node lasted until the release's own delete removed it.
    Held,
    /// Holding had ended, or cannot be proven to have lasted, for this reason.
    Lost(LossReason),
    /// The delete failed otherwise; the node may still be there.
    Failed(zk::Error),
}

/// Judges a release by its delete, given the loss known before it (`Released` if none): held
/// only if its own delete was answered, which proves the node existed until then.
pub(crate) fn verdict(earlier: LossReason, deleted: Result<Deleted, zk::Error>) -> Verdict {
    #[cfg(test)]
    let deleted = match deleted {
        Ok(Deleted::Probably) if mutation::is(Mutation::ProbablyOwnDelete) => Ok(Deleted::Yes),
        other => other,
    };
    match deleted {
        // Deleted now, but holding was in doubt before: report it.
        Ok(Deleted::Yes) if earlier != LossReason::Released => Verdict::Lost(earlier),
        Ok(Deleted::Yes) => Verdict::Held,
        // A delete cut off by a lost connection, and nothing there on the retry: that may have
        // been this delete, or someone else's that ran first while the holder heard nothing —
        // and a successor may have held since. The two look the same (a watch fires for
        // either), so holding to the end cannot be proven — unless a loss was known already.
        Ok(Deleted::Probably) if earlier == LossReason::Released => Verdict::Lost(LossReason::Unconfirmed),
        Ok(Deleted::Probably) => Verdict::Lost(earlier),
        Ok(Deleted::Nothing) => Verdict::Lost(LossReason::NodeDeleted),
        Err(zk::Error::SessionExpired) => Verdict::Lost(LossReason::SessionExpired),
        Err(zk::Error::ClientClosed) => Verdict::Lost(LossReason::SessionClosed),
        Err(err) => Verdict::Failed(err),
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

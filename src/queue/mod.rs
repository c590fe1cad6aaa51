//! The one queue engine under every recipe: it creates a contender node (and finds it again
//! after a connection loss), orders the directory's contenders, waits on the one node that must
//! change first, and deletes the node of an attempt that ends without acquiring. An attempt
//! that acquires becomes a [`Holding`], which watches its node for loss until it is released.
//!
//! Recipes differ only in their [`Role`]: the kind of node they write, and with it the rule
//! they wait by (who may proceed, whom to wait for).

pub(crate) mod children;
mod cleanup;
mod fenced;
mod holding;
mod role;
mod watch;

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::Either;
use tokio::time::Instant;
use tracing::Instrument;
use zookeeper_client as zk;

use self::children::{Decision, Parsed, Queue, WrappedChild, parse};
use self::cleanup::{Target, synced_children};
pub use self::fenced::FencedWrite;
pub(crate) use self::holding::{Held, Holding};
pub(crate) use self::role::Role;
use self::watch::{NodeEvent, NodeWatch, watch_node};
use crate::error::{Error, LossReason};
use crate::metrics;
use crate::retry::{self, is_transient};
use crate::session::{Moment, Session, SessionState};
use crate::token::FencingToken;

/// How often a create may meet a missing directory (reaped between our `mkdir` and create)
/// before giving up.
const MAX_PARENT_ATTEMPTS: usize = 5;
/// How long a timed-out acquisition waits for its node's deletion before leaving it to the
/// background cleanup and returning.
const WITHDRAW_BOUND: Duration = Duration::from_secs(1);
/// How many creates of one attempt in a row may end in a connection loss before giving up. A
/// server drops the connection on a request larger than its `jute.maxbuffer`, at once, every
/// time; ordinary connection losses rarely cut off several creates of one attempt in a row.
const MAX_CREATE_LOSSES: usize = 10;

/// What a recipe contends for: a directory, and what it contends there as.
pub(crate) struct Spec<'a> {
    /// The recipe directory (validated).
    pub(crate) dir: &'a str,
    pub(crate) role: Role,
    pub(crate) data: &'a [u8],
    /// Called once the contender's node is in the queue (a leader latch reports it joined).
    pub(crate) on_queued: Option<&'a (dyn Fn() + Send + Sync)>,
    /// Another node this contender may wait only while it exists (a semaphore's lease waits
    /// under its gate node): if it is deleted meanwhile, the attempt fails.
    pub(crate) requires: Option<&'a str>,
    /// Whether the holding watches its node for deletion from the start, so that `lost()` and
    /// `release()` know of one that happened while nobody listened: for every holding that is
    /// an end, not a means (a semaphore's internal mutex is given back at once).
    pub(crate) watch_holding: bool,
}

/// How long an acquisition may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Patience {
    Forever,
    /// Take it only if the rule lets us proceed at once.
    None,
    For(Duration),
}

/// Contends until `patience` runs out. `Ok(None)` only with [`Patience::None`] when another
/// contender is ahead.
///
/// Cancel safe: a dropped future deletes the node it created or may have created, in the
/// session's background task.
pub(crate) async fn acquire(session: &Session, spec: &Spec<'_>, patience: Patience) -> Result<Option<Holding>, Error> {
    acquire_within(session, None, spec, patience).await
}

/// [`acquire`] in one given ZooKeeper session (a client and its generation), for recipes
/// whose steps must all happen in the same session: if it has ended, this fails with
/// [`Error::SessionExpired`] rather than continue in a new one.
pub(crate) async fn acquire_in(
    session: &Session,
    pinned: (zk::Client, u64),
    spec: &Spec<'_>,
    patience: Patience,
) -> Result<Option<Holding>, Error> {
    acquire_within(session, Some(pinned), spec, patience).await
}

async fn acquire_within(
    session: &Session,
    pinned: Option<(zk::Client, u64)>,
    spec: &Spec<'_>,
    patience: Patience,
) -> Result<Option<Holding>, Error> {
    let span = tracing::debug_span!(
        "acquire",
        path = spec.dir,
        session_id = tracing::field::Empty,
        node = tracing::field::Empty,
        token = tracing::field::Empty,
    );
    if let Some(limit) = session.data_limit(spec.dir, spec.role.kind().marker())
        && spec.data.len() > limit
    {
        return Err(Error::DataTooLarge { path: spec.dir.to_owned(), size: spec.data.len(), limit });
    }
    // A zero timeout looks once, as Curator's `acquire(0)` does: a free lock is taken.
    let once = matches!(patience, Patience::For(allowed) if allowed.is_zero());
    let patience = if once { Patience::None } else { patience };
    let mut attempt = None;
    let started = Instant::now();
    let contend = contend(session, pinned, spec, patience, &mut attempt);
    let outcome = match patience {
        Patience::For(allowed) => match tokio::time::timeout(allowed, contend).instrument(span.clone()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::Timeout { path: spec.dir.to_owned(), after: allowed }),
        },
        // One look at the queue needs the server: while it cannot be reached, say so within
        // the connect timeout rather than wait for the connection to come back.
        Patience::None => match tokio::time::timeout(session.connect_timeout(), contend).instrument(span.clone()).await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(session.unreachable()),
        },
        Patience::Forever => contend.instrument(span.clone()).await,
    };
    let result = match (outcome, attempt) {
        (Ok(true), Some(attempt)) => Ok(Some(attempt.into_holding())),
        (Ok(_), Some(attempt)) => {
            attempt.abandon();
            if once { Err(Error::Timeout { path: spec.dir.to_owned(), after: Duration::ZERO }) } else { Ok(None) }
        }
        (Err(err @ (Error::Timeout { .. } | Error::Unreachable { .. })), Some(attempt)) => {
            // Withdraw before reporting, so that a caller who gives up leaves nothing behind.
            attempt.withdraw().instrument(span).await;
            Err(err)
        }
        (Err(err), _) => Err(err),
        (Ok(_), None) => unreachable!("contend returns Ok only after creating its attempt"),
    };
    let outcome = match &result {
        Ok(Some(_)) => "acquired",
        Ok(None) => "not_acquired",
        Err(Error::Timeout { .. }) => "timeout",
        Err(_) => "error",
    };
    metrics::acquisition(spec.role.label(), outcome, started.elapsed());
    result
}

/// Creates the attempt, enqueues it and waits per `patience`; `Ok(true)` once it may proceed.
async fn contend<'s>(
    session: &'s Session,
    pinned: Option<(zk::Client, u64)>,
    spec: &Spec<'_>,
    patience: Patience,
    attempt: &mut Option<Attempt<'s>>,
) -> Result<bool, Error> {
    let (client, generation) = match pinned {
        Some((client, generation)) => match session.ended(generation) {
            Some(reason) => return Err(ended(reason)),
            None => (client, generation),
        },
        None => session.current().await?,
    };
    tracing::Span::current().record("session_id", tracing::field::display(client.session_id()));
    let attempt = attempt.insert(Attempt::new(session, client, generation, spec));
    let children = attempt.enqueue(spec.data).await?;
    metrics::queued(spec.role.label(), children.len());
    if let Some(queued) = spec.on_queued {
        queued();
    }
    match patience {
        Patience::None => attempt.may_proceed(children).await,
        Patience::Forever | Patience::For(_) => attempt.wait(children).await.map(|()| true),
    }
}

/// What a wait on the node ahead saw first.
enum Change {
    /// The watch on our own node fired.
    Own(NodeEvent),
    /// The node ahead changed so (or was gone already: `NodeDeleted`).
    Ahead(zk::EventType),
}

/// Where an attempt's node stands, which decides what cleanup it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// No create has been sent: nothing to clean up.
    Unsent,
    /// A create was sent and its outcome is unknown: clean up by name prefix.
    Sent,
    /// The node exists with this name.
    Created { name: String },
}

/// One acquisition in progress. Dropping it before [`Attempt::into_holding`] deletes whatever
/// node it made, so every way an acquisition can end — cancelled, timed out, failed — cleans up.
struct Attempt<'s> {
    session: &'s Session,
    client: zk::Client,
    generation: u64,
    dir: String,
    role: Role,
    /// Curator's protected prefix `_c_<uuid>-`, which lets a lost create be found again.
    prefix: String,
    node: Node,
    /// Whether a create was sent again with the same prefix after a lost reply: then a late
    /// duplicate may still appear, and cleanup goes by prefix.
    resent: bool,
    /// Known once the node exists and the directory's epoch has been read.
    token: Option<FencingToken>,
    /// The node's `ephemeralOwner` as the server reported it (create reply or `exists`).
    owner: Option<i64>,
    /// A watch on our own node, set when the attempt first waits on another node.
    own_watch: Option<NodeWatch>,
    /// Whether the server refused that watch (no READ permission on our node).
    own_refused: bool,
    /// The node this attempt requires (`Spec::requires`) and, while waiting, a watch on it.
    requires: Option<(String, Option<NodeWatch>)>,
    /// `Spec::watch_holding`.
    watch_holding: bool,
    /// The client's connection state, marked seen just before each request whose answer
    /// showed our node: whether a reconnection happened since (see [`Attempt::wait`]).
    seen_on: zk::StateWatcher,
    started: Instant,
}

impl<'s> Attempt<'s> {
    fn new(session: &'s Session, client: zk::Client, generation: u64, spec: &Spec<'_>) -> Self {
        let seen_on = client.state_watcher();
        Self {
            session,
            client,
            generation,
            dir: spec.dir.to_owned(),
            role: spec.role,
            prefix: protected_prefix(),
            node: Node::Unsent,
            resent: false,
            token: None,
            owner: None,
            own_watch: None,
            own_refused: false,
            requires: spec.requires.map(|path| (path.to_owned(), None)),
            watch_holding: spec.watch_holding,
            seen_on,
            started: Instant::now(),
        }
    }

    /// Creates this attempt's node and returns the directory's children as seen right after.
    ///
    /// The create and the `getChildren` go out back to back, without waiting for the create's
    /// reply: ZooKeeper runs one session's requests in order, so the list already contains our
    /// node, and an uncontended acquisition costs a single round trip.
    async fn enqueue(&mut self, data: &[u8]) -> Result<Vec<String>, Error> {
        let mut missing_parents = 0;
        let mut connection_losses = 0;
        let marker = self.role.kind().marker();
        loop {
            // Recovery may have changed the prefix.
            let path = format!("{}/{}{marker}", self.dir, self.prefix);
            // Mark the create as sent before sending it: from here on a drop must clean up.
            self.node = Node::Sent;
            let acls = self.session.acls();
            let options = zk::CreateMode::EphemeralSequential.with_acls(acls);
            self.mark_seen();
            let sent = Moment::now();
            let create = self.client.create(&path, data, &options);
            let list = self.client.get_children(&self.dir);
            let (created, listed) = tokio::join!(create, list);
            self.witness(sent, &created);
            self.witness(sent, &listed);
            match created {
                Ok((stat, sequence)) => {
                    self.owner = Some(stat.ephemeral_owner);
                    let Ok(sequence) = u32::try_from(sequence.into_i64()) else {
                        let child = format!("{}{marker}{sequence}", self.prefix);
                        return Err(Error::SequenceOverflow { path: self.dir.clone(), child });
                    };
                    // Name the node before anything else can fail, so that a drop deletes it by
                    // name (a search by prefix would need to list the directory).
                    self.node = Node::Created { name: format!("{}{marker}{sequence:010}", self.prefix) };
                    let (children, dir) = match listed {
                        Ok(listed) => listed,
                        // The reply to the create arrived, so our node exists and keeps the
                        // directory from being deleted: listing again sees the same directory.
                        Err(err) if is_transient(&err) => self.list_with_stat().await?,
                        Err(err) => return Err(Error::zk(&self.dir, err)),
                    };
                    self.tokenize(FencingToken::new(epoch(&dir), sequence));
                    return Ok(children);
                }
                Err(zk::Error::NoNode) => {
                    self.node = Node::Unsent;
                    missing_parents += 1;
                    if missing_parents > MAX_PARENT_ATTEMPTS {
                        return Err(Error::zk(&self.dir, zk::Error::NoNode));
                    }
                    self.make_parents().await?;
                }
                Err(err) if is_transient(&err) => {
                    connection_losses += 1;
                    if connection_losses > MAX_CREATE_LOSSES {
                        // What a server does to a request larger than its `jute.maxbuffer`.
                        return Err(Error::CreateDropped { path: self.dir.clone(), attempts: connection_losses });
                    }
                    if let Some(children) = self.recover().await? {
                        return Ok(children);
                    }
                    // Created again with the same prefix, so that should the lost create still
                    // land, the cleanup by prefix finds it.
                    self.resent = true;
                }
                Err(err) => {
                    // Rejected by the server (no permission, bad ACL...): nothing was created.
                    // Any other error (the client's own, about a connection) leaves the create's
                    // outcome unknown, so the cleanup goes by prefix.
                    if retry::is_answer::<()>(&Err(err.clone())) {
                        self.node = Node::Unsent;
                    }
                    return Err(Error::zk(&self.dir, err));
                }
            }
        }
    }

    fn tokenize(&mut self, token: FencingToken) {
        if let Node::Created { name } = &self.node {
            let node = format!("{}/{name}", self.dir);
            tracing::Span::current().record("node", node.as_str()).record("token", tracing::field::display(token));
        }
        self.token = Some(token);
    }

    /// Creates the missing directory and its missing ancestors as CONTAINER nodes, which the
    /// server deletes once they have been used and are empty again (as Curator does).
    async fn make_parents(&mut self) -> Result<(), Error> {
        let options = zk::CreateMode::Container.with_acls(self.session.acls());
        let (client, dir) = (&self.client, self.dir.as_str());
        send(self.session, self.generation, dir, || client.mkdir(dir, &options)).await
    }

    /// After a create whose reply was lost: finds the node by our protected prefix and adopts
    /// it if this session owns it. `None` means no node of ours exists, so create again — with
    /// the same prefix, so that should the lost create still land, `remove_strays` finds it.
    async fn recover(&mut self) -> Result<Option<Vec<String>>, Error> {
        self.mark_seen();
        let (client, dir) = (&self.client, self.dir.as_str());
        let Some((children, stat)) = send(self.session, self.generation, dir, || synced_children(client, dir)).await?
        else {
            tracing::debug!("the create did not happen before the connection loss; creating again");
            self.node = Node::Unsent;
            return Ok(None);
        };
        let own = client.session_id().0;
        let prefix = self.prefix.clone();
        for child in children.iter().filter(|c| c.starts_with(&prefix)) {
            let path = format!("{dir}/{child}");
            let owner = send(self.session, self.generation, &path, || client.check_stat(&path))
                .await?
                .map(|s| s.ephemeral_owner);
            // CURATOR-604: a node of an earlier session may still be listed; never adopt it.
            if owner == Some(own) {
                let sequence = match parse(child) {
                    Parsed::Contender(contender) => contender.sequence,
                    Parsed::Wrapped | Parsed::Foreign => {
                        return Err(Error::SequenceOverflow { path: self.dir.clone(), child: child.clone() });
                    }
                };
                tracing::debug!(child, "the create ran before the connection loss; adopting its node");
                self.node = Node::Created { name: child.clone() };
                self.owner = owner;
                self.tokenize(FencingToken::new(epoch(&stat), sequence));
                return Ok(Some(children));
            }
            if owner.is_some() {
                // Not ours, yet it carries our prefix: never touch it, and stop using the prefix.
                tracing::warn!(child, "a node of another session carries this attempt's prefix");
                self.prefix = protected_prefix();
                self.resent = false;
            }
        }
        tracing::debug!("the create did not happen before the connection loss; creating again");
        self.node = Node::Unsent;
        Ok(None)
    }

    /// Whether the rule lets this attempt proceed now, deciding once (after renewing the proof
    /// of liveness if it had run out).
    async fn may_proceed(&mut self, mut children: Vec<String>) -> Result<bool, Error> {
        loop {
            let queue = self.queue(&children)?;
            let position = self.position(&queue)?;
            self.remove_strays(&queue);
            if self.role.rule().decide(&queue, position) != Decision::Proceed {
                return Ok(false);
            }
            drop(queue);
            if self.grant().await? {
                return Ok(true);
            }
            children = self.list().await?;
        }
    }

    /// Whether this attempt, which the rule lets proceed, may be handed out as a holder now: its
    /// node is this session's, and the session is proven to live. If the proof had run out —
    /// after a silence the session survived, the events of the reconnection can arrive before
    /// the answers that renew it — waits until it is renewed and returns `false`: the caller
    /// then looks at the queue again, since our node may have gone meanwhile.
    async fn grant(&mut self) -> Result<bool, Error> {
        self.check_owner()?;
        if self.own_refused {
            // The guard could not watch its node either: it would be lost on arrival.
            return Err(Error::Lost { node: self.own_path(), reason: LossReason::Unwatchable });
        }
        // Free to check: our node's deletion may have arrived since the decision's listing.
        if let Some(event) = self.own_watch.as_mut().and_then(|own| own.as_mut().now_or_never()) {
            return self.own_changed(event).await;
        }
        if self.session.proven_until(self.generation).is_some_and(|until| !until.has_passed()) {
            return Ok(true);
        }
        tracing::debug!("may proceed, but the proof of liveness ran out; waiting for it to be renewed");
        self.session.proven(self.generation).await.map_err(ended)?;
        Ok(false)
    }

    /// Proceeds only with a node the server said this session owns — the check whose absence
    /// let Curator's LeaderLatch crown a node of an earlier session (CURATOR-696). Every node
    /// of an attempt is created or adopted by its own session's client, so this guards
    /// against a future change breaking that, at no cost: the owner came with the create's
    /// reply.
    fn check_owner(&self) -> Result<(), Error> {
        if self.owner == Some(self.client.session_id().0) {
            return Ok(());
        }
        let Node::Created { name } = &self.node else { unreachable!("only a created node can proceed") };
        tracing::error!(node = name, owner = ?self.owner, "the node to proceed with is not this session's");
        Err(Error::Lost { node: format!("{}/{name}", self.dir), reason: LossReason::SessionExpired })
    }

    /// Waits until the rule lets this attempt proceed, watching only what it depends on.
    ///
    /// Our own node can be deleted by anyone at any moment, and then we must never proceed.
    /// A listing shows whether it is there; the shortcut that proceeds on the head's deletion
    /// without listing relies instead on a watch on our own node, set in the same flight as
    /// the first watch on the node ahead: ZooKeeper delivers one connection's events in the
    /// order of the changes, so a deletion of our node before the head's arrives first. Across
    /// a reconnection that order is lost (the server reports what changed meanwhile in any
    /// order), so after one the shortcut lists instead.
    async fn wait(&mut self, mut children: Vec<String>) -> Result<(), Error> {
        let mut last_position = None;
        // A children watch set by the listing that produced `children`.
        let mut watched: Option<zk::OneshotWatcher> = None;
        loop {
            let queue = self.queue(&children)?;
            let position = self.position(&queue)?;
            self.remove_strays(&queue);
            let decision = self.role.rule().decide(&queue, position);
            if decision == Decision::Proceed {
                drop(queue);
                if self.grant().await? {
                    tracing::debug!(position, waited_ms = self.started.elapsed().as_millis() as u64, "may proceed");
                    return Ok(());
                }
                children = self.list().await?;
                watched = None;
                continue;
            }
            if last_position != Some(position) {
                tracing::debug!(position, waiting_on = ?decision, "queued");
                last_position = Some(position);
            }
            children = match decision {
                Decision::Wait { on } => {
                    let ahead = format!("{}/{on}", self.dir);
                    let next_in_line = self.role.rule().proceeds_when_head_leaves(&queue, position, on);
                    drop(queue);
                    let deleted = self.wait_for_change(&ahead).await?;
                    if deleted && next_in_line && self.still_ours().await? {
                        if self.grant().await? {
                            tracing::debug!(
                                waited_ms = self.started.elapsed().as_millis() as u64,
                                "may proceed: the head left"
                            );
                            return Ok(());
                        }
                    } else {
                        tracing::debug!(position, "list contenders");
                    }
                    self.list().await?
                }
                Decision::WaitForChildren => {
                    drop(queue);
                    // `children` came with a watch (`watched`) when the last wake-up listed
                    // them; otherwise list again with one: the set may have changed since.
                    let watcher = match watched.take() {
                        Some(watcher) => watcher,
                        None => {
                            let (now, watcher) = self.list_and_watch().await?;
                            let queue = self.queue(&now)?;
                            if self.role.rule().decide(&queue, self.position(&queue)?) != Decision::WaitForChildren {
                                drop(queue);
                                children = now;
                                continue;
                            }
                            watcher
                        }
                    };
                    self.until_children_change(watcher).await?;
                    tracing::debug!(position, "list contenders");
                    // One request per wake-up: the new list arrives with the next watch.
                    let (now, watcher) = self.list_and_watch().await?;
                    watched = Some(watcher);
                    now
                }
                Decision::Proceed => unreachable!("handled above"),
            };
        }
    }

    /// Waits until the node at `ahead` changes or goes; `true` if it was deleted (or was gone
    /// already). Watches our own node too, from the first call on (both watches go out in one
    /// flight): fails with [`Error::Lost`] if it is deleted meanwhile, and returns `false` if it
    /// changed otherwise, so that the caller lists again.
    async fn wait_for_change(&mut self, ahead: &str) -> Result<bool, Error> {
        if self.own_watch.is_none() {
            self.mark_seen();
            self.own_watch = Some(Box::pin(watch_node(self.session.clone(), self.generation, self.own_path())));
        }
        let (session, generation) = (self.session, self.generation);
        let outcome = {
            let client = &self.client;
            // A data watch, not an exists watch: on a node that is already gone it leaves no watch
            // behind (Curator TN9).
            let watch = || async move {
                match client.get_and_watch_data(ahead).await {
                    Ok((_, _, watcher)) => Ok(Some(watcher)),
                    Err(zk::Error::NoNode) => Ok(None),
                    Err(err) => Err(err),
                }
            };
            let own = self.own_watch.as_mut().expect("armed above");
            // Polled together, our node's first, so that the exists on it and the getData on the
            // node ahead go out back to back: should the node ahead be gone already, our node's
            // fate before that is known by then, as its answer came first.
            let ahead_watch = std::pin::pin!(resend(ahead, watch));
            match futures_util::future::select(own.as_mut(), ahead_watch).await {
                Either::Left((event, _)) => Change::Own(event),
                Either::Right((Err(err), _)) => return Err(err),
                Either::Right((Ok(None), _)) => Change::Ahead(zk::EventType::NodeDeleted),
                Either::Right((Ok(Some(watcher)), own)) => tokio::select! {
                    biased;
                    event = own => Change::Own(event),
                    fired = until_fired(session, generation, watcher) => Change::Ahead(fired?),
                },
            }
        };
        match outcome {
            Change::Own(event) => self.own_changed(event).await,
            Change::Ahead(event) => Ok(event == zk::EventType::NodeDeleted),
        }
    }

    /// Handles an event of the watch on our own node: a deletion is the end of this attempt;
    /// anything else (someone wrote to it) means re-arming the watch and looking again.
    async fn own_changed(&mut self, event: NodeEvent) -> Result<bool, Error> {
        self.own_watch = None;
        match event {
            NodeEvent::Deleted => Err(deleted(self.session, self.generation, self.own_path()).await),
            NodeEvent::Changed => Ok(false),
            NodeEvent::SessionEnded => {
                Err(ended(self.session.ended(self.generation).unwrap_or(LossReason::SessionExpired)))
            }
            // Without a watch on our node the shortcut has nothing to stand on: list every time.
            NodeEvent::Refused => {
                self.own_refused = true;
                self.own_watch = Some(Box::pin(std::future::pending()));
                Ok(false)
            }
        }
    }

    /// Whether our node is known to exist still, for the shortcut that proceeds without
    /// listing: its watch has not fired, and no reconnection happened since the request whose
    /// answer last showed it. `Ok(false)` means: list to find out.
    async fn still_ours(&mut self) -> Result<bool, Error> {
        if let Some(event) = self.own_watch.as_mut().and_then(|own| own.as_mut().now_or_never()) {
            return self.own_changed(event).await;
        }
        if self.own_refused {
            return Ok(false);
        }
        let reconnected = self.seen_on.changed().now_or_never().is_some();
        if reconnected {
            tracing::debug!("the head left, but the connection changed since our node was seen: listing");
        }
        Ok(!reconnected)
    }

    /// Marks the client's current connection as the one the next request goes out on.
    fn mark_seen(&mut self) {
        self.seen_on.state();
    }

    /// Returns once `watcher` (on the directory's children) fired, watching the node this
    /// attempt requires too: fails if that node is deleted, or if the session ends.
    async fn until_children_change(&mut self, watcher: zk::OneshotWatcher) -> Result<(), Error> {
        let (session, generation) = (self.session, self.generation);
        let Some((path, required)) = &mut self.requires else {
            return until_fired(session, generation, watcher).await.map(drop);
        };
        let node = path.clone();
        let required = required.get_or_insert_with(|| Box::pin(watch_node(session.clone(), generation, node.clone())));
        let event = tokio::select! {
            biased;
            event = required.as_mut() => event,
            fired = until_fired(session, generation, watcher) => return fired.map(drop),
        };
        // Watched again on the next wait, should there be one.
        if let Some((_, required)) = &mut self.requires {
            *required = None;
        }
        match event {
            NodeEvent::Deleted => Err(deleted(session, generation, node).await),
            // Someone wrote to it: the listing after this wake-up shows nothing new.
            NodeEvent::Changed => Ok(()),
            // Only the semaphore's progress depends on this watch, not its safety (every lease
            // counts): wait without it.
            NodeEvent::Refused => {
                if let Some((_, required)) = &mut self.requires {
                    *required = Some(Box::pin(std::future::pending()));
                }
                Ok(())
            }
            NodeEvent::SessionEnded => Err(ended(session.ended(generation).unwrap_or(LossReason::SessionExpired))),
        }
    }

    async fn list_and_watch(&mut self) -> Result<(Vec<String>, zk::OneshotWatcher), Error> {
        self.mark_seen();
        send(self.session, self.generation, &self.dir, || self.client.list_and_watch_children(&self.dir)).await
    }

    async fn list(&mut self) -> Result<Vec<String>, Error> {
        self.mark_seen();
        send(self.session, self.generation, &self.dir, || self.client.list_children(&self.dir)).await
    }

    async fn list_with_stat(&mut self) -> Result<(Vec<String>, zk::Stat), Error> {
        self.mark_seen();
        send(self.session, self.generation, &self.dir, || self.client.get_children(&self.dir)).await
    }

    /// Counts an answer to a request sent at `sent` as evidence that the session lives.
    fn witness<T>(&self, sent: Moment, reply: &Result<T, zk::Error>) {
        witness(self.session, self.generation, sent, reply);
    }

    fn queue<'c>(&self, children: &'c [String]) -> Result<Queue<'c>, Error> {
        Queue::new(children).map_err(|WrappedChild(child)| Error::SequenceOverflow { path: self.dir.clone(), child })
    }

    fn position(&self, queue: &Queue<'_>) -> Result<usize, Error> {
        let Node::Created { name } = &self.node else {
            unreachable!("positions are looked up only after the create succeeded")
        };
        queue.position(name).ok_or_else(|| {
            tracing::warn!(node = %self.own_path(), "our node is gone from the queue: deleted by someone else");
            Error::Lost { node: format!("{}/{name}", self.dir), reason: LossReason::NodeDeleted }
        })
    }

    /// The full path of our node, once created.
    fn own_path(&self) -> String {
        match &self.node {
            Node::Created { name } => format!("{}/{name}", self.dir),
            Node::Unsent | Node::Sent => unreachable!("only a created node is watched or looked up"),
        }
    }

    /// A second node with our prefix can only be a create of this attempt that the server ran
    /// after we had given it up for lost; one acquisition never keeps two nodes.
    fn remove_strays(&self, queue: &Queue<'_>) {
        let Node::Created { name } = &self.node else { return };
        for stray in queue.contenders().iter().filter(|c| c.name.starts_with(&self.prefix) && c.name != name) {
            tracing::warn!(stray = stray.name, "deleting a duplicate node of this acquisition");
            Target::Node(format!("{}/{}", self.dir, stray.name)).schedule(self.session, self.generation);
        }
    }

    /// The acquisition succeeded: the node now belongs to a holder.
    fn into_holding(mut self) -> Holding {
        let (Node::Created { name }, Some(token)) = (std::mem::replace(&mut self.node, Node::Unsent), self.token)
        else {
            unreachable!("an attempt proceeds only after its create succeeded and its token is known")
        };
        let node = format!("{}/{name}", self.dir);
        tracing::info!(
            %node, %token, session_id = %self.client.session_id(),
            waited_ms = self.started.elapsed().as_millis() as u64, "acquired"
        );
        // A late duplicate of a resent create is looked for again once the holding ends; the
        // holding owns the node and its prefix now, so this attempt's drop cleans up nothing.
        let strays = std::mem::take(&mut self.resent)
            .then(|| Target::Prefix { dir: self.dir.clone(), prefix: self.prefix.clone() });
        let label = self.role.label();
        let mut holding = Holding::new(self.session.clone(), self.generation, node, token, label, strays);
        let own = self.own_watch.take();
        if self.watch_holding {
            holding.watch(own)
        } else {
            holding.keep_watch(own)
        }
        holding
    }

    /// Gives up without waiting. A node known by name has its delete sent at once, so the
    /// server runs it before anything this session sends next — a following try on the same
    /// session never finds this node ahead of its own; a search by prefix (after an unanswered
    /// or resent create) is left to the background task.
    fn abandon(mut self) {
        if let Some(target) = self.cleanup_target() {
            // Our own watch, if set, fires before the delete's reply: kept till then, it costs no
            // request to remove.
            let own = self.own_watch.take();
            target.send_and_schedule(&self.client, self.session, self.generation, own);
            (self.node, self.resent) = (Node::Unsent, false);
        }
    }

    /// Gives up and deletes the node before returning, unless that takes longer than
    /// [`WITHDRAW_BOUND`] (or the connection is down): then `Drop` leaves it to the background
    /// cleanup.
    async fn withdraw(mut self) {
        let Some(target) = self.cleanup_target() else { return };
        if self.session.state() != SessionState::Connected {
            return;
        }
        match tokio::time::timeout(WITHDRAW_BOUND, target.delete(&self.client)).await {
            Ok(Ok(_) | Err(zk::Error::SessionExpired | zk::Error::ClientClosed)) => {
                (self.node, self.resent) = (Node::Unsent, false);
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "withdrawing failed; retrying in the background"),
            Err(_) => tracing::warn!("withdrawing is slow; continuing in the background"),
        }
    }

    fn cleanup_target(&self) -> Option<Target> {
        let by_prefix = || Some(Target::Prefix { dir: self.dir.clone(), prefix: self.prefix.clone() });
        match &self.node {
            Node::Unsent if self.resent => by_prefix(),
            Node::Unsent => None,
            Node::Sent => by_prefix(),
            // A resent create may still land as a second node: delete whatever has our prefix.
            Node::Created { .. } if self.resent => by_prefix(),
            Node::Created { name } => Some(Target::Node(format!("{}/{name}", self.dir))),
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(target) = self.cleanup_target() {
            target.schedule(self.session, self.generation);
        }
    }
}

/// The contenders of `dir` in queue order, each with its node's data (empty if `dir` does not
/// exist). Nodes deleted while this runs are left out.
pub(crate) async fn contenders(client: &zk::Client, dir: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let children = match resend(dir, || client.list_children(dir)).await {
        Ok(children) => children,
        Err(Error::ZooKeeper { source: zk::Error::NoNode, .. }) => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let queue =
        Queue::new(&children).map_err(|WrappedChild(child)| Error::SequenceOverflow { path: dir.to_owned(), child })?;
    let names: Vec<String> = queue.contenders().iter().map(|c| c.name.to_owned()).collect();
    // All reads go out at once; the server answers them in order.
    let reads = names.iter().map(|name| client.get_data(&format!("{dir}/{name}")));
    let mut listed = Vec::with_capacity(names.len());
    for (name, read) in names.iter().zip(futures_util::future::join_all(reads).await) {
        match read {
            Ok((data, _)) => listed.push((name.clone(), data)),
            Err(zk::Error::NoNode) => {}
            Err(err) => return Err(Error::zk(&format!("{dir}/{name}"), err)),
        }
    }
    Ok(listed)
}

/// Returns once `watcher` fired, with the event's type; fails if it reports, or the session
/// reports, the end of the session of `generation`.
async fn until_fired(session: &Session, generation: u64, watcher: zk::OneshotWatcher) -> Result<zk::EventType, Error> {
    let event = tokio::select! {
        event = watcher.changed() => event,
        reason = session.until_ended(generation) => return Err(ended(reason)),
    };
    match (event.event_type, event.session_state) {
        (zk::EventType::Session, zk::SessionState::Expired) => Err(Error::SessionExpired),
        (zk::EventType::Session, zk::SessionState::Closed) => Err(Error::SessionClosed),
        (zk::EventType::Session, zk::SessionState::AuthFailed) => Err(Error::AuthFailed),
        (event_type, _) => Ok(event_type),
    }
}

/// The error for an attempt whose watch saw `node` deleted: someone else deleted it — unless our
/// own session expired, which deletes our nodes too and delivers their deletion before the
/// expiry (a client frozen past the session timeout reads both when it wakes). While the
/// session is proven alive the server cannot have expired it; otherwise one request tells.
async fn deleted(session: &Session, generation: u64, node: String) -> Error {
    let proven = session.proven_until(generation).is_some_and(|until| !until.has_passed());
    if !proven {
        let alive = match session.client_of(generation) {
            // A sync, which only the leader can answer: a follower cut off from it would answer
            // an exists although the leader may have expired the session.
            Some(client) => send(session, generation, &node, || client.sync("/")).await,
            None => Err(Error::SessionExpired),
        };
        if let Err(err) = alive {
            return err;
        }
    }
    tracing::warn!(%node, "deleted by someone else while waiting");
    Error::Lost { node, reason: LossReason::NodeDeleted }
}

/// The error for an attempt whose ZooKeeper session ended.
fn ended(reason: LossReason) -> Error {
    match reason {
        LossReason::SessionClosed => Error::SessionClosed,
        _ => Error::SessionExpired,
    }
}

/// Curator's protected-name prefix: `_c_` and a random UUID, then `-`.
fn protected_prefix() -> String {
    format!("_c_{}-", uuid::Uuid::new_v4())
}

/// A directory's epoch for fencing tokens: its `czxid`, which a recreated directory exceeds.
fn epoch(dir: &zk::Stat) -> u64 {
    // A zxid is (leader epoch << 32 | counter), both non-negative.
    dir.czxid as u64
}

/// Sends a request with [`resend`], counting each answer as evidence that the session of
/// `generation` lives.
async fn send<T, F, Fut>(session: &Session, generation: u64, path: &str, mut request: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, zk::Error>>,
{
    resend(path, || {
        let sent = Moment::now();
        let reply = request();
        async move {
            let reply = reply.await;
            witness(session, generation, sent, &reply);
            reply
        }
    })
    .await
}

/// Counts an answer to a request sent at `sent` as evidence that the session lives.
fn witness<T>(session: &Session, generation: u64, sent: Moment, reply: &Result<T, zk::Error>) {
    if retry::is_answer(reply) {
        session.answered(generation, sent);
    }
}

/// [`retry::resend`], with errors reported for `path`.
async fn resend<T, F, Fut>(path: &str, request: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, zk::Error>>,
{
    retry::resend(request).await.map_err(|err| Error::zk(path, err))
}

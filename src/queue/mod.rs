//! The one queue engine under every recipe: it creates a contender node (and finds it again
//! after a connection loss), orders the directory's contenders, waits on the one node that must
//! change first, and deletes the node of an attempt that ends without acquiring. An attempt
//! that acquires becomes a [`Holding`], which watches its node for loss until it is released.
//!
//! Recipes differ only in their [`Role`]: the kind of node they write, and with it the rule
//! they wait by (who may proceed, whom to wait for).

pub(crate) mod attempt;
pub(crate) mod children;
pub(crate) mod cleanup;
mod fenced;
pub(crate) mod holding;
mod role;
pub(crate) mod watch;

use std::future::Future;
use std::time::Duration;

use std::pin::Pin;

use futures_util::FutureExt;
use tokio::time::Instant;
use tracing::Instrument;
use zookeeper_client as zk;

use self::attempt::{Attempt, Command, Env, Input, Request, ended};
use self::children::{Queue, WrappedChild};
use self::cleanup::{Target, synced_children};
pub use self::fenced::FencedWrite;
pub(crate) use self::holding::{Held, Holding};
pub(crate) use self::role::Role;
use self::watch::{NodeEvent, NodeWatch, watch_node};
use crate::error::{Error, LossReason};
use crate::metrics;
use crate::retry;
use crate::session::{Moment, Session, SessionState};

/// How long a timed-out acquisition waits for its node's deletion before leaving it to the
/// background cleanup and returning.
const WITHDRAW_BOUND: Duration = Duration::from_secs(1);

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
    attempt: &mut Option<Contending<'s>>,
) -> Result<bool, Error> {
    let (client, generation) = match pinned {
        Some((client, generation)) => match session.ended(generation) {
            Some(reason) => return Err(ended(reason)),
            None => (client, generation),
        },
        None => session.current().await?,
    };
    tracing::Span::current().record("session_id", tracing::field::display(client.session_id()));
    let once = matches!(patience, Patience::None);
    let attempt = attempt.insert(Contending::new(session, client, generation, spec, once));
    attempt.run(spec.data, spec.on_queued).await
}

/// One acquisition in progress: the [`Attempt`] machine, run against the session's client.
/// Dropping it before [`Contending::into_holding`] deletes whatever node it made, so every way
/// an acquisition can end — cancelled, timed out, failed — cleans up.
struct Contending<'s> {
    session: &'s Session,
    client: zk::Client,
    generation: u64,
    machine: Attempt,
    dir: String,
    label: &'static str,
    /// `Spec::watch_holding`.
    watch_holding: bool,
    /// The client's connection state, marked seen just before each request whose answer
    /// showed our node: whether a reconnection happened since (see [`Env::reconnected`]).
    seen_on: zk::StateWatcher,
    /// The watch on our own node, handed to the holding when the attempt proceeds.
    own_watch: Option<NodeWatch>,
    /// The watch on the node this attempt requires.
    required_watch: Option<NodeWatch>,
    /// The children watch of the last watched listing.
    children: Option<zk::OneshotWatcher>,
    started: Instant,
}

/// What the driver's wait for the machine's next input saw.
enum Woke {
    Input(Input),
    /// A watched listing: its children, and the watch it set.
    Watched(Vec<String>, zk::OneshotWatcher),
}

/// A future the driver waits on, boxed so that a slot can hold any of its kind.
type Pending<'f, T> = Pin<Box<dyn Future<Output = T> + Send + 'f>>;

/// Resolves with the future in `slot` once it does, and empties the slot; pending while the
/// slot is empty.
fn armed<'a, T>(slot: &'a mut Option<Pending<'_, T>>) -> impl Future<Output = T> + 'a {
    std::future::poll_fn(move |cx| match slot {
        Some(future) => match future.as_mut().poll(cx) {
            std::task::Poll::Ready(output) => {
                *slot = None;
                std::task::Poll::Ready(output)
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        },
        None => std::task::Poll::Pending,
    })
}

/// What the machine asks of the session, at the moment it asks.
struct Facts<'a> {
    session: &'a Session,
    generation: u64,
    session_id: i64,
    seen_on: &'a mut zk::StateWatcher,
    own_watch: &'a mut Option<NodeWatch>,
}

impl Env for Facts<'_> {
    fn proven(&self) -> bool {
        self.session.proven_until(self.generation).is_some_and(|until| !until.has_passed())
    }

    fn reconnected(&mut self) -> bool {
        self.seen_on.changed().now_or_never().is_some()
    }

    fn own_event(&mut self) -> Option<NodeEvent> {
        let event = self.own_watch.as_mut()?.as_mut().now_or_never()?;
        *self.own_watch = None;
        Some(event)
    }

    fn ended(&self) -> Option<LossReason> {
        self.session.ended(self.generation)
    }

    fn session_id(&self) -> i64 {
        self.session_id
    }

    fn fresh_prefix(&mut self) -> String {
        protected_prefix()
    }
}

impl<'s> Contending<'s> {
    fn new(session: &'s Session, client: zk::Client, generation: u64, spec: &Spec<'_>, once: bool) -> Self {
        let seen_on = client.state_watcher();
        Self {
            session,
            client,
            generation,
            machine: Attempt::new(spec.dir, spec.role, once, spec.requires, protected_prefix()),
            dir: spec.dir.to_owned(),
            label: spec.role.label(),
            watch_holding: spec.watch_holding,
            seen_on,
            own_watch: None,
            required_watch: None,
            children: None,
            started: Instant::now(),
        }
    }

    /// Runs the machine until it is done: `Ok(true)` once the attempt may proceed.
    async fn run(&mut self, data: &[u8], on_queued: Option<&(dyn Fn() + Send + Sync)>) -> Result<bool, Error> {
        let (session, generation) = (self.session, self.generation);
        let mut commands = self.machine.start();
        let mut request: Option<Pending<'_, Woke>> = None;
        let mut ahead: Option<Pending<'_, Result<zk::EventType, Error>>> = None;
        let mut children: Option<Pending<'_, Result<(), Error>>> = None;
        let mut proof: Option<Pending<'_, Result<(), LossReason>>> = None;
        loop {
            for command in commands {
                match command {
                    Command::Send(sent) => {
                        assert!(request.is_none(), "the machine sends one request at a time");
                        request = Some(self.send(sent, data));
                    }
                    Command::WatchOwn => {
                        self.seen_on.state();
                        self.own_watch =
                            Some(Box::pin(watch_node(session.clone(), generation, self.machine.own_path())));
                    }
                    Command::WatchAhead { path } => {
                        ahead = Some(Box::pin(watch_ahead(session, generation, self.client.clone(), path)))
                    }
                    Command::WatchRequired { path } => {
                        self.required_watch = Some(Box::pin(watch_node(session.clone(), generation, path)));
                    }
                    Command::AwaitChildren => {
                        let watcher = self.children.take().expect("a watched listing came first");
                        children =
                            Some(Box::pin(async move { until_fired(session, generation, watcher).await.map(drop) }));
                    }
                    Command::AwaitProof => proof = Some(Box::pin(session.proven(generation))),
                    Command::RemoveStray { path } => Target::Node(path).schedule(session, generation),
                    Command::Queued { children } => {
                        if let Some(token) = self.machine.token() {
                            let node = self.machine.own_path();
                            tracing::Span::current()
                                .record("node", node.as_str())
                                .record("token", tracing::field::display(token));
                        }
                        metrics::queued(self.label, children);
                        if let Some(queued) = on_queued {
                            queued();
                        }
                    }
                    Command::Done(outcome) => return outcome,
                }
            }
            if !self.machine.waits_ahead() {
                ahead = None;
            }
            if !self.machine.waits_for_children() {
                children = None;
            }
            // Our node's watch first: ZooKeeper delivers a connection's events in order, and
            // the machine must know of our node's deletion before it acts on anything later.
            let woke = tokio::select! {
                biased;
                event = armed(&mut self.own_watch) => Woke::Input(Input::OwnEvent(event)),
                event = armed(&mut self.required_watch) => Woke::Input(Input::RequiredEvent(event)),
                answer = armed(&mut request) => answer,
                fired = armed(&mut ahead) => Woke::Input(Input::AheadFired(fired)),
                fired = armed(&mut children) => Woke::Input(Input::ChildrenFired(fired)),
                proven = armed(&mut proof) => Woke::Input(Input::Proven(proven)),
            };
            let input = match woke {
                Woke::Input(input) => input,
                Woke::Watched(listed, watcher) => {
                    self.children = Some(watcher);
                    Input::Listed(Ok((listed, None)))
                }
            };
            let mut facts = Facts {
                session,
                generation,
                session_id: self.client.session_id().0,
                seen_on: &mut self.seen_on,
                own_watch: &mut self.own_watch,
            };
            commands = self.machine.step(input, &mut facts);
            // A watched listing's watcher is good for the decision on that listing only.
            if !commands.contains(&Command::AwaitChildren) {
                self.children = None;
            }
        }
    }

    /// Sends `request`; its answer as the machine's input.
    fn send<'f>(&mut self, request: Request, data: &'f [u8]) -> Pending<'f, Woke>
    where
        's: 'f,
    {
        let (session, generation, client) = (self.session, self.generation, self.client.clone());
        let dir = self.dir.clone();
        // Each request whose answer shows our node marks the connection it goes out on.
        if matches!(request, Request::CreateAndList { .. } | Request::SyncedList | Request::List { .. }) {
            self.seen_on.state();
        }
        match request {
            Request::CreateAndList { path } => {
                Box::pin(async move {
                    let options = zk::CreateMode::EphemeralSequential.with_acls(session.acls());
                    let sent = Moment::now();
                    // Sent back to back, without waiting for the create's reply.
                    let create = client.create(&path, data, &options);
                    let list = client.get_children(&dir);
                    let (created, listed) = tokio::join!(create, list);
                    witness(session, generation, sent, &created);
                    witness(session, generation, sent, &listed);
                    let created = created.map(|(stat, sequence)| (stat.ephemeral_owner, sequence.into_i64()));
                    let listed = listed.map(|(children, stat)| (children, epoch(&stat)));
                    Woke::Input(Input::CreatedAndListed { created, listed })
                })
            }
            Request::MakeParents => Box::pin(async move {
                let options = zk::CreateMode::Container.with_acls(session.acls());
                let made = send(session, generation, &dir, || client.mkdir(&dir, &options)).await;
                Woke::Input(Input::ParentsMade(made))
            }),
            Request::SyncedList => Box::pin(async move {
                let listed = send(session, generation, &dir, || synced_children(&client, &dir)).await;
                Woke::Input(Input::SyncedListed(listed.map(|found| found.map(|(c, stat)| (c, epoch(&stat))))))
            }),
            Request::Owner { path } => Box::pin(async move {
                let owner = send(session, generation, &path, || client.check_stat(&path)).await;
                Woke::Input(Input::OwnerIs(owner.map(|stat| stat.map(|s| s.ephemeral_owner))))
            }),
            Request::List { stat: true, .. } => Box::pin(async move {
                let listed = send(session, generation, &dir, || client.get_children(&dir)).await;
                Woke::Input(Input::Listed(listed.map(|(children, stat)| (children, Some(epoch(&stat))))))
            }),
            Request::List { watch: true, .. } => Box::pin(async move {
                match send(session, generation, &dir, || client.list_and_watch_children(&dir)).await {
                    Ok((children, watcher)) => Woke::Watched(children, watcher),
                    Err(err) => Woke::Input(Input::Listed(Err(err))),
                }
            }),
            Request::List { .. } => Box::pin(async move {
                let listed = send(session, generation, &dir, || client.list_children(&dir)).await;
                Woke::Input(Input::Listed(listed.map(|children| (children, None))))
            }),
            // A sync, which only the leader can answer: a follower cut off from it would answer
            // an exists although the leader may have expired the session.
            Request::Sync { node } => Box::pin(async move {
                let synced = match session.client_of(generation) {
                    Some(client) => send(session, generation, &node, || client.sync("/")).await,
                    None => Err(Error::SessionExpired),
                };
                Woke::Input(Input::Synced(synced))
            }),
        }
    }

    /// The acquisition succeeded: the node now belongs to a holder.
    fn into_holding(mut self) -> Holding {
        let (node, token, strays) = self.machine.granted();
        tracing::info!(
            %node, %token, session_id = %self.client.session_id(),
            waited_ms = self.started.elapsed().as_millis() as u64, "acquired"
        );
        // A late duplicate of a resent create is looked for again once the holding ends; the
        // holding owns the node and its prefix now, so this attempt's drop cleans up nothing.
        self.machine.forget();
        let mut holding = Holding::new(self.session.clone(), self.generation, node, token, self.label, strays);
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
        if let Some(target) = self.machine.cleanup_target() {
            // Our own watch, if set, fires before the delete's reply: kept till then, it costs no
            // request to remove.
            let own = self.own_watch.take();
            target.send_and_schedule(&self.client, self.session, self.generation, own);
            self.machine.forget();
        }
    }

    /// Gives up and deletes the node before returning, unless that takes longer than
    /// [`WITHDRAW_BOUND`] (or the connection is down): then `Drop` leaves it to the background
    /// cleanup.
    async fn withdraw(mut self) {
        let Some(target) = self.machine.cleanup_target() else { return };
        if self.session.state() != SessionState::Connected {
            return;
        }
        match tokio::time::timeout(WITHDRAW_BOUND, target.delete(&self.client)).await {
            Ok(Ok(_) | Err(zk::Error::SessionExpired | zk::Error::ClientClosed)) => self.machine.forget(),
            Ok(Err(err)) => tracing::warn!(error = %err, "withdrawing failed; retrying in the background"),
            Err(_) => tracing::warn!("withdrawing is slow; continuing in the background"),
        }
    }
}

impl Drop for Contending<'_> {
    fn drop(&mut self) {
        if let Some(target) = self.machine.cleanup_target() {
            target.schedule(self.session, self.generation);
        }
    }
}

/// Watches the node ahead until it changes or goes: `NodeDeleted` at once if it is gone. A
/// data watch, not an exists watch: on a node that is already gone it leaves no watch behind
/// (Curator TN9).
async fn watch_ahead(
    session: &Session,
    generation: u64,
    client: zk::Client,
    ahead: String,
) -> Result<zk::EventType, Error> {
    let watch = || async {
        match client.get_and_watch_data(&ahead).await {
            Ok((_, _, watcher)) => Ok(Some(watcher)),
            Err(zk::Error::NoNode) => Ok(None),
            Err(err) => Err(err),
        }
    };
    match resend(&ahead, watch).await? {
        None => Ok(zk::EventType::NodeDeleted),
        Some(watcher) => until_fired(session, generation, watcher).await,
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

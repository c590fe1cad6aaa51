//! The engine's own [`Attempt`] machine, run against the model server: every interleaving of a
//! few contenders — mutex, read-write lock, leader latch and semaphore (gate and leases) —
//! with outside deletes, expiries, lost replies and requests, reaped directories and
//! cancellations.
//!
//! The adapter plays the part of the tokio driver in `queue/mod.rs` and of the recipes around
//! it: it turns the machine's commands into model requests and watches, and what the server
//! sends into the machine's inputs; it chains a semaphore's gate and lease attempts as
//! `semaphore.rs` does. Like the real client, it receives the session's deliveries in order,
//! but it may step the ones it has received in any order (the driver polls its watches one
//! after another, and a later one can be ready first): that is where the head-left shortcut
//! must look at our node's watch once more.
//!
//! What is not modelled: the holding after the grant (its loss watch and fenced writes; a
//! release is one delete), a leader latch's re-queueing, time (a live session counts as proven
//! alive; the proof's timing is tested against real servers), and a process that opens a new
//! session after its old one expired (an expired contender stops).

mod properties;
#[cfg(test)]
mod tests;

use zookeeper_client as zk;

use super::Status;
use super::explore::Model;
use super::peers::{CuratorMutex, KazooLock};
use super::{Delivery, EventType, Mode, Reply, Request, RequestId, Server, SessionId, SessionState, ZkError};
use crate::error::{Error, LossReason};
use crate::queue::Role;
use crate::queue::attempt::{self, Attempt, Command, Env, Input};
use crate::queue::cleanup::{Deleted, Target, leaves_in_doubt};
use crate::queue::holding::{Verdict, verdict};
use crate::queue::watch::NodeEvent;
use crate::token::FencingToken;

/// The lock directory of mutexes, read-write locks and latches.
pub(crate) const LOCK: &str = "/lock";
/// A semaphore's gate (its internal mutex) and lease directories, under `/sem`.
const SEMAPHORE: &str = "/sem";
const GATES: &str = "/sem/locks";
const LEASES: &str = "/sem/leases";

/// What one contender does, as its recipe would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Plan {
    /// One node in [`LOCK`]: a mutex's, a reader's, a writer's or a latch's.
    Single(Role),
    /// A semaphore acquisition of `count` of its `permits`: the gate, then the leases under it,
    /// then the gate's release.
    Semaphore { permits: u32, count: u32 },
}

/// How many faults (and cancellations) the checker may inject in one run: of each kind, and
/// of all kinds together (`total`; cancellations are not faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Budget {
    pub(crate) total: u8,
    /// Another client deletes a contender node.
    pub(crate) outside_deletes: u8,
    pub(crate) expiries: u8,
    /// The connection drops with replies pending: the requests took effect, their replies are
    /// lost.
    pub(crate) disconnects: u8,
    /// A request is lost before it arrives, and the connection with it.
    pub(crate) lost_requests: u8,
    /// The server reaps an emptied directory.
    pub(crate) reaps: u8,
    /// A waiting acquisition is dropped (cancelled, or timed out).
    pub(crate) cancels: u8,
    /// A stranger creates a node carrying a contender's protected prefix (what a node of an
    /// earlier session with the same prefix looks like: CURATOR-604).
    pub(crate) impostors: u8,
}

impl Budget {
    /// No faults, no cancellations.
    pub(crate) const NONE: Budget = Budget {
        total: u8::MAX,
        outside_deletes: 0,
        expiries: 0,
        disconnects: 0,
        lost_requests: 0,
        reaps: 0,
        cancels: 0,
        impostors: 0,
    };

    /// Up to `n` faults in all, of any kind but impostors, and `n` cancellations.
    pub(crate) const fn any(n: u8) -> Budget {
        Budget {
            total: n,
            outside_deletes: n,
            expiries: n,
            disconnects: n,
            lost_requests: n,
            reaps: n,
            cancels: n,
            impostors: 0,
        }
    }

    /// Whether one more fault of a kind with `left` allowed may happen.
    fn allows(&self, left: u8) -> bool {
        left > 0 && self.total > 0
    }

    /// Counts one fault of a kind.
    fn spend(&mut self, left: impl FnOnce(&mut Budget) -> &mut u8) {
        *left(self) -= 1;
        self.total -= 1;
    }
}

/// A run of the checker: who contends, how often, and which faults it may inject.
pub(crate) struct Scenario {
    pub(crate) plans: Vec<Plan>,
    /// Acquisitions each contender makes, one after another.
    pub(crate) acquisitions: u8,
    /// The first `tries` contenders only try (take it if free at once).
    pub(crate) tries: usize,
    pub(crate) budget: Budget,
    /// Curator `InterProcessMutex` contenders on [`LOCK`].
    pub(crate) curators: u32,
    /// A kazoo `Lock` on [`LOCK`], if set: its uuid in hex, and its `extra_lock_patterns`.
    pub(crate) kazoo: Option<(&'static str, &'static [&'static str])>,
    /// The lock directory's sequence counter starts at `i32::MAX`: the second node wraps.
    pub(crate) wrap: bool,
}

impl Scenario {
    /// `plans`, one acquisition each, no faults.
    pub(crate) fn new(plans: Vec<Plan>) -> Self {
        Self { plans, acquisitions: 1, tries: 0, budget: Budget::NONE, curators: 0, kazoo: None, wrap: false }
    }

    /// `n` contenders of `role` on the lock directory.
    pub(crate) fn of(role: Role, n: usize) -> Self {
        Self::new(vec![Plan::Single(role); n])
    }
}

/// What the adapter has received and not yet stepped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Ready {
    Own(NodeEvent),
    Ahead(Result<EventType, ZkError>),
    Required(NodeEvent),
    Children(Result<(), ZkError>),
    /// The proof of liveness renewed (or the session ended): asked for only after expiry here.
    Proof,
    /// The answer to the one request in flight, as the machine takes it.
    Answer(Answer),
}

/// An answer, kept hashable (the engine's errors are not).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Answer {
    CreatedAndListed { created: Result<(i64, i64), ZkError>, listed: Result<(Vec<String>, u64), ZkError> },
    ParentsMade(Result<(), ZkError>),
    SyncedListed(Result<Option<(Vec<String>, u64)>, ZkError>),
    OwnerIs(Result<Option<i64>, ZkError>),
    Listed(Result<(Vec<String>, Option<u64>), ZkError>),
    Synced(Result<(), ZkError>),
}

/// What a request in flight is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Asked {
    Create,
    CreateList,
    MakeParent,
    SyncFirst,
    SyncedList,
    Owner,
    List {
        stat: bool,
    },
    Sync,
    OwnWatch,
    AheadWatch,
    RequiredWatch,
    Cleanup,
    /// A release's delete of a held node, judged by the holding's own verdict: `in_doubt` once
    /// a try was cut off by a lost connection, `ran` once a try deleted the node.
    Release {
        in_doubt: bool,
        ran: bool,
    },
}

/// Where a contender is in its recipe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Stage {
    /// The one attempt of a [`Plan::Single`].
    Single,
    /// A semaphore's gate attempt.
    Gate,
    /// A semaphore's lease attempts under the gate node `gate`, with the lease nodes `taken`.
    Lease { gate: String, taken: Vec<String> },
}

/// What a contender believes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Belief {
    /// Not acquiring, and never acquired.
    Idle,
    Waiting,
    /// It holds through `nodes`; `strays`: a prefix a duplicate of a resent create may carry.
    Holding {
        nodes: Vec<String>,
        strays: Option<(String, String)>,
    },
    Released,
    /// It gave up, failed or was cancelled; its nodes are being deleted.
    Failed,
}

/// One contender: the machine, and the driver's and the recipe's part around it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Contender {
    index: usize,
    plan: Plan,
    once: bool,
    session: SessionId,
    machine: Attempt,
    stage: Stage,
    /// Acquisitions still to start, and started so far (which names the prefixes).
    acquisitions: u8,
    attempts: u8,
    next_id: u32,
    /// Requests in flight: what each is for, and the request, to send again after a loss.
    asked: Vec<(RequestId, Asked, Request)>,
    /// A create's reply kept until its listing's arrives.
    created: Option<Result<(i64, i64), ZkError>>,
    ready: Vec<Ready>,
    own: Option<String>,
    ahead: Option<String>,
    required: Option<String>,
    /// The directory whose children watch the last watched listing set, until it fires.
    children: Option<String>,
    /// A reconnection since the last request that showed our node.
    reconnected: bool,
    /// Our node's deletion was received (stepped or not).
    own_deleted_seen: bool,
    /// The next request is lost before it arrives.
    lose_next: bool,
    belief: Belief,
}

impl Contender {
    fn new(index: usize, session: SessionId, plan: Plan, once: bool, acquisitions: u8) -> Self {
        Self {
            index,
            plan,
            once,
            session,
            machine: Attempt::new(LOCK, Role::Lock, false, None, String::new()),
            stage: Stage::Single,
            acquisitions,
            attempts: 0,
            next_id: 0,
            asked: Vec::new(),
            created: None,
            ready: Vec::new(),
            own: None,
            ahead: None,
            required: None,
            children: None,
            reconnected: false,
            own_deleted_seen: false,
            lose_next: false,
            belief: Belief::Idle,
        }
    }

    /// Puts a fresh attempt in place, the driver's state of the last one dropped.
    fn begin(&mut self, dir: &str, role: Role, requires: Option<&str>) -> Vec<Command> {
        let prefix = format!("_c_{}{}-", self.index, (b'a' + self.attempts) as char);
        self.attempts += 1;
        self.machine = Attempt::new(dir, role, self.once, requires, prefix);
        self.asked.retain(|(_, asked, _)| *asked == Asked::Cleanup);
        self.created = None;
        self.ready.clear();
        (self.own, self.ahead, self.required, self.children) = (None, None, None, None);
        (self.reconnected, self.own_deleted_seen) = (false, false);
        self.machine.start()
    }

    fn waiting(&self) -> bool {
        self.belief == Belief::Waiting
    }

    /// Whether the `k`-th received input can be stepped now: the driver polls the watch ahead
    /// and the children watch only while the machine waits on them.
    fn steppable(&self, k: usize) -> bool {
        match self.ready[k] {
            Ready::Ahead(_) => self.machine.waits_ahead(),
            Ready::Children(_) => self.machine.waits_for_children(),
            _ => true,
        }
    }
}

/// The machine's view of the world, from the adapter.
struct Facts<'a> {
    ready: &'a mut Vec<Ready>,
    reconnected: &'a mut bool,
    session: SessionId,
    expired: bool,
}

impl Env for Facts<'_> {
    fn proven(&self) -> bool {
        // No clock here: a live session is proven (the proof's timing is tested against real
        // servers); an expired one is not.
        !self.expired
    }
    fn reconnected(&mut self) -> bool {
        std::mem::take(self.reconnected)
    }
    fn own_event(&mut self) -> Option<NodeEvent> {
        let at = self.ready.iter().position(|r| matches!(r, Ready::Own(_)))?;
        let Ready::Own(event) = self.ready.remove(at) else { unreachable!("found above") };
        Some(event)
    }
    fn ended(&self) -> Option<LossReason> {
        self.expired.then_some(LossReason::SessionExpired)
    }
    fn session_id(&self) -> i64 {
        self.session.0 as i64
    }
    fn fresh_prefix(&mut self) -> String {
        format!("_c_{}x-", self.session.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct World {
    server: Server,
    contenders: Vec<Contender>,
    budget: Budget,
    /// The tokens of exclusive holders on [`LOCK`], in the order they were granted.
    exclusive_tokens: Vec<FencingToken>,
    /// Other libraries' contenders, each on a session of its own.
    peers: Vec<(SessionId, Peer)>,
    /// The session that creates impostor nodes, if the budget allows them.
    stranger: Option<SessionId>,
    /// A property broken at a grant or a watch (where only that moment shows it).
    flaw: Option<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Contender `i` begins an acquisition.
    Start(usize),
    /// The client of contender `i` receives its session's oldest delivery.
    Receive(usize),
    /// Contender `i`'s driver steps the `k`-th input it has received.
    Step(usize, usize),
    Release(usize),
    /// Contender `i`'s waiting acquisition is dropped.
    Cancel(usize),
    OutsideDelete(String),
    Expire(usize),
    Disconnect(usize),
    /// Contender `i`'s next request will be lost before it arrives.
    LoseNext(usize),
    /// The server reaps an emptied container.
    Reap(String),
    /// A stranger creates a node with contender `i`'s protected prefix.
    Impostor(usize),
    /// Peer `j` starts, receives its oldest delivery, or releases.
    PeerStart(usize),
    PeerReceive(usize),
    PeerRelease(usize),
}

impl Action {
    /// Faults and cancellations: what may happen, never what must. A state where nothing else
    /// can happen is at rest.
    fn optional(&self) -> bool {
        matches!(
            self,
            Action::Cancel(_)
                | Action::OutsideDelete(_)
                | Action::Expire(_)
                | Action::Disconnect(_)
                | Action::LoseNext(_)
                | Action::Reap(_)
                | Action::Impostor(_)
        )
    }
}

impl World {
    fn send(&mut self, i: usize, asked: Asked, request: Request) {
        let contender = &mut self.contenders[i];
        let id = RequestId(contender.next_id);
        contender.next_id += 1;
        contender.asked.push((id, asked, request.clone()));
        if std::mem::take(&mut contender.lose_next) {
            // Lost on the way, and the connection with it: the request never took effect.
            return self.disconnect(i, Some(id));
        }
        let applied = self.server.apply(contender.session, id, request);
        if let (Ok(_), Some((_, Asked::Release { ran, .. }, _))) = (applied, self.contenders[i].asked.last_mut()) {
            *ran = true;
        }
    }

    /// The connection drops: every reply pending is lost (and `unsent`, which never arrived),
    /// and the client fails those requests with a connection loss.
    fn disconnect(&mut self, i: usize, unsent: Option<RequestId>) {
        let mut lost = self.server.disconnect(self.contenders[i].session);
        lost.extend(unsent);
        self.contenders[i].reconnected = true;
        for request in lost {
            self.answered(i, request, Err(ZkError::ConnectionLoss));
        }
    }

    fn expired(&self, i: usize) -> bool {
        self.server.session_state(self.contenders[i].session) != SessionState::Live
    }

    fn run(&mut self, i: usize, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::Send(ask) => self.ask(i, ask),
                Command::WatchOwn => {
                    let path = self.contenders[i].machine.own_path();
                    self.contenders[i].own = Some(path.clone());
                    self.contenders[i].reconnected = false;
                    self.send(i, Asked::OwnWatch, Request::Exists { path, watch: true });
                }
                Command::WatchAhead { path } => {
                    self.check_watch_ahead(i, &path);
                    self.contenders[i].ahead = Some(path.clone());
                    self.send(i, Asked::AheadWatch, Request::GetData { path, watch: true });
                }
                Command::WatchRequired { path } => {
                    self.contenders[i].required = Some(path.clone());
                    self.send(i, Asked::RequiredWatch, Request::Exists { path, watch: true });
                }
                // The children watch of the last watched listing: its event, kept if it came
                // already, can be stepped now.
                Command::AwaitChildren => {}
                // A live session is always proven here: only an expired one waits, and learns.
                Command::AwaitProof => self.contenders[i].ready.push(Ready::Proof),
                Command::RemoveStray { path } => self.send(i, Asked::Cleanup, Request::Delete { path, version: None }),
                Command::Queued { .. } => {}
                Command::Done(Ok(true)) => self.granted(i),
                Command::Done(_) => self.give_up(i),
            }
        }
    }

    /// The attempt may proceed: check what only the moment of the grant shows, then go on as
    /// the recipe does.
    fn granted(&mut self, i: usize) {
        let (node, token, strays) = self.contenders[i].machine.granted();
        let strays = strays.and_then(|target| match target {
            Target::Prefix { dir, prefix } => Some((dir, prefix)),
            Target::Node(_) => None,
        });
        self.contenders[i].machine.forget();
        self.check_grant(i, &node, token);
        let contender = &mut self.contenders[i];
        match (&mut contender.stage, contender.plan) {
            (Stage::Single, _) => {
                contender.belief = Belief::Holding { nodes: vec![node], strays };
                contender.ready.clear();
            }
            (Stage::Gate, Plan::Semaphore { permits, .. }) => {
                contender.stage = Stage::Lease { gate: node.clone(), taken: Vec::new() };
                let commands = contender.begin(LEASES, Role::Lease { permits }, Some(&node));
                self.run(i, commands);
            }
            (Stage::Lease { gate, taken }, Plan::Semaphore { permits, count }) => {
                taken.push(node);
                if taken.len() < count as usize {
                    let gate = gate.clone();
                    let commands = contender.begin(LEASES, Role::Lease { permits }, Some(&gate));
                    return self.run(i, commands);
                }
                // Every lease is taken: let the next contender in.
                let (gate, nodes) = (gate.clone(), std::mem::take(taken));
                contender.belief = Belief::Holding { nodes, strays };
                contender.ready.clear();
                self.send(i, Asked::Cleanup, Request::Delete { path: gate, version: None });
            }
            (Stage::Gate | Stage::Lease { .. }, Plan::Single(_)) => unreachable!("only a semaphore has a gate"),
        }
    }

    /// The attempt ended without a grant, or was dropped: what the driver's drop and the
    /// recipe's early return delete.
    fn give_up(&mut self, i: usize) {
        self.clean_up(i);
        let contender = &mut self.contenders[i];
        contender.belief = Belief::Failed;
        contender.ready.clear();
        if let Stage::Lease { gate, taken } = std::mem::replace(&mut contender.stage, Stage::Single) {
            for path in taken.into_iter().chain([gate]) {
                self.send(i, Asked::Cleanup, Request::Delete { path, version: None });
            }
        }
    }

    /// Deletes whatever node the attempt may have.
    fn clean_up(&mut self, i: usize) {
        match self.contenders[i].machine.cleanup_target() {
            Some(Target::Node(path)) => self.send(i, Asked::Cleanup, Request::Delete { path, version: None }),
            Some(Target::Prefix { dir, prefix }) => self.delete_prefixed(i, &dir, &prefix, &[]),
            None => {}
        }
        self.contenders[i].machine.forget();
    }

    /// The background cleanup by prefix lists and deletes; modelled as done at once.
    fn delete_prefixed(&mut self, i: usize, dir: &str, prefix: &str, except: &[String]) {
        for child in self.server.children(dir).into_iter().filter(|c| c.starts_with(prefix)) {
            let path = format!("{dir}/{child}");
            if !except.contains(&path) {
                self.send(i, Asked::Cleanup, Request::Delete { path, version: None });
            }
        }
    }

    fn ask(&mut self, i: usize, ask: attempt::Request) {
        let dir = self.contenders[i].machine.dir().to_owned();
        let marks = matches!(
            ask,
            attempt::Request::CreateAndList { .. } | attempt::Request::SyncedList | attempt::Request::List { .. }
        );
        if marks {
            self.contenders[i].reconnected = false;
        }
        match ask {
            attempt::Request::CreateAndList { path } => {
                let create = Request::Create { path, data: Vec::new(), mode: Mode::Ephemeral, sequential: true };
                self.send(i, Asked::Create, create);
                self.send(i, Asked::CreateList, Request::GetChildren { path: dir, watch: false });
            }
            attempt::Request::MakeParents => self.send(i, Asked::MakeParent, container(&dir)),
            attempt::Request::SyncedList => {
                self.send(i, Asked::SyncFirst, Request::Sync { path: dir.clone() });
                self.send(i, Asked::SyncedList, Request::GetChildren { path: dir, watch: false });
            }
            attempt::Request::Owner { path } => self.send(i, Asked::Owner, Request::Exists { path, watch: false }),
            attempt::Request::List { stat, watch } => {
                if watch {
                    // The driver keeps the watch of the newest watched listing only.
                    let contender = &mut self.contenders[i];
                    contender.children = Some(dir.clone());
                    contender.ready.retain(|r| !matches!(r, Ready::Children(_)));
                }
                self.send(i, Asked::List { stat }, Request::GetChildren { path: dir, watch })
            }
            attempt::Request::Sync { .. } => self.send(i, Asked::Sync, Request::Sync { path: "/".into() }),
        }
    }

    /// The client receives one delivery of contender `i`'s session.
    fn receive(&mut self, i: usize) {
        let delivery = self.server.deliver(self.contenders[i].session).expect("a delivery");
        let event = match delivery {
            Delivery::Reply { request, result } => return self.answered(i, request, result),
            Delivery::Event(event) => event,
        };
        let contender = &mut self.contenders[i];
        let node_event = if event.kind == EventType::Deleted { NodeEvent::Deleted } else { NodeEvent::Changed };
        let ready = if contender.own.as_deref() == Some(event.path.as_str()) {
            contender.own = None;
            contender.own_deleted_seen |= node_event == NodeEvent::Deleted;
            Ready::Own(node_event)
        } else if contender.ahead.as_deref() == Some(event.path.as_str()) {
            contender.ahead = None;
            Ready::Ahead(Ok(event.kind))
        } else if contender.required.as_deref() == Some(event.path.as_str()) {
            contender.required = None;
            Ready::Required(node_event)
        } else if event.kind == EventType::ChildrenChanged && contender.children.as_deref() == Some(&event.path) {
            contender.children = None;
            Ready::Children(Ok(()))
        } else {
            return;
        };
        // A holder's node watch is the holding's, which is not modelled.
        if contender.waiting() {
            contender.ready.push(ready);
        }
    }

    fn answered(&mut self, i: usize, request: RequestId, result: Result<Reply, ZkError>) {
        let contender = &mut self.contenders[i];
        let Some(at) = contender.asked.iter().position(|(id, ..)| *id == request) else { return };
        let (_, asked, sent) = contender.asked.remove(at);
        // Everything but a create is sent again after a connection loss, as the driver's
        // `resend`, the watches' retries and the background cleanup do; a lost create is the
        // machine's to recover.
        if let Err(err @ ZkError::ConnectionLoss) = result
            && !matches!(asked, Asked::Create | Asked::CreateList)
        {
            let asked = match asked {
                Asked::Release { in_doubt, ran } => {
                    Asked::Release { in_doubt: in_doubt || leaves_in_doubt(&zk_error(err)), ran }
                }
                other => other,
            };
            return self.send(i, asked, sent);
        }
        let ready = match (asked, result) {
            (Asked::Release { in_doubt, ran }, result) => {
                let Request::Delete { path, .. } = sent else { unreachable!("a release deletes") };
                // No loss was known before: the holding's watch is not modelled.
                let deleted = match result {
                    Ok(_) => Ok(Deleted::of(true, in_doubt)),
                    Err(ZkError::NoNode) => Ok(Deleted::of(false, in_doubt)),
                    Err(err) => Err(zk_error(err)),
                };
                let held = verdict(LossReason::Released, deleted) == Verdict::Held;
                return self.check_release(i, &path, held, ran);
            }
            (Asked::Create, created) => {
                let Request::Create { path: base, .. } = sent else { unreachable!("a create was sent") };
                contender.created = Some(created.map(|reply| match reply {
                    // The server's `%010d` of its signed counter, after the name asked for.
                    Reply::Created { path, stat } => {
                        (stat.ephemeral_owner as i64, path[base.len()..].parse().expect("a sequence"))
                    }
                    other => unreachable!("{other:?}"),
                }));
                return;
            }
            (Asked::CreateList, listed) => {
                let created = contender.created.take().expect("the create's reply came first");
                Ready::Answer(Answer::CreatedAndListed { created, listed: listed.map(children_and_epoch) })
            }
            (Asked::MakeParent, made) => Ready::Answer(Answer::ParentsMade(match made {
                Ok(_) | Err(ZkError::NodeExists) => Ok(()),
                Err(err) => Err(err),
            })),
            (Asked::SyncFirst, _) => return,
            (Asked::SyncedList, listed) => Ready::Answer(Answer::SyncedListed(match listed {
                Ok(reply) => Ok(Some(children_and_epoch(reply))),
                Err(ZkError::NoNode) => Ok(None),
                Err(err) => Err(err),
            })),
            (Asked::Owner, owner) => Ready::Answer(Answer::OwnerIs(owner.map(|reply| match reply {
                Reply::Exists(stat) => stat.map(|s| s.ephemeral_owner as i64),
                other => unreachable!("{other:?}"),
            }))),
            (Asked::List { stat }, listed) => Ready::Answer(Answer::Listed(listed.map(|reply| {
                let (names, epoch) = children_and_epoch(reply);
                (names, stat.then_some(epoch))
            }))),
            (Asked::Sync, synced) => Ready::Answer(Answer::Synced(synced.map(drop))),
            (Asked::OwnWatch, Ok(Reply::Exists(None))) => {
                contender.own = None;
                contender.own_deleted_seen = true;
                Ready::Own(NodeEvent::Deleted)
            }
            (Asked::OwnWatch, Err(_)) => {
                contender.own = None;
                Ready::Own(NodeEvent::SessionEnded)
            }
            (Asked::AheadWatch, Err(ZkError::NoNode)) => {
                contender.ahead = None;
                Ready::Ahead(Ok(EventType::Deleted))
            }
            (Asked::AheadWatch, Err(err)) => {
                contender.ahead = None;
                Ready::Ahead(Err(err))
            }
            (Asked::RequiredWatch, Ok(Reply::Exists(None))) => {
                contender.required = None;
                Ready::Required(NodeEvent::Deleted)
            }
            (Asked::RequiredWatch, Err(_)) => {
                contender.required = None;
                Ready::Required(NodeEvent::SessionEnded)
            }
            (Asked::OwnWatch | Asked::AheadWatch | Asked::RequiredWatch, Ok(_)) | (Asked::Cleanup, _) => return,
        };
        if contender.waiting() {
            contender.ready.push(ready);
        }
    }

    /// Contender `i`'s driver steps its `k`-th received input.
    fn step(&mut self, i: usize, k: usize) {
        let ready = self.contenders[i].ready.remove(k);
        let input = match ready {
            Ready::Own(event) => Input::OwnEvent(event),
            Ready::Ahead(fired) => Input::AheadFired(fired.map(event_type).map_err(error)),
            Ready::Required(event) => Input::RequiredEvent(event),
            Ready::Children(fired) => Input::ChildrenFired(fired.map_err(error)),
            Ready::Proof if self.expired(i) => Input::Proven(Err(LossReason::SessionExpired)),
            Ready::Proof => Input::Proven(Ok(())),
            Ready::Answer(answer) => match answer {
                Answer::CreatedAndListed { created, listed } => {
                    Input::CreatedAndListed { created: created.map_err(zk_error), listed: listed.map_err(zk_error) }
                }
                Answer::ParentsMade(made) => Input::ParentsMade(made.map_err(error)),
                Answer::SyncedListed(listed) => Input::SyncedListed(listed.map_err(error)),
                Answer::OwnerIs(owner) => Input::OwnerIs(owner.map_err(error)),
                Answer::Listed(listed) => Input::Listed(listed.map_err(error)),
                Answer::Synced(synced) => Input::Synced(synced.map_err(error)),
            },
        };
        let expired = self.expired(i);
        let contender = &mut self.contenders[i];
        let mut facts = Facts {
            ready: &mut contender.ready,
            reconnected: &mut contender.reconnected,
            session: contender.session,
            expired,
        };
        let commands = contender.machine.step(input, &mut facts);
        // As the driver does: the watch ahead is dropped, fired or not, once the machine no
        // longer waits on it.
        if !contender.machine.waits_ahead() {
            contender.ahead = None;
            contender.ready.retain(|r| !matches!(r, Ready::Ahead(_)));
            contender.asked.retain(|(_, asked, _)| *asked != Asked::AheadWatch);
        }
        self.run(i, commands);
    }

    /// Contender `i` begins its next acquisition.
    fn start(&mut self, i: usize) {
        let contender = &mut self.contenders[i];
        contender.acquisitions -= 1;
        contender.belief = Belief::Waiting;
        let commands = match contender.plan {
            Plan::Single(role) => {
                contender.stage = Stage::Single;
                contender.begin(LOCK, role, None)
            }
            Plan::Semaphore { .. } => {
                contender.stage = Stage::Gate;
                contender.begin(GATES, Role::SemaphoreGate, None)
            }
        };
        self.run(i, commands);
    }

    /// The holder lets go: its nodes are deleted, and any duplicate of a resent create.
    fn release(&mut self, i: usize) -> Option<()> {
        let Belief::Holding { nodes, strays } = std::mem::replace(&mut self.contenders[i].belief, Belief::Released)
        else {
            return None;
        };
        for path in &nodes {
            self.send(
                i,
                Asked::Release { in_doubt: false, ran: false },
                Request::Delete { path: path.clone(), version: None },
            );
        }
        if let Some((dir, prefix)) = strays {
            self.delete_prefixed(i, &dir, &prefix, &nodes);
        }
        Some(())
    }

    /// The session expires; the client hears of it through every watch it waits on.
    fn expire(&mut self, i: usize) {
        self.server.expire(self.contenders[i].session);
        let contender = &mut self.contenders[i];
        if !contender.waiting() {
            return;
        }
        if contender.own.take().is_some() {
            contender.ready.push(Ready::Own(NodeEvent::SessionEnded));
        }
        if contender.ahead.take().is_some() {
            contender.ready.push(Ready::Ahead(Err(ZkError::SessionExpired)));
        }
        if contender.required.take().is_some() {
            contender.ready.push(Ready::Required(NodeEvent::SessionEnded));
        }
        if contender.children.take().is_some() {
            contender.ready.push(Ready::Children(Err(ZkError::SessionExpired)));
        }
    }

    fn peer(&mut self, j: usize, action: &Action) {
        let (session, peer) = &mut self.peers[j];
        let contender = peer.contender();
        let requests = match action {
            Action::PeerStart(_) => contender.start(),
            Action::PeerRelease(_) => contender.release(),
            _ => match self.server.deliver(*session).expect("a delivery") {
                Delivery::Reply { request, result } => contender.on_reply(request, result),
                Delivery::Event(event) => contender.on_event(&event),
            },
        };
        for (id, request) in requests {
            let _ = self.server.apply(*session, id, request);
        }
    }
}

impl Model for Scenario {
    type State = World;
    type Action = Action;

    fn init(&self) -> Vec<World> {
        let mut server = Server::new();
        let setup = server.open_session();
        let persistent = |path: &str| Request::Create {
            path: path.into(),
            data: Vec::new(),
            mode: Mode::Persistent,
            sequential: false,
        };
        server.apply(setup, RequestId(0), persistent(SEMAPHORE)).expect("a fresh server");
        if self.wrap {
            server.apply(setup, RequestId(1), persistent(LOCK)).expect("a fresh server");
            server.set_cversion(LOCK, i32::MAX);
        }
        while server.deliver(setup).is_some() {}
        server.close_session(setup);
        let contenders = (self.plans.iter().enumerate())
            .map(|(i, &plan)| Contender::new(i, server.open_session(), plan, i < self.tries, self.acquisitions))
            .collect();
        let mut peers: Vec<(SessionId, Peer)> = (0..self.curators)
            .map(|j| (server.open_session(), Peer::Curator(CuratorMutex::new(LOCK, j + 100))))
            .collect();
        if let Some((hex, patterns)) = self.kazoo {
            let kazoo = KazooLock::new(LOCK, hex).with_extra_lock_patterns(patterns);
            peers.push((server.open_session(), Peer::Kazoo(kazoo)));
        }
        let stranger = (self.budget.impostors > 0).then(|| server.open_session());
        vec![World {
            server,
            contenders,
            budget: self.budget,
            exclusive_tokens: Vec::new(),
            peers,
            stranger,
            flaw: None,
        }]
    }

    fn actions(&self, world: &World, actions: &mut Vec<Action>) {
        let budget = world.budget;
        for (i, contender) in world.contenders.iter().enumerate() {
            let live = !world.expired(i);
            let outbox = world.server.outbox(contender.session);
            if !outbox.is_empty() {
                actions.push(Action::Receive(i));
            }
            if contender.waiting() {
                actions
                    .extend((0..contender.ready.len()).filter(|&k| contender.steppable(k)).map(|k| Action::Step(i, k)));
            }
            match contender.belief {
                Belief::Holding { .. } => actions.push(Action::Release(i)),
                Belief::Idle | Belief::Released | Belief::Failed if live && contender.acquisitions > 0 => {
                    actions.push(Action::Start(i));
                }
                Belief::Waiting if budget.cancels > 0 => actions.push(Action::Cancel(i)),
                _ => {}
            }
            if budget.allows(budget.expiries) && live {
                actions.push(Action::Expire(i));
            }
            if budget.allows(budget.disconnects) && outbox.iter().any(|d| matches!(d, Delivery::Reply { .. })) {
                actions.push(Action::Disconnect(i));
            }
            if budget.allows(budget.lost_requests) && live && contender.waiting() && !contender.lose_next {
                actions.push(Action::LoseNext(i));
            }
            if budget.allows(budget.impostors) && contender.waiting() {
                actions.push(Action::Impostor(i));
            }
        }
        if budget.allows(budget.reaps) {
            actions.extend(world.server.reapable().into_iter().map(Action::Reap));
        }
        for (j, (session, peer)) in world.peers.iter().enumerate() {
            match peer.status() {
                Status::Idle => actions.push(Action::PeerStart(j)),
                Status::Holding { .. } => actions.push(Action::PeerRelease(j)),
                _ => {}
            }
            if !world.server.outbox(*session).is_empty() {
                actions.push(Action::PeerReceive(j));
            }
        }
        if budget.allows(budget.outside_deletes) {
            for dir in [LOCK, GATES, LEASES] {
                actions.extend(
                    world.server.children(dir).into_iter().map(|child| Action::OutsideDelete(format!("{dir}/{child}"))),
                );
            }
        }
    }

    fn next(&self, world: &World, action: &Action) -> Option<World> {
        let mut next = world.clone();
        match action {
            Action::Start(i) => next.start(*i),
            // Replayed steps may not apply (a counterexample replayed on the fixed engine).
            Action::Receive(i) if next.server.outbox(next.contenders[*i].session).is_empty() => return None,
            Action::Step(i, k) if !next.contenders[*i].waiting() || *k >= next.contenders[*i].ready.len() => {
                return None;
            }
            Action::Receive(i) => next.receive(*i),
            Action::Step(i, k) => next.step(*i, *k),
            Action::Release(i) => next.release(*i)?,
            Action::Cancel(i) => {
                next.budget.cancels -= 1;
                next.give_up(*i);
            }
            Action::OutsideDelete(path) => {
                next.budget.spend(|b| &mut b.outside_deletes);
                next.server.outside_delete(path).ok()?;
            }
            Action::Expire(i) => {
                next.budget.spend(|b| &mut b.expiries);
                next.expire(*i);
            }
            Action::Disconnect(i) => {
                next.budget.spend(|b| &mut b.disconnects);
                next.disconnect(*i, None);
            }
            Action::LoseNext(i) => {
                next.budget.spend(|b| &mut b.lost_requests);
                next.contenders[*i].lose_next = true;
            }
            Action::Reap(path) => {
                next.budget.spend(|b| &mut b.reaps);
                next.server.reap(path);
            }
            Action::Impostor(i) => {
                next.budget.spend(|b| &mut b.impostors);
                let machine = &next.contenders[*i].machine;
                let path = format!(
                    "{}/{}{}",
                    machine.dir(),
                    machine.prefix(),
                    marker(next.contenders[*i].plan, machine.dir())
                );
                let stranger = next.stranger.expect("a stranger when impostors are allowed");
                let create = Request::Create { path, data: Vec::new(), mode: Mode::Ephemeral, sequential: true };
                next.server.apply(stranger, RequestId(0), create).ok()?;
                next.server.deliver(stranger);
            }
            Action::PeerStart(j) | Action::PeerReceive(j) | Action::PeerRelease(j) => next.peer(*j, action),
        }
        Some(next)
    }

    fn check(&self, world: &World) -> Result<(), super::explore::Violation> {
        world.check(self)
    }
}

/// The marker of the node contender `plan` creates in `dir`.
fn marker(plan: Plan, dir: &str) -> &'static str {
    match plan {
        Plan::Single(role) => role.kind().marker(),
        Plan::Semaphore { permits, .. } if dir == LEASES => Role::Lease { permits }.kind().marker(),
        Plan::Semaphore { .. } => Role::SemaphoreGate.kind().marker(),
    }
}

fn container(path: &str) -> Request {
    Request::Create { path: path.into(), data: Vec::new(), mode: Mode::Container, sequential: false }
}

fn children_and_epoch(reply: Reply) -> (Vec<String>, u64) {
    match reply {
        Reply::Children { names, stat } => (names, stat.czxid as u64),
        other => unreachable!("{other:?}"),
    }
}

fn event_type(kind: EventType) -> zk::EventType {
    match kind {
        EventType::Created => zk::EventType::NodeCreated,
        EventType::Deleted => zk::EventType::NodeDeleted,
        EventType::DataChanged => zk::EventType::NodeDataChanged,
        EventType::ChildrenChanged => zk::EventType::NodeChildrenChanged,
    }
}

fn zk_error(err: ZkError) -> zk::Error {
    match err {
        ZkError::NoNode => zk::Error::NoNode,
        ZkError::NodeExists => zk::Error::NodeExists,
        ZkError::NotEmpty => zk::Error::NotEmpty,
        ZkError::BadVersion => zk::Error::BadVersion,
        ZkError::NoChildrenForEphemerals => zk::Error::NoChildrenForEphemerals,
        ZkError::SessionExpired => zk::Error::SessionExpired,
        ZkError::BadArguments => zk::Error::BadArguments(&"bad arguments"),
        ZkError::ConnectionLoss => zk::Error::ConnectionLoss,
    }
}

fn error(err: ZkError) -> Error {
    match err {
        ZkError::SessionExpired => Error::SessionExpired,
        other => Error::zk(LOCK, zk_error(other)),
    }
}

/// Another library's contender.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Peer {
    Curator(CuratorMutex),
    Kazoo(KazooLock),
}

impl Peer {
    fn contender(&mut self) -> &mut dyn DynContender {
        match self {
            Peer::Curator(c) => c,
            Peer::Kazoo(k) => k,
        }
    }

    fn status(&self) -> Status {
        match self {
            Peer::Curator(c) => super::Contender::status(c),
            Peer::Kazoo(k) => super::Contender::status(k),
        }
    }
}

/// The peers' calls the checker makes, callable through one reference.
trait DynContender {
    fn start(&mut self) -> Vec<(RequestId, Request)>;
    fn on_reply(&mut self, id: RequestId, reply: Result<Reply, ZkError>) -> Vec<(RequestId, Request)>;
    fn on_event(&mut self, event: &super::WatchedEvent) -> Vec<(RequestId, Request)>;
    fn release(&mut self) -> Vec<(RequestId, Request)>;
}

impl<C: super::Contender> DynContender for C {
    fn start(&mut self) -> Vec<(RequestId, Request)> {
        super::Contender::start(self)
    }
    fn on_reply(&mut self, id: RequestId, reply: Result<Reply, ZkError>) -> Vec<(RequestId, Request)> {
        super::Contender::on_reply(self, id, reply)
    }
    fn on_event(&mut self, event: &super::WatchedEvent) -> Vec<(RequestId, Request)> {
        super::Contender::on_event(self, event)
    }
    fn release(&mut self) -> Vec<(RequestId, Request)> {
        super::Contender::release(self)
    }
}

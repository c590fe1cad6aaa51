//! The engine's own [`Attempt`] machine, run against the model server: every interleaving of
//! a few mutex contenders with outside deletes, expiries and lost replies.
//!
//! The adapter plays the part of the tokio driver in `queue/mod.rs`: it turns the machine's
//! commands into model requests and watches, and what the server sends into the machine's
//! inputs. Like the real client, it receives the session's deliveries in order, but it may
//! step the ones it has received in any order (the driver polls its watches one after
//! another, and a later one can be ready first): that is where the head-left shortcut must
//! look at our node's watch once more.

use zookeeper_client as zk;

use super::Status;
use super::explore::{Model, Violation};
use super::peers::{CuratorMutex, KazooLock};
use super::{Delivery, EventType, Mode, Reply, Request, RequestId, Server, SessionId, SessionState, ZkError};
use crate::error::{Error, LossReason};
use crate::queue::Role;
use crate::queue::attempt::{self, Attempt, Command, Env, Input};
use crate::queue::cleanup::Target;
use crate::queue::watch::NodeEvent;
use crate::token::FencingToken;

const DIR: &str = "/lock";

/// What the adapter has received and not yet stepped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Ready {
    Own(NodeEvent),
    Ahead(Result<EventType, ZkError>),
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
    MakeParent { last: bool },
    SyncFirst,
    SyncedList,
    Owner,
    List { stat: bool, watch: bool },
    Sync,
    OwnWatch,
    AheadWatch,
    Cleanup,
}

/// What a contender believes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Belief {
    Waiting,
    Holding { node: String },
    Released,
    Failed,
}

/// One contender: the machine, and the driver's part around it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Contender {
    machine: Attempt,
    role: Role,
    session: SessionId,
    next_id: u32,
    /// Requests in flight: what each is for, and the request, to send again after a loss.
    asked: Vec<(RequestId, Asked, Request)>,
    /// A create's reply kept until its listing's arrives.
    created: Option<Result<(i64, i64), ZkError>>,
    ready: Vec<Ready>,
    own: Option<String>,
    ahead: Option<String>,
    /// A reconnection since the last request that showed our node.
    reconnected: bool,
    /// Our node's deletion was received (stepped or not).
    own_deleted_seen: bool,
    /// It was granted after that.
    phantom: bool,
    started: bool,
    belief: Belief,
}

impl Contender {
    fn new(index: usize, session: SessionId, role: Role) -> Self {
        let machine = Attempt::new(DIR, role, false, None, format!("_c_{index}-"));
        Self {
            machine,
            role,
            session,
            next_id: 0,
            asked: Vec::new(),
            created: None,
            ready: Vec::new(),
            own: None,
            ahead: None,
            reconnected: false,
            own_deleted_seen: false,
            phantom: false,
            started: false,
            belief: Belief::Waiting,
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

/// A few contenders on one lock — mutex contenders, or a read-write lock's readers and
/// writers — and the faults the checker may inject.
pub(crate) struct Mutexes {
    pub(crate) roles: Vec<Role>,
    pub(crate) outside_deletes: u8,
    pub(crate) expiries: u8,
    pub(crate) disconnects: u8,
    /// Reaps of the emptied lock directory.
    pub(crate) reaps: u8,
    /// Curator `InterProcessMutex` contenders beside the engine's.
    pub(crate) curators: u32,
    /// A default kazoo `Lock` beside them, if set (its uuid, in hex).
    pub(crate) kazoo: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct World {
    server: Server,
    contenders: Vec<Contender>,
    faults: (u8, u8, u8, u8),
    /// The tokens of exclusive holders, in the order they were granted.
    exclusive_tokens: Vec<FencingToken>,
    /// Other libraries' contenders, each on a session of its own.
    curators: Vec<(SessionId, Peer)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// The client of contender `i` receives its session's oldest delivery.
    Receive(usize),
    /// Contender `i`'s driver steps the `k`-th input it has received.
    Step(usize, usize),
    Release(usize),
    OutsideDelete(String),
    Expire(usize),
    Disconnect(usize),
    /// Contender `i` begins its acquisition.
    Start(usize),
    /// The server reaps an emptied container.
    Reap(String),
    /// Curator contender `j` starts, receives its oldest delivery, or releases.
    CuratorStart(usize),
    CuratorReceive(usize),
    CuratorRelease(usize),
}

impl World {
    fn send(&mut self, i: usize, asked: Asked, request: Request) {
        let contender = &mut self.contenders[i];
        let id = RequestId(contender.next_id);
        contender.next_id += 1;
        contender.asked.push((id, asked, request.clone()));
        let _ = self.server.apply(contender.session, id, request);
    }

    fn expired(&self, i: usize) -> bool {
        self.server.session_state(self.contenders[i].session) != SessionState::Live
    }

    fn run(&mut self, i: usize, commands: Vec<Command>) {
        for command in commands {
            let own_path = || self.contenders[i].machine.own_path();
            match command {
                Command::Send(ask) => self.ask(i, ask),
                Command::WatchOwn => {
                    let path = own_path();
                    self.contenders[i].own = Some(path.clone());
                    self.contenders[i].reconnected = false;
                    self.send(i, Asked::OwnWatch, Request::Exists { path, watch: true });
                }
                Command::WatchAhead { path } => {
                    self.contenders[i].ahead = Some(path.clone());
                    self.send(i, Asked::AheadWatch, Request::GetData { path, watch: true });
                }
                Command::WatchRequired { .. } => unreachable!("a mutex requires no other node"),
                Command::AwaitChildren => unreachable!("a mutex waits on the node ahead"),
                // A live session is always proven here: only an expired one waits, and learns.
                Command::AwaitProof => self.contenders[i].ready.push(Ready::Proof),
                Command::RemoveStray { path } => self.send(i, Asked::Cleanup, Request::Delete { path, version: None }),
                Command::Queued { .. } => {}
                Command::Done(Ok(true)) => {
                    let (node, token, _) = self.contenders[i].machine.granted();
                    // A node deleted after the answer the grant rests on, before the client
                    // acted on it, cannot be known at the grant: that holder learns of it from
                    // its watch, and its smaller token is what fencing refuses. The order is
                    // owed among holders whose node the server still had.
                    let exists = self.server.stat(&node).is_some();
                    if self.contenders[i].role != Role::Read && exists {
                        self.exclusive_tokens.push(token);
                    }
                    self.contenders[i].phantom = self.contenders[i].own_deleted_seen;
                    self.contenders[i].belief = Belief::Holding { node };
                    self.contenders[i].machine.forget();
                }
                Command::Done(_) => {
                    self.contenders[i].belief = Belief::Failed;
                    self.clean_up(i);
                }
            }
        }
    }

    /// What the driver's drop does: delete whatever node the attempt may have.
    fn clean_up(&mut self, i: usize) {
        match self.contenders[i].machine.cleanup_target() {
            Some(Target::Node(path)) => {
                self.send(i, Asked::Cleanup, Request::Delete { path, version: None });
            }
            Some(Target::Prefix { dir, prefix }) => {
                // The background cleanup lists and deletes by prefix; modelled as done at once.
                for child in self.server.children(&dir).into_iter().filter(|c| c.starts_with(&prefix)) {
                    let path = format!("{dir}/{child}");
                    self.send(i, Asked::Cleanup, Request::Delete { path, version: None });
                }
            }
            None => {}
        }
        self.contenders[i].machine.forget();
    }

    fn ask(&mut self, i: usize, ask: attempt::Request) {
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
                self.send(i, Asked::CreateList, Request::GetChildren { path: DIR.into(), watch: false });
            }
            attempt::Request::MakeParents => {
                self.send(i, Asked::MakeParent { last: true }, container(DIR));
            }
            attempt::Request::SyncedList => {
                self.send(i, Asked::SyncFirst, Request::Sync { path: DIR.into() });
                self.send(i, Asked::SyncedList, Request::GetChildren { path: DIR.into(), watch: false });
            }
            attempt::Request::Owner { path } => self.send(i, Asked::Owner, Request::Exists { path, watch: false }),
            attempt::Request::List { stat, watch } => {
                self.send(i, Asked::List { stat, watch }, Request::GetChildren { path: DIR.into(), watch })
            }
            attempt::Request::Sync { .. } => self.send(i, Asked::Sync, Request::Sync { path: "/".into() }),
        }
    }

    /// The client receives one delivery of contender `i`'s session.
    fn receive(&mut self, i: usize) {
        let delivery = self.server.deliver(self.contenders[i].session).expect("a delivery");
        match delivery {
            Delivery::Reply { request, result } => self.answered(i, request, result),
            Delivery::Event(event) => {
                let contender = &mut self.contenders[i];
                let kind = event.kind;
                if contender.own.as_deref() == Some(event.path.as_str()) {
                    contender.own = None;
                    let own = if kind == EventType::Deleted { NodeEvent::Deleted } else { NodeEvent::Changed };
                    contender.own_deleted_seen |= own == NodeEvent::Deleted;
                    contender.ready.push(Ready::Own(own));
                } else if contender.ahead.as_deref() == Some(event.path.as_str()) {
                    contender.ahead = None;
                    contender.ready.push(Ready::Ahead(Ok(kind)));
                }
            }
        }
    }

    fn answered(&mut self, i: usize, request: RequestId, result: Result<Reply, ZkError>) {
        let contender = &mut self.contenders[i];
        let Some(at) = contender.asked.iter().position(|(id, ..)| *id == request) else { return };
        let (_, asked, sent) = contender.asked.remove(at);
        // Everything but a create is sent again after a connection loss, as the driver's
        // `resend`, the watches' retries and the background cleanup do; a lost create is the
        // machine's to recover.
        if result == Err(ZkError::ConnectionLoss) && !matches!(asked, Asked::Create | Asked::CreateList) {
            return self.send(i, asked, sent);
        }
        let ready = match (asked, result) {
            (Asked::Create, created) => {
                contender.created = Some(created.map(|reply| match reply {
                    Reply::Created { path, stat } => (stat.ephemeral_owner as i64, sequence(&path)),
                    other => unreachable!("{other:?}"),
                }));
                return;
            }
            (Asked::CreateList, listed) => {
                let created = contender.created.take().expect("the create's reply came first");
                Ready::Answer(Answer::CreatedAndListed { created, listed: listed.map(children_and_epoch) })
            }
            (Asked::MakeParent { .. }, made) => Ready::Answer(Answer::ParentsMade(match made {
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
            (Asked::List { stat, .. }, listed) => Ready::Answer(Answer::Listed(listed.map(|reply| {
                let (names, epoch) = children_and_epoch(reply);
                (names, stat.then_some(epoch))
            }))),
            (Asked::Sync, synced) => Ready::Answer(Answer::Synced(synced.map(drop))),
            (Asked::OwnWatch, Ok(Reply::Exists(None))) => {
                contender.own = None;
                contender.own_deleted_seen = true;
                Ready::Own(NodeEvent::Deleted)
            }
            (Asked::OwnWatch, Ok(_)) => return,
            (Asked::OwnWatch, Err(_)) => {
                contender.own = None;
                Ready::Own(NodeEvent::SessionEnded)
            }
            (Asked::AheadWatch, Err(ZkError::NoNode)) => {
                contender.ahead = None;
                Ready::Ahead(Ok(EventType::Deleted))
            }
            (Asked::AheadWatch, Ok(_)) => return,
            (Asked::AheadWatch, Err(err)) => {
                contender.ahead = None;
                Ready::Ahead(Err(err))
            }
            (Asked::Cleanup, _) => return,
        };
        self.contenders[i].ready.push(ready);
    }

    /// Contender `i`'s driver steps its `k`-th received input.
    fn step(&mut self, i: usize, k: usize) {
        let ready = self.contenders[i].ready.remove(k);
        let input = match ready {
            Ready::Own(event) => Input::OwnEvent(event),
            Ready::Ahead(fired) => Input::AheadFired(fired.map(event_type).map_err(error)),
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
        if !matches!(self.contenders[i].belief, Belief::Waiting) {
            return;
        }
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
}

fn container(path: &str) -> Request {
    Request::Create { path: path.into(), data: Vec::new(), mode: Mode::Container, sequential: false }
}

fn sequence(path: &str) -> i64 {
    path[path.len() - 10..].trim_start_matches('0').parse::<i64>().unwrap_or(0)
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
        other => Error::zk(DIR, zk_error(other)),
    }
}

impl World {
    fn holders(&self) -> Vec<(usize, &str)> {
        self.contenders
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match &c.belief {
                Belief::Holding { node } => Some((i, node.as_str())),
                _ => None,
            })
            .collect()
    }
}

impl Model for Mutexes {
    type State = World;
    type Action = Action;

    fn init(&self) -> Vec<World> {
        let mut server = Server::new();
        let sessions: Vec<SessionId> = self.roles.iter().map(|_| server.open_session()).collect();
        let contenders =
            sessions.iter().zip(&self.roles).enumerate().map(|(i, (&s, &r))| Contender::new(i, s, r)).collect();
        let faults = (self.outside_deletes, self.expiries, self.disconnects, self.reaps);
        let mut curators: Vec<(SessionId, Peer)> = (0..self.curators)
            .map(|j| (server.open_session(), Peer::Curator(CuratorMutex::new(DIR, j + 100))))
            .collect();
        if let Some(hex) = self.kazoo {
            curators.push((server.open_session(), Peer::Kazoo(KazooLock::new(DIR, hex))));
        }
        vec![World { server, contenders, faults, exclusive_tokens: Vec::new(), curators }]
    }

    fn actions(&self, world: &World, actions: &mut Vec<Action>) {
        for (i, contender) in world.contenders.iter().enumerate() {
            if !world.server.outbox(contender.session).is_empty() {
                actions.push(Action::Receive(i));
            }
            actions.extend((0..contender.ready.len()).map(|k| Action::Step(i, k)));
            if matches!(contender.belief, Belief::Holding { .. }) {
                actions.push(Action::Release(i));
            }
            if world.faults.1 > 0 && !world.expired(i) {
                actions.push(Action::Expire(i));
            }
            let replies = world.server.outbox(contender.session).iter().any(|d| matches!(d, Delivery::Reply { .. }));
            if world.faults.2 > 0 && replies {
                actions.push(Action::Disconnect(i));
            }
        }
        for (i, contender) in world.contenders.iter().enumerate() {
            if !contender.started {
                actions.push(Action::Start(i));
            }
        }
        if world.faults.3 > 0 {
            actions.extend(world.server.reapable().into_iter().map(Action::Reap));
        }
        for (j, (session, curator)) in world.curators.iter().enumerate() {
            match curator.status() {
                Status::Idle => actions.push(Action::CuratorStart(j)),
                Status::Holding { .. } => actions.push(Action::CuratorRelease(j)),
                _ => {}
            }
            if !world.server.outbox(*session).is_empty() {
                actions.push(Action::CuratorReceive(j));
            }
        }
        if world.faults.0 > 0 {
            for child in world.server.children(DIR) {
                actions.push(Action::OutsideDelete(format!("{DIR}/{child}")));
            }
        }
    }

    fn next(&self, world: &World, action: &Action) -> Option<World> {
        let mut next = world.clone();
        match action {
            Action::Receive(i) => next.receive(*i),
            Action::Step(i, k) => next.step(*i, *k),
            Action::Release(i) => {
                let Belief::Holding { node } = std::mem::replace(&mut next.contenders[*i].belief, Belief::Released)
                else {
                    return None;
                };
                next.send(*i, Asked::Cleanup, Request::Delete { path: node, version: None });
            }
            Action::OutsideDelete(path) => {
                next.faults.0 -= 1;
                next.server.outside_delete(path).ok()?;
            }
            Action::Expire(i) => {
                next.faults.1 -= 1;
                next.server.expire(next.contenders[*i].session);
                // The client hears of the expiry: its watches end with the session.
                let contender = &mut next.contenders[*i];
                if contender.own.take().is_some() {
                    contender.ready.push(Ready::Own(NodeEvent::SessionEnded));
                }
                if contender.ahead.take().is_some() {
                    contender.ready.push(Ready::Ahead(Err(ZkError::SessionExpired)));
                }
            }
            Action::Start(i) => {
                next.contenders[*i].started = true;
                let commands = next.contenders[*i].machine.start();
                next.run(*i, commands);
            }
            Action::Reap(path) => {
                next.faults.3 -= 1;
                next.server.reap(path);
            }
            Action::CuratorStart(j) | Action::CuratorReceive(j) | Action::CuratorRelease(j) => {
                let (session, peer) = &mut next.curators[*j];
                let curator = peer.contender();
                let requests = match action {
                    Action::CuratorStart(_) => curator.start(),
                    Action::CuratorRelease(_) => curator.release(),
                    _ => match next.server.deliver(*session).expect("a delivery") {
                        Delivery::Reply { request, result } => curator.on_reply(request, result),
                        Delivery::Event(event) => curator.on_event(&event),
                    },
                };
                for (id, request) in requests {
                    let _ = next.server.apply(*session, id, request);
                }
            }
            Action::Disconnect(i) => {
                next.faults.2 -= 1;
                let lost = next.server.disconnect(next.contenders[*i].session);
                next.contenders[*i].reconnected = true;
                for request in lost {
                    next.answered(*i, request, Err(ZkError::ConnectionLoss));
                }
            }
        }
        Some(next)
    }

    fn check(&self, world: &World) -> Result<(), Violation> {
        // Holders whose node exists (and so whose session lives): one exclusive holder, or
        // only readers.
        let live: Vec<_> = world.holders().into_iter().filter(|(_, node)| world.server.stat(node).is_some()).collect();
        let exclusive = live.iter().filter(|(i, _)| world.contenders[*i].role != Role::Read).count();
        let curators: Vec<String> = world
            .curators
            .iter()
            .filter_map(|(_, c)| match c.status() {
                Status::Holding { node } if world.server.stat(&node).is_some() => Some(node),
                _ => None,
            })
            .collect();
        if (exclusive > 0 || !curators.is_empty()) && live.len() + curators.len() > 1 {
            return Err(Violation::new("mutual exclusion", format!("{live:?} {curators:?}")));
        }
        // Every exclusive holder's token is larger than every earlier one's, also across a
        // reaped and recreated directory.
        if let Some(pair) = world.exclusive_tokens.windows(2).find(|pair| pair[0] >= pair[1]) {
            return Err(Violation::new("tokens increase", format!("{} then {}", pair[0], pair[1])));
        }
        // No holder was handed its guard after its client had received its node's deletion.
        if let Some(phantom) = world.contenders.iter().position(|c| c.phantom) {
            return Err(Violation::new("no guard for a deleted node", format!("contender {phantom}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::explore;
    use super::*;

    #[test]
    fn two_contenders_with_an_outside_delete_never_both_hold() {
        let model = Mutexes {
            roles: vec![Role::Lock; 2],
            outside_deletes: 1,
            expiries: 0,
            disconnects: 0,
            reaps: 0,
            curators: 0,
            kazoo: None,
        };
        let report = explore(&model, bounds());
        assert!(report.counterexample.is_none(), "{:?}", report.counterexample);
        eprintln!("states {} depth {} complete {}", report.states, report.depth, report.complete);
    }
}

#[cfg(test)]
mod rwlock {
    use super::explore;
    use super::*;

    #[test]
    fn readers_and_a_writer_with_an_outside_delete_never_overlap() {
        let model = Mutexes {
            roles: vec![Role::Read, Role::Write, Role::Read],
            outside_deletes: 1,
            expiries: 0,
            disconnects: 0,
            reaps: 0,
            curators: 0,
            kazoo: None,
        };
        let report = explore(&model, bounds());
        eprintln!(
            "rwlock: states {} depth {} complete {} in {:?}",
            report.states, report.depth, report.complete, report.elapsed
        );
        assert!(report.counterexample.is_none(), "{:?}", report.counterexample);
    }
}

#[cfg(test)]
mod reaped {
    use super::explore;
    use super::*;

    #[test]
    fn tokens_increase_across_a_reaped_and_recreated_directory() {
        let model = Mutexes {
            roles: vec![Role::Lock; 2],
            outside_deletes: 0,
            expiries: 0,
            disconnects: 0,
            reaps: 1,
            curators: 0,
            kazoo: None,
        };
        let report = explore(&model, bounds());
        eprintln!(
            "reaped: states {} depth {} complete {} in {:?}",
            report.states, report.depth, report.complete, report.elapsed
        );
        assert!(report.counterexample.is_none(), "{:?}", report.counterexample);
        assert!(report.complete);
    }
}

/// The bounds of a run: `make test` explores up to 300,000 states per run; `make model` sets
/// `ZK_MODEL_STATES` higher.
#[cfg(test)]
fn bounds() -> super::explore::Bounds {
    let states = std::env::var("ZK_MODEL_STATES").ok().and_then(|s| s.parse().ok()).unwrap_or(300_000);
    super::explore::Bounds { depth: 200, states }
}

/// The bounds of the negative controls: small enough for breadth first, whose shortest
/// counterexamples the controls read.
#[cfg(test)]
const SMALL: super::explore::Bounds = super::explore::Bounds { depth: 200, states: 300_000 };

/// Explores `model`: breadth first (shortest counterexamples), or depth first beyond a
/// million states, where a level's states no longer fit in memory.
#[cfg(test)]
fn explore<M: Model>(model: &M, bounds: super::explore::Bounds) -> super::explore::Report<M> {
    if bounds.states > 1_000_000 {
        super::explore::explore_depth_first(model, bounds)
    } else {
        super::explore::explore(model, bounds)
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

#[cfg(test)]
mod curator {
    use super::explore;
    use super::*;

    /// The pairing the docs call safe: our mutex and Curator's on one path.
    #[test]
    fn the_engine_and_curator_on_one_mutex_never_both_hold() {
        let model = Mutexes {
            roles: vec![Role::Lock],
            outside_deletes: 0,
            expiries: 0,
            disconnects: 0,
            reaps: 0,
            curators: 1,
            kazoo: None,
        };
        let report = explore(&model, bounds());
        eprintln!(
            "curator: states {} depth {} complete {} in {:?}",
            report.states, report.depth, report.complete, report.elapsed
        );
        assert!(report.counterexample.is_none(), "{:?}", report.counterexample);
        assert!(report.complete);
    }
}

#[cfg(test)]
mod kazoo {
    use super::explore;
    use super::*;

    /// The pairing the docs call unsafe: a default kazoo Lock ignores Curator-named nodes.
    #[test]
    fn a_default_kazoo_lock_beside_the_engine_is_found_to_hold_with_it() {
        let model = Mutexes {
            roles: vec![Role::Lock],
            outside_deletes: 0,
            expiries: 0,
            disconnects: 0,
            reaps: 0,
            curators: 0,
            kazoo: Some("93166b0c5e6f4b1f8f2d0a4c3b2a1908"),
        };
        let report = explore(&model, bounds());
        let found = report.counterexample.expect("the unsafe pairing");
        assert_eq!(found.violation.property, "mutual exclusion", "{found:?}");
    }
}

#[cfg(test)]
mod negative_controls {
    use super::*;
    use crate::queue::attempt::mutation::{self, Mutation};

    #[test]
    fn without_a_second_look_at_our_node_the_checker_finds_the_phantom_holder() {
        let model = Mutexes {
            roles: vec![Role::Lock; 2],
            outside_deletes: 1,
            expiries: 0,
            disconnects: 0,
            reaps: 0,
            curators: 0,
            kazoo: None,
        };
        let report = mutation::with(Mutation::NoSecondLookAtOwnNode, || super::super::explore::explore(&model, SMALL));
        let found = report.counterexample.expect("a counterexample");
        assert_eq!(found.violation.property, "no guard for a deleted node", "{found:?}");
        // The trace shows the deletion of the waiter's node, after the head's release.
        let actions: Vec<&Action> = found.steps.iter().map(|(a, _)| a).collect();
        let released = actions.iter().position(|a| matches!(a, Action::Release(_))).expect("a release");
        let deleted = actions.iter().position(|a| matches!(a, Action::OutsideDelete(_))).expect("a delete");
        assert!(released < deleted, "{found:?}");
    }
}

#[cfg(test)]
mod tokens_negative_control {
    use super::*;
    use crate::queue::attempt::mutation::{self, Mutation};

    #[test]
    fn tokens_without_the_directory_epoch_repeat_after_a_reap() {
        let model = Mutexes {
            roles: vec![Role::Lock; 2],
            outside_deletes: 0,
            expiries: 0,
            disconnects: 0,
            reaps: 1,
            curators: 0,
            kazoo: None,
        };
        let report = mutation::with(Mutation::TokenWithoutEpoch, || super::super::explore::explore(&model, SMALL));
        let found = report.counterexample.expect("a counterexample");
        assert_eq!(found.violation.property, "tokens increase", "{found:?}");
        assert!(found.steps.iter().any(|(a, _)| matches!(a, Action::Reap(_))), "{found:?}");
    }
}

#[cfg(test)]
mod bigger {
    use super::explore;
    use super::*;

    #[test]
    fn three_contenders_with_a_delete_an_expiry_and_a_lost_connection() {
        let model = Mutexes {
            roles: vec![Role::Lock; 3],
            outside_deletes: 1,
            expiries: 1,
            disconnects: 1,
            reaps: 0,
            curators: 0,
            kazoo: None,
        };
        let report = explore(&model, bounds());
        eprintln!(
            "states {} depth {} complete {} in {:?}",
            report.states, report.depth, report.complete, report.elapsed
        );
        assert!(report.counterexample.is_none(), "{:?}", report.counterexample);
    }
}

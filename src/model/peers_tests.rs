//! The peers against the server model: scripted runs, and a small exhaustive exploration of
//! which session hears from the server next (the seed of the checker).

use super::explore::{Bounds, Model, Report, Violation};
use super::peers::{CuratorMutex, KazooLock, curator_sort_key, kazoo_sequence};
use super::*;

/// A kazoo UUID beginning like the one in protocols.md §4.1 test A (`93166b…`, the rest made
/// up): above `0`, as nearly every random one.
const OBSERVED_HEX: &str = "93166b0c5e6f4b1f8f2d0a4c3b2a1908";
/// A UUID beginning with ten zeros (one in 16^10): it sorts before Curator's `0000000001`.
const LOW_HEX: &str = "00000000000000000000000000000000";

/// A Curator or a kazoo contender, so one world can mix them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Peer {
    Curator(CuratorMutex),
    Kazoo(KazooLock),
}

impl Contender for Peer {
    fn start(&mut self) -> Vec<(RequestId, Request)> {
        match self {
            Peer::Curator(c) => c.start(),
            Peer::Kazoo(k) => k.start(),
        }
    }

    fn on_reply(&mut self, id: RequestId, reply: Result<Reply, ZkError>) -> Vec<(RequestId, Request)> {
        match self {
            Peer::Curator(c) => c.on_reply(id, reply),
            Peer::Kazoo(k) => k.on_reply(id, reply),
        }
    }

    fn on_event(&mut self, event: &WatchedEvent) -> Vec<(RequestId, Request)> {
        match self {
            Peer::Curator(c) => c.on_event(event),
            Peer::Kazoo(k) => k.on_event(event),
        }
    }

    fn release(&mut self) -> Vec<(RequestId, Request)> {
        match self {
            Peer::Curator(c) => c.release(),
            Peer::Kazoo(k) => k.release(),
        }
    }

    fn status(&self) -> Status {
        match self {
            Peer::Curator(c) => c.status(),
            Peer::Kazoo(k) => k.status(),
        }
    }
}

/// The server and one contender per session. Requests are applied as they are sent: one
/// session's requests arrive in order, and the interleaving comes from who hears back first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct World<C> {
    server: Server,
    sessions: Vec<SessionId>,
    contenders: Vec<C>,
    /// Connection drops the exploration may still take.
    disconnects: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Start(usize),
    /// The contender receives its session's oldest delivery.
    Deliver(usize),
    Release(usize),
    /// Its connection drops: it fails every pending request with ConnectionLoss.
    Disconnect(usize),
}

impl<C: Contender> World<C> {
    fn new(contenders: Vec<C>) -> Self {
        let mut server = Server::new();
        let sessions = contenders.iter().map(|_| server.open_session()).collect();
        Self { server, sessions, contenders, disconnects: 0 }
    }

    fn with_disconnects(mut self, disconnects: u32) -> Self {
        self.disconnects = disconnects;
        self
    }

    fn moves(&self) -> Vec<Move> {
        let mut moves = Vec::new();
        for (i, contender) in self.contenders.iter().enumerate() {
            let outbox = self.server.outbox(self.sessions[i]);
            match contender.status() {
                Status::Idle => moves.push(Move::Start(i)),
                Status::Holding { .. } => moves.push(Move::Release(i)),
                _ => {}
            }
            if !outbox.is_empty() {
                moves.push(Move::Deliver(i));
            }
            if self.disconnects > 0 && outbox.iter().any(|d| matches!(d, Delivery::Reply { .. })) {
                moves.push(Move::Disconnect(i));
            }
        }
        moves
    }

    fn step(&mut self, step: Move) {
        match step {
            Move::Start(i) => {
                let requests = self.contenders[i].start();
                self.send(i, requests);
            }
            Move::Deliver(i) => {
                let requests = match self.server.deliver(self.sessions[i]).expect("a delivery") {
                    Delivery::Reply { request, result } => self.contenders[i].on_reply(request, result),
                    Delivery::Event(event) => self.contenders[i].on_event(&event),
                };
                self.send(i, requests);
            }
            Move::Release(i) => {
                let requests = self.contenders[i].release();
                self.send(i, requests);
            }
            Move::Disconnect(i) => {
                self.disconnects -= 1;
                for request in self.server.disconnect(self.sessions[i]) {
                    let requests = self.contenders[i].on_reply(request, Err(ZkError::ConnectionLoss));
                    self.send(i, requests);
                }
            }
        }
    }

    fn send(&mut self, i: usize, requests: Vec<(RequestId, Request)>) {
        for (id, request) in requests {
            // The reply is queued for the contender; the copy returned is not needed.
            let _ = self.server.apply(self.sessions[i], id, request);
        }
    }

    /// Delivers everything pending, lowest session first, until the server is quiet.
    fn settle(&mut self) {
        while let Some(i) = (0..self.sessions.len()).find(|&i| !self.server.outbox(self.sessions[i]).is_empty()) {
            self.step(Move::Deliver(i));
        }
    }

    fn status(&self, i: usize) -> Status {
        self.contenders[i].status()
    }

    fn holders(&self) -> usize {
        self.contenders.iter().filter(|c| matches!(c.status(), Status::Holding { .. })).count()
    }
}

/// A world to explore with the checker's own explorer: every order of moves, each world once.
struct Every<C>(World<C>);

impl<C: Contender> Model for Every<C> {
    type State = World<C>;
    type Action = Move;

    fn init(&self) -> Vec<World<C>> {
        vec![self.0.clone()]
    }

    fn actions(&self, world: &World<C>, actions: &mut Vec<Move>) {
        actions.extend(world.moves());
    }

    fn next(&self, world: &World<C>, &step: &Move) -> Option<World<C>> {
        let mut after = world.clone();
        after.step(step);
        Some(after)
    }

    fn check(&self, world: &World<C>) -> Result<(), Violation> {
        match world.holders() {
            0 | 1 => Ok(()),
            _ => Err(Violation::new("mutual exclusion", "two holders")),
        }
    }

    fn check_at_rest(&self, world: &World<C>) -> Result<(), Violation> {
        match world.contenders.iter().position(|c| c.status() == Status::Waiting) {
            Some(waiter) => Err(Violation::new("progress", format!("contender {waiter} waits"))),
            None => Ok(()),
        }
    }
}

/// Explores every order of moves up to `depth`: the first property broken, if any.
fn explore<C: Contender>(world: World<C>, depth: usize) -> Report<Every<C>> {
    super::explore::explore(&Every(world), Bounds { depth, states: 1_000_000 })
}

/// The property a report's counterexample broke.
fn broken<C: Contender>(report: &Report<Every<C>>) -> Option<&'static str> {
    report.counterexample.as_ref().map(|found| found.violation.property)
}

fn curator(contender: u32) -> Peer {
    Peer::Curator(CuratorMutex::new("/app/lock", contender))
}

fn kazoo(hex: &str) -> Peer {
    Peer::Kazoo(KazooLock::new("/app/lock", hex))
}

fn holding(node: &str) -> Status {
    Status::Holding { node: node.to_owned() }
}

#[test]
fn curator_sorts_by_what_follows_lock_and_kazoo_counts_only_its_patterns() {
    assert_eq!(curator_sort_key("_c_0e87bab8-f0e1-45d0-8f95-769f4ce2d171-lock-0000000007"), "0000000007");
    assert_eq!(curator_sort_key("other-lock-x-lock-0000000002"), "0000000002");
    assert_eq!(curator_sort_key("plain"), "plain");
    assert_eq!(
        curator_sort_key(&format!("{OBSERVED_HEX}__lock__0000000000")),
        format!("{OBSERVED_HEX}__lock__0000000000")
    );
    let default = ["__lock__".to_owned()];
    let extra = ["__lock__".to_owned(), "-lock-".to_owned()];
    let curator = "_c_0e87bab8-f0e1-45d0-8f95-769f4ce2d171-lock-0000000031";
    assert_eq!(kazoo_sequence(curator, &default), None);
    assert_eq!(kazoo_sequence(curator, &extra), Some("0000000031"));
    assert_eq!(kazoo_sequence(&format!("{OBSERVED_HEX}__lock__-2147483648"), &default), Some("-2147483648"));
    // `-?\d{10}` takes a wrapped `-2147483648` but not `-000000001` (§3.1).
    assert_eq!(kazoo_sequence(&format!("{OBSERVED_HEX}__lock__-000000001"), &default), None);
    assert_eq!(kazoo_sequence(&format!("{OBSERVED_HEX}__rlock__0000000001"), &default), None);
}

#[test]
fn curator_waits_for_the_holder_then_takes_over() {
    let mut world = World::new(vec![curator(0), curator(1)]);
    world.step(Move::Start(0));
    world.settle();
    // The lock path did not exist: the create failed with NoNode, `mkdirs` made containers.
    let first = "/app/lock/_c_00000000-0000-4000-8000-000000000000-lock-0000000000";
    assert_eq!(world.status(0), holding(first));
    world.step(Move::Start(1));
    world.settle();
    assert_eq!(world.status(1), Status::Waiting);
    world.step(Move::Release(0));
    world.settle();
    assert_eq!(world.status(0), Status::Released);
    assert_eq!(world.status(1), holding("/app/lock/_c_00000001-0000-4000-8000-000000000000-lock-0000000001"));
    world.step(Move::Release(1));
    world.settle();
    assert_eq!(world.server.children("/app/lock"), Vec::<String>::new());
    // Containers: the emptied lock path may be reaped (its parent once that is done).
    assert_eq!(world.server.reapable(), ["/app/lock"]);
}

#[test]
fn curator_finds_its_node_after_losing_the_create_reply() {
    let mut world = World::new(vec![curator(0), curator(1)]).with_disconnects(1);
    world.step(Move::Start(0));
    world.settle();
    world.step(Move::Release(0));
    world.settle();
    // On the existing path the create takes effect at once; its reply is lost.
    world.step(Move::Start(1));
    world.step(Move::Disconnect(1));
    world.settle();
    let node = "/app/lock/_c_00000001-0000-4000-8000-000000000000-lock-0000000001";
    assert_eq!(world.status(1), holding(node));
    assert_eq!(world.server.children("/app/lock").len(), 1, "no second node");
}

#[test]
fn curator_mutex_excludes_in_every_interleaving() {
    let report = explore(World::new(vec![curator(0), curator(1)]).with_disconnects(1), 200);
    eprintln!("two Curator mutexes, one disconnect: {} states, depth {}", report.states, report.depth);
    assert_eq!(broken(&report), None, "{:?}", report.counterexample);
    assert!(report.complete && report.depth < 200);
}

#[test]
fn kazoo_locks_exclude_in_every_interleaving() {
    let other = "0123456789abcdef0123456789abcdef";
    let report = explore(World::new(vec![kazoo(OBSERVED_HEX), kazoo(other)]).with_disconnects(1), 200);
    eprintln!("two kazoo locks, one disconnect: {} states, depth {}", report.states, report.depth);
    assert_eq!(broken(&report), None, "{:?}", report.counterexample);
    assert!(report.complete && report.depth < 200);
}

#[test]
fn kazoo_creates_persistent_parents_and_finds_its_node_after_a_lost_reply() {
    let mut world = World::new(vec![kazoo(OBSERVED_HEX)]).with_disconnects(1);
    world.step(Move::Start(0));
    // ensure_path: exists /app/lock, exists /app, exists /, then creates /app and /app/lock.
    for _ in 0..5 {
        world.step(Move::Deliver(0));
    }
    world.step(Move::Disconnect(0));
    world.settle();
    assert_eq!(world.status(0), holding(&format!("/app/lock/{OBSERVED_HEX}__lock__0000000000")));
    assert_eq!(world.server.children("/app/lock").len(), 1, "no second node");
    world.step(Move::Release(0));
    world.settle();
    assert_eq!(world.server.reapable(), Vec::<Path>::new(), "persistent, never reaped");
}

#[test]
fn default_kazoo_ignores_a_curator_holder() {
    // §4.1 test B: kazoo's regex does not match `_c_…-lock-…`, so kazoo is first.
    let mut world = World::new(vec![curator(0), kazoo(OBSERVED_HEX)]);
    world.step(Move::Start(0));
    world.settle();
    world.step(Move::Start(1));
    world.settle();
    assert_eq!(world.status(1), holding(&format!("/app/lock/{OBSERVED_HEX}__lock__0000000001")));
    assert_eq!(world.holders(), 2);
    assert_eq!(broken(&explore(World::new(vec![curator(0), kazoo(OBSERVED_HEX)]), 100)), Some("mutual exclusion"));
}

#[test]
fn curator_missorts_a_kazoo_holder_by_its_hex() {
    // §4.1 test A: Curator's `0000000001` sorts before kazoo's whole name `93166b…`.
    let mut world = World::new(vec![kazoo(OBSERVED_HEX), curator(1)]);
    world.step(Move::Start(0));
    world.settle();
    world.step(Move::Start(1));
    world.settle();
    assert_eq!(world.status(1), holding("/app/lock/_c_00000001-0000-4000-8000-000000000000-lock-0000000001"));
    assert_eq!(world.holders(), 2);
    // Curator waits only if the UUID's first ten characters sort below its own sequence.
    let mut world = World::new(vec![kazoo(LOW_HEX), curator(1)]);
    world.step(Move::Start(0));
    world.settle();
    world.step(Move::Start(1));
    world.settle();
    assert_eq!(world.status(1), Status::Waiting);
}

#[test]
fn kazoo_with_curator_patterns_waits_for_a_curator_holder() {
    // §4.1 test C: with `-lock-` the Curator node counts, sequence 0 before kazoo's 1.
    let patient = KazooLock::new("/app/lock", OBSERVED_HEX).with_extra_lock_patterns(&["-lock-"]);
    let mut world = World::new(vec![curator(0), Peer::Kazoo(patient)]);
    world.step(Move::Start(0));
    world.settle();
    world.step(Move::Start(1));
    world.settle();
    assert_eq!(world.status(1), Status::Waiting);
    world.step(Move::Release(0));
    world.settle();
    assert_eq!(world.status(1), holding(&format!("/app/lock/{OBSERVED_HEX}__lock__0000000001")));
    // Still unsafe the other way round: Curator, arriving second, mis-sorts the kazoo node.
    let patient = KazooLock::new("/app/lock", OBSERVED_HEX).with_extra_lock_patterns(&["-lock-"]);
    let report = explore(World::new(vec![curator(0), Peer::Kazoo(patient)]), 100);
    assert_eq!(broken(&report), Some("mutual exclusion"));
}

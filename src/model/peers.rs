//! The other libraries' locks as [`Contender`]s, so the checker can put them beside the engine
//! on one path: Curator 5.4's `InterProcessMutex` and kazoo 2.8's `Lock`, as
//! `shared/research/protocols.md` §2.1–2.3 and §3.1 describe them (checked against
//! `CreateBuilderImpl`, `ZKPaths.mkdirs`, `LockInternals`, `StandardLockInternalsDriver` at
//! `apache-curator-5.4.0`, and `kazoo/recipe/lock.py`, `KazooClient.ensure_path` at `2.8.0`).
//!
//! Both clients call ZooKeeper synchronously, so each has at most one request in flight.
//! A contender is bound to one session: a new session after expiry is not modelled, so
//! `SessionExpired` ends the attempt as [`Status::Failed`] (Curator would retry in a new
//! session; kazoo gives up). Both libraries' retry policies are taken to allow every retry:
//! the checker bounds the faults instead. Connection-state events (Curator and kazoo wake
//! their waiter on each) are not modelled; they only cause an extra re-read.

use super::{Contender, Mode, Path, Reply, Request, RequestId, Status, WatchedEvent, ZkError};

/// The one request a synchronous client has in flight, and its next id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Calls {
    last: u32,
    pending: Option<RequestId>,
}

impl Calls {
    fn send(&mut self, request: Request) -> Vec<(RequestId, Request)> {
        assert!(self.pending.is_none(), "a synchronous client sends one request at a time");
        self.last += 1;
        let id = RequestId(self.last);
        self.pending = Some(id);
        vec![(id, request)]
    }

    fn answered(&mut self, id: RequestId) {
        assert_eq!(self.pending.take(), Some(id), "a reply to a request not in flight");
    }
}

/// Where a contender stands in the sorted child list it just read.
enum Turn {
    /// Its own node is not listed.
    Lost,
    First,
    Behind(String),
}

fn child(dir: &str, name: &str) -> Path {
    format!("{dir}/{name}")
}

fn last_segment(path: &str) -> String {
    path[path.rfind('/').expect("an absolute path") + 1..].to_owned()
}

fn list(dir: &str) -> Request {
    Request::GetChildren { path: dir.to_owned(), watch: false }
}

fn delete(path: Path) -> Request {
    Request::Delete { path, version: None }
}

// Curator.

/// `LockInternals`' `LOCK_NAME` for `InterProcessMutex`.
const CURATOR_LOCK_NAME: &str = "lock-";

/// Curator's sort key (`standardFixForSorting`): what follows the last `lock-`, else the whole
/// name. A kazoo `<hex>__lock__<seq>` has no `lock-`, so its hex prefix is compared with
/// Curator's sequence digits.
pub(crate) fn curator_sort_key(name: &str) -> &str {
    name.rfind(CURATOR_LOCK_NAME).map_or(name, |at| &name[at + CURATOR_LOCK_NAME.len()..])
}

/// Curator's `InterProcessMutex`: one `acquire()` (no timeout), then `release()` (§2.3).
///
/// Protected mode's other half, `FindAndDeleteProtectedNodeInBackground` once the create's
/// retries run out, and its session check (CURATOR-498) cannot arise here: retries never run
/// out, and there is one session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CuratorMutex {
    dir: Path,
    /// This contender's number, standing in for the random part of its protected UUID.
    contender: u32,
    /// How often `attemptLock` started over; each start is a new create builder, so a new UUID.
    attempt: u32,
    /// `pathInForeground`'s `firstTime`: a retried create first looks for the node it may have
    /// created (protected mode, §2.1).
    first_try: bool,
    /// The lock node's name, once created or found.
    node: Option<String>,
    step: CuratorStep,
    calls: Calls,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CuratorStep {
    Idle,
    /// The protected create, NoNode leading to `mkdirs`.
    Creating,
    /// Protected mode: listing the parent for a child with our prefix.
    Finding,
    /// `mkdirs`: exists, then create as container, for each ancestor of the node (by index).
    MkdirsExists(usize),
    MkdirsCreate(usize),
    /// The one create after `mkdirs`: NoNode now escapes to `attemptLock`.
    CreatingAfterMkdirs,
    Listing,
    /// `getData` with a watch on the predecessor. `woken`: its event came first; the watcher's
    /// `notifyAll` waits for the monitor the lock loop holds, so it wakes the coming `wait()`.
    Watching {
        predecessor: Path,
        woken: bool,
    },
    /// In `wait()`, for the predecessor's event.
    Waiting,
    /// Our node is not listed: `deleteOurPath` (guaranteed), then `attemptLock` starts over.
    DeletingLost,
    Holding,
    /// `release()`'s guaranteed delete.
    Releasing,
    Released,
    Failed,
}

impl CuratorMutex {
    /// A mutex on `dir`; `contender` makes its protected prefix unique.
    pub(crate) fn new(dir: &str, contender: u32) -> Self {
        Self {
            dir: dir.to_owned(),
            contender,
            attempt: 0,
            first_try: true,
            node: None,
            step: CuratorStep::Idle,
            calls: Calls::default(),
        }
    }

    /// `_c_<uuid>-`: a canonical UUID, as `isProtectedZNode` wants one.
    pub(crate) fn protected_prefix(&self) -> String {
        format!("_c_{:08x}-0000-4000-8000-{:012x}-", self.contender, self.attempt)
    }

    fn node_path(&self) -> Path {
        child(&self.dir, self.node.as_deref().expect("our node is known"))
    }

    /// The ancestors `mkdirs` walks, top down, `/` excluded: `/a/b` for `/a`, `/a/b`.
    fn ancestors(&self) -> Vec<Path> {
        let mut ends: Vec<usize> = self.dir.match_indices('/').map(|(at, _)| at).filter(|&at| at > 0).collect();
        ends.push(self.dir.len());
        ends.into_iter().map(|end| self.dir[..end].to_owned()).collect()
    }

    fn create(&mut self) -> Vec<(RequestId, Request)> {
        self.step = CuratorStep::Creating;
        self.send_create()
    }

    fn send_create(&mut self) -> Vec<(RequestId, Request)> {
        let path = child(&self.dir, &format!("{}{CURATOR_LOCK_NAME}", self.protected_prefix()));
        // The client's default data: the local host address (§2.2).
        let data = b"127.0.0.1".to_vec();
        self.calls.send(Request::Create { path, data, mode: Mode::Ephemeral, sequential: true })
    }

    /// `RetryLoop` runs the create's callable again after a ConnectionLoss.
    fn retry_create(&mut self) -> Vec<(RequestId, Request)> {
        self.first_try = false;
        self.step = CuratorStep::Finding;
        self.calls.send(list(&self.dir))
    }

    fn mkdirs(&mut self, index: usize) -> Vec<(RequestId, Request)> {
        match self.ancestors().get(index) {
            Some(path) => {
                self.step = CuratorStep::MkdirsExists(index);
                self.calls.send(Request::Exists { path: path.clone(), watch: false })
            }
            None => {
                self.step = CuratorStep::CreatingAfterMkdirs;
                self.send_create()
            }
        }
    }

    /// `attemptLock` caught NoNode: a new node under a new UUID.
    fn start_over(&mut self) -> Vec<(RequestId, Request)> {
        self.attempt += 1;
        self.first_try = true;
        self.node = None;
        self.create()
    }

    fn list(&mut self) -> Vec<(RequestId, Request)> {
        self.step = CuratorStep::Listing;
        self.calls.send(list(&self.dir))
    }

    fn delete_lost(&mut self) -> Vec<(RequestId, Request)> {
        self.step = CuratorStep::DeletingLost;
        let path = self.node_path();
        self.calls.send(delete(path))
    }

    fn watch(&mut self, predecessor: Path, woken: bool) -> Vec<(RequestId, Request)> {
        let request = Request::GetData { path: predecessor.clone(), watch: true };
        self.step = CuratorStep::Watching { predecessor, woken };
        self.calls.send(request)
    }

    /// `getsTheLock` over every child, sorted by [`curator_sort_key`] (a stable sort).
    fn turn(&self, mut names: Vec<String>) -> Turn {
        names.sort_by(|a, b| curator_sort_key(a).cmp(curator_sort_key(b)));
        let ours = self.node.as_deref().expect("our node is known");
        match names.iter().position(|name| name == ours) {
            None => Turn::Lost,
            Some(0) => Turn::First,
            Some(index) => Turn::Behind(names.swap_remove(index - 1)),
        }
    }

    fn fail(&mut self) -> Vec<(RequestId, Request)> {
        self.step = CuratorStep::Failed;
        Vec::new()
    }
}

impl Contender for CuratorMutex {
    fn start(&mut self) -> Vec<(RequestId, Request)> {
        assert_eq!(self.step, CuratorStep::Idle, "start once");
        self.create()
    }

    fn on_reply(&mut self, id: RequestId, reply: Result<Reply, ZkError>) -> Vec<(RequestId, Request)> {
        use CuratorStep::*;
        self.calls.answered(id);
        match (self.step.clone(), reply) {
            // Guaranteed: retried until the server answers; NoNode is ignored.
            (Releasing, Err(ZkError::ConnectionLoss)) => {
                let path = self.node_path();
                self.calls.send(delete(path))
            }
            (Releasing, _) => {
                self.step = Released;
                Vec::new()
            }
            (_, Err(ZkError::SessionExpired)) => self.fail(),

            (
                Creating | Finding | MkdirsExists(_) | MkdirsCreate(_) | CreatingAfterMkdirs,
                Err(ZkError::ConnectionLoss),
            ) => self.retry_create(),
            (Creating | CreatingAfterMkdirs, Ok(Reply::Created { path, .. })) => {
                self.node = Some(last_segment(&path));
                self.list()
            }
            (Creating, Err(ZkError::NoNode)) => self.mkdirs(0),
            (MkdirsCreate(_) | CreatingAfterMkdirs, Err(ZkError::NoNode)) => self.start_over(),
            (Finding, Ok(Reply::Children { names, .. })) => {
                let prefix = self.protected_prefix();
                match names.into_iter().find(|name| name.starts_with(&prefix)) {
                    Some(found) => {
                        self.node = Some(found);
                        self.list()
                    }
                    None => self.create(),
                }
            }
            (Finding, Err(ZkError::NoNode)) => self.create(),
            (MkdirsExists(index), Ok(Reply::Exists(Some(_)))) => self.mkdirs(index + 1),
            (MkdirsExists(index), Ok(Reply::Exists(None))) => {
                self.step = MkdirsCreate(index);
                let path = self.ancestors().swap_remove(index);
                self.calls.send(Request::Create { path, data: Vec::new(), mode: Mode::Container, sequential: false })
            }
            (MkdirsCreate(index), Ok(Reply::Created { .. }) | Err(ZkError::NodeExists)) => self.mkdirs(index + 1),

            (Listing, Ok(Reply::Children { names, .. })) => match self.turn(names) {
                Turn::Lost => self.delete_lost(),
                Turn::First => {
                    self.step = Holding;
                    Vec::new()
                }
                Turn::Behind(predecessor) => {
                    let path = child(&self.dir, &predecessor);
                    self.watch(path, false)
                }
            },
            // The parent is gone, so is our node.
            (Listing, Err(ZkError::NoNode)) => self.delete_lost(),
            (Listing, Err(ZkError::ConnectionLoss)) => self.list(),
            (Watching { woken: false, .. }, Ok(Reply::Data { .. })) => {
                self.step = Waiting;
                Vec::new()
            }
            (Watching { .. }, Ok(Reply::Data { .. }) | Err(ZkError::NoNode)) => self.list(),
            (Watching { predecessor, woken }, Err(ZkError::ConnectionLoss)) => self.watch(predecessor, woken),
            (DeletingLost, Err(ZkError::ConnectionLoss)) => self.delete_lost(),
            (DeletingLost, Ok(Reply::Deleted) | Err(ZkError::NoNode)) => self.start_over(),

            // Anything else is thrown out of `acquire()`.
            (_, Err(_)) => self.fail(),
            (step, Ok(reply)) => unreachable!("{step:?} got {reply:?}"),
        }
    }

    fn on_event(&mut self, _event: &WatchedEvent) -> Vec<(RequestId, Request)> {
        match &mut self.step {
            CuratorStep::Waiting => self.list(),
            CuratorStep::Watching { woken, .. } => {
                *woken = true;
                Vec::new()
            }
            // `notifyAll` with nobody in `wait()`: lost, and harmless, as the loop reads anew.
            _ => Vec::new(),
        }
    }

    fn release(&mut self) -> Vec<(RequestId, Request)> {
        assert_eq!(self.step, CuratorStep::Holding, "only the holder releases");
        self.step = CuratorStep::Releasing;
        let path = self.node_path();
        self.calls.send(delete(path))
    }

    fn status(&self) -> Status {
        match self.step {
            CuratorStep::Idle => Status::Idle,
            CuratorStep::Holding => Status::Holding { node: self.node_path() },
            CuratorStep::Releasing | CuratorStep::Released => Status::Released,
            CuratorStep::Failed => Status::Failed,
            _ => Status::Waiting,
        }
    }
}

// kazoo.

/// `Lock._NODE_NAME`, and its only `_EXCLUDE_NAMES` entry.
const KAZOO_NODE_NAME: &str = "__lock__";

/// kazoo's contender regex `(?:<patterns>)(-?\d{10})$`, searched: the captured sequence of the
/// leftmost match, or `None` for a child kazoo does not count.
pub(crate) fn kazoo_sequence<'a>(name: &'a str, patterns: &[String]) -> Option<&'a str> {
    let sequence = |rest: &str| {
        let digits = rest.strip_prefix('-').unwrap_or(rest);
        digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit())
    };
    (0..name.len()).filter(|&at| name.is_char_boundary(at)).find_map(|at| {
        patterns.iter().find_map(|pattern| {
            let rest = name[at..].strip_prefix(pattern.as_str())?;
            sequence(rest).then_some(rest)
        })
    })
}

/// kazoo's `Lock`: one `acquire()` (blocking, no timeout), then `release()` (§3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct KazooLock {
    dir: Path,
    /// `uuid4().hex + _NODE_NAME`, fixed for the Lock's life, reused across retries.
    prefix: String,
    /// `_EXCLUDE_NAMES` plus `extra_lock_patterns`.
    patterns: Vec<String>,
    assured_path: bool,
    create_tried: bool,
    /// `wake_event`: set by the predecessor's watch, cleared at the top of each loop turn.
    woken: bool,
    node: Option<String>,
    step: KazooStep,
    calls: Calls,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KazooStep {
    Idle,
    /// `ensure_path`: `exists` up from the lock path (index into [`KazooLock::chain`]) until a
    /// node exists, then a persistent create of each missing one down again.
    EnsureExists(usize),
    EnsureCreate(usize),
    /// `_find_node` after a retry.
    Finding,
    Creating,
    /// `_get_predecessor`.
    Listing,
    /// `get` with a watch on the predecessor.
    Watching(Path),
    /// In `wake_event.wait()`.
    Waiting,
    Holding,
    /// `release()`'s delete, under `client.retry`.
    Releasing,
    Released,
    Failed,
}

impl KazooLock {
    /// A default `Lock` on `dir` whose `uuid4().hex` is `uuid_hex` (32 lowercase hex digits).
    pub(crate) fn new(dir: &str, uuid_hex: &str) -> Self {
        assert!(uuid_hex.len() == 32 && uuid_hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        Self {
            dir: dir.to_owned(),
            prefix: format!("{uuid_hex}{KAZOO_NODE_NAME}"),
            patterns: vec![KAZOO_NODE_NAME.to_owned()],
            assured_path: false,
            create_tried: false,
            woken: false,
            node: None,
            step: KazooStep::Idle,
            calls: Calls::default(),
        }
    }

    /// `Lock(..., extra_lock_patterns=patterns)`.
    pub(crate) fn with_extra_lock_patterns(mut self, patterns: &[&str]) -> Self {
        self.patterns.extend(patterns.iter().map(|&pattern| pattern.to_owned()));
        self
    }

    fn node_path(&self) -> Path {
        child(&self.dir, self.node.as_deref().expect("our node is known"))
    }

    /// The lock path and its ancestors, up to `/`, as `ensure_path` recurses.
    fn chain(&self) -> Vec<Path> {
        let mut chain = vec![self.dir.clone()];
        while let Some(at) = chain.last().filter(|path| *path != "/").and_then(|path| path.rfind('/')) {
            let parent = if at == 0 { "/".to_owned() } else { chain.last().expect("nonempty")[..at].to_owned() };
            chain.push(parent);
        }
        chain
    }

    /// `_inner_acquire`, from the top: what `KazooRetry` reruns after ConnectionLoss or
    /// `ForceRetryError`.
    fn inner_acquire(&mut self) -> Vec<(RequestId, Request)> {
        if !self.assured_path {
            return self.ensure_exists(0);
        }
        if self.create_tried {
            self.step = KazooStep::Finding;
            return self.calls.send(list(&self.dir));
        }
        self.create()
    }

    fn ensure_exists(&mut self, index: usize) -> Vec<(RequestId, Request)> {
        self.step = KazooStep::EnsureExists(index);
        let path = self.chain().swap_remove(index);
        self.calls.send(Request::Exists { path, watch: false })
    }

    /// Creates `chain[index]`, or, below the lock path, is done ensuring.
    fn ensure_create(&mut self, index: Option<usize>) -> Vec<(RequestId, Request)> {
        let Some(index) = index else {
            self.assured_path = true;
            return self.inner_acquire();
        };
        self.step = KazooStep::EnsureCreate(index);
        let path = self.chain().swap_remove(index);
        self.calls.send(Request::Create { path, data: Vec::new(), mode: Mode::Persistent, sequential: false })
    }

    fn create(&mut self) -> Vec<(RequestId, Request)> {
        self.create_tried = true;
        self.step = KazooStep::Creating;
        let path = child(&self.dir, &self.prefix);
        self.calls.send(Request::Create { path, data: Vec::new(), mode: Mode::Ephemeral, sequential: true })
    }

    fn loop_top(&mut self) -> Vec<(RequestId, Request)> {
        self.woken = false;
        self.step = KazooStep::Listing;
        self.calls.send(list(&self.dir))
    }

    fn watch(&mut self, predecessor: Path) -> Vec<(RequestId, Request)> {
        let request = Request::GetData { path: predecessor.clone(), watch: true };
        self.step = KazooStep::Watching(predecessor);
        self.calls.send(request)
    }

    /// `_get_predecessor`: only children matching the patterns, stably sorted by their sequence
    /// strings; the predecessor is the last one before ours.
    fn turn(&self, names: &[String]) -> Turn {
        let ours = self.node.as_deref().expect("our node is known");
        if !names.iter().any(|name| name == ours) {
            return Turn::Lost;
        }
        let mut contenders: Vec<(&str, &String)> =
            names.iter().filter_map(|name| Some((kazoo_sequence(name, &self.patterns)?, name))).collect();
        contenders.sort_by_key(|&(sequence, _)| sequence);
        let before = contenders.iter().take_while(|(_, name)| *name != ours).last();
        before.map_or(Turn::First, |(_, name)| Turn::Behind((*name).clone()))
    }

    fn fail(&mut self) -> Vec<(RequestId, Request)> {
        self.step = KazooStep::Failed;
        Vec::new()
    }
}

impl Contender for KazooLock {
    fn start(&mut self) -> Vec<(RequestId, Request)> {
        assert_eq!(self.step, KazooStep::Idle, "start once");
        self.inner_acquire()
    }

    fn on_reply(&mut self, id: RequestId, reply: Result<Reply, ZkError>) -> Vec<(RequestId, Request)> {
        use KazooStep::*;
        self.calls.answered(id);
        match (self.step.clone(), reply) {
            (Releasing, Err(ZkError::ConnectionLoss)) => {
                let path = self.node_path();
                self.calls.send(delete(path))
            }
            // NoNode is ignored; an expired session took the node along.
            (Releasing, _) => {
                self.step = Released;
                Vec::new()
            }
            // `KazooRetry` retries ConnectionLoss, not SessionExpired (and on a dead session
            // `_best_effort_cleanup` can do nothing).
            (_, Err(ZkError::ConnectionLoss)) => self.inner_acquire(),

            (EnsureExists(0), Ok(Reply::Exists(Some(_)))) => self.ensure_create(None),
            (EnsureExists(index), Ok(Reply::Exists(Some(_)))) => self.ensure_create(Some(index - 1)),
            (EnsureExists(index), Ok(Reply::Exists(None))) => self.ensure_exists(index + 1),
            (EnsureCreate(index), Ok(Reply::Created { .. }) | Err(ZkError::NodeExists)) => {
                self.ensure_create(index.checked_sub(1))
            }
            (Finding, Ok(Reply::Children { names, .. })) => {
                match names.into_iter().find(|name| name.starts_with(&self.prefix)) {
                    Some(found) => {
                        self.node = Some(found);
                        self.loop_top()
                    }
                    None => self.create(),
                }
            }
            (Creating, Ok(Reply::Created { path, .. })) => {
                self.node = Some(last_segment(&path));
                self.loop_top()
            }
            (Listing, Ok(Reply::Children { names, .. })) => match self.turn(&names) {
                // `ForceRetryError`.
                Turn::Lost => self.inner_acquire(),
                Turn::First => {
                    self.step = Holding;
                    Vec::new()
                }
                Turn::Behind(predecessor) => {
                    let path = child(&self.dir, &predecessor);
                    self.watch(path)
                }
            },
            (Watching(_), Ok(Reply::Data { .. })) if !self.woken => {
                self.step = Waiting;
                Vec::new()
            }
            (Watching(_), Ok(Reply::Data { .. }) | Err(ZkError::NoNode)) => self.loop_top(),

            // Not retried (e.g. NoNode when the lock path vanished, cf. kazoo #563): raised.
            (_, Err(_)) => self.fail(),
            (step, Ok(reply)) => unreachable!("{step:?} got {reply:?}"),
        }
    }

    fn on_event(&mut self, _event: &WatchedEvent) -> Vec<(RequestId, Request)> {
        self.woken = true;
        if self.step == KazooStep::Waiting { self.loop_top() } else { Vec::new() }
    }

    fn release(&mut self) -> Vec<(RequestId, Request)> {
        assert_eq!(self.step, KazooStep::Holding, "only the holder releases");
        self.step = KazooStep::Releasing;
        let path = self.node_path();
        self.calls.send(delete(path))
    }

    fn status(&self) -> Status {
        match self.step {
            KazooStep::Idle => Status::Idle,
            KazooStep::Holding => Status::Holding { node: self.node_path() },
            KazooStep::Releasing | KazooStep::Released => Status::Released,
            KazooStep::Failed => Status::Failed,
            _ => Status::Waiting,
        }
    }
}

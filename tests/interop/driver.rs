//! Driving Rust and peer contenders side by side: each contender runs in its own task and does
//! what the test says, when it says; the test sees every acquisition in one stream, in the
//! order they happened.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::timeout;
use zk_recipes::{AnyHold, Hold, Mutex, ReadWriteLock, Semaphore, zk};
use zk_recipes_peers::PeerContender;

/// Long enough for any acquisition on a loopback ensemble, short enough to fail a hung test.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// How long a test watches for something that must not happen (a second holder, say).
pub const QUIET: Duration = Duration::from_millis(300);

/// One contender, Rust or peer, with what it holds.
pub enum Contender {
    /// Boxed: a holder is much larger than a peer's handle.
    Rust(RustRecipe, Option<Box<AnyHold>>),
    Peer(PeerContender),
}

/// What a Rust contender acquires.
pub enum RustRecipe {
    Mutex(Mutex),
    Read(ReadWriteLock),
    Write(ReadWriteLock),
    Semaphore(Semaphore),
}

impl Contender {
    pub fn mutex(mutex: Mutex) -> Self {
        Self::Rust(RustRecipe::Mutex(mutex), None)
    }

    pub fn read(lock: ReadWriteLock) -> Self {
        Self::Rust(RustRecipe::Read(lock), None)
    }

    pub fn write(lock: ReadWriteLock) -> Self {
        Self::Rust(RustRecipe::Write(lock), None)
    }

    pub fn semaphore(semaphore: Semaphore) -> Self {
        Self::Rust(RustRecipe::Semaphore(semaphore), None)
    }

    /// Acquires, waiting as long as it takes; returns the node's name (last path segment) and,
    /// for a Rust contender, the sequence of its fencing token.
    async fn acquire(&mut self) -> Result<(String, Option<u32>), String> {
        fn named(node: &str) -> String {
            node.rsplit('/').next().unwrap_or(node).to_owned()
        }
        let error = |e: &dyn std::fmt::Display| e.to_string();
        Ok(match self {
            Self::Rust(recipe, held) => {
                let acquired: Result<AnyHold, zk_recipes::Error> = match recipe {
                    RustRecipe::Mutex(mutex) => mutex.lock().await.map(Into::into),
                    RustRecipe::Read(lock) => lock.read().await.map(Into::into),
                    RustRecipe::Write(lock) => lock.write().await.map(Into::into),
                    RustRecipe::Semaphore(semaphore) => semaphore.acquire().await.map(Into::into),
                };
                // A lease's node is its first, whose token it has.
                let held = held.insert(Box::new(acquired.map_err(|e| error(&e))?));
                (named(held.node()), Some(held.token().sequence()))
            }
            Self::Peer(peer) => match peer.acquire(None).await.map_err(|e| error(&e))? {
                Some(node) => (node, None),
                None => return Err("the peer timed out without a timeout".into()),
            },
        })
    }

    async fn release(&mut self) -> Result<(), String> {
        match self {
            Self::Rust(_, held) => held.take().ok_or("nothing held")?.release().await.map_err(|e| e.to_string()),
            Self::Peer(peer) => peer.release().await.map_err(|e| e.to_string()),
        }
    }
}

enum Step {
    Acquire,
    Release,
}

/// An acquisition as the contender reported it.
#[derive(Debug, Clone)]
pub struct Acquired {
    /// The contender's index in the [`Table`].
    pub who: usize,
    /// Its node's name.
    pub node: String,
    /// The Rust contender's token sequence (peers have none).
    pub token_sequence: Option<u32>,
}

impl Acquired {
    /// The ZooKeeper sequence number at the end of the node's name.
    pub fn sequence(&self) -> u32 {
        self.node[self.node.len() - 10..].parse().unwrap_or_else(|_| panic!("no sequence in {}", self.node))
    }
}

/// What a contender's task reports.
enum Report {
    Acquired(Acquired),
    /// A release finished.
    Released,
    /// A step failed: the test fails with this.
    Failed(String),
}

/// The contenders of one test, each in its own task. A failed step fails the test at the
/// next [`next`](Table::next) or at [`finish`](Table::finish).
pub struct Table {
    names: Vec<String>,
    steps: Vec<mpsc::UnboundedSender<Step>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sender: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
}

impl Table {
    pub fn new() -> Self {
        let (sender, reports) = mpsc::unbounded_channel();
        Self { names: Vec::new(), steps: Vec::new(), tasks: Vec::new(), sender, reports }
    }

    /// Adds a contender; returns its index.
    pub fn add(&mut self, name: impl Into<String>, mut contender: Contender) -> usize {
        let who = self.names.len();
        let name = name.into();
        let (steps, mut orders) = mpsc::unbounded_channel();
        let reports = self.sender.clone();
        let task_name = name.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(step) = orders.recv().await {
                let report = match step {
                    Step::Acquire => match contender.acquire().await {
                        Ok((node, token_sequence)) => Report::Acquired(Acquired { who, node, token_sequence }),
                        Err(e) => Report::Failed(format!("{task_name} failed to acquire: {e}")),
                    },
                    Step::Release => match contender.release().await {
                        Ok(()) => Report::Released,
                        Err(e) => Report::Failed(format!("{task_name} failed to release: {e}")),
                    },
                };
                let _ = reports.send(report);
            }
        }));
        self.names.push(name);
        self.steps.push(steps);
        who
    }

    pub fn name(&self, who: usize) -> &str {
        &self.names[who]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Tells `who` to acquire; its acquisition arrives through [`next`](Self::next).
    pub fn acquire(&self, who: usize) {
        self.steps[who].send(Step::Acquire).expect("contender task");
    }

    /// Asks `who` to acquire and fails unless it is the next to acquire; `why` says why it
    /// should be.
    pub async fn acquires(&mut self, who: usize, why: &str) -> Acquired {
        self.acquire(who);
        let next = self.next().await;
        assert_eq!(next.who, who, "{} acquired instead of {}: {why}", self.name(next.who), self.name(who));
        next
    }

    /// Tells `who` to release what it holds (after anything asked of it before).
    pub fn release(&self, who: usize) {
        self.steps[who].send(Step::Release).expect("contender task");
    }

    /// The next acquisition, within [`PATIENCE`].
    pub async fn next(&mut self) -> Acquired {
        self.next_within(PATIENCE).await.unwrap_or_else(|| panic!("nobody acquired within {PATIENCE:?}"))
    }

    /// The next acquisition if one comes within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Acquired> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await.ok()? {
                Some(Report::Acquired(acquired)) => return Some(acquired),
                Some(Report::Released) => {}
                Some(Report::Failed(failure)) => panic!("{failure}"),
                None => unreachable!("the table keeps a sender"),
            }
        }
    }

    /// Waits until every step asked for is done, and fails the test if any failed. A
    /// contender still waiting to acquire fails it too: every test ends with nobody queued.
    pub async fn finish(mut self) {
        self.steps.clear();
        for task in std::mem::take(&mut self.tasks) {
            timeout(PATIENCE, task).await.expect("a contender is still busy").expect("a contender task panicked");
        }
        while let Ok(report) = self.reports.try_recv() {
            match report {
                Report::Failed(failure) => panic!("{failure}"),
                Report::Acquired(a) => panic!("{} acquired ({}) after the test ended", self.name(a.who), a.node),
                Report::Released => {}
            }
        }
    }

    /// Fails if anyone acquires within [`QUIET`]: `why` says who holds and must be waited for.
    pub async fn assert_nobody_acquires(&mut self, why: &str) {
        if let Some(a) = self.next_within(QUIET).await {
            panic!("{} acquired ({}) although {why}", self.name(a.who), a.node);
        }
    }

    /// Asks `who` to acquire and waits until a new node is in `dir` (it then waits in the
    /// queue).
    pub async fn enqueue(&mut self, who: usize, observer: &zk::Client, dir: &str) {
        let before = children(observer, dir).await;
        self.acquire(who);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while children(observer, dir).await.iter().all(|name| before.contains(name)) {
            assert!(tokio::time::Instant::now() < deadline, "{} never queued in {dir}", self.name(who));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// One round of exclusive turns in `order`: the first acquires, the others queue one after
    /// another, then each hands over to the next. Fails on any overlap (someone acquiring while
    /// another holds) or any turn out of order; returns the acquisitions in order.
    pub async fn exclusive_round(&mut self, order: &[usize], observer: &zk::Client, dir: &str) -> Vec<Acquired> {
        let first = self.acquires(order[0], "nobody else was asked").await;
        for &who in &order[1..] {
            self.enqueue(who, observer, dir).await;
        }
        let mut turns = vec![first];
        while turns.len() < order.len() {
            let holder = turns.last().unwrap().who;
            // The critical section: nobody else may get in while the holder holds.
            self.assert_nobody_acquires(&format!("{} holds", self.name(holder))).await;
            self.release(holder);
            let next = self.next().await;
            let expected = order[turns.len()];
            assert_eq!(
                next.who,
                expected,
                "FIFO: {} acquired, but {} queued first",
                self.name(next.who),
                self.name(expected)
            );
            turns.push(next);
        }
        self.release(turns.last().unwrap().who);
        turns
    }
}

/// The children of `dir`, or none if it does not exist.
pub async fn children(client: &zk::Client, dir: &str) -> Vec<String> {
    match client.list_children(dir).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => Vec::new(),
        Err(e) => panic!("listing {dir}: {e}"),
    }
}

/// Asserts that the fencing tokens of `turns` strictly increase, and that each Rust
/// contender's token is its node's sequence number.
pub fn assert_tokens_increase(turns: &[Acquired]) {
    for turn in turns {
        if let Some(sequence) = turn.token_sequence {
            assert_eq!(sequence, turn.sequence(), "token of {}", turn.node);
        }
    }
    for pair in turns.windows(2) {
        assert!(
            pair[0].sequence() < pair[1].sequence(),
            "tokens must increase: {} then {}",
            pair[0].node,
            pair[1].node
        );
    }
}

/// Waits until `dir` has `n` children.
pub async fn until_children(client: &zk::Client, dir: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let names = children(client, dir).await;
        if names.len() == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{dir} has {names:?}, not {n} children");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `dir` has no children (releases are asked for, not awaited).
pub async fn until_empty(client: &zk::Client, dir: &str) {
    until_children(client, dir, 0).await;
}

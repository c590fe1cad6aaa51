//! A contender: acquires, writes to the store with its token, holds, writes again, releases —
//! over and over, with some waits cancelled at random — and tells the store each step. It
//! runs as a task of the chaos process or, so that it can be frozen with SIGSTOP, as a child
//! process (`chaos --contender …`).
//!
//! Right after being granted, before its first write, it reads its own nodes on its own
//! session: a holder granted with a node that is gone is a violation (see `store.rs`). Its
//! second write is careless on purpose: it is made whether or not `lost()` resolved, as a
//! holder frozen mid-write would make it. Refusing that write is the store's job.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use futures_util::FutureExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zk_recipes::testing::Link;
use zk_recipes::{AnyHold, Error, Hold, LeaderLatch, LeaderSelector, Mutex, ReadWriteLock, Semaphore, Session, zk};

use crate::Result;
use crate::store::{NodeCheck, Rule, StoreClient};

/// The recipes under test, all at once in every scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mutex,
    Semaphore,
    Latch,
    /// Readers and writers of a read-write lock, each acquisition one or the other.
    RwLock,
    /// `LeaderSelector::run`, one term per acquisition.
    Selector,
}

/// The semaphore's permits.
const PERMITS: u32 = 2;
/// The odds that a read-write lock contender's next acquisition is a read.
const READS: f64 = 0.6;
/// How long a child contender may take to start and connect: its own connect gives up well
/// before (and says why), so this bounds only a child that hangs.
const CONNECT_BOUND: Duration = Duration::from_secs(60);

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Mutex, Kind::Semaphore, Kind::Latch, Kind::RwLock, Kind::Selector];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Mutex => "mutex",
            Kind::Semaphore => "semaphore",
            Kind::Latch => "latch",
            Kind::RwLock => "rwlock",
            Kind::Selector => "selector",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Who may hold together.
    pub fn rule(self) -> Rule {
        match self {
            Kind::Semaphore => Rule::Permits(PERMITS as usize),
            Kind::RwLock => Rule::ReadWrite,
            Kind::Mutex | Kind::Latch | Kind::Selector => Rule::Exclusive,
        }
    }

    /// The directories of the recipe at `path` that hold contender nodes.
    pub fn dirs(self, path: &str) -> Vec<String> {
        match self {
            Kind::Semaphore => vec![format!("{path}/locks"), format!("{path}/leases")],
            _ => vec![path.to_owned()],
        }
    }
}

/// What one contender does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: Kind,
    pub id: String,
    pub path: String,
    pub store: SocketAddr,
    pub seed: u64,
    pub session_timeout: Duration,
    /// Child contenders hold longer, so that a pause lands while they hold.
    pub child: bool,
}

impl Plan {
    fn args(&self, connect: &str) -> Vec<String> {
        let timeout = self.session_timeout.as_millis().to_string();
        let store = self.store.to_string();
        let args = [self.kind.name(), &self.id, connect, &store, &self.path, &self.seed.to_string(), &timeout];
        args.iter().map(|a| a.to_string()).collect()
    }

    /// The plan from a child's command line (after `--contender`).
    pub fn from_args(args: &[String]) -> Option<(Self, String)> {
        let [kind, id, connect, store, path, seed, timeout] = args else { return None };
        let plan = Plan {
            kind: Kind::parse(kind)?,
            id: id.clone(),
            path: path.clone(),
            store: store.parse().ok()?,
            seed: seed.parse().ok()?,
            session_timeout: Duration::from_millis(timeout.parse().ok()?),
            child: true,
        };
        Some((plan, connect.clone()))
    }
}

pub enum Recipe {
    Mutex(Mutex),
    Semaphore(Semaphore),
    Latch(LeaderLatch),
    RwLock(ReadWriteLock),
    Selector(LeaderSelector),
}

impl Recipe {
    pub fn new(session: &Session, plan: &Plan) -> Result<Self> {
        Ok(match plan.kind {
            Kind::Mutex => Recipe::Mutex(Mutex::new(session, &plan.path)?.with_data(plan.id.as_str())),
            Kind::Semaphore => {
                Recipe::Semaphore(Semaphore::new(session, &plan.path, PERMITS)?.with_data(plan.id.as_str()))
            }
            Kind::Latch => Recipe::Latch(LeaderLatch::new(session, &plan.path, &plan.id)?),
            Kind::RwLock => Recipe::RwLock(ReadWriteLock::new(session, &plan.path)?.with_data(plan.id.as_str())),
            Kind::Selector => Recipe::Selector(LeaderSelector::new(session, &plan.path, &plan.id)?),
        })
    }

    /// Waits to hold; a read-write lock's read lock if `read`, else its write lock.
    pub async fn acquire(&self, read: bool) -> std::result::Result<AnyHold, Error> {
        Ok(match self {
            Recipe::Mutex(mutex) => mutex.lock().await?.into(),
            Recipe::Semaphore(semaphore) => semaphore.acquire().await?.into(),
            Recipe::Latch(latch) => latch.start().await?.lead().await?.into(),
            Recipe::RwLock(lock) if read => lock.read().await?.into(),
            Recipe::RwLock(lock) => lock.write().await?.into(),
            Recipe::Selector(selector) => selector.lead().await?.into(),
        })
    }
}

/// Whether `held` is a read lock, which other readers may hold at the same time.
fn is_reader(held: &AnyHold) -> bool {
    matches!(held, AnyHold::Read(_))
}

/// The contender nodes `held` holds with: one per permit of a lease, else one.
fn nodes(held: &AnyHold) -> Vec<String> {
    match held {
        AnyHold::Lease(lease) => lease.nodes().map(str::to_owned).collect(),
        held => vec![held.node().to_owned()],
    }
}

/// Reads `held`'s nodes on the ZooKeeper session the attempt began in (`began_in`), right
/// after the grant. Only a conclusive answer counts: a newer session would find the nodes of
/// an expired one gone, and a recipe that noticed a loss may delete its node itself (a latch
/// or selector steps down).
async fn check_nodes(session: &Session, began_in: Option<zk::SessionId>, held: &AnyHold) -> NodeCheck {
    let Ok(client) = session.client().await else { return NodeCheck::Unknown };
    if began_in != Some(client.session_id()) {
        return NodeCheck::Unknown;
    }
    let mut gone = false;
    for node in nodes(held) {
        match client.check_stat(&node).await {
            Ok(Some(_)) => {}
            Ok(None) => gone = true,
            Err(_) => return NodeCheck::Unknown,
        }
    }
    if !gone {
        return NodeCheck::Present;
    }
    if held.lost().now_or_never().is_some() {
        return NodeCheck::Unknown;
    }
    // An answer on a session the server has just closed can show its nodes gone; a closed
    // session answers nothing more.
    match client.check_stat("/").await {
        Ok(_) => NodeCheck::Gone,
        Err(_) => NodeCheck::Unknown,
    }
}

/// What every holder does first: checks its nodes, writes (the store learns of it so), enters.
pub async fn begin(
    held: &AnyHold,
    session: &Session,
    began_in: Option<zk::SessionId>,
    store: &mut StoreClient,
) -> Result<()> {
    let token = held.token();
    let check = check_nodes(session, began_in, held).await;
    store.grant(token, is_reader(held), check, &nodes(held)).await?;
    store.enter(token).await
}

/// The contender's loop, until `stop` turns true. Waits cut short by `stop` count as
/// cancellations too.
pub async fn run(session: &Session, plan: &Plan, mut stop: watch::Receiver<bool>) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut store = StoreClient::connect(plan.store, &plan.id).await?;
    let recipe = Recipe::new(session, plan)?;
    let mut reported = None;
    while !*stop.borrow() && stop.has_changed().is_ok() {
        let began_in = session.id();
        // The fault driver finds a contender's connection by its session (`cons` lists them).
        if let Some(id) = began_in.filter(|&id| reported != Some(id)) {
            store.session(id.0).await?;
            reported = Some(id);
        }
        // Answered before the attempt begins: what came after another holder left (store.rs).
        store.start().await?;
        let read = plan.kind == Kind::RwLock && rng.random_bool(READS);
        // One wait in five is abandoned: by a deadline, or by dropping the future.
        let cancel_after = rng.random_bool(0.2).then(|| Duration::from_millis(rng.random_range(0..400)));
        let attempt = async {
            match cancel_after {
                Some(after) => tokio::time::timeout(after, recipe.acquire(read)).await.ok(),
                None => Some(recipe.acquire(read).await),
            }
        };
        let outcome = tokio::select! {
            _ = stop.wait_for(|&stop| stop) => None,
            outcome = attempt => outcome,
        };
        match outcome {
            None => store.cancelled().await?,
            Some(Err(err)) => {
                store.error(error_kind(&err)).await?;
                tokio::time::sleep(Duration::from_millis(rng.random_range(50..250))).await;
            }
            Some(Ok(held)) => {
                begin(&held, session, began_in, &mut store).await?;
                hold(held, plan, &mut rng, &mut store).await?;
            }
        }
    }
    Ok(())
}

async fn hold(held: AnyHold, plan: &Plan, rng: &mut StdRng, store: &mut StoreClient) -> Result<()> {
    let token = held.token();
    let long = rng.random_bool(if plan.child { 0.5 } else { 0.1 });
    let time = Duration::from_millis(if long { rng.random_range(500..3000) } else { rng.random_range(0..40) });
    tokio::select! {
        _ = tokio::time::sleep(time) => {}
        _ = held.lost() => store.doubt(token).await?,
    }
    store.write(token).await?;
    store.exit(token).await?;
    let healthy = held.release().await.is_ok();
    store.verdict(token, healthy).await
}

/// The error's variant name, for the summary.
fn error_kind(err: &Error) -> &'static str {
    match err {
        Error::SessionExpired => "SessionExpired",
        Error::SessionClosed => "SessionClosed",
        Error::Unreachable { .. } => "Unreachable",
        Error::Lost { .. } => "Lost",
        Error::ZooKeeper { .. } => "ZooKeeper",
        _ => "other",
    }
}

/// The body of a child contender: runs until told `stop` on stdin, says `idle`, and closes
/// its session when stdin ends.
pub async fn child(plan: Plan, connect: String) -> Result<()> {
    let session = Session::builder().session_timeout(plan.session_timeout).connect(&connect).await?;
    let mut stdout = tokio::io::stdout();
    // Faults start once every contender is connected (see `Contender::start`).
    stdout.write_all(b"connected\n").await?;
    stdout.flush().await?;
    let (stop, stopped) = watch::channel(false);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    {
        let run = run(&session, &plan, stopped);
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => result?,
            _ = async { while stdin.next_line().await.ok().flatten().is_some_and(|l| l != "stop") {} } => {
                stop.send_replace(true);
                run.await?;
            }
        }
    }
    stdout.write_all(b"idle\n").await?;
    stdout.flush().await?;
    while stdin.next_line().await.ok().flatten().is_some() {}
    session.close().await;
    Ok(())
}

enum Runner {
    Task { stop: watch::Sender<bool>, task: Option<JoinHandle<Result<Session>>>, session: Option<Session> },
    Child { child: Box<Child>, stdin: Option<ChildStdin>, stdout: tokio::io::Lines<BufReader<ChildStdout>> },
}

/// The chaos process's handle on one contender, with its own route to the ensemble.
pub struct Contender {
    pub plan: Plan,
    pub link: Link,
    runner: Runner,
}

impl Contender {
    pub async fn start(plan: Plan, link: Link) -> Result<Self> {
        let runner = if plan.child {
            let mut command = tokio::process::Command::new(std::env::current_exe()?);
            command
                .arg("--contender")
                .args(plan.args(&link.connect_string()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true);
            // SAFETY: prctl is async-signal-safe. It makes the kernel kill the child when this
            // process dies, even if it is killed while the child is frozen.
            unsafe {
                command.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
            let mut child = command.spawn()?;
            let stdin = child.stdin.take();
            let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
            // A fault injected while its first connect is under way would end it with
            // `Unreachable` before it ever contended: wait until it is connected, as a task
            // contender's `connect` below is awaited too.
            match tokio::time::timeout(CONNECT_BOUND, stdout.next_line()).await {
                Ok(Ok(Some(line))) if line == "connected" => {}
                other => return Err(format!("contender {} did not connect: {other:?}", plan.id).into()),
            }
            Runner::Child { child: Box::new(child), stdin, stdout }
        } else {
            let session =
                Session::builder().session_timeout(plan.session_timeout).connect(&link.connect_string()).await?;
            let (stop, stopped) = watch::channel(false);
            let task_plan = plan.clone();
            let task = tokio::spawn(async move {
                run(&session, &task_plan, stopped).await?;
                Ok(session)
            });
            Runner::Task { stop, task: Some(task), session: None }
        };
        Ok(Self { plan, link, runner })
    }

    /// The child's process id, if it is one.
    pub fn pid(&self) -> Option<nix::unistd::Pid> {
        match &self.runner {
            Runner::Child { child, .. } => {
                child.id().and_then(|id| i32::try_from(id).ok()).map(nix::unistd::Pid::from_raw)
            }
            Runner::Task { .. } => None,
        }
    }

    /// Tells the contender to end its loop ([`idle`](Contender::idle) waits for it).
    pub async fn stop(&mut self) -> Result<()> {
        match &mut self.runner {
            Runner::Task { stop, .. } => {
                stop.send_replace(true);
            }
            Runner::Child { stdin, .. } => stdin.as_mut().ok_or("stdin closed")?.write_all(b"stop\n").await?,
        }
        Ok(())
    }

    /// Waits until the stopped contender is idle, its session still open.
    pub async fn idle(&mut self) -> Result<()> {
        // A hold lasts at most 3 s, and a release or a cancelled wait gives up within a few
        // session timeouts: longer than this is a hang.
        tokio::time::timeout(Duration::from_secs(60), self.idle_now())
            .await
            .map_err(|_| format!("contender {} did not stop within 60 s", self.plan.id))?
    }

    async fn idle_now(&mut self) -> Result<()> {
        match &mut self.runner {
            Runner::Task { task, session, .. } => {
                if let Some(task) = task.take() {
                    *session = Some(task.await??);
                }
            }
            Runner::Child { stdout, .. } => match stdout.next_line().await? {
                Some(line) if line == "idle" => {}
                other => return Err(format!("contender {} answered {other:?} to stop", self.plan.id).into()),
            },
        }
        Ok(())
    }

    /// Closes the session and ends the contender.
    pub async fn close(self) -> Result<()> {
        match self.runner {
            Runner::Task { session, .. } => {
                if let Some(session) = session {
                    tokio::time::timeout(Duration::from_secs(30), session.close()).await?;
                }
            }
            Runner::Child { mut child, stdin, .. } => {
                drop(stdin);
                let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
                if !status.success() {
                    return Err(format!("contender {} exited with {status}", self.plan.id).into());
                }
            }
        }
        Ok(())
    }
}

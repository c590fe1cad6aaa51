//! Helpers shared by the integration tests. Every test starts its own real ZooKeeper.
#![allow(dead_code, unreachable_pub)]

use std::fmt::Debug;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use zk_recipes::testing::{Fault, Proxy, TestingCluster};
use zk_recipes::{Session, zk};

/// Logs from `RUST_LOG` (e.g. `RUST_LOG=zk_recipes=debug`), captured per test, and a record
/// of the library's own debug events for tests that count what it did.
pub fn init_tracing() {
    let fmt = tracing_subscriber::fmt::layer().with_test_writer().with_filter(EnvFilter::from_default_env());
    let recorder = Recorder.with_filter(Targets::new().with_target("zk_recipes", Level::DEBUG));
    let _ = tracing_subscriber::registry().with(fmt).with(recorder).try_init();
}

/// One event the library emitted: its message and its other fields, as text.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl Recorded {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

static EVENTS: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());

/// The events recorded so far with this message.
pub fn recorded(message: &str) -> Vec<Recorded> {
    EVENTS.lock().unwrap().iter().filter(|e| e.message == message).cloned().collect()
}

pub fn clear_recorded() {
    EVENTS.lock().unwrap().clear();
}

struct Recorder;

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut visitor = Recorded { message: String::new(), fields: Vec::new() };
        event.record(&mut visitor);
        EVENTS.lock().unwrap().push(visitor);
    }
}

impl Visit for Recorded {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.push((field.name().to_owned(), value.to_owned()));
        }
    }
}

/// A standalone server, or a panic that says how to install ZooKeeper.
pub async fn standalone() -> TestingCluster {
    init_tracing();
    TestingCluster::standalone().await.expect("a real ZooKeeper server (see the message for how to install it)")
}

/// A session with a short timeout, so that expiry tests run in seconds.
pub async fn session(connect: &str, timeout: Duration) -> Session {
    Session::builder()
        .session_timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .connect(connect)
        .await
        .expect("a session")
}

/// `n` sessions, one per simulated process.
pub async fn sessions(connect: &str, n: usize, timeout: Duration) -> Vec<Session> {
    let mut sessions = Vec::with_capacity(n);
    for _ in 0..n {
        sessions.push(session(connect, timeout).await);
    }
    sessions
}

/// Waits until `dir` has `n` children (so that contenders queue in a known order).
pub async fn count_is(client: &zk::Client, dir: &str, n: usize) {
    eventually(&format!("{n} nodes in {dir}"), Duration::from_secs(20), || async {
        (children(client, dir).await.len() == n).then_some(())
    })
    .await;
}

/// A fault proxy in front of member 0 and a session that connects through it.
pub async fn proxied_session(cluster: &TestingCluster, timeout: Duration) -> (Proxy, Session) {
    let proxy = Proxy::start(cluster.address(0)).await.expect("a proxy");
    let session = session(&proxy.address().to_string(), timeout).await;
    (proxy, session)
}

/// A plain client for looking at the server's state behind the library's back. Its session
/// asks for the longest timeout the harness's servers grant: the client gives a connection up
/// after 2/5 of it without an answer, and a loaded machine can stall a server for seconds.
pub async fn observer(connect: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(60))
        .connect(connect)
        .await
        .expect("an observer client")
}

/// The children of `path` (none if it does not exist). The observer's connection may be
/// given up on a loaded machine, and the client then connects again: asked again until an
/// answer comes.
pub async fn children(client: &zk::Client, path: &str) -> Vec<String> {
    loop {
        match client.list_children(path).await {
            Ok(children) => return children,
            Err(zk::Error::NoNode) => return Vec::new(),
            Err(zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::Custom(_)) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("listing {path}: {err}"),
        }
    }
}

/// The children of `path` owned by the ZooKeeper session `owner`.
pub async fn children_of(client: &zk::Client, path: &str, owner: zk::SessionId) -> Vec<String> {
    let mut owned = Vec::new();
    for child in children(client, path).await {
        if let Ok(Some(stat)) = client.check_stat(&format!("{path}/{child}")).await
            && stat.ephemeral_owner == owner.0
        {
            owned.push(child);
        }
    }
    owned
}

/// Ends the ZooKeeper session of `session` from outside, as an expiry would: while the
/// session's own client is kept away (its proxy refuses connections), a second client attaches
/// to the same session (id and password) and closes it. ZooKeeper binds a session to one
/// connection at a time, so without keeping the owner away the two would evict each other.
pub async fn end_session_from_outside(session: &Session, proxy: &Proxy, connect: &str) {
    let info = session.client().await.unwrap().session().clone();
    proxy.set_fault(Fault::Refuse);
    proxy.reset_connections();
    let intruder = zk::Client::connector().with_session(info).connect(connect).await.expect("attach to the session");
    let mut states = intruder.state_watcher();
    drop(intruder); // dropping the last handle closes the ZooKeeper session
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while !states.state().is_terminated() {
            states.changed().await;
        }
    });
    closed.await.expect("the server confirms the close");
    proxy.set_fault(Fault::Pass);
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A PostgreSQL server, or a panic that says how to install PostgreSQL.
#[cfg(feature = "postgres")]
pub async fn postgres() -> zk_recipes::testing::TestingPostgres {
    init_tracing();
    zk_recipes::testing::TestingPostgres::start().await.unwrap_or_else(|error| panic!("a real PostgreSQL: {error}"))
}

/// The fencing tests' tables, as `examples/payment.rs` makes them: the fence table `fences`,
/// and `payments`, whose rows carry their own fence, with order 42 pending.
#[cfg(feature = "postgres")]
pub async fn payments_schema(db: &tokio_postgres::Client) {
    zk_recipes::fence::FenceTable::new("fences").unwrap().create(db).await.unwrap();
    db.batch_execute(
        "CREATE TABLE payments (id bigint PRIMARY KEY, status text NOT NULL, captured_by text,
                                fence text COLLATE \"C\" NOT NULL);
         INSERT INTO payments VALUES (42, 'pending', NULL, '0000000000000000-0000000000');",
    )
    .await
    .unwrap();
}

/// Asserts that nothing happens for `quiet`: that `future` (a task's handle, a channel's
/// `recv()`, ...) is still pending after it, or panics naming `what` with the output. A wait
/// that is itself the check, for what must *not* happen; pass a `&mut` to a handle that is
/// awaited later.
pub async fn stays_pending<F>(what: &str, quiet: Duration, future: F)
where
    F: Future,
    F::Output: Debug,
{
    if let Ok(output) = tokio::time::timeout(quiet, future).await {
        panic!("{what}: happened within {quiet:?}: {output:?}");
    }
}

/// Whether a process exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// The watches a server holds.
#[derive(Debug)]
pub struct Watches {
    /// Data watches (`getData`/`exists`) per path: the sessions that watch it (`wchp`).
    pub data: std::collections::BTreeMap<String, Vec<i64>>,
    /// Child watches (`getChildren`), all paths together. ZooKeeper 3.8 lists only data
    /// watches by path, so this is the total watch count (`mntr`) less the data watches.
    pub children: usize,
}

impl Watches {
    /// The data watches on `path` and below: how many sessions watch each node.
    pub fn data_under(&self, path: &str) -> std::collections::BTreeMap<String, usize> {
        self.watchers_under(path).into_iter().map(|(p, sessions)| (p, sessions.len())).collect()
    }

    /// The sessions watching each node on `path` and below.
    pub fn watchers_under(&self, path: &str) -> std::collections::BTreeMap<String, Vec<i64>> {
        let below = format!("{path}/");
        self.data
            .iter()
            .filter(|(p, _)| *p == path || p.starts_with(&below))
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect()
    }

    /// How many sessions other than its owner watch each node on `path` and below (a contender
    /// watches its own node too, to know it still exists; only other watchers are woken by its
    /// deletion). Nodes gone meanwhile are left out.
    pub async fn others_under(&self, client: &zk::Client, path: &str) -> std::collections::BTreeMap<String, usize> {
        let mut others = std::collections::BTreeMap::new();
        for (node, sessions) in self.watchers_under(path) {
            let Ok(Some(stat)) = client.check_stat(&node).await else { continue };
            let count = sessions.iter().filter(|&&s| s != stat.ephemeral_owner).count();
            if count > 0 {
                others.insert(node, count);
            }
        }
        others
    }
}

/// The watches member 0 holds. The server answers `wchp` and `mntr` separately, so while
/// watches come and go the two may disagree: read until `mntr` gives the same total before and
/// after `wchp`.
pub async fn watches(cluster: &TestingCluster) -> Watches {
    let total = || async {
        let monitor = cluster.four_letter(0, "mntr").await.expect("mntr");
        monitor
            .lines()
            .find_map(|line| line.strip_prefix("zk_watch_count"))
            .and_then(|count| count.trim().parse::<usize>().ok())
            .expect("mntr reports zk_watch_count")
    };
    loop {
        let before = total().await;
        let report = cluster.four_letter(0, "wchp").await.expect("wchp");
        if total().await != before {
            continue;
        }
        let mut data = std::collections::BTreeMap::<String, Vec<i64>>::new();
        let mut current = None;
        for line in report.lines() {
            if line.starts_with('/') {
                current = Some(line.trim_end().to_owned());
            } else if let Some(hex) = line.trim().strip_prefix("0x")
                && let Some(path) = &current
            {
                let session = u64::from_str_radix(hex, 16).expect("wchp lists session ids in hex") as i64;
                data.entry(path.clone()).or_default().push(session);
            }
        }
        match before.checked_sub(data.values().map(Vec::len).sum()) {
            Some(children) => return Watches { data, children },
            // A watch was added and another removed in between: read again.
            None => continue,
        }
    }
}

/// Builds the example (a no-op when up to date) and returns its path,
/// `target/debug/examples/<name>`, next to this test's `target/debug/deps/`.
pub fn example(name: &str) -> std::path::PathBuf {
    example_with_features(name, &[])
}

/// As [`example`], for an example that needs cargo features beyond `testing`.
pub fn example_with_features(name: &str, features: &[&str]) -> std::path::PathBuf {
    let built = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", name])
        .args(features.iter().flat_map(|feature| ["--features", feature]))
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .status()
        .unwrap();
    assert!(built.success(), "building example {name} failed");
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
    deps.parent().unwrap().join("examples").join(name)
}

/// Sends `signal` to a child process.
pub fn signal(child: &tokio::process::Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id().expect("the child runs") as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
}

/// What a running `zk-recipes sandbox` prints, line by line.
#[cfg(feature = "cli")]
pub type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Starts `zk-recipes sandbox --nodes 1` with `args` besides: the process (killed when
/// dropped) and its standard output.
#[cfg(feature = "cli")]
pub fn sandbox(args: &[&str]) -> (tokio::process::Child, Lines) {
    use tokio::io::AsyncBufReadExt;

    let mut sandbox = tokio::process::Command::new(env!("CARGO_BIN_EXE_zk-recipes"))
        .args(["sandbox", "--nodes", "1"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = tokio::io::BufReader::new(sandbox.stdout.take().unwrap()).lines();
    (sandbox, lines)
}

/// How long a test waits for the `zk-recipes` tool to exit.
pub const TOOL_PATIENCE: Duration = Duration::from_secs(30);

/// Waits for the tool to exit: its output.
pub async fn finish(child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(TOOL_PATIENCE, child.wait_with_output()).await.expect("the tool exits").unwrap()
}

/// The tool's exit status.
pub fn code(output: &std::process::Output) -> i32 {
    output.status.code().unwrap_or_else(|| panic!("no exit code: {output:?}"))
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Connects with `builder` (whose connect timeout is `connect_timeout`) and expects a failure,
/// well within the connect timeout: the error.
pub async fn connect_error(
    builder: zk_recipes::SessionBuilder,
    servers: &str,
    connect_timeout: Duration,
) -> zk_recipes::Error {
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(connect_timeout * 2, builder.connect(servers)).await;
    let error = match outcome {
        Ok(Ok(session)) => panic!("connected to {servers}: {session:?}"),
        Ok(Err(error)) => error,
        Err(_) => panic!("the connect hung past twice its timeout"),
    };
    eprintln!("connect to {servers} failed after {:?}: {error}", started.elapsed());
    assert!(
        started.elapsed() < connect_timeout,
        "{error} came after {:?}, not within the connect timeout",
        started.elapsed()
    );
    error
}

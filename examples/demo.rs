//! `make demo`: a local 3-node ZooKeeper ensemble, contenders taking turns in FIFO order with
//! growing fencing tokens, and a holder frozen past its session timeout whose stale writes are
//! rejected once it wakes.
//!
//! Run with `cargo run --release --example demo`. The frozen holder is this same program,
//! started again as a child process with `--holder`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;
use zk_recipes::testing::TestingCluster;
use zk_recipes::{FencingToken, Mutex, Session, zk};

const LOCK: &str = "/demo/nightly-billing";
const LEDGER: &str = "/demo/ledger";
const HOLDER_TIMEOUT: Duration = Duration::from_secs(2);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--holder") {
        return holder(&args[2]).await;
    }
    println!("== zk-recipes demo ==\n");
    println!("Starting a 3-node Apache ZooKeeper ensemble on 127.0.0.1 ...");
    let cluster = TestingCluster::ensemble(3).await?;
    let servers = cluster.connect_string();
    println!("  serving at {servers} (leader: member {})\n", cluster.leader().await.unwrap_or(0));
    fifo_turns(&servers).await?;
    stale_holder(&servers).await?;
    println!("\nDone; the ensemble shuts down with the demo.");
    Ok(())
}

/// Five contenders on separate sessions queue in a known order and take three turns each.
async fn fifo_turns(servers: &str) -> Result<()> {
    println!("-- 1. Five contenders, three turns each: served in arrival order, tokens always growing --");
    // Hold the lock while the contenders line up, so that they queue one after another.
    let gatekeeper = Session::connect(servers).await?;
    let gate = Mutex::new(&gatekeeper, LOCK)?.with_data("gate").lock().await?;
    let observer = gatekeeper.client().await?;
    let started = Instant::now();
    let last: Arc<AsyncMutex<Option<FencingToken>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for (queued, name) in ["alice", "bob", "carol", "dave", "erin"].into_iter().enumerate() {
        let session = Session::connect(servers).await?;
        let mutex = Mutex::new(&session, LOCK)?.with_data(name);
        let last = last.clone();
        tasks.spawn(async move {
            for turn in 1..=3 {
                let guard = mutex.lock().await?;
                let mut last = last.lock().await;
                let token = guard.token();
                let growing = last.is_none_or(|previous| previous < token);
                println!(
                    "  {:>6} ms  {name:<5} holds (turn {turn})  token {token}  {}",
                    started.elapsed().as_millis(),
                    if growing { "> previous" } else { "NOT GROWING (bug!)" }
                );
                *last = Some(token);
                drop(last);
                tokio::time::sleep(Duration::from_millis(60)).await;
                guard.release().await?;
            }
            drop(session);
            Ok::<_, zk_recipes::Error>(())
        });
        while observer.list_children(LOCK).await?.len() < queued + 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    gate.release().await?;
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    println!("  Each contender waited for the node just ahead of it; each release woke one waiter.\n");
    Ok(())
}

/// The classic failure: a holder pauses (GC, a stalled VM; here SIGSTOP) past its session
/// timeout, its lock passes on, and it wakes up believing it still holds the lock.
async fn stale_holder(servers: &str) -> Result<()> {
    println!("-- 2. A holder frozen past its {HOLDER_TIMEOUT:?} session timeout --");
    let session = Session::connect(servers).await?;
    let client = session.client().await?;
    ledger_init(&client).await?;

    let mut child = Command::new(std::env::current_exe()?)
        .args(["--holder", servers])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut resume = child.stdin.take().expect("piped");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    // Relay the holder's lines until it says it holds the lock.
    for line in lines.by_ref() {
        let line = line?;
        println!("  [holder pid {pid}] {line}");
        if line.starts_with("holding") {
            break;
        }
    }
    println!("  -> freezing the holder with SIGSTOP (as a long GC pause would)");
    Command::new("kill").args(["-STOP", &pid.to_string()]).status()?;
    let frozen = Instant::now();

    let successor = Mutex::new(&session, LOCK)?.with_data("successor");
    let guard = successor.lock().await?;
    println!(
        "  successor holds after {:.1} s (the server expired the frozen holder's session), token {}",
        frozen.elapsed().as_secs_f64(),
        guard.token()
    );
    let verdict = ledger_write(&client, guard.token(), "successor: charge batch 2").await?;
    println!("  successor writes to the ledger with its token: {verdict}");

    println!("  -> resuming the holder with SIGCONT");
    Command::new("kill").args(["-CONT", &pid.to_string()]).status()?;
    writeln!(resume, "resumed")?;
    for line in lines {
        println!("  [holder pid {pid}] {}", line?);
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the holder process failed: {status}").into());
    }
    guard.release().await?;
    let (entries, _) = client.get_data(LEDGER).await?;
    println!("  ledger now: {}", String::from_utf8_lossy(&entries).replace('\n', " | "));
    Ok(())
}

/// The child process: takes the lock, reports, and waits (frozen meanwhile) until the parent
/// says it was resumed.
async fn holder(servers: &str) -> Result<()> {
    let session = Session::builder().session_timeout(HOLDER_TIMEOUT).connect(servers).await?;
    // The ledger stands for a database: its connection has nothing to do with the lock, and
    // outlives the freeze.
    let ledger = zk::Client::connector().with_session_timeout(Duration::from_secs(30)).connect(servers).await?;
    let guard = Mutex::new(&session, LOCK)?.with_data("holder").lock().await?;
    let token = guard.token();
    let verdict = ledger_write(&ledger, token, "holder: charge batch 1").await?;
    println!("holding with token {token}; ledger write: {verdict}");
    let mut resumed = String::new();
    std::io::stdin().read_line(&mut resumed)?;

    // A careful holder asks its guard first: it knows at once, from its own clock, that the
    // session timeout has passed since the server last answered.
    match tokio::time::timeout(Duration::ZERO, guard.lost()).await {
        Ok(reason) => println!("woke up; guard.lost() is already resolved: {reason}"),
        Err(_) => println!("woke up; guard.lost() not resolved (bug!)"),
    }
    // A careless one writes anyway, as if it still held the lock ...
    let verdict = ledger_write(&ledger, token, "holder: charge batch 1 AGAIN").await?;
    println!("writes anyway with token {token}: {verdict}");
    // ... and a fenced ZooKeeper write is refused too.
    let mut write = guard.fenced_write();
    write.set_data(LEDGER, b"overwritten by a stale holder", None);
    match write.commit().await {
        Ok(_) => println!("fenced write: ACCEPTED (bug!)"),
        Err(err) => println!("fenced write: refused ({err})"),
    }
    Ok(())
}

async fn ledger_init(client: &zk::Client) -> Result<()> {
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match client.create(LEDGER, b"", &options).await {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// A token-checking store on a znode: the first line holds the highest token seen, and a
/// write with a lower token is rejected. Compare-and-set on the znode's version makes the
/// check and the append atomic.
async fn ledger_write(client: &zk::Client, token: FencingToken, entry: &str) -> Result<String> {
    loop {
        let (data, stat) = match client.get_data(LEDGER).await {
            Err(zk::Error::ConnectionLoss) => continue,
            read => read?,
        };
        let text = String::from_utf8(data)?;
        let highest: Option<FencingToken> = text.lines().next().and_then(|line| line.parse().ok());
        if highest.is_some_and(|highest| token < highest) {
            return Ok(format!("REJECTED: token {token} is older than {}", highest.unwrap()));
        }
        let entries: Vec<&str> = text.lines().skip(1).chain([entry]).collect();
        let updated = format!("{token}\n{}", entries.join("\n"));
        match client.set_data(LEDGER, updated.as_bytes(), Some(stat.version)).await {
            Ok(_) => return Ok("accepted".into()),
            // Someone wrote in between, or the connection dropped: read again.
            Err(zk::Error::BadVersion | zk::Error::ConnectionLoss) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

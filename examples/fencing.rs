//! The failure-injection test every lock should pass: acquire on A, pause A past its session
//! timeout, the lease expires, B acquires, resume A — and A's stale write is rejected.
//!
//! The protected resource is a token-checking store: a tiny server on a loopback port that
//! accepts `WRITE <token> <entry>` only if the token is not lower than the highest it has seen.
//! Holder A is this program again, started with `--holder` and frozen with SIGSTOP, as a long
//! GC pause or a stalled VM would freeze it. Exits non-zero if the stale write gets through.
//!
//! Run with `cargo run --example fencing` (uses `ZK_SERVERS`, or starts a local server).

#[path = "support/thaw.rs"]
mod thaw;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{TcpListener, TcpStream};
use zk_recipes::testing::TestingCluster;
use zk_recipes::{FencingToken, Mutex, Session};

use crate::thaw::Thaw;

const LOCK: &str = "/fencing/payments";
/// Holder A's session timeout: how long it must be frozen to lose the lock.
const HOLDER_TIMEOUT: Duration = Duration::from_secs(2);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, servers, store] = args.as_slice()
        && flag == "--holder"
    {
        return holder(servers, store.parse()?).await;
    }
    let (servers, _cluster) = TestingCluster::from_env_or_standalone("ZK_SERVERS").await?;
    let store = Store::start().await?;

    // A acquires and writes.
    let mut a = Command::new(std::env::current_exe()?)
        .args(["--holder", &servers, &store.address.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = Pid::from_raw(i32::try_from(a.id())?);
    // Whatever happens below, A does not stay frozen (or alive) after this program.
    let mut thaw = Thaw(Some(pid));
    let mut a_in = a.stdin.take().expect("piped");
    let mut a_out = BufReader::new(a.stdout.take().expect("piped")).lines();
    let first = a_out.next().transpose()?.ok_or("holder A ended early")?;
    println!("A: {first}");

    // A freezes; its session expires on the server; B acquires and writes.
    kill(pid, Signal::SIGSTOP)?;
    println!("A is frozen (SIGSTOP)");
    let b_session = Session::connect(&servers).await?;
    let b = Mutex::new(&b_session, LOCK)?.with_data("B").lock().await?;
    let verdict = store.client_write(b.token(), "B: charge order 42").await?;
    println!("B: acquired with token {} once A's session expired; write {verdict}", b.token());

    // A resumes and, as if nothing happened, writes with its old token.
    kill(pid, Signal::SIGCONT)?;
    writeln!(a_in, "resume")?;
    for line in a_out {
        println!("A: {}", line?);
    }
    let status = a.wait()?;
    thaw.0 = None; // reaped: its pid is not ours to signal any more
    if !status.success() {
        return Err("holder A failed".into());
    }
    b.release().await?;

    let log = store.log();
    println!("store accepted: {log:?}");
    if log.iter().any(|entry| entry.contains("AGAIN")) {
        return Err("the stale holder's write was accepted: fencing failed".into());
    }
    println!("fencing held: the stale write was rejected");
    Ok(())
}

/// Holder A: acquires, writes, reports; then waits (frozen meanwhile) and writes again with
/// the same token, as a holder that does not check `lost()` would.
async fn holder(servers: &str, store: SocketAddr) -> Result<()> {
    let session = Session::builder().session_timeout(HOLDER_TIMEOUT).connect(servers).await?;
    let guard = Mutex::new(&session, LOCK)?.with_data("A").lock().await?;
    let token = guard.token();
    let verdict = write(store, token, "A: charge order 42").await?;
    println!("acquired with token {token}; write {verdict}");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let lost = tokio::time::timeout(Duration::ZERO, guard.lost()).await;
    println!("resumed; guard.lost() {}", if lost.is_ok() { "had already resolved" } else { "had not resolved" });
    let verdict = write(store, token, "A: charge order 42 AGAIN").await?;
    println!("writes anyway with token {token}: {verdict}");
    Ok(())
}

/// One `WRITE <token> <entry>` to the store; its verdict.
async fn write(store: SocketAddr, token: FencingToken, entry: &str) -> Result<String> {
    let mut stream = TcpStream::connect(store).await?;
    stream.write_all(format!("WRITE {token} {entry}\n").as_bytes()).await?;
    let mut verdict = String::new();
    AsyncBufReader::new(stream).read_line(&mut verdict).await?;
    Ok(verdict.trim().to_owned())
}

/// The token-checking store: the highest token seen and the accepted entries.
struct Store {
    address: SocketAddr,
    state: Arc<StdMutex<(Option<FencingToken>, Vec<String>)>>,
}

impl Store {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(StdMutex::new((None, Vec::new())));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut request = String::new();
                    if AsyncBufReader::new(read).read_line(&mut request).await.is_ok() {
                        let verdict = Store::apply(&shared, request.trim());
                        let _ = write.write_all(format!("{verdict}\n").as_bytes()).await;
                    }
                });
            }
        });
        Ok(Self { address, state })
    }

    /// Checks the token and appends the entry, atomically.
    fn apply(state: &StdMutex<(Option<FencingToken>, Vec<String>)>, request: &str) -> String {
        let mut words = request.splitn(3, ' ');
        let (Some("WRITE"), Some(token), Some(entry)) = (words.next(), words.next(), words.next()) else {
            return "ERROR bad request".into();
        };
        let Ok(token) = token.parse::<FencingToken>() else { return "ERROR bad token".into() };
        let mut state = state.lock().unwrap();
        match state.0 {
            Some(highest) if token < highest => format!("REJECTED (token {token} < highest seen {highest})"),
            _ => {
                state.0 = Some(token);
                state.1.push(entry.to_owned());
                "ACCEPTED".into()
            }
        }
    }

    async fn client_write(&self, token: FencingToken, entry: &str) -> Result<String> {
        write(self.address, token, entry).await
    }

    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().1.clone()
    }
}

//! The payment worker that paused, end to end on a real PostgreSQL: worker A takes the lock
//! for order 42 and starts capturing it, then freezes (SIGSTOP, as a long GC pause or a stalled
//! VM would) past its session timeout; worker B gets the lock with a larger fencing token and
//! captures; A wakes, carries on with its capture, and PostgreSQL refuses it, because the
//! fence already holds B's token.
//!
//! Each capture is one transaction that first advances the lock's fence row
//! ([`FenceTable::advance`]) and then updates the payment through its own fence column
//! ([`FencedTable::update`]). Worker A is this program again, started with `--worker`, since
//! only a process of its own can be frozen. Exits non-zero if A's capture gets through.
//!
//! Run with `cargo run --example payment --features postgres` (uses `ZK_SERVERS` or starts a
//! local ZooKeeper; always starts its own PostgreSQL).

#[path = "support/thaw.rs"]
mod thaw;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;
use zk_recipes::fence::tokio_postgres::{self, NoTls};
use zk_recipes::fence::{FenceError, FenceTable, FencedTable};
use zk_recipes::testing::{TestingCluster, TestingPostgres};
use zk_recipes::{FencingToken, Mutex, Session};

use crate::thaw::Thaw;

const LOCK: &str = "/payments/order-42";
const ORDER: i64 = 42;
/// Worker A's session timeout: how long it must be frozen to lose the lock.
const WORKER_TIMEOUT: Duration = Duration::from_secs(2);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, servers, database] = args.as_slice()
        && flag == "--worker"
    {
        return worker_a(servers, database).await;
    }
    let (servers, _zookeeper) = TestingCluster::from_env_or_standalone("ZK_SERVERS").await?;
    let postgres = TestingPostgres::start().await?;
    let mut db = postgres.connect().await?;
    schema(&db).await?;
    println!("order {ORDER} is pending; the lock is {LOCK}");

    let mut a = Command::new(std::env::current_exe()?)
        .args(["--worker", &servers, &postgres.connection_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = Pid::from_raw(i32::try_from(a.id())?);
    // Whatever happens below, A does not stay frozen (or alive) after this program.
    let mut thaw = Thaw(Some(pid));
    let mut a_in = a.stdin.take().expect("piped");
    let mut a_out = BufReader::new(a.stdout.take().expect("piped")).lines();
    for line in a_out.by_ref() {
        let line = line?;
        println!("A: {line}");
        if line.starts_with("starts capturing") {
            break;
        }
    }

    kill(pid, Signal::SIGSTOP)?;
    let frozen = Instant::now();
    println!("A is frozen (SIGSTOP) in the middle of its capture");
    let b_session = Session::connect(&servers).await?;
    let b = Mutex::new(&b_session, LOCK)?.with_data("worker B").lock().await?;
    println!(
        "B: acquired with token {} after {:.1} s, once A's session had expired",
        b.token(),
        frozen.elapsed().as_secs_f64()
    );
    let tx = db.transaction().await?;
    capture(&tx, b.token(), "B").await?;
    tx.commit().await?;
    println!("B: captured order {ORDER} and committed");
    b.release().await?;

    kill(pid, Signal::SIGCONT)?;
    println!("A is resumed (SIGCONT)");
    writeln!(a_in, "resume")?;
    for line in a_out {
        println!("A: {}", line?);
    }
    let status = a.wait()?;
    thaw.0 = None; // reaped: its pid is not ours to signal any more

    println!("payments:");
    for row in db.query("SELECT id, status, captured_by, fence FROM payments ORDER BY id", &[]).await? {
        let (id, status, by, fence): (i64, String, Option<String>, FencingToken) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        println!("  id {id} | {status} | captured by {} | fence {fence}", by.as_deref().unwrap_or("-"));
    }
    println!("fences:");
    for row in db.query("SELECT lock_path, token FROM fences ORDER BY lock_path", &[]).await? {
        let (lock, token): (String, FencingToken) = (row.get(0), row.get(1));
        println!("  {lock} | {token}");
    }
    let captured_by: Option<String> = db.query_one("SELECT captured_by FROM payments WHERE id = 42", &[]).await?.get(0);
    if !status.success() || captured_by.as_deref() != Some("B") {
        return Err("worker A's stale capture got through: fencing failed".into());
    }
    println!("fencing held: PostgreSQL refused the stale capture");
    Ok(())
}

/// The fence table, and the payments table whose rows carry their own fence.
async fn schema(db: &tokio_postgres::Client) -> Result<()> {
    FenceTable::new("fences")?.create(db).await?;
    db.batch_execute(
        "CREATE TABLE payments (
            id bigint PRIMARY KEY,
            amount_cents bigint NOT NULL,
            status text NOT NULL,
            captured_by text,
            fence text COLLATE \"C\" NOT NULL
        );
        INSERT INTO payments VALUES (42, 12900, 'pending', NULL, '0000000000000000-0000000000');",
    )
    .await?;
    Ok(())
}

/// One capture, inside the caller's transaction: the fence first, then the payment.
async fn capture(
    tx: &tokio_postgres::Transaction<'_>,
    token: FencingToken,
    worker: &str,
) -> std::result::Result<(), FenceError> {
    FenceTable::new("fences")?.advance(tx, LOCK, token).await?;
    let payments = FencedTable::new("payments", "id", "fence")?;
    payments.update(tx, token, &ORDER, "status = 'captured', captured_by = $3", &[&worker]).await?;
    Ok(())
}

/// Worker A: acquires, starts its capture (the transaction is open, the payment read), and
/// stops there, as if in a long call to the card network — frozen meanwhile. Then it
/// finishes the capture without asking whether it still holds the lock.
async fn worker_a(servers: &str, database: &str) -> Result<()> {
    let session = Session::builder().session_timeout(WORKER_TIMEOUT).connect(servers).await?;
    let guard = Mutex::new(&session, LOCK)?.with_data("worker A").lock().await?;
    let token = guard.token();
    println!("acquired with token {token}");
    let (mut db, connection) = tokio_postgres::connect(database, NoTls).await?;
    tokio::spawn(connection);
    let tx = db.transaction().await?;
    let (status, cents): (String, i64) = tx
        .query_one("SELECT status, amount_cents FROM payments WHERE id = $1", &[&ORDER])
        .await
        .map(|r| (r.get(0), r.get(1)))?;
    println!(
        "starts capturing order {ORDER} ({status}, {}.{:02} EUR): calling the card network",
        cents / 100,
        cents % 100
    );
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;

    let lost = tokio::time::timeout(Duration::ZERO, guard.lost()).await;
    println!(
        "resumed; guard.lost() {}; captures anyway",
        if lost.is_ok() { "had already resolved" } else { "had not resolved" }
    );
    match capture(&tx, token, "A").await {
        Ok(()) => {
            tx.commit().await?;
            println!("captured order {ORDER} and committed (a double capture!)");
        }
        Err(error @ FenceError::Stale { .. }) => {
            drop(tx); // rolled back
            println!("capture refused by PostgreSQL: {error}");
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

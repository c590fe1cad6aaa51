//! `zk_recipes::fence` against a real PostgreSQL started by each test (and a real ZooKeeper
//! where the tokens' origin matters): a stale write that waits behind a later holder's open
//! transaction updates nothing once that commits, at READ COMMITTED, in both idioms; the same
//! holder may write again; a token from a recreated lock directory wins; stale tokens are
//! refused with the winner named; the token's SQL forms order as tokens do. And the harness's
//! PostgreSQL itself: it serves, runs as `postgres` under root, never outlives its test, and
//! fails with the install command when PostgreSQL is missing.

mod common;

use std::time::Duration;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{eventually, postgres, process_alive, session, standalone};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use zk_recipes::fence::{FenceError, FenceTable, FencedTable};
use zk_recipes::testing::TestingPostgres;
use zk_recipes::{FencingToken, Mutex};

const LOCK: &str = "/payments/order-42";
const ORDER: i64 = 42;
/// Two holders of one lock, in the order ZooKeeper handed them out.
const EARLIER: FencingToken = FencingToken::new(0x1_0000_0002, 41);
const LATER: FencingToken = FencingToken::new(0x1_0000_0002, 42);

/// The fence table, and a payments table whose rows carry their own fence, with order 42
/// pending.
async fn schema(client: &Client) -> (FenceTable, FencedTable) {
    common::payments_schema(client).await;
    (FenceTable::new("fences").unwrap(), FencedTable::new("payments", "id", "fence").unwrap())
}

async fn payment(client: &Client) -> (String, Option<String>, FencingToken) {
    let row = client.query_one("SELECT status, captured_by, fence FROM payments WHERE id = 42", &[]).await.unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn backend_pid(client: &Client) -> i32 {
    client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
}

/// Waits until backend `waiter` waits for a lock that backend `holder` holds: the event that
/// says the stale statement has reached the row and is blocked.
async fn until_blocked(observer: &Client, waiter: i32, holder: i32) {
    eventually("the stale statement waits for the later holder's lock", Duration::from_secs(30), || async {
        let row =
            observer.query_one("SELECT $2::int = ANY(pg_blocking_pids($1::int))", &[&waiter, &holder]).await.unwrap();
        row.get::<_, bool>(0).then_some(())
    })
    .await;
}

/// Which idiom a race runs through.
#[derive(Clone, Copy, Debug)]
enum Idiom {
    AdvanceFenceRow,
    GuardedUpdate,
}

async fn capture(
    tx: &tokio_postgres::Transaction<'_>,
    idiom: Idiom,
    token: FencingToken,
    who: &str,
) -> Result<(), FenceError> {
    let (fences, payments) = (FenceTable::new("fences")?, FencedTable::new("payments", "id", "fence")?);
    match idiom {
        Idiom::AdvanceFenceRow => {
            fences.advance(tx, LOCK, token).await?;
            tx.execute(
                "UPDATE payments SET status = 'captured', captured_by = $1, fence = $2 WHERE id = 42",
                &[&who, &token],
            )
            .await?;
        }
        Idiom::GuardedUpdate => {
            payments.update(tx, token, &ORDER, "status = 'captured', captured_by = $3", &[&who]).await?;
        }
    }
    Ok(())
}

/// The later holder's transaction has captured and is still open; the earlier holder's capture
/// starts, blocks on the row, and is decided by the later one's commit or rollback. Returns
/// the earlier holder's result.
async fn race(
    postgres: &TestingPostgres,
    idiom: Idiom,
    isolation: &str,
    later_commits: bool,
) -> Result<(), FenceError> {
    let observer = postgres.connect().await.unwrap();
    schema(&observer).await;
    let mut later = postgres.connect().await.unwrap();
    let mut earlier = postgres.connect().await.unwrap();
    let (later_pid, earlier_pid) = (backend_pid(&later).await, backend_pid(&earlier).await);

    let later_tx = later.transaction().await.unwrap();
    capture(&later_tx, idiom, LATER, "B").await.expect("the later holder captures");

    let isolation = isolation.to_owned();
    let stale = tokio::spawn(async move {
        let tx = earlier.build_transaction().isolation_level(level(&isolation)).start().await.unwrap();
        let shown: String = tx.query_one("SHOW transaction_isolation", &[]).await.unwrap().get(0);
        assert_eq!(shown, isolation);
        let result = capture(&tx, idiom, EARLIER, "A").await;
        if result.is_ok() {
            tx.commit().await.unwrap();
        }
        result
    });
    until_blocked(&observer, earlier_pid, later_pid).await;
    assert!(!stale.is_finished(), "blocked, so not finished");
    if later_commits {
        later_tx.commit().await.unwrap()
    } else {
        later_tx.rollback().await.unwrap()
    }
    tokio::time::timeout(Duration::from_secs(30), stale).await.expect("the stale capture ends").unwrap()
}

fn level(isolation: &str) -> tokio_postgres::IsolationLevel {
    match isolation {
        "read committed" => tokio_postgres::IsolationLevel::ReadCommitted,
        "repeatable read" => tokio_postgres::IsolationLevel::RepeatableRead,
        other => panic!("no isolation level {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_read_committed_a_stale_advance_blocked_behind_a_later_holder_is_refused_once_it_commits() {
    let postgres = postgres().await;
    let refused = race(&postgres, Idiom::AdvanceFenceRow, "read committed", true).await;
    match refused {
        Err(FenceError::Stale { presented, current }) => assert_eq!((presented, current), (EARLIER, LATER)),
        other => panic!("expected a stale-token error, got {other:?}"),
    }
    let client = postgres.connect().await.unwrap();
    assert_eq!(payment(&client).await, ("captured".into(), Some("B".into()), LATER), "B's capture stands alone");
    assert_eq!(FenceTable::new("fences").unwrap().current(&client, LOCK).await.unwrap(), Some(LATER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_read_committed_a_stale_guarded_update_blocked_behind_a_later_holder_updates_no_row() {
    let postgres = postgres().await;
    let refused = race(&postgres, Idiom::GuardedUpdate, "read committed", true).await;
    let error = refused.expect_err("the stale update changes nothing");
    assert!(matches!(error, FenceError::Stale { presented: EARLIER, current: LATER }), "{error:?}");
    assert!(error.to_string().contains(&format!("the fence is at {LATER}")), "says which token won: {error}");
    let client = postgres.connect().await.unwrap();
    assert_eq!(payment(&client).await, ("captured".into(), Some("B".into()), LATER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_holder_that_rolls_back_leaves_the_fence_to_the_earlier_one() {
    // The commit decides, not the attempt: what a later holder rolled back never fenced anyone.
    for idiom in [Idiom::AdvanceFenceRow, Idiom::GuardedUpdate] {
        let postgres = postgres().await;
        race(&postgres, idiom, "read committed", false).await.expect("nothing later committed");
        let client = postgres.connect().await.unwrap();
        assert_eq!(payment(&client).await, ("captured".into(), Some("A".into()), EARLIER), "{idiom:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_repeatable_read_the_blocked_stale_write_fails_with_a_serialization_error() {
    let postgres = postgres().await;
    let refused = race(&postgres, Idiom::GuardedUpdate, "repeatable read", true).await;
    match refused {
        Err(FenceError::Postgres(error)) => assert_eq!(error.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE)),
        other => panic!("expected SQLSTATE 40001, got {other:?}"),
    }
    let client = postgres.connect().await.unwrap();
    assert_eq!(payment(&client).await, ("captured".into(), Some("B".into()), LATER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_holder_may_write_twice_through_either_idiom() {
    let postgres = postgres().await;
    let mut client = postgres.connect().await.unwrap();
    let (fences, payments) = schema(&client).await;
    for round in 1..=2 {
        let tx = client.transaction().await.unwrap();
        fences.advance(&tx, LOCK, LATER).await.unwrap_or_else(|e| panic!("advance {round}: {e}"));
        let updated = payments
            .update(&tx, LATER, &ORDER, "status = 'captured', captured_by = $3", &[&format!("B, write {round}")])
            .await
            .unwrap_or_else(|e| panic!("update {round}: {e}"));
        assert_eq!(updated, 1);
        tx.commit().await.unwrap();
    }
    assert_eq!(payment(&client).await, ("captured".into(), Some("B, write 2".into()), LATER));
    // Outside a transaction too: each statement commits by itself.
    fences.advance(&client, LOCK, LATER).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_token_is_refused_naming_the_winner_and_changes_nothing() {
    let postgres = postgres().await;
    let mut client = postgres.connect().await.unwrap();
    let (fences, payments) = schema(&client).await;
    let tx = client.transaction().await.unwrap();
    fences.advance(&tx, LOCK, LATER).await.unwrap();
    payments.update(&tx, LATER, &ORDER, "status = 'captured', captured_by = 'B'", &[]).await.unwrap();
    tx.commit().await.unwrap();

    let tx = client.transaction().await.unwrap();
    let error = fences.advance(&tx, LOCK, EARLIER).await.unwrap_err();
    assert!(matches!(error, FenceError::Stale { presented: EARLIER, current: LATER }), "{error:?}");
    drop(tx); // rolled back
    let error = payments.update(&client, EARLIER, &ORDER, "status = 'refunded'", &[]).await.unwrap_err();
    assert!(matches!(error, FenceError::Stale { presented: EARLIER, current: LATER }), "{error:?}");
    assert_eq!(payment(&client).await, ("captured".into(), Some("B".into()), LATER));
    assert_eq!(fences.current(&client, LOCK).await.unwrap(), Some(LATER));

    let error = payments.update(&client, LATER, &7_i64, "status = 'captured'", &[]).await.unwrap_err();
    assert!(matches!(error, FenceError::NoRow { ref table } if table == "payments"), "{error:?}");
    assert_eq!(fences.current(&client, "/payments/never-taken").await.unwrap(), None);
    // A malformed token never gets into a fence, even written by hand.
    let refused = client.execute("INSERT INTO fences (lock_path, token) VALUES ('/x', 'ffff')", &[]).await;
    assert_eq!(refused.unwrap_err().code(), Some(&SqlState::CHECK_VIOLATION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_a_recreated_lock_directory_wins_and_the_old_directorys_loses() {
    let zookeeper = standalone().await;
    let connect = zookeeper.connect_string();
    let postgres = postgres().await;
    let client = postgres.connect().await.unwrap();
    let (fences, payments) = schema(&client).await;
    let holder = session(&connect, Duration::from_secs(4)).await;
    let mutex = Mutex::new(&holder, LOCK).unwrap();

    // Two turns in the first directory; the second holder writes.
    mutex.lock().await.unwrap().release().await.unwrap();
    let guard = mutex.lock().await.unwrap();
    let old = guard.token();
    fences.advance(&client, LOCK, old).await.unwrap();
    payments.update(&client, old, &ORDER, "status = 'authorized'", &[]).await.unwrap();
    guard.release().await.unwrap();

    // The directory goes (as the server reaps an idle container, or an operator deletes it)
    // and comes back with the next contender: its sequence counter starts again.
    holder.client().await.unwrap().delete(LOCK, None).await.unwrap();
    let guard = mutex.lock().await.unwrap();
    let new = guard.token();
    assert!(new.epoch() > old.epoch() && new.sequence() < old.sequence(), "{old} then {new}");
    assert!(new.to_string() > old.to_string(), "the text form orders them too");
    fences.advance(&client, LOCK, new).await.expect("the recreated directory's token wins");
    payments.update(&client, new, &ORDER, "status = 'captured'", &[]).await.unwrap();

    // The old directory's holder, writing late, is refused by both fences.
    let error = fences.advance(&client, LOCK, old).await.unwrap_err();
    assert!(
        matches!(error, FenceError::Stale { presented, current } if presented == old && current == new),
        "{error:?}"
    );
    let error = payments.update(&client, old, &ORDER, "status = 'refunded'", &[]).await.unwrap_err();
    assert!(
        matches!(error, FenceError::Stale { presented, current } if presented == old && current == new),
        "{error:?}"
    );
    assert_eq!(payment(&client).await, ("captured".into(), None, new));
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_postgres_the_text_form_sorts_like_the_token_and_numeric_holds_its_number() {
    let postgres = postgres().await;
    let client = postgres.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE tokens (n serial, as_text text COLLATE \"C\" NOT NULL, as_number numeric(39,0) NOT NULL)",
        )
        .await
        .unwrap();
    // Neighbours where digits meet letters in the hex epoch, and 9 meets 10 in the sequence.
    let mut tokens = vec![
        FencingToken::new(0x9, 10),
        FencingToken::new(0xa, 0),
        FencingToken::new(0x9, 9),
        FencingToken::new(0x1_0000_0002, 41),
        FencingToken::new(u64::MAX, i32::MAX as u32),
        FencingToken::new(0, 0),
        FencingToken::new(0xf0, 1),
        FencingToken::new(0x1f, 2_000_000_000),
    ];
    for token in &tokens {
        // The same value, bound as text and as numeric(39,0).
        client.execute("INSERT INTO tokens (as_text, as_number) VALUES ($1, $2)", &[token, token]).await.unwrap();
    }
    tokens.sort();
    for order in ["as_text", "as_number"] {
        let rows = client.query(&format!("SELECT as_text, as_number FROM tokens ORDER BY {order}"), &[]).await.unwrap();
        let by_text: Vec<FencingToken> = rows.iter().map(|r| r.get(0)).collect();
        let by_number: Vec<FencingToken> = rows.iter().map(|r| r.get(1)).collect();
        assert_eq!(by_text, tokens, "ORDER BY {order}");
        assert_eq!(by_number, tokens, "numeric reads back as the same tokens");
    }
    for token in &tokens {
        let printed: String = client.query_one("SELECT $1::numeric::text", &[token]).await.unwrap().get(0);
        assert_eq!(printed, token.as_u128().to_string());
    }
}

/// Set in a copy of this test binary that a harness test starts as a child.
const CHILD_ENV: &str = "ZK_RECIPES_FENCE_TEST_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_postgres_serves_and_goes_with_its_handle() {
    let postgres = postgres().await;
    let client = postgres.connect().await.unwrap();
    let row =
        client.query_one("SELECT current_user::text, current_setting('transaction_isolation')", &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("postgres".into(), "read committed".into()));
    let pid = postgres.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    if nix::unistd::geteuid().is_root() {
        assert_ne!(uid, 0, "PostgreSQL refuses root; the harness runs it as the postgres user");
    }
    let log = postgres.log_path().to_owned();
    assert!(std::fs::read_to_string(&log).unwrap().contains("ready to accept connections"));
    drop(client);
    drop(postgres);
    assert!(!process_alive(pid), "the server stops with its handle");
    assert!(!log.exists(), "its directory is deleted");
}

#[test]
fn the_harness_postgres_and_its_files_go_even_when_the_test_process_is_killed() {
    if std::env::var_os(CHILD_ENV).is_some_and(|v| v == "serve") {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let postgres = TestingPostgres::start().await.expect("a server");
            println!("server-pid={} log={}", postgres.pid(), postgres.log_path().display());
            std::future::pending::<()>().await;
        });
        return;
    }
    let mut child = child_test("the_harness_postgres_and_its_files_go_even_when_the_test_process_is_killed", "serve")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (pid, log): (u32, std::path::PathBuf) = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            // libtest may print the test's name on the same line first.
            let (pid, log) = line.split_once("server-pid=")?.1.split_once(" log=")?;
            Some((pid.parse().unwrap(), log.into()))
        })
        .expect("the child reports its server's pid");
    assert!(process_alive(pid) && log.exists());
    child.kill().unwrap(); // SIGKILL: no unwinding, no Drop
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while process_alive(pid) || log.parent().unwrap().exists() {
        assert!(std::time::Instant::now() < deadline, "server {pid} or its files outlived the killed test process");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn missing_postgres_fails_with_the_install_command() {
    // In a child process: PG_BIN must not leak into tests that run beside this one.
    if std::env::var_os(CHILD_ENV).is_some_and(|v| v == "missing") {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let error = runtime.block_on(TestingPostgres::start()).expect_err("no PostgreSQL there");
        println!("error={error}");
        return;
    }
    let output = child_test("missing_postgres_fails_with_the_install_command", "missing")
        .env("PG_BIN", "/nonexistent/postgresql/bin")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("apt-get install -y postgresql"), "{out}");
    assert!(out.contains("PG_BIN=/nonexistent/postgresql/bin"), "{out}");
}

/// This test binary again, running only `test` with `CHILD_ENV` = `mode`.
fn child_test(test: &str, mode: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", test, "--nocapture", "--test-threads=1"]).env(CHILD_ENV, mode);
    command
}

//! Fencing across languages: a Curator holder derives its token in Java exactly as this
//! library does (the lock directory's `czxid`, its node's sequence) and captures through the
//! same PostgreSQL fence over JDBC; a Rust successor's token wins over it, and the other way
//! round. Token derivation and the fence need no ensemble, so a standalone server does.

use std::time::Duration;

use tokio_postgres::Client;
use zk_recipes::fence::{FenceError, FenceTable, FencedTable};
use zk_recipes::testing::{TestingCluster, TestingPostgres};
use zk_recipes::{FencingToken, Mutex, Session, inspect};
use zk_recipes_peers::{Library, PeerContender, PeerRecipe};

use crate::{common, peer, session};

const LOCK: &str = "/interop/payments/order-42";
const ORDER: i64 = 42;

async fn postgres_with_schema() -> (TestingPostgres, Client) {
    let postgres = common::postgres().await;
    let db = postgres.connect().await.unwrap();
    common::payments_schema(&db).await;
    (postgres, db)
}

/// A Rust capture, as `examples/payment.rs` makes it: the fence row, then the payment's own.
async fn rust_capture(db: &mut Client, token: FencingToken, worker: &str) -> Result<(), FenceError> {
    let tx = db.transaction().await?;
    FenceTable::new("fences")?.advance(&tx, LOCK, token).await?;
    FencedTable::new("payments", "id", "fence")?
        .update(&tx, token, &ORDER, "status = 'captured', captured_by = $3", &[&worker])
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn captured_by(db: &Client) -> (Option<String>, FencingToken) {
    let row = db.query_one("SELECT captured_by, fence FROM payments WHERE id = 42", &[]).await.unwrap();
    (row.get(0), row.get(1))
}

/// The Curator contender's token, checked against this library's own derivation of it.
async fn curator_token(curator: &mut PeerContender, node: &str, observer: &Session) -> FencingToken {
    let token = curator.token().await.unwrap();
    let snapshot = inspect(observer, LOCK).await.unwrap();
    let holder = snapshot.holders.iter().find(|p| p.node.ends_with(node)).expect("Curator's node holds");
    assert_eq!(token, holder.token, "Java derives the token bit for bit as Rust does");
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_successors_token_wins_over_a_curator_holders_in_postgres() {
    let cluster = TestingCluster::standalone().await.expect("a ZooKeeper server");
    let connect = cluster.connect_string();
    let (postgres, mut db) = postgres_with_schema().await;
    let observer = session(&connect).await;
    let java = peer(Library::Curator, &connect).await;

    let mut curator = java.open(PeerRecipe::Mutex, LOCK).await.unwrap();
    let node = curator.acquire(None).await.unwrap().expect("Curator acquires");
    let curator_token = curator_token(&mut curator, &node, &observer).await;
    let jdbc = postgres.jdbc_url();
    assert_eq!(curator.capture(&jdbc, LOCK, ORDER, "curator").await.unwrap(), Ok(curator_token));
    assert_eq!(captured_by(&db).await, (Some("curator".into()), curator_token));

    // Curator's session ends; it keeps its token, as a paused holder would.
    curator.close_client().await.unwrap();
    let rust_session = session(&connect).await;
    let guard = Mutex::new(&rust_session, LOCK).unwrap().lock().await.unwrap();
    assert!(guard.token() > curator_token, "{curator_token} then {}", guard.token());
    rust_capture(&mut db, guard.token(), "rust").await.expect("the Rust successor captures");

    // The Curator holder, late, writes through the same fence from Java and is refused.
    assert_eq!(curator.capture(&jdbc, LOCK, ORDER, "curator again").await.unwrap(), Err(guard.token()));
    assert_eq!(captured_by(&db).await, (Some("rust".into()), guard.token()));
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curator_successors_token_wins_over_a_rust_holders_in_postgres() {
    let cluster = TestingCluster::standalone().await.expect("a ZooKeeper server");
    let connect = cluster.connect_string();
    let (postgres, mut db) = postgres_with_schema().await;
    let observer = session(&connect).await;
    let java = peer(Library::Curator, &connect).await;

    let rust_session = Session::builder().session_timeout(Duration::from_secs(4)).connect(&connect).await.unwrap();
    let guard = Mutex::new(&rust_session, LOCK).unwrap().lock().await.unwrap();
    let rust_token = guard.token();
    rust_capture(&mut db, rust_token, "rust").await.expect("the Rust holder captures");

    // The Rust holder's session ends; a Curator contender takes the lock after it.
    drop(guard);
    rust_session.close().await;
    let mut curator = java.open(PeerRecipe::Mutex, LOCK).await.unwrap();
    let node = curator.acquire(None).await.unwrap().expect("Curator acquires");
    let curator_token = curator_token(&mut curator, &node, &observer).await;
    assert!(curator_token > rust_token, "{rust_token} then {curator_token}");
    assert_eq!(curator.capture(&postgres.jdbc_url(), LOCK, ORDER, "curator").await.unwrap(), Ok(curator_token));

    // The Rust holder, late, is refused with Curator's token named.
    match rust_capture(&mut db, rust_token, "rust again").await {
        Err(FenceError::Stale { presented, current }) => assert_eq!((presented, current), (rust_token, curator_token)),
        other => panic!("expected a stale-token error, got {other:?}"),
    }
    assert_eq!(captured_by(&db).await, (Some("curator".into()), curator_token));
    curator.release().await.unwrap();
}

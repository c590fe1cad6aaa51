//! Helpers shared by the integration tests. Every test starts its own real ZooKeeper.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use zk_recipes::testing::TestingCluster;
use zk_recipes::{Session, zk};

/// Logs from `RUST_LOG` (e.g. `RUST_LOG=zk_recipes=debug`), captured per test.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
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

/// A plain client for looking at the server's state behind the library's back.
pub async fn observer(connect: &str) -> zk::Client {
    zk::Client::connect(connect).await.expect("an observer client")
}

/// The children of `path` (none if it does not exist).
pub async fn children(client: &zk::Client, path: &str) -> Vec<String> {
    match client.list_children(path).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => Vec::new(),
        Err(err) => panic!("listing {path}: {err}"),
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

/// Whether a process exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

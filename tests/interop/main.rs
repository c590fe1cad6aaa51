//! Interop against real Apache Curator 5.4 (Java) and kazoo 2.8 (Python) peers: Rust and peer
//! contenders share one path on a 3-node ensemble, and the test drives the interleaving.
//!
//! Each module backs the interop table of its recipe in `recipes/`.

mod driver;
#[cfg(feature = "postgres")]
mod fence;
mod leader;
mod mutex;
mod rwlock;
#[cfg(all(feature = "tls", feature = "sasl"))]
mod secure;
mod semaphore;

use std::time::Duration;

use zk_recipes::testing::TestingCluster;
use zk_recipes::{Session, zk};
use zk_recipes_peers::{Library, Peer};

/// A 3-node ensemble, as the interop tests use.
async fn ensemble() -> TestingCluster {
    TestingCluster::ensemble(3).await.expect("a 3-node ZooKeeper ensemble")
}

/// A Rust session on `connect`.
async fn session(connect: &str) -> Session {
    Session::builder().session_timeout(Duration::from_secs(6)).connect(connect).await.expect("a Rust session")
}

/// A plain client to look at the tree with.
async fn observer(connect: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(std::time::Duration::from_secs(60))
        .connect(connect)
        .await
        .expect("an observer client")
}

/// A Curator or kazoo peer process; fails with the command that installs what is missing.
async fn peer(library: Library, connect: &str) -> Peer {
    Peer::start(library, connect).await.unwrap_or_else(|error| panic!("{error}"))
}

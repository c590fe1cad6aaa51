//! Interop against real Apache Curator 5.4 (Java) and kazoo 2.8 (Python) peers: Rust and peer
//! contenders share one path on a 3-node ensemble, and the test drives the interleaving.
//!
//! Each module backs the interop table of its recipe in `recipes/`.

#[path = "../common/mod.rs"]
mod common;
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

use common::observer;
use zk_recipes::Session;
use zk_recipes::testing::TestingCluster;
use zk_recipes_peers::{Library, Peer};

/// A 3-node ensemble, as the interop tests use.
async fn ensemble() -> TestingCluster {
    TestingCluster::ensemble(3).await.expect("a 3-node ZooKeeper ensemble")
}

/// A Rust session on `connect`.
async fn session(connect: &str) -> Session {
    Session::builder().session_timeout(Duration::from_secs(6)).connect(connect).await.expect("a Rust session")
}

/// A Curator or kazoo peer process; fails with the command that installs what is missing.
async fn peer(library: Library, connect: &str) -> Peer {
    Peer::start(library, connect).await.unwrap_or_else(|error| panic!("{error}"))
}

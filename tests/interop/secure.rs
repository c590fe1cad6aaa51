//! Curator and Rust contenders share one mutex on secured servers: over TLS with client
//! certificates (the Java peer through ZooKeeper's client TLS system properties and its Netty
//! socket), and over SASL DIGEST-MD5 (the Java peer through a JAAS `Client` section).

use zk_recipes::testing::{ClientAuth, TestingCluster};
use zk_recipes::{Mutex, Session, TlsConfig};
use zk_recipes_peers::{Library, Peer, PeerRecipe, PeerSecurity};

use crate::driver::{Contender, Table, assert_tokens_increase, until_empty};
use crate::observer;

const PATH: &str = "/interop/secure";

async fn curator(connect: &str, security: &PeerSecurity) -> Peer {
    Peer::start_secured(Library::Curator, connect, security).await.unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_curator_take_fifo_turns_over_tls_with_client_certificates() {
    let cluster = TestingCluster::builder().size(3).tls(ClientAuth::Need).start().await.expect("a TLS ensemble");
    let tls = cluster.tls().unwrap();
    let connect = cluster.connect_string();
    let observer = observer(&cluster.plaintext_connect_string()).await;
    let security = PeerSecurity::tls(&tls.ca.cert_path, Some(&tls.java_key_store(&tls.client).unwrap()));
    let curator = curator(&connect, &security).await;
    let mut table = Table::new();
    for i in 0..2 {
        let config = TlsConfig::ca_file(&tls.ca.cert_path).identity_files(&tls.client.cert_path, &tls.client.key_path);
        let session = Session::builder().tls(config).connect(&connect).await.unwrap();
        table.add(format!("rust-{i}"), Contender::mutex(Mutex::new(&session, PATH).unwrap()));
        table.add(format!("curator-{i}"), Contender::Peer(curator.open(PeerRecipe::Mutex, PATH).await.unwrap()));
    }
    for order in [[0, 1, 2, 3], [3, 2, 1, 0]] {
        let turns = table.exclusive_round(&order, &observer, PATH).await;
        assert_tokens_increase(&turns);
    }
    table.finish().await;
    until_empty(&observer, PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_curator_take_fifo_turns_over_sasl() {
    let cluster =
        TestingCluster::builder().size(3).sasl_user("alice", "alice-secret").start().await.expect("a SASL ensemble");
    let sasl = cluster.sasl().unwrap();
    let connect = cluster.connect_string();
    let security = PeerSecurity::sasl(&sasl.java_client_jaas("alice", "alice-secret").unwrap());
    let curator = curator(&connect, &security).await;
    // The servers close unauthenticated sessions: the observer authenticates too.
    let watcher = Session::builder().sasl_digest("alice", "alice-secret").connect(&connect).await.unwrap();
    let observer = watcher.client().await.unwrap();
    let mut table = Table::new();
    for i in 0..2 {
        let session = Session::builder().sasl_digest("alice", "alice-secret").connect(&connect).await.unwrap();
        table.add(format!("rust-{i}"), Contender::mutex(Mutex::new(&session, PATH).unwrap()));
        table.add(format!("curator-{i}"), Contender::Peer(curator.open(PeerRecipe::Mutex, PATH).await.unwrap()));
    }
    for order in [[0, 1, 2, 3], [1, 0, 3, 2]] {
        let turns = table.exclusive_round(&order, &observer, PATH).await;
        assert_tokens_increase(&turns);
    }
    table.finish().await;
    until_empty(&observer, PATH).await;
}

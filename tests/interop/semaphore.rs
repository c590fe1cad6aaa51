//! The semaphore beside Curator's `InterProcessSemaphoreV2`.

use std::collections::VecDeque;

use zk_recipes::Semaphore;
use zk_recipes_peers::{Library, PeerRecipe};

use crate::driver::{Contender, Table, children, until_empty};
use crate::{ensemble, observer, peer, session};

const PATH: &str = "/interop/semaphore";
const PERMITS: u32 = 3;
const TURNS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_curator_never_hold_more_leases_than_permits_and_take_turns_in_order() {
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let curator = peer(Library::Curator, &connect).await;
    let mut table = Table::new();
    for i in 0..3 {
        let semaphore = Semaphore::new(&session(&connect).await, PATH, PERMITS).unwrap();
        table.add(format!("rust-{i}"), Contender::semaphore(semaphore));
        let contender = curator.open(PeerRecipe::Semaphore(PERMITS), PATH).await.unwrap();
        table.add(format!("curator-{i}"), Contender::Peer(contender));
    }
    for who in 0..table.len() {
        table.acquire(who);
    }
    // Holders as the test sees them: from the reported acquisition until the test asks for the
    // release. A correct semaphore grants a lease only after a holder was asked to release.
    let mut holders = VecDeque::new();
    for _ in 0..PERMITS {
        holders.push_back(table.next().await.who);
    }
    let mut left = Vec::new();
    for turn in 0..TURNS {
        table.assert_nobody_acquires(&format!("all {PERMITS} permits are held by {holders:?}")).await;
        let names = children(&observer, &format!("{PATH}/leases")).await;
        // A contender inside its acquisition has a lease node before it holds.
        assert!(names.len() <= PERMITS as usize + 1, "lease nodes: {names:?}");
        // The longest holder leaves and queues again; exactly one waiter takes its permit.
        let leaving = holders.pop_front().unwrap();
        table.release(leaving);
        table.acquire(leaving);
        left.push(leaving);
        let next = table.next().await;
        // In arrival order across languages: whoever left three turns ago queued last then,
        // behind the three waiting.
        if turn >= PERMITS as usize {
            let expected = left[turn - PERMITS as usize];
            assert_eq!(next.who, expected, "FIFO: {} instead of {}", table.name(next.who), table.name(expected));
        }
        holders.push_back(next.who);
    }
    // Drain: everyone gets a last turn and leaves.
    for who in holders {
        table.release(who);
    }
    for _ in 0..table.len() - PERMITS as usize {
        let acquired = table.next().await;
        table.release(acquired.who);
    }
    table.finish().await;
    until_empty(&observer, &format!("{PATH}/leases")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_a_rust_semaphore_is_granted_while_a_kazoo_semaphore_holds_all_permits() {
    // The evidence for the interop table: kazoo's Semaphore keeps its leases directly under
    // the path (and its lock beside it), Curator's layout under `leases/`; neither sees the
    // other's holders. The assertion states the unsafe outcome.
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let kazoo = peer(Library::Kazoo, &connect).await;
    let mut table = Table::new();
    let kazoo_holder = table.add("kazoo", Contender::Peer(kazoo.open(PeerRecipe::Semaphore(1), PATH).await.unwrap()));
    let rust = table.add("rust", Contender::semaphore(Semaphore::new(&session(&connect).await, PATH, 1).unwrap()));
    table.acquires(kazoo_holder, "nobody else holds").await;
    table.acquires(rust, "Rust acquires the only permit while kazoo holds it").await;
    table.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_with_different_permit_counts_the_larger_count_is_what_holds() {
    // The permit count is a convention, not stored in ZooKeeper: a Rust side told 2 permits
    // takes a second lease beside a Curator side told 1. The assertion states the outcome.
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let curator = peer(Library::Curator, &connect).await;
    let mut table = Table::new();
    let curator_holder =
        table.add("curator", Contender::Peer(curator.open(PeerRecipe::Semaphore(1), PATH).await.unwrap()));
    let rust = table.add("rust", Contender::semaphore(Semaphore::new(&session(&connect).await, PATH, 2).unwrap()));
    table.acquires(curator_holder, "nobody else holds").await;
    table.acquires(rust, "Rust, told 2 permits, holds beside Curator's single permit").await;
    table.finish().await;
}

//! The mutex beside Curator's `InterProcessMutex` and kazoo's `Lock`.

use zk_recipes::Mutex;
use zk_recipes_peers::{Library, PeerRecipe};

use crate::driver::{Contender, PATIENCE, Table, assert_tokens_increase, until_empty};
use crate::{ensemble, observer, peer, session};

const PATH: &str = "/interop/mutex";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_curator_mutexes_take_fifo_turns_without_overlap() {
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let curator = peer(Library::Curator, &connect).await;
    let mut table = Table::new();
    for i in 0..3 {
        let session = session(&connect).await;
        table.add(format!("rust-{i}"), Contender::mutex(Mutex::new(&session, PATH).unwrap()));
        table.add(format!("curator-{i}"), Contender::Peer(curator.open(PeerRecipe::Mutex, PATH).await.unwrap()));
    }
    for order in [[0, 1, 2, 3, 4, 5], [1, 3, 5, 0, 2, 4], [5, 0, 3, 4, 1, 2]] {
        let turns = table.exclusive_round(&order, &observer, PATH).await;
        assert_tokens_increase(&turns);
    }
    table.finish().await;
    until_empty(&observer, PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_kazoo_told_about_curator_names_exclude_each_other_both_ways() {
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let kazoo = peer(Library::Kazoo, &connect).await;
    let mut table = Table::new();
    for i in 0..2 {
        let session = session(&connect).await;
        table.add(format!("rust-{i}"), Contender::mutex(Mutex::new(&session, PATH).unwrap()));
        let contender = kazoo.open(PeerRecipe::KazooLockSeeingCurator, PATH).await.unwrap();
        table.add(format!("kazoo-{i}"), Contender::Peer(contender));
    }
    // Rust first, then kazoo first: each waits for the other, in arrival order.
    for order in [[0, 1, 2, 3], [1, 0, 3, 2], [3, 2, 1, 0]] {
        let turns = table.exclusive_round(&order, &observer, PATH).await;
        assert_tokens_increase(&turns);
    }
    table.finish().await;
    until_empty(&observer, PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_waits_for_a_default_kazoo_lock_holder() {
    // Rust counts kazoo's `__lock__` nodes as contenders even when kazoo is not told about
    // Curator's names: a default kazoo holder keeps Rust out.
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let kazoo = peer(Library::Kazoo, &connect).await;
    let session = session(&connect).await;
    let mut table = Table::new();
    let kazoo_holder = table.add("kazoo", Contender::Peer(kazoo.open(PeerRecipe::Mutex, PATH).await.unwrap()));
    let rust = table.add("rust", Contender::mutex(Mutex::new(&session, PATH).unwrap()));
    let held = table.acquires(kazoo_holder, "nobody else holds").await;
    assert!(held.node.contains("__lock__"), "kazoo's own name: {}", held.node);
    // Not a matter of timing: Rust decides that kazoo's node is ahead of its own.
    let probe = Mutex::new(&session, PATH).unwrap();
    assert!(probe.try_lock().await.unwrap().is_none(), "a default kazoo holder keeps Rust out");
    table.enqueue(rust, &observer, PATH).await;
    table.assert_nobody_acquires("kazoo holds").await;
    table.release(kazoo_holder);
    let turn = table.next().await;
    assert_eq!(turn.who, rust);
    assert_tokens_increase(&[held, turn]);
    table.release(rust);
    table.finish().await;
    until_empty(&observer, PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_a_default_kazoo_lock_is_granted_while_rust_or_curator_holds_and_curator_while_kazoo_holds() {
    // The evidence for the interop tables: these pairings do NOT exclude each other. Each
    // assertion below states the unsafe outcome.
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let kazoo = peer(Library::Kazoo, &connect).await;
    let curator = peer(Library::Curator, &connect).await;
    let session = session(&connect).await;
    let mut table = Table::new();

    // A Rust holder: default kazoo ignores `_c_…-lock-…` names and takes the lock too.
    let rust = table.add("rust", Contender::mutex(Mutex::new(&session, "/unsafe/a").unwrap()));
    let kazoo_a = table.add("kazoo", Contender::Peer(kazoo.open(PeerRecipe::Mutex, "/unsafe/a").await.unwrap()));
    table.acquires(rust, "nobody else holds").await;
    table.acquires(kazoo_a, "default kazoo acquires while Rust holds").await;

    // A Curator holder: the same.
    let curator_b = table.add("curator", Contender::Peer(curator.open(PeerRecipe::Mutex, "/unsafe/b").await.unwrap()));
    let kazoo_b = table.add("kazoo", Contender::Peer(kazoo.open(PeerRecipe::Mutex, "/unsafe/b").await.unwrap()));
    table.acquires(curator_b, "nobody else holds").await;
    table.acquires(kazoo_b, "default kazoo acquires while Curator holds").await;

    // A kazoo holder, even one told about Curator's names: Curator sorts kazoo's node by its
    // whole name (random hex), after its own `0000…` sequence, and takes the lock too.
    let kazoo_c =
        table.add("kazoo", Contender::Peer(kazoo.open(PeerRecipe::KazooLockSeeingCurator, "/unsafe/c").await.unwrap()));
    let curator_c = table.add("curator", Contender::Peer(curator.open(PeerRecipe::Mutex, "/unsafe/c").await.unwrap()));
    table.acquires(kazoo_c, "nobody else holds").await;
    table.acquires(curator_c, "Curator acquires while kazoo holds").await;
    table.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curator_lists_rust_contenders_as_participants_in_queue_order() {
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let curator = peer(Library::Curator, &connect).await;
    let (first, last) = (session(&connect).await, session(&connect).await);
    let mut table = Table::new();
    let holder = table.add("rust holder", Contender::mutex(Mutex::new(&first, PATH).unwrap()));
    let waiter = table.add("curator", Contender::Peer(curator.open(PeerRecipe::Mutex, PATH).await.unwrap()));
    let late = table.add("rust waiter", Contender::mutex(Mutex::new(&last, PATH).unwrap()));
    let mut looker = curator.open(PeerRecipe::Mutex, PATH).await.unwrap();

    let held = table.acquires(holder, "nobody else holds").await;
    assert_eq!(looker.participants().await.unwrap(), std::slice::from_ref(&held.node), "Curator's getParticipantNodes");
    table.enqueue(waiter, &observer, PATH).await;
    table.enqueue(late, &observer, PATH).await;
    let listed = looker.participants().await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0], held.node, "the Rust holder first");
    assert!(listed[2].ends_with(&format!("{:010}", held.sequence() + 2)), "the Rust waiter last: {listed:?}");
    // And Curator, asking with a timeout, finds it held.
    assert_eq!(looker.acquire(Some(PATIENCE / 100)).await.unwrap(), None, "a Rust holder keeps Curator out");
    table.release(holder);
    assert_eq!(table.next().await.who, waiter);
    table.release(waiter);
    assert_eq!(table.next().await.who, late);
    table.release(late);
    table.finish().await;
    until_empty(&observer, PATH).await;
}

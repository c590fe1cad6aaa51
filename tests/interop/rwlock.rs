//! The read-write lock beside Curator's `InterProcessReadWriteLock`.

use zk_recipes::ReadWriteLock;
use zk_recipes_peers::{Library, PeerRecipe};

use crate::driver::{Contender, Table, assert_tokens_increase, until_empty};
use crate::{ensemble, observer, peer, session};

const PATH: &str = "/interop/rwlock";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_share_and_writers_exclude_across_rust_and_curator() {
    readers_share_and_writers_exclude(Library::Curator, PeerRecipe::Read, PeerRecipe::Write).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_share_and_writers_exclude_across_rust_and_kazoo_told_about_curator_names() {
    readers_share_and_writers_exclude(
        Library::Kazoo,
        PeerRecipe::KazooReadSeeingCurator,
        PeerRecipe::KazooWriteSeeingCurator,
    )
    .await;
}

/// Readers of both sides hold together; a writer of either side waits for all of them and
/// holds alone; a reader arriving behind a writer of the other side waits for it.
async fn readers_share_and_writers_exclude(library: Library, read: PeerRecipe<'static>, write: PeerRecipe<'static>) {
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let other = peer(library, &connect).await;
    let probe_session = session(&connect).await;
    let mut table = Table::new();
    let rust = async |name: &str, table: &mut Table, write: bool| {
        let lock = ReadWriteLock::new(&session(&connect).await, PATH).unwrap();
        table.add(name, if write { Contender::write(lock) } else { Contender::read(lock) })
    };
    let rust_reader = rust("rust reader", &mut table, false).await;
    let late_rust_reader = rust("late rust reader", &mut table, false).await;
    let rust_writer = rust("rust writer", &mut table, true).await;
    let second_rust_reader = rust("second rust reader", &mut table, false).await;
    let peer_side = async |name: &str, table: &mut Table, recipe| {
        table.add(name, Contender::Peer(other.open(recipe, PATH).await.unwrap()))
    };
    let peer_reader = peer_side("peer reader", &mut table, read).await;
    let peer_writer = peer_side("peer writer", &mut table, write).await;
    let late_peer_reader = peer_side("late peer reader", &mut table, read).await;

    let mut turns = Vec::new();
    // Readers of both languages hold together.
    for reader in [rust_reader, peer_reader, second_rust_reader] {
        turns.push(table.acquires(reader, "readers share the lock").await);
    }
    // A peer writer waits for the Rust and peer readers; a Rust reader arriving after it
    // waits for it.
    table.enqueue(peer_writer, &observer, PATH).await;
    table.assert_nobody_acquires("three readers hold").await;
    table.enqueue(late_rust_reader, &observer, PATH).await;
    table.assert_nobody_acquires("readers hold and a peer writer is queued ahead").await;
    table.release(rust_reader);
    table.release(peer_reader);
    table.assert_nobody_acquires("a Rust reader still holds").await;
    table.release(second_rust_reader);
    let turn = table.next().await;
    assert_eq!(turn.who, peer_writer, "the peer writer follows the last reader");
    turns.push(turn);
    table.assert_nobody_acquires("the peer writer holds").await;
    // Not a matter of timing: Rust decides that the peer's writer excludes its readers.
    let probe = ReadWriteLock::new(&probe_session, PATH).unwrap();
    assert!(probe.try_read().await.unwrap().is_none(), "a peer writer keeps Rust readers out");
    table.release(peer_writer);
    let turn = table.next().await;
    assert_eq!(turn.who, late_rust_reader);
    turns.push(turn);
    turns.push(table.acquires(peer_reader, "a peer reader joins a Rust reader").await);
    assert!(probe.try_write().await.unwrap().is_none(), "readers keep Rust writers out");

    // A Rust writer waits for both readers; a peer reader arriving after it waits for it.
    table.enqueue(rust_writer, &observer, PATH).await;
    table.assert_nobody_acquires("a Rust and a peer reader hold").await;
    table.enqueue(late_peer_reader, &observer, PATH).await;
    table.assert_nobody_acquires("readers hold and a Rust writer is queued ahead").await;
    table.release(late_rust_reader);
    table.assert_nobody_acquires("a peer reader still holds").await;
    table.release(peer_reader);
    let turn = table.next().await;
    assert_eq!(turn.who, rust_writer);
    turns.push(turn);
    table.assert_nobody_acquires("the Rust writer holds").await;
    table.release(rust_writer);
    let turn = table.next().await;
    assert_eq!(turn.who, late_peer_reader);
    turns.push(turn);
    table.release(late_peer_reader);

    assert_tokens_increase(&turns);
    table.finish().await;
    until_empty(&observer, PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_curator_writers_take_fifo_turns_without_overlap() {
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let curator = peer(Library::Curator, &connect).await;
    let mut table = Table::new();
    for i in 0..2 {
        let lock = ReadWriteLock::new(&session(&connect).await, PATH).unwrap();
        table.add(format!("rust-{i}"), Contender::write(lock));
        table.add(format!("curator-{i}"), Contender::Peer(curator.open(PeerRecipe::Write, PATH).await.unwrap()));
    }
    for order in [[0, 1, 2, 3], [3, 1, 2, 0]] {
        let turns = table.exclusive_round(&order, &observer, PATH).await;
        assert_tokens_increase(&turns);
    }
    table.finish().await;
    until_empty(&observer, PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_waits_for_default_kazoo_readers_and_writers() {
    // Rust counts kazoo's `__rlock__` nodes as readers and `__lock__` nodes as writers, even
    // when kazoo is not told about Curator's names.
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let kazoo = peer(Library::Kazoo, &connect).await;
    let mut table = Table::new();
    let kazoo_reader = table.add("kazoo reader", Contender::Peer(kazoo.open(PeerRecipe::Read, PATH).await.unwrap()));
    let kazoo_writer = table.add("kazoo writer", Contender::Peer(kazoo.open(PeerRecipe::Write, PATH).await.unwrap()));
    let rust_reader =
        table.add("rust reader", Contender::read(ReadWriteLock::new(&session(&connect).await, PATH).unwrap()));
    let rust_writer =
        table.add("rust writer", Contender::write(ReadWriteLock::new(&session(&connect).await, PATH).unwrap()));

    let probe = ReadWriteLock::new(&session(&connect).await, PATH).unwrap();
    table.acquires(kazoo_reader, "nobody else holds").await;
    assert!(probe.try_write().await.unwrap().is_none(), "a kazoo reader keeps Rust writers out");
    assert!(probe.try_read().await.unwrap().is_some(), "a kazoo reader shares with Rust readers");
    table.enqueue(rust_writer, &observer, PATH).await;
    table.assert_nobody_acquires("a kazoo reader holds").await;
    table.release(kazoo_reader);
    assert_eq!(table.next().await.who, rust_writer);
    table.release(rust_writer);

    table.acquires(kazoo_writer, "nobody else holds").await;
    assert!(probe.try_read().await.unwrap().is_none(), "a kazoo writer keeps Rust readers out");
    table.enqueue(rust_reader, &observer, PATH).await;
    table.assert_nobody_acquires("a kazoo writer holds").await;
    table.release(kazoo_writer);
    assert_eq!(table.next().await.who, rust_reader);
    table.release(rust_reader);
    table.finish().await;
    until_empty(&observer, PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_default_kazoo_read_and_write_locks_are_granted_while_rust_holds() {
    // The evidence for the interop table: kazoo's default ReadLock and WriteLock ignore
    // Curator-named nodes. Each assertion states the unsafe outcome.
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let kazoo = peer(Library::Kazoo, &connect).await;
    let mut table = Table::new();
    let rust_writer =
        table.add("rust writer", Contender::write(ReadWriteLock::new(&session(&connect).await, "/unsafe/a").unwrap()));
    let kazoo_reader =
        table.add("kazoo reader", Contender::Peer(kazoo.open(PeerRecipe::Read, "/unsafe/a").await.unwrap()));
    table.acquires(rust_writer, "nobody else holds").await;
    table.acquires(kazoo_reader, "default kazoo ReadLock acquires while a Rust writer holds").await;

    let rust_reader =
        table.add("rust reader", Contender::read(ReadWriteLock::new(&session(&connect).await, "/unsafe/b").unwrap()));
    let kazoo_writer =
        table.add("kazoo writer", Contender::Peer(kazoo.open(PeerRecipe::Write, "/unsafe/b").await.unwrap()));
    table.acquires(rust_reader, "nobody else holds").await;
    table.acquires(kazoo_writer, "default kazoo WriteLock acquires while a Rust reader holds").await;
    table.finish().await;
}

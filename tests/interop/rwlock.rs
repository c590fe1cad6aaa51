//! The read-write lock beside Curator's `InterProcessReadWriteLock`.

use zk_recipes::ReadWriteLock;
use zk_recipes::testing::{Library, Peer, PeerRecipe};

use crate::driver::{Contender, Table, assert_tokens_increase, until_empty};
use crate::{ensemble, observer, session};

const PATH: &str = "/interop/rwlock";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_share_and_writers_exclude_across_rust_and_curator() {
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let curator = Peer::start(Library::Curator, &connect).await.unwrap();
    let mut table = Table::new();
    let rust = async |name: &str, table: &mut Table, write: bool| {
        let lock = ReadWriteLock::new(&session(&connect).await, PATH).unwrap();
        table.add(name, if write { Contender::write(lock) } else { Contender::read(lock) })
    };
    let rust_reader = rust("rust reader", &mut table, false).await;
    let late_rust_reader = rust("late rust reader", &mut table, false).await;
    let rust_writer = rust("rust writer", &mut table, true).await;
    let second_rust_reader = rust("second rust reader", &mut table, false).await;
    let peer = async |name: &str, table: &mut Table, recipe| {
        table.add(name, Contender::Peer(curator.open(recipe, PATH).await.unwrap()))
    };
    let curator_reader = peer("curator reader", &mut table, PeerRecipe::Read).await;
    let curator_writer = peer("curator writer", &mut table, PeerRecipe::Write).await;
    let late_curator_reader = peer("late curator reader", &mut table, PeerRecipe::Read).await;

    let mut turns = Vec::new();
    // Readers of both languages hold together.
    for reader in [rust_reader, curator_reader, second_rust_reader] {
        table.acquire(reader);
        let turn = table.next().await;
        assert_eq!(turn.who, reader, "{} shares the lock with the readers before it", table.name(reader));
        turns.push(turn);
    }
    // A Curator writer waits for the Rust and Curator readers; a Rust reader arriving after it
    // waits for it.
    table.enqueue(curator_writer, &observer, PATH).await;
    table.assert_nobody_acquires("three readers hold").await;
    table.enqueue(late_rust_reader, &observer, PATH).await;
    table.assert_nobody_acquires("readers hold and a Curator writer is queued ahead").await;
    table.release(rust_reader);
    table.release(curator_reader);
    table.assert_nobody_acquires("a Rust reader still holds").await;
    table.release(second_rust_reader);
    let turn = table.next().await;
    assert_eq!(turn.who, curator_writer, "the Curator writer follows the last reader");
    turns.push(turn);
    table.assert_nobody_acquires("the Curator writer holds").await;
    table.release(curator_writer);
    let turn = table.next().await;
    assert_eq!(turn.who, late_rust_reader);
    turns.push(turn);

    // A Rust writer waits for the Rust reader; a Curator reader arriving after it waits for it.
    table.enqueue(rust_writer, &observer, PATH).await;
    table.assert_nobody_acquires("a Rust reader holds").await;
    table.enqueue(late_curator_reader, &observer, PATH).await;
    table.assert_nobody_acquires("a reader holds and a Rust writer is queued ahead").await;
    table.release(late_rust_reader);
    let turn = table.next().await;
    assert_eq!(turn.who, rust_writer);
    turns.push(turn);
    table.assert_nobody_acquires("the Rust writer holds").await;
    table.release(rust_writer);
    let turn = table.next().await;
    assert_eq!(turn.who, late_curator_reader);
    turns.push(turn);
    table.release(late_curator_reader);

    assert_tokens_increase(&turns);
    until_empty(&observer, PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_curator_writers_take_fifo_turns_without_overlap() {
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let curator = Peer::start(Library::Curator, &connect).await.unwrap();
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
}

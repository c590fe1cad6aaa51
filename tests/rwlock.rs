//! The read-write lock against real ZooKeeper: shared readers, exclusive writers, FIFO between
//! them, tokens, watches, cancellation, and nodes of other dialects in the directory.

mod common;

use std::time::Duration;

use common::{
    children, children_of, count_is, eventually, observer, session, sessions, standalone, stays_pending, watches,
};
use rand::RngExt;
use tokio::sync::mpsc;
use zk_recipes::{Error, FencingToken, ReadWriteLock, zk};

const TIMEOUT: Duration = Duration::from_secs(4);
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_hold_together_and_a_writer_excludes_everyone() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let readers = sessions(&connect, 5, TIMEOUT).await;
    let writer = session(&connect, TIMEOUT).await;

    let mut guards = Vec::new();
    for reader in &readers {
        // Each read is granted while the earlier readers still hold.
        guards.push(ReadWriteLock::new(reader, "/rw").unwrap().read_timeout(PATIENCE).await.unwrap());
    }
    let names = children(&observer, "/rw").await;
    assert_eq!(names.len(), 5);
    assert!(names.iter().all(|n| n.starts_with("_c_") && n[..n.len() - 10].ends_with("-__READ__")), "{names:?}");

    let lock = ReadWriteLock::new(&writer, "/rw").unwrap();
    assert!(lock.try_write().await.unwrap().is_none(), "readers hold");
    let err = lock.write_timeout(Duration::from_millis(200)).await.unwrap_err();
    assert_eq!(err, Error::Timeout { path: "/rw".into(), after: Duration::from_millis(200) });
    eventually("the writer's attempts are gone", PATIENCE, || async {
        children_of(&observer, "/rw", writer.id().unwrap()).await.is_empty().then_some(())
    })
    .await;

    let (tx, mut written) = mpsc::unbounded_channel();
    let waiting = tokio::spawn(async move {
        let guard = lock.write().await.unwrap();
        tx.send(()).unwrap();
        guard
    });
    count_is(&observer, "/rw", 6).await;
    let last = guards.pop().unwrap();
    for guard in guards {
        guard.release().await.unwrap();
    }
    stays_pending("the writer must wait for the last reader", Duration::from_millis(200), written.recv()).await;
    last.release().await.unwrap();
    let guard = waiting.await.unwrap();
    assert_eq!(children(&observer, "/rw").await.len(), 1);

    // The writer holds alone: no reader, no other writer.
    let other = ReadWriteLock::new(&readers[0], "/rw").unwrap();
    assert!(other.try_read().await.unwrap().is_none());
    assert!(other.try_write().await.unwrap().is_none());
    guard.release().await.unwrap();
    assert!(other.try_read().await.unwrap().is_some());
}

/// R1 and R2 hold; W queues; R3 arrives after W. R3 must not join the readers: it gets the
/// lock only after W. Tokens order the holders the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_writer_is_not_overtaken_by_later_readers() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s = sessions(&connect, 4, TIMEOUT).await;
    let r1 = ReadWriteLock::new(&s[0], "/fifo").unwrap().read().await.unwrap();
    let r2 = ReadWriteLock::new(&s[1], "/fifo").unwrap().read().await.unwrap();

    let (tx, mut order) = mpsc::unbounded_channel();
    let (w_tx, r3_tx) = (tx.clone(), tx);
    let w_lock = ReadWriteLock::new(&s[2], "/fifo").unwrap();
    let (w_release, w_released) = tokio::sync::oneshot::channel::<()>();
    let w = tokio::spawn(async move {
        let guard = w_lock.write().await.unwrap();
        w_tx.send(("writer", guard.token())).unwrap();
        w_released.await.unwrap();
        guard.release().await.unwrap();
    });
    count_is(&observer, "/fifo", 3).await;
    let r3_lock = ReadWriteLock::new(&s[3], "/fifo").unwrap();
    let r3 = tokio::spawn(async move {
        let guard = r3_lock.read().await.unwrap();
        r3_tx.send(("late reader", guard.token())).unwrap();
        guard.release().await.unwrap();
    });
    count_is(&observer, "/fifo", 4).await;
    stays_pending("neither the writer nor the late reader holds yet", Duration::from_millis(200), order.recv()).await;

    let (t1, t2) = (r1.token(), r2.token());
    r1.release().await.unwrap();
    r2.release().await.unwrap();
    let (first, writer_token) = order.recv().await.unwrap();
    assert_eq!(first, "writer");
    stays_pending("the late reader waits for the writer", Duration::from_millis(200), order.recv()).await;
    w_release.send(()).unwrap();
    let (second, late_token) = order.recv().await.unwrap();
    assert_eq!(second, "late reader");
    w.await.unwrap();
    r3.await.unwrap();

    assert!(t1 < writer_token && t2 < writer_token && writer_token < late_token);
    assert_eq!(t1.epoch(), late_token.epoch());
}

/// Writers' tokens strictly increase, whichever session writes, with readers in between.
#[tokio::test]
async fn writers_tokens_strictly_increase_and_readers_fall_between() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let s = sessions(&connect, 3, TIMEOUT).await;
    let mut last: Option<FencingToken> = None;
    for round in 0..30 {
        let lock = ReadWriteLock::new(&s[round % 3], "/tokens").unwrap();
        let writer = lock.write().await.unwrap();
        let token = writer.token();
        assert!(last.is_none_or(|last| last < token), "round {round}: {last:?} then {token}");
        writer.release().await.unwrap();
        let reader = lock.read().await.unwrap();
        assert!(reader.token() > token);
        last = Some(reader.token());
        reader.release().await.unwrap();
    }
}

/// Queue: W0 (holds), R1, R2, W3, R4, R5. R1 and R2 watch W0 (they may both proceed when it
/// goes); W3 watches R2; R4 and R5 watch W3, the nearest writer ahead, not W0 — so W0's
/// release wakes only those who can then proceed or move on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_watch_the_nearest_writer_ahead() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s = sessions(&connect, 6, TIMEOUT).await;
    let w0 = ReadWriteLock::new(&s[0], "/watch").unwrap().write().await.unwrap();
    let mut waiting = Vec::new();
    for (i, write) in [(1, false), (2, false), (3, true), (4, false), (5, false)] {
        let lock = ReadWriteLock::new(&s[i], "/watch").unwrap();
        waiting.push(tokio::spawn(async move {
            if write {
                lock.write().await.unwrap().release().await.unwrap();
            } else {
                lock.read().await.unwrap().release().await.unwrap();
            }
        }));
        count_is(&observer, "/watch", i + 1).await;
    }
    let mut nodes = children(&observer, "/watch").await;
    nodes.sort_by_key(|n| n[n.len() - 10..].to_owned());
    let expected = [(0, 2), (2, 1), (3, 2)];
    // Besides its own node, which every waiter watches to know it is still there.
    let watchers = eventually("every waiter watches", PATIENCE, || async {
        let watches = watches(&cluster).await;
        assert_eq!(watches.children, 0, "nobody watches the directory's children");
        let watchers = watches.others_under(&observer, "/watch").await;
        (watchers.values().sum::<usize>() == 5).then_some(watchers)
    })
    .await;
    for (index, count) in expected {
        assert_eq!(watchers.get(&format!("/watch/{}", nodes[index])), Some(&count), "{watchers:#?}");
    }
    assert_eq!(watchers.len(), expected.len(), "{watchers:#?}");

    w0.release().await.unwrap();
    for task in waiting {
        tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    }
}

/// Read and write attempts dropped at random points while a writer holds: none leaves a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_reads_and_writes_leave_no_nodes() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let holder = session(&connect, TIMEOUT).await;
    let guard = ReadWriteLock::new(&holder, "/cancel").unwrap().write().await.unwrap();
    let canceller = session(&connect, TIMEOUT).await;
    let lock = ReadWriteLock::new(&canceller, "/cancel").unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..120u32 {
        let lock = lock.clone();
        let after = match i % 3 {
            0 => Duration::ZERO,
            1 => Duration::from_micros(rand::rng().random_range(0..5_000)),
            _ => Duration::from_millis(50),
        };
        tasks.spawn(async move {
            if i % 2 == 0 {
                tokio::time::timeout(after, lock.read()).await.is_err()
            } else {
                tokio::time::timeout(after, lock.write()).await.is_err()
            }
        });
    }
    while let Some(cancelled) = tasks.join_next().await {
        assert!(cancelled.unwrap(), "the writer held throughout, so every attempt was cancelled");
    }
    eventually("no node of the cancelling session", PATIENCE, || async {
        children_of(&observer, "/cancel", canceller.id().unwrap()).await.is_empty().then_some(())
    })
    .await;
    guard.release().await.unwrap();
    assert!(lock.try_write().await.unwrap().is_some(), "the lock is free at once");
}

/// Nodes other clients write into the directory: kazoo's `__lock__` (a writer) and
/// `__rlock__` (a reader), and Curator 5.5+'s downgrade, a non-sequential `__READ__` that
/// copies its writer's number.
#[tokio::test]
async fn kazoo_nodes_and_curator_downgrade_nodes_are_respected() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let foreign = observer(&connect).await;
    let s = session(&connect, TIMEOUT).await;
    let lock = ReadWriteLock::new(&s, "/mixed").unwrap();
    foreign.create("/mixed", b"", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await.unwrap();
    let ephemeral_sequential = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let kazoo = "93166b2c6a1a4b6c9e3d1f0a2b4c6d8e";

    // A kazoo reader lets our readers in, not our writers.
    let create_sequential = |stem: String| {
        let foreign = &foreign;
        let options = &ephemeral_sequential;
        async move {
            let (_, sequence) = foreign.create(&stem, b"", options).await.unwrap();
            (format!("{stem}{sequence}"), sequence.into_i64() as u32)
        }
    };
    let (kazoo_reader, _) = create_sequential(format!("/mixed/{kazoo}__rlock__")).await;
    assert!(lock.try_read().await.unwrap().is_some());
    assert!(lock.try_write().await.unwrap().is_none());
    foreign.delete(&kazoo_reader, None).await.unwrap();
    // A kazoo writer keeps both out.
    let (kazoo_writer, _) = create_sequential(format!("/mixed/{kazoo}__lock__")).await;
    assert!(lock.try_read().await.unwrap().is_none());
    assert!(lock.try_write().await.unwrap().is_none());
    foreign.delete(&kazoo_writer, None).await.unwrap();

    // Curator 5.5+ downgrade: write lock, read node with the writer's number, release write.
    let prefix = "_c_0e87bab8-f0e1-45d0-8f95-769f4ce2d171-";
    let (writer, sequence) = create_sequential(format!("/mixed/{prefix}__WRIT__")).await;
    let downgraded = format!("/mixed/_c_6a0e5b1c-2d3f-4a5b-8c7d-9e0f1a2b3c4d-__READ__{sequence:010}");
    foreign.create(&downgraded, b"", &ephemeral).await.unwrap();
    foreign.delete(&writer, None).await.unwrap();
    let reader = lock.try_read().await.unwrap().expect("a reader may join a downgraded reader");
    assert!(lock.try_write().await.unwrap().is_none(), "the downgraded reader still holds");
    reader.release().await.unwrap();
    let mut waiting = tokio::spawn({
        let lock = lock.clone();
        async move { lock.write().await.unwrap().token() }
    });
    stays_pending("the writer waits for the downgraded reader", Duration::from_millis(200), &mut waiting).await;
    foreign.delete(&downgraded, None).await.unwrap();
    let token = tokio::time::timeout(PATIENCE, waiting).await.unwrap().unwrap();
    assert!(token.sequence() > sequence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_try_leaves_nothing_ahead_of_the_next_try_on_the_same_session() {
    // A try that finds the lock taken deletes its node without waiting for the reply; the
    // delete must still reach the server before the session's next create.
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let holder = session(&connect, TIMEOUT).await;
    let trier = session(&connect, TIMEOUT).await;
    let lock = ReadWriteLock::new(&trier, "/tries").unwrap();
    for _ in 0..20 {
        let read = ReadWriteLock::new(&holder, "/tries").unwrap().read().await.unwrap();
        assert!(lock.try_write().await.unwrap().is_none(), "a reader holds");
        let shared = lock.try_read().await.unwrap();
        assert!(shared.is_some(), "the failed write's node must not be ahead of this read");
        drop(shared);
        read.release().await.unwrap();
    }
}

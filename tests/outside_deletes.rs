//! A contender whose node someone else deletes while it waits never comes back as a holder —
//! for every recipe and every way a wait can end — leaves nothing behind, and the queue moves
//! on. An operator removing a node that `zk-recipes status` showed as stuck does exactly this.

mod common;

use std::time::Duration;

use common::{children, count_is, eventually, observer, session, standalone};
use zk_recipes::testing::{Fault, Proxy, TestingCluster};
use zk_recipes::{Error, LeaderLatch, LeaderSelector, LossReason, Mutex, ReadWriteLock, Semaphore, Session, zk};

const TIMEOUT: Duration = Duration::from_secs(4);
const PATIENCE: Duration = Duration::from_secs(20);

/// The queue of `dir` in order: full paths of its children, by sequence.
async fn queue(client: &zk::Client, dir: &str) -> Vec<String> {
    let mut nodes = children(client, dir).await;
    nodes.sort_by_key(|n| n[n.len() - 10..].to_owned());
    nodes.into_iter().map(|n| format!("{dir}/{n}")).collect()
}

/// Waits until the session `watcher` watches `node` (`wchp` on member 0).
async fn watches(cluster: &TestingCluster, node: &str, watcher: &Session) {
    let id = watcher.id().unwrap().0;
    eventually(&format!("{node} watched by {id:#x}"), PATIENCE, || async {
        let watches = common::watches(cluster).await;
        watches.data.get(node).is_some_and(|sessions| sessions.contains(&id)).then_some(())
    })
    .await;
}

/// Starts waiting for the mutex at `path` on `session`, in a task.
fn lock_in_background(session: &Session, path: &str) -> tokio::task::JoinHandle<Result<zk_recipes::MutexGuard, Error>> {
    let mutex = Mutex::new(session, path).unwrap();
    tokio::spawn(async move { mutex.lock().await })
}

fn is_deleted(result: &Result<impl std::fmt::Debug, Error>, node: &str) -> bool {
    matches!(result, Err(Error::Lost { node: lost, reason: LossReason::NodeDeleted }) if lost == node)
}

/// The reproduction: H holds, A waits right behind it, B behind A. A's node is deleted.
/// B moves up behind H; when H releases, B holds — and A, whose node is gone, never does.
#[tokio::test]
async fn a_mutex_waiter_whose_node_is_deleted_never_holds() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let (h, a, b) =
        (session(&connect, TIMEOUT).await, session(&connect, TIMEOUT).await, session(&connect, TIMEOUT).await);
    let held = Mutex::new(&h, "/m").unwrap().lock().await.unwrap();
    let waiting_a = lock_in_background(&a, "/m");
    count_is(&observer, "/m", 2).await;
    let waiting_b = lock_in_background(&b, "/m");
    count_is(&observer, "/m", 3).await;
    let nodes = queue(&observer, "/m").await;
    // A watches H, B watches A: both are waiting for real.
    watches(&cluster, &nodes[0], &a).await;
    watches(&cluster, &nodes[1], &b).await;

    observer.delete(&nodes[1], None).await.unwrap();
    let a_result = tokio::time::timeout(PATIENCE, waiting_a).await.expect("A learns at once").unwrap();
    assert!(is_deleted(&a_result, &nodes[1]), "A must not hold: {a_result:?}");
    assert!(!waiting_b.is_finished(), "H still holds");

    held.release().await.unwrap();
    let b_guard = tokio::time::timeout(PATIENCE, waiting_b).await.unwrap().unwrap().unwrap();
    assert_eq!(b_guard.node(), nodes[2]);
    assert_eq!(queue(&observer, "/m").await, [nodes[2].clone()], "A left nothing behind");
    b_guard.release().await.unwrap();
}

/// A's node and the head's go in one transaction, A's first: the watch events arrive in that
/// order, and A, right behind the head, must not take the head's leaving as its turn.
#[tokio::test]
async fn a_waiter_deleted_together_with_the_head_ahead_of_it_never_holds() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let (h, a) = (session(&connect, TIMEOUT).await, session(&connect, TIMEOUT).await);
    let _held = Mutex::new(&h, "/together").unwrap().lock().await.unwrap();
    let waiting = lock_in_background(&a, "/together");
    count_is(&observer, "/together", 2).await;
    let nodes = queue(&observer, "/together").await;
    watches(&cluster, &nodes[0], &a).await;

    let mut both = observer.new_multi_writer();
    both.add_delete(&nodes[1], None).unwrap();
    both.add_delete(&nodes[0], None).unwrap();
    both.commit().await.unwrap();
    let result = tokio::time::timeout(PATIENCE, waiting).await.unwrap().unwrap();
    assert!(is_deleted(&result, &nodes[1]), "A must not hold: {result:?}");
    assert!(children(&observer, "/together").await.is_empty(), "nothing left behind");
}

/// The same while A's connection is cut: both deletions happen meanwhile, and on reconnecting
/// the server reports them in no particular order (the client lists its watches from a hash
/// map). A must list rather than trust the order. Four rounds, so that a waiter that trusted
/// the order would be caught with odds of 15 in 16.
#[tokio::test]
async fn a_waiter_deleted_while_disconnected_never_holds_when_it_reconnects() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let h = session(&connect, TIMEOUT).await;
    let proxy = Proxy::start(cluster.address(0)).await.unwrap();
    // Long enough to ride out each cut below on a loaded machine; the client notices a silent
    // connection after 2/5 of it.
    let a = session(&proxy.address().to_string(), Duration::from_secs(6)).await;
    let mut states = a.states();
    for round in 0..4 {
        let path = format!("/cut-{round}");
        let held = Mutex::new(&h, &path).unwrap().lock().await.unwrap();
        let waiting = lock_in_background(&a, &path);
        count_is(&observer, &path, 2).await;
        let nodes = queue(&observer, &path).await;
        watches(&cluster, &nodes[0], &a).await;

        proxy.set_fault(Fault::Blackhole);
        assert_eq!(tokio::time::timeout(PATIENCE, states.changed()).await, Ok(zk_recipes::SessionState::Suspended));
        observer.delete(&nodes[1], None).await.unwrap();
        held.release().await.unwrap();
        proxy.set_fault(Fault::Pass);
        proxy.reset_connections();
        assert_eq!(tokio::time::timeout(PATIENCE, states.changed()).await, Ok(zk_recipes::SessionState::Connected));
        let result = tokio::time::timeout(PATIENCE, waiting).await.unwrap().unwrap();
        assert!(is_deleted(&result, &nodes[1]), "round {round}: A must not hold: {result:?}");
        assert!(children(&observer, &path).await.is_empty(), "nothing left behind");
    }
}

/// A reader waits for the writer ahead of it, and a writer for the node ahead of it; each has
/// its node deleted and never holds, while the others go on in order.
#[tokio::test]
async fn deleted_readers_and_writers_never_hold() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s: Vec<Session> = common::sessions(&connect, 4, TIMEOUT).await;
    let writer = ReadWriteLock::new(&s[0], "/rw").unwrap().write().await.unwrap();
    let reader = tokio::spawn({
        let lock = ReadWriteLock::new(&s[1], "/rw").unwrap();
        async move { lock.read().await.map(|g| g.node().to_owned()) }
    });
    count_is(&observer, "/rw", 2).await;
    let second_writer = tokio::spawn({
        let lock = ReadWriteLock::new(&s[2], "/rw").unwrap();
        async move { lock.write().await.map(|g| g.node().to_owned()) }
    });
    count_is(&observer, "/rw", 3).await;
    let last_reader = tokio::spawn({
        let lock = ReadWriteLock::new(&s[3], "/rw").unwrap();
        async move {
            let guard = lock.read().await?;
            let node = guard.node().to_owned();
            guard.release().await.map(|()| node)
        }
    });
    count_is(&observer, "/rw", 4).await;
    let nodes = queue(&observer, "/rw").await;
    // The reader waits on the writer head (it would proceed on its deletion without listing);
    // the second writer waits on the reader; the last reader on the second writer.
    watches(&cluster, &nodes[0], &s[1]).await;
    watches(&cluster, &nodes[1], &s[2]).await;
    watches(&cluster, &nodes[2], &s[3]).await;

    observer.delete(&nodes[1], None).await.unwrap();
    let read = tokio::time::timeout(PATIENCE, reader).await.unwrap().unwrap();
    assert!(is_deleted(&read, &nodes[1]), "the reader must not hold: {read:?}");
    observer.delete(&nodes[2], None).await.unwrap();
    let write = tokio::time::timeout(PATIENCE, second_writer).await.unwrap().unwrap();
    assert!(is_deleted(&write, &nodes[2]), "the second writer must not hold: {write:?}");

    writer.release().await.unwrap();
    let last = tokio::time::timeout(PATIENCE, last_reader).await.unwrap().unwrap().unwrap();
    assert_eq!(last, nodes[3], "the queue moved on to the last reader");
    assert!(children(&observer, "/rw").await.is_empty(), "nothing left behind");
}

/// The semaphore's gate phase: a contender waiting for the internal mutex whose gate node is
/// deleted never holds. Its lease phase: a contender waiting for a permit under the gate whose
/// gate node is deleted gives up (deleting its lease node) rather than wait beside the next
/// contender, which would stall the semaphore for good: each would count the other's lease.
#[tokio::test]
async fn deleted_semaphore_contenders_never_hold_and_the_semaphore_never_stalls() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s: Vec<Session> = common::sessions(&connect, 4, TIMEOUT).await;
    let lease = Semaphore::new(&s[0], "/sem", 1).unwrap().acquire().await.unwrap();
    // C takes the gate and waits for the permit; D and E wait for the gate behind it.
    let contender = |session: &Session| {
        let semaphore = Semaphore::new(session, "/sem", 1).unwrap();
        tokio::spawn(async move {
            let lease = semaphore.acquire().await?;
            let nodes: Vec<String> = lease.nodes().map(str::to_owned).collect();
            lease.release().await.map(|()| nodes)
        })
    };
    let c = contender(&s[1]);
    count_is(&observer, "/sem/leases", 2).await;
    let d = contender(&s[2]);
    count_is(&observer, "/sem/locks", 2).await;
    let e = contender(&s[3]);
    count_is(&observer, "/sem/locks", 3).await;
    let gates = queue(&observer, "/sem/locks").await;
    watches(&cluster, &gates[0], &s[2]).await;
    watches(&cluster, &gates[1], &s[3]).await;
    eventually("C watches the lease set", PATIENCE, || async {
        (common::watches(&cluster).await.children == 1).then_some(())
    })
    .await;

    // E's gate node, while it waits for D's.
    observer.delete(&gates[2], None).await.unwrap();
    let e_result = tokio::time::timeout(PATIENCE, e).await.unwrap().unwrap();
    assert!(is_deleted(&e_result, &gates[2]), "E must not hold: {e_result:?}");
    // C's gate node, while C waits for a permit under it.
    observer.delete(&gates[0], None).await.unwrap();
    let c_result = tokio::time::timeout(PATIENCE, c).await.unwrap().unwrap();
    assert!(is_deleted(&c_result, &gates[0]), "C gives up its wait: {c_result:?}");
    count_is(&observer, "/sem/leases", 2).await; // the holder's, and D's, waiting now

    lease.release().await.unwrap();
    let d_nodes = tokio::time::timeout(PATIENCE, d).await.expect("D acquires: no stall").unwrap().unwrap();
    assert_eq!(d_nodes.len(), 1);
    count_is(&observer, "/sem/leases", 0).await;
    count_is(&observer, "/sem/locks", 0).await;
}

/// A latch participant whose waiting node is deleted never leads with it, not even for a
/// moment: it joins again with a new node, and leads with that once the leader leaves.
#[tokio::test]
async fn a_deleted_latch_participant_rejoins_and_never_leads_with_the_deleted_node() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let (s1, s2) = (session(&connect, TIMEOUT).await, session(&connect, TIMEOUT).await);
    let leader = LeaderLatch::new(&s1, "/latch", "one").unwrap().start().await.unwrap();
    leader.leadership().await.unwrap();
    let follower = LeaderLatch::new(&s2, "/latch", "two").unwrap().start().await.unwrap();
    count_is(&observer, "/latch", 2).await;
    let nodes = queue(&observer, "/latch").await;
    watches(&cluster, &nodes[0], &s2).await;

    observer.delete(&nodes[1], None).await.unwrap();
    let rejoined = eventually("the follower joins again with a new node", PATIENCE, || async {
        let now = queue(&observer, "/latch").await;
        (now.len() == 2 && now[1] != nodes[1]).then(|| now[1].clone())
    })
    .await;
    assert!(!follower.is_leader());
    leader.close().await.unwrap();
    let term = tokio::time::timeout(PATIENCE, follower.leadership()).await.unwrap().unwrap();
    assert_eq!(term.node(), rejoined, "it leads with its new node, never the deleted one");
    follower.close().await.unwrap();
}

/// A selector whose waiting node is deleted never runs its task with that node: it queues again.
#[tokio::test]
async fn a_deleted_selector_participant_queues_again_and_never_runs_with_the_deleted_node() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let (s1, s2) = (session(&connect, TIMEOUT).await, session(&connect, TIMEOUT).await);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn({
        let selector = LeaderSelector::new(&s1, "/select", "one").unwrap();
        async move {
            let mut stop = Some(stop_rx);
            selector
                .run(|_term| {
                    let stop = stop.take();
                    async move {
                        if let Some(stop) = stop {
                            let _ = stop.await;
                        }
                    }
                })
                .await
        }
    });
    count_is(&observer, "/select", 1).await;
    let (ran_tx, mut ran) = tokio::sync::mpsc::unbounded_channel();
    let second = tokio::spawn({
        let selector = LeaderSelector::new(&s2, "/select", "two").unwrap();
        async move {
            selector
                .run(|term| {
                    let _ = ran_tx.send(term.node().to_owned());
                    async {}
                })
                .await
        }
    });
    count_is(&observer, "/select", 2).await;
    let nodes = queue(&observer, "/select").await;
    watches(&cluster, &nodes[0], &s2).await;

    observer.delete(&nodes[1], None).await.unwrap();
    let requeued = eventually("the second participant queues again", PATIENCE, || async {
        let now = queue(&observer, "/select").await;
        (now.len() == 2 && now[1] != nodes[1]).then(|| now[1].clone())
    })
    .await;
    assert!(ran.try_recv().is_err(), "it has not led yet");
    stop_tx.send(()).unwrap();
    tokio::time::timeout(PATIENCE, first).await.unwrap().unwrap().unwrap();
    let led_with = tokio::time::timeout(PATIENCE, ran.recv()).await.unwrap().unwrap();
    assert_eq!(led_with, requeued, "it ran its task with its new node, never the deleted one");
    tokio::time::timeout(PATIENCE, second).await.unwrap().unwrap().unwrap();
}

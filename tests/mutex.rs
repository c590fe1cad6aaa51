//! The mutex against real ZooKeeper: exclusion, FIFO order, no herd, cancellation, session
//! loss, lost create replies and fencing tokens.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use common::{children, children_of, eventually, observer, recorded, session, standalone};
use rand::RngExt;
use tokio::time::Instant;
use zk_recipes::testing::{Fault, Proxy};
use zk_recipes::{Error, FencingToken, LossReason, Mutex, zk};

const TIMEOUT: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(20);

/// `_c_` + canonical UUID + `-lock-` + 10 digits: Curator's InterProcessMutex node name.
fn is_curator_lock_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("_c_") else { return false };
    let (uuid, sequence) = rest.split_at(36.min(rest.len()));
    let hex_and_dashes = uuid.chars().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => c == '-',
        _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
    });
    let sequence = sequence.strip_prefix("-lock-").unwrap_or("");
    uuid.len() == 36 && hex_and_dashes && sequence.len() == 10 && sequence.bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn uncontended_lock_writes_a_curator_node_in_a_container_that_goes_away() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let session = session(&connect, TIMEOUT).await;
    let observer = observer(&connect).await;
    let mutex = Mutex::new(&session, "/app/locks/nightly").unwrap().with_data("host-a:42");

    let guard = mutex.lock().await.unwrap();
    let nodes = children(&observer, "/app/locks/nightly").await;
    assert_eq!(nodes.len(), 1);
    assert!(is_curator_lock_name(&nodes[0]), "{}", nodes[0]);
    assert_eq!(guard.node(), format!("/app/locks/nightly/{}", nodes[0]));
    let (data, stat) = observer.get_data(guard.node()).await.unwrap();
    assert_eq!(data, b"host-a:42");
    assert_eq!(stat.ephemeral_owner, session.id().unwrap().0, "the node is ephemeral and ours");
    let (_, dir) = observer.get_children("/app/locks/nightly").await.unwrap();
    assert_eq!(guard.token(), FencingToken::new(dir.czxid as u64, nodes[0][45..].parse().unwrap()));

    guard.release().await.unwrap();
    assert!(children(&observer, "/app/locks/nightly").await.is_empty());
    // The parents are CONTAINER nodes: the server reaps them once empty (every second here).
    eventually("the empty lock directories are reaped", PATIENCE, || async {
        observer.check_stat("/app").await.unwrap().is_none().then_some(())
    })
    .await;
    // And the next lock recreates them.
    mutex.lock().await.unwrap().release().await.unwrap();
}

#[tokio::test]
async fn try_lock_and_lock_timeout_leave_nothing_behind_when_the_lock_is_taken() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let holder = session(&connect, TIMEOUT).await;
    let other = session(&connect, TIMEOUT).await;
    let observer = observer(&connect).await;
    let path = "/try";
    let guard = Mutex::new(&holder, path).unwrap().lock().await.unwrap();
    let mutex = Mutex::new(&other, path).unwrap();

    assert!(mutex.try_lock().await.unwrap().is_none());
    let started = Instant::now();
    let err = mutex.lock_timeout(Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(err, Error::Timeout { path: "/try".into(), after: Duration::from_millis(300) });
    assert!(err.to_string().contains("300ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // lock_timeout withdraws before returning; try_lock's node goes in the background.
    assert!(children_of(&observer, path, other.id().unwrap()).await.len() <= 1);
    eventually("no node of the other session", PATIENCE, || async {
        children_of(&observer, path, other.id().unwrap()).await.is_empty().then_some(())
    })
    .await;

    guard.release().await.unwrap();
    let taken = mutex.try_lock().await.unwrap().expect("free now");
    assert_eq!(children(&observer, path).await.len(), 1);
    drop(taken);
}

/// 8 contenders on separate sessions, 100 acquisitions each: never two holders, tokens
/// strictly increase in acquisition order, and acquisition order is node order (FIFO).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_contenders_are_mutually_exclusive_and_served_in_node_order() {
    const CONTENDERS: usize = 8;
    const ROUNDS: usize = 100;
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let holders = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let log: Arc<StdMutex<Vec<(usize, FencingToken)>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for contender in 0..CONTENDERS {
        let session = session(&connect, Duration::from_secs(6)).await;
        let (holders, overlaps, log) = (holders.clone(), overlaps.clone(), log.clone());
        tasks.spawn(async move {
            let mutex = Mutex::new(&session, "/fair").unwrap();
            for _ in 0..ROUNDS {
                let guard = mutex.lock().await.unwrap();
                if holders.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                log.lock().unwrap().push((contender, guard.token()));
                tokio::task::yield_now().await;
                holders.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two contenders held the lock at once");
    let log = log.lock().unwrap();
    assert_eq!(log.len(), CONTENDERS * ROUNDS);
    for contender in 0..CONTENDERS {
        assert_eq!(log.iter().filter(|(c, _)| *c == contender).count(), ROUNDS, "contender {contender}");
    }
    let tokens: Vec<FencingToken> = log.iter().map(|(_, t)| *t).collect();
    // Every created node was acquired (nobody cancelled), so the sorted tokens are the node
    // order; acquisition order must equal it.
    let mut node_order = tokens.clone();
    node_order.sort();
    node_order.dedup();
    assert_eq!(tokens, node_order, "acquisitions out of node order, or a repeated token");
}

/// 50 waiters queued behind a holder: each waits on its predecessor only, and one release
/// wakes exactly one waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_release_wakes_exactly_one_waiter() {
    const WAITERS: usize = 50;
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let holder = session(&connect, Duration::from_secs(6)).await;
    let mut guard = Some(Mutex::new(&holder, "/herd").unwrap().lock().await.unwrap());

    let (acquired_tx, mut acquired) = tokio::sync::mpsc::unbounded_channel();
    let (release_tx, _) = tokio::sync::broadcast::channel::<usize>(WAITERS);
    let mut waiters = Vec::new();
    for waiter in 0..WAITERS {
        let session = session(&connect, Duration::from_secs(6)).await;
        let (acquired_tx, mut release) = (acquired_tx.clone(), release_tx.subscribe());
        waiters.push(tokio::spawn(async move {
            let guard = Mutex::new(&session, "/herd").unwrap().lock().await.unwrap();
            acquired_tx.send(waiter).unwrap();
            while release.recv().await.unwrap() != waiter {}
            guard.release().await.unwrap();
        }));
        // Queue strictly one after another, so that queue order is waiter order.
        eventually("the waiter is queued", PATIENCE, || async {
            (children(&observer, "/herd").await.len() == waiter + 2).then_some(())
        })
        .await;
    }
    // Every node but the last is watched by exactly one session besides its own (its successor),
    // and nobody watches the directory's children.
    let (watches, watched_by) = eventually("every waiter watches", PATIENCE, || async {
        let watches = common::watches(&cluster).await;
        let others = watches.others_under(&observer, "/herd").await;
        (others.len() == WAITERS).then_some((watches, others))
    })
    .await;
    assert_eq!(watches.children, 0, "a child watch: {watches:#?}");
    assert!(watched_by.values().all(|&n| n == 1), "a node watched by several sessions: {watched_by:#?}");

    for turn in 0..WAITERS {
        common::clear_recorded();
        match guard.take() {
            Some(guard) => guard.release().await.unwrap(),
            None => {
                release_tx.send(turn - 1).unwrap();
            }
        }
        let next = tokio::time::timeout(PATIENCE, acquired.recv()).await.unwrap().unwrap();
        assert_eq!(next, turn, "the waiter queued next acquires next");
        // Give any other woken waiter time to show itself.
        tokio::time::sleep(Duration::from_millis(if turn < 3 { 300 } else { 20 })).await;
        // One waiter wakes: it re-reads the children, or — if it was right behind the head
        // when it began to wait (the first turn) — knows without reading that it is first.
        let (relisted, skipped) = (recorded("list contenders").len(), recorded("may proceed: the head left").len());
        assert_eq!(relisted + skipped, 1, "turn {turn}: one release, one wake-up");
        assert_eq!(skipped, usize::from(turn == 0), "turn {turn}: only the head's successor skips the listing");
    }
    release_tx.send(WAITERS - 1).unwrap();
    for waiter in waiters {
        waiter.await.unwrap();
    }
}

/// Acquisitions dropped at every stage leave no node of the session, and another session then
/// acquires at once. Each stage is reached on purpose: a future dropped by a zero timeout has
/// sent its create and seen no reply (the reply cannot arrive within that first poll); one
/// dropped after the library reported it queued has its node's name; a third group is dropped
/// at random points around the create's reply, for breadth, with no claim on which stage it hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_acquisitions_leave_no_nodes() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let holder = session(&connect, Duration::from_secs(6)).await;
    let guard = Mutex::new(&holder, "/cancel").unwrap().lock().await.unwrap();
    let canceller = session(&connect, Duration::from_secs(6)).await;
    let mutex = Mutex::new(&canceller, "/cancel").unwrap();
    const EACH: usize = 60;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2 * EACH {
        let mutex = mutex.clone();
        let after = match i % 2 {
            0 => Duration::ZERO,
            _ => Duration::from_micros(rand::rng().random_range(0..5_000)),
        };
        tasks.spawn(async move { tokio::time::timeout(after, mutex.lock()).await.is_err() });
    }
    let mut cancelled = 0;
    while let Some(timed_out) = tasks.join_next().await {
        cancelled += usize::from(timed_out.unwrap());
    }
    assert_eq!(cancelled, 2 * EACH, "the lock was held throughout, so every acquisition was cancelled");
    let by_prefix = scheduled_cleanups("Prefix");
    assert!(by_prefix >= EACH, "each zero-timeout drop cleans up by prefix: {by_prefix}");

    // Queued, then dropped: each knows its node by name.
    common::clear_recorded();
    let queued: Vec<_> = (0..EACH)
        .map(|_| {
            tokio::spawn({
                let mutex = mutex.clone();
                async move { mutex.lock().await.map(drop) }
            })
        })
        .collect();
    eventually("every waiter reported itself queued", PATIENCE, || async {
        (recorded("queued").len() >= EACH).then_some(())
    })
    .await;
    queued.iter().for_each(|task| task.abort());
    for task in queued {
        assert!(task.await.unwrap_err().is_cancelled(), "the lock was held: nobody acquired");
    }
    let by_node = scheduled_cleanups("Node");
    assert_eq!(by_node, EACH, "each queued waiter deletes its node by name");

    let owner = canceller.id().unwrap();
    eventually("no node of the cancelling session", PATIENCE, || async {
        children_of(&observer, "/cancel", owner).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(children(&observer, "/cancel").await.len(), 1, "only the holder's node is left");

    guard.release().await.unwrap();
    let other = session(&connect, TIMEOUT).await;
    let taken = Mutex::new(&other, "/cancel").unwrap().try_lock().await.unwrap();
    assert!(taken.is_some(), "another session acquires at once");
}

/// How many background cleanups were scheduled for this kind of target (`Node` or `Prefix`).
fn scheduled_cleanups(kind: &str) -> usize {
    recorded("cleanup scheduled").iter().filter(|e| e.field("target").is_some_and(|t| t.starts_with(kind))).count()
}

/// A timed wait on a silent connection returns close to its deadline, not after the client
/// gives the session up; its node is deleted once the connection is back.
#[tokio::test]
async fn lock_timeout_returns_in_time_on_a_silent_connection() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let holder = session(&connect, TIMEOUT).await;
    let _guard = Mutex::new(&holder, "/late").unwrap().lock().await.unwrap();
    let (proxy, waiter) = common::proxied_session(&cluster, Duration::from_secs(10)).await;
    let mutex = Mutex::new(&waiter, "/late").unwrap();
    let waiting = tokio::spawn(async move { mutex.lock_timeout(Duration::from_millis(500)).await });
    eventually("the waiter is queued", PATIENCE, || async {
        (children(&observer, "/late").await.len() == 2).then_some(())
    })
    .await;

    let silenced = Instant::now();
    proxy.set_fault(Fault::Blackhole);
    let result = tokio::time::timeout(PATIENCE, waiting).await.unwrap().unwrap();
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(silenced.elapsed() < Duration::from_millis(2_000), "returned after {:?}", silenced.elapsed());
    assert_eq!(children(&observer, "/late").await.len(), 2, "the delete could not get through yet");

    proxy.set_fault(Fault::Pass);
    proxy.reset_connections();
    eventually("the withdrawn node is deleted in the background", PATIENCE, || async {
        (children(&observer, "/late").await.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_expired_holder_learns_it_and_its_successor_gets_a_larger_token() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let (proxy, holder) = common::proxied_session(&cluster, Duration::from_secs(4)).await;
    let successor = session(&connect, TIMEOUT).await;
    let guard = Mutex::new(&holder, "/expire").unwrap().lock().await.unwrap();
    let lost = tokio::spawn(guard.lost());
    let next = tokio::spawn({
        let mutex = Mutex::new(&successor, "/expire").unwrap();
        async move { mutex.lock().await }
    });

    common::end_session_from_outside(&holder, &proxy, &connect).await;
    let reason = tokio::time::timeout(PATIENCE, lost).await.unwrap().unwrap();
    assert_eq!(reason, LossReason::SessionExpired);
    let next = tokio::time::timeout(PATIENCE, next).await.unwrap().unwrap().unwrap();
    assert!(next.token() > guard.token(), "{} > {}", next.token(), guard.token());

    let mut write = guard.fenced_write();
    write.set_data("/expire", b"stale", None);
    assert!(matches!(write.commit().await, Err(Error::Lost { reason: LossReason::SessionExpired, .. })));
    assert!(matches!(guard.release().await, Err(Error::Lost { reason: LossReason::SessionExpired, .. })));
    // The session carries on with a new ZooKeeper session.
    let again = Mutex::new(&holder, "/expire").unwrap().lock_timeout(Duration::from_millis(200)).await;
    assert!(matches!(again, Err(Error::Timeout { .. })), "{again:?}");
}

/// A holder whose connection goes silent knows it may have lost the lock no later than the
/// moment the server can expire its session, so before any successor can hold it.
#[tokio::test]
async fn a_silent_holder_knows_it_lost_before_a_successor_can_hold() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let (proxy, holder) = common::proxied_session(&cluster, TIMEOUT).await;
    let successor = session(&connect, TIMEOUT).await;
    let guard = Mutex::new(&holder, "/silent").unwrap().lock().await.unwrap();
    let suspended = tokio::spawn(guard.suspended());
    let mutex = Mutex::new(&successor, "/silent").unwrap();
    let next = tokio::spawn(async move { mutex.lock().await });

    let silenced = Instant::now();
    proxy.set_fault(Fault::Blackhole);
    let next = tokio::time::timeout(PATIENCE, next).await.unwrap().unwrap().unwrap();
    let successor_held = silenced.elapsed();
    // At the moment the successor holds, the old holder must already know.
    let reason = tokio::time::timeout(Duration::ZERO, guard.lost()).await;
    assert_eq!(reason, Ok(LossReason::Unconfirmed), "successor held after {successor_held:?}");
    assert!(suspended.is_finished(), "the connection drop was noticed");
    assert!(next.token() > guard.token());
    let mut write = guard.fenced_write();
    write.set_data("/silent", b"stale", None);
    assert!(matches!(write.commit().await, Err(Error::Lost { reason: LossReason::Unconfirmed, .. })));

    proxy.set_fault(Fault::Pass);
    proxy.reset_connections();
    let released = guard.release().await;
    assert!(matches!(released, Err(Error::Lost { .. })), "{released:?}");
}

#[tokio::test]
async fn a_holder_whose_node_is_deleted_is_told_and_fenced_off() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let holder = session(&connect, TIMEOUT).await;
    let observer = observer(&connect).await;
    let guard = Mutex::new(&holder, "/deleted").unwrap().lock().await.unwrap();
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    observer.create("/resource", b"v0", &options).await.unwrap();

    let mut write = guard.fenced_write();
    write.set_data("/resource", b"v1", None);
    write.commit().await.unwrap();
    assert_eq!(observer.get_data("/resource").await.unwrap().0, b"v1");

    let lost = tokio::spawn(guard.lost());
    observer.delete(guard.node(), None).await.unwrap();
    assert_eq!(tokio::time::timeout(PATIENCE, lost).await.unwrap().unwrap(), LossReason::NodeDeleted);
    let mut write = guard.fenced_write();
    write.set_data("/resource", b"v2", None);
    assert!(matches!(write.commit().await, Err(Error::Lost { reason: LossReason::NodeDeleted, .. })));
    assert_eq!(observer.get_data("/resource").await.unwrap().0, b"v1", "the fenced write was rejected");
    assert!(matches!(guard.release().await, Err(Error::Lost { reason: LossReason::NodeDeleted, .. })));
}

/// The create reached the server but its reply was lost: the node is found by its protected
/// prefix and adopted — one node, no orphan.
#[tokio::test]
async fn a_lost_create_reply_is_recovered_without_a_duplicate_node() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let (proxy, contender) = common::proxied_session(&cluster, Duration::from_secs(4)).await;
    let mutex = Mutex::new(&contender, "/lost-reply").unwrap();
    mutex.lock().await.unwrap().release().await.unwrap(); // the directory exists now

    proxy.set_fault(Fault::DropReplies);
    let locking = tokio::spawn(async move { mutex.lock().await });
    let created = eventually("the create took effect", PATIENCE, || async {
        let nodes = children(&observer, "/lost-reply").await;
        (!nodes.is_empty()).then_some(nodes)
    })
    .await;
    assert!(!locking.is_finished(), "the reply was dropped, so the client cannot know yet");
    proxy.set_fault(Fault::Pass);
    proxy.reset_connections();

    let guard = tokio::time::timeout(PATIENCE, locking).await.unwrap().unwrap().unwrap();
    assert_eq!(children(&observer, "/lost-reply").await, created, "the node was adopted, not duplicated");
    assert_eq!(guard.node(), format!("/lost-reply/{}", created[0]));
    assert_eq!(recorded("the create ran before the connection loss; adopting its node").len(), 1);
    guard.release().await.unwrap();
    assert!(children(&observer, "/lost-reply").await.is_empty(), "no orphan");
}

/// The create never reached the server: nothing is found, and the node is created once.
#[tokio::test]
async fn a_lost_create_request_is_sent_again_once() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let (proxy, contender) = common::proxied_session(&cluster, Duration::from_secs(4)).await;
    let mutex = Mutex::new(&contender, "/lost-request").unwrap();
    mutex.lock().await.unwrap().release().await.unwrap(); // the directory exists now

    proxy.set_fault(Fault::DropRequests);
    let mut locking = tokio::spawn(async move { mutex.lock().await });
    common::stays_pending("the lock while its requests are dropped", Duration::from_millis(300), &mut locking).await;
    assert!(children(&observer, "/lost-request").await.is_empty());
    proxy.set_fault(Fault::Pass);
    proxy.reset_connections();

    let guard = tokio::time::timeout(PATIENCE, locking).await.unwrap().unwrap().unwrap();
    let nodes = children(&observer, "/lost-request").await;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(guard.node(), format!("/lost-request/{}", nodes[0]));
    assert!(!recorded("the create did not happen before the connection loss; creating again").is_empty());
    guard.release().await.unwrap();
}

/// Tokens keep increasing when the lock directory is deleted (by hand or by the server's
/// container reaper) and recreated, although the sequence counter starts again at 0.
#[tokio::test]
async fn tokens_keep_increasing_across_directory_recreation() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let session = session(&connect, TIMEOUT).await;
    let observer = observer(&connect).await;
    let mutex = Mutex::new(&session, "/recreated/lock").unwrap();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let guard = mutex.lock().await.unwrap();
        tokens.push(guard.token());
        guard.release().await.unwrap();
    }
    observer.delete("/recreated/lock", None).await.unwrap();
    let guard = mutex.lock().await.unwrap();
    tokens.push(guard.token());
    guard.release().await.unwrap();
    eventually("the container is reaped", PATIENCE, || async {
        observer.check_stat("/recreated/lock").await.unwrap().is_none().then_some(())
    })
    .await;
    let guard = mutex.lock().await.unwrap();
    tokens.push(guard.token());
    guard.release().await.unwrap();

    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    assert_eq!(tokens[3].sequence(), 0, "the counter restarted with the directory: {tokens:?}");
    assert!(tokens[3].epoch() > tokens[2].epoch() && tokens[4].epoch() > tokens[3].epoch());
    let texts: Vec<String> = tokens.iter().map(ToString::to_string).collect();
    assert!(texts.windows(2).all(|w| w[0] < w[1]), "the text form sorts in token order: {texts:?}");
}

#[tokio::test]
async fn kazoo_named_nodes_count_as_contenders() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let session = session(&connect, TIMEOUT).await;
    let kazoo = observer(&connect).await;
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    kazoo.create("/mixed", b"", &options).await.unwrap();
    let sequential = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, sequence) =
        kazoo.create("/mixed/93166b2c6a1a4b6c9e3d1f0a2b4c6d8e__lock__", b"", &sequential).await.unwrap();
    let kazoo_node = format!("/mixed/93166b2c6a1a4b6c9e3d1f0a2b4c6d8e__lock__{sequence}");
    // A foreign child that is no contender is ignored.
    kazoo.create("/mixed/config", b"", &options).await.unwrap();

    let mutex = Mutex::new(&session, "/mixed").unwrap();
    assert!(mutex.try_lock().await.unwrap().is_none(), "the kazoo holder is ahead");
    let mut locking = tokio::spawn(async move { mutex.lock().await });
    common::stays_pending("the lock while kazoo holds", Duration::from_millis(200), &mut locking).await;
    kazoo.delete(&kazoo_node, None).await.unwrap();
    let guard = tokio::time::timeout(PATIENCE, locking).await.unwrap().unwrap().unwrap();
    guard.release().await.unwrap();
}

#[test]
fn a_guard_dropped_outside_any_runtime_is_released_without_panicking() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (cluster, session, guard) = runtime.block_on(async {
        let cluster = standalone().await;
        let session = session(&cluster.connect_string(), TIMEOUT).await;
        let guard = Mutex::new(&session, "/dropped").unwrap().lock().await.unwrap();
        (cluster, session, guard)
    });
    let node = guard.node().to_owned();
    // No runtime on this thread.
    std::thread::spawn(move || drop(guard)).join().expect("dropping must not panic");
    runtime.block_on(async {
        let observer = observer(&cluster.connect_string()).await;
        eventually("the dropped guard's node is deleted", PATIENCE, || async {
            observer.check_stat(&node).await.unwrap().is_none().then_some(())
        })
        .await;
        let taken = Mutex::new(&session, "/dropped").unwrap().try_lock().await.unwrap();
        assert!(taken.is_some());
    });
}

#[tokio::test]
async fn distinct_paths_do_not_contend_and_one_session_holds_many_locks() {
    let cluster = standalone().await;
    let session = session(&cluster.connect_string(), TIMEOUT).await;
    let mut guards = Vec::new();
    for i in 0..20 {
        guards.push(Mutex::new(&session, &format!("/many/{i}")).unwrap().lock().await.unwrap());
    }
    let nodes: HashSet<&str> = guards.iter().map(|g| g.node()).collect();
    assert_eq!(nodes.len(), 20);
    for guard in guards {
        guard.release().await.unwrap();
    }
}

/// A release whose delete ran on the server but whose reply was lost finds nothing when it
/// retries. That may be its own delete, or someone else's that came first (the next test):
/// the two look the same, so the release cannot prove that the lock was held until then and
/// says so (`Unconfirmed`), rather than claim it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_whose_reply_is_lost_cannot_prove_the_lock_was_held() {
    let cluster = standalone().await;
    let observer = observer(&cluster.connect_string()).await;
    let (proxy, holder) = common::proxied_session(&cluster, Duration::from_secs(4)).await;
    let guard = Mutex::new(&holder, "/reply-lost").unwrap().lock().await.unwrap();
    let id = holder.id().unwrap();

    proxy.set_fault(Fault::DropReplies);
    let release = tokio::spawn(guard.release());
    eventually("the delete ran on the server", PATIENCE, || async {
        children(&observer, "/reply-lost").await.is_empty().then_some(())
    })
    .await;
    proxy.set_fault(Fault::Pass);
    proxy.reset_connections();
    let released = tokio::time::timeout(PATIENCE, release).await.unwrap().unwrap();
    assert!(matches!(released, Err(Error::Lost { reason: LossReason::Unconfirmed, .. })), "{released:?}");
    assert_eq!(holder.id(), Some(id), "the same session");
}

/// Someone else deletes the holder's node while the holder hears nothing from the server;
/// then the holder releases, and the reply to its delete (which finds nothing) is lost too.
/// The retry after the reconnect finds nothing, as after a lost reply to its own delete: the
/// release must not report that the lock was held until then, since another holder could
/// have taken it in between. (Found by the chaos suite: a semaphore lease judged held to the
/// end beside two others.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_cannot_tell_its_delete_from_another_does_not_claim_the_lock() {
    let cluster = standalone().await;
    let observer = observer(&cluster.connect_string()).await;
    let (proxy, holder) = common::proxied_session(&cluster, Duration::from_secs(10)).await;
    let mutex = Mutex::new(&holder, "/deleted-unheard").unwrap();
    let guard = mutex.lock().await.unwrap();
    let node = guard.node().to_owned();
    let client = holder.client().await.unwrap();

    // From now on the holder hears nothing: neither the watch event of the deletion nor the
    // reply to its own delete.
    proxy.set_fault(Fault::DropReplies);
    observer.delete(&node, None).await.unwrap();
    let successor = session(&cluster.connect_string(), TIMEOUT).await;
    let taken = Mutex::new(&successor, "/deleted-unheard").unwrap().lock().await.unwrap();

    let mut release = Box::pin(guard.release());
    // One poll sends the delete; a create sent after it on the same session runs after it.
    std::future::poll_fn(|cx| {
        assert!(release.as_mut().poll(cx).is_pending(), "no reply can arrive");
        std::task::Poll::Ready(())
    })
    .await;
    let options = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let marker = client.create("/deleted-unheard-marker", b"", &options);
    eventually("the holder's delete ran on the server", PATIENCE, || async {
        observer.check_stat("/deleted-unheard-marker").await.ok().flatten().map(|_| ())
    })
    .await;
    drop(marker);
    proxy.set_fault(Fault::Pass);
    proxy.reset_connections();

    let released = tokio::time::timeout(PATIENCE, release).await.unwrap();
    assert!(matches!(released, Err(Error::Lost { .. })), "the successor holds {}: {released:?}", taken.node());
    taken.release().await.unwrap();
}

/// A release whose delete is in flight when the connection dies (the client fails it with its
/// own "no response from connection" error, not `ConnectionLoss`) is sent again once the
/// connection is back: the lock is released, not left to the session's end. Here the first
/// delete never reached the server, so the retry's is the one that ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_cut_off_by_a_dead_connection_is_retried() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let (proxy, holder) = common::proxied_session(&cluster, Duration::from_secs(4)).await;
    let guard = Mutex::new(&holder, "/cut").unwrap().lock().await.unwrap();
    let id = holder.id().unwrap();

    let mut states = holder.states();
    proxy.set_fault(Fault::Blackhole);
    let release = tokio::spawn(guard.release());
    // The client gives the silent connection up itself, after 2/5 of the session timeout.
    assert_eq!(tokio::time::timeout(PATIENCE, states.changed()).await, Ok(zk_recipes::SessionState::Suspended));
    // What the blackhole held (the delete) goes with the connections, before the heal.
    proxy.reset_connections();
    proxy.set_fault(Fault::Pass);
    tokio::time::timeout(PATIENCE, release).await.unwrap().unwrap().expect("released once reconnected");
    assert_eq!(holder.id(), Some(id), "the same session");
    assert!(children(&observer, "/cut").await.is_empty());
}

/// A zero timeout looks once, as Curator's `acquire(0)` does: it takes a free lock, and times
/// out at once, leaving nothing behind, when the lock is taken.
#[tokio::test]
async fn a_zero_timeout_takes_a_free_lock_and_gives_up_at_once_on_a_taken_one() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let (a, b) = (session(&connect, TIMEOUT).await, session(&connect, TIMEOUT).await);
    let observer = observer(&connect).await;
    let guard = Mutex::new(&a, "/zero").unwrap().lock_timeout(Duration::ZERO).await.expect("a free lock is taken");
    let err = Mutex::new(&b, "/zero").unwrap().lock_timeout(Duration::ZERO).await.unwrap_err();
    assert_eq!(err, Error::Timeout { path: "/zero".into(), after: Duration::ZERO });
    eventually("the look leaves nothing behind", PATIENCE, || async {
        children_of(&observer, "/zero", b.id().unwrap()).await.is_empty().then_some(())
    })
    .await;
    guard.release().await.unwrap();
}

/// While the connection is down, one look at the queue (`try_lock`) fails within the connect
/// timeout — not after the client gives the session up — and its node goes once the connection
/// is back.
#[tokio::test]
async fn a_try_answers_within_the_connect_timeout_while_the_connection_is_down() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let proxy = Proxy::start(cluster.address(0)).await.unwrap();
    let connect_timeout = Duration::from_secs(2);
    let session = zk_recipes::Session::builder()
        .session_timeout(Duration::from_secs(10))
        .connect_timeout(connect_timeout)
        .connect(&proxy.address().to_string())
        .await
        .unwrap();
    let mutex = Mutex::new(&session, "/down").unwrap();
    mutex.lock().await.unwrap().release().await.unwrap(); // the directory exists now
    let mut states = session.states();
    proxy.set_fault(Fault::Blackhole);
    assert_eq!(tokio::time::timeout(PATIENCE, states.changed()).await, Ok(zk_recipes::SessionState::Suspended));

    let started = Instant::now();
    let err = mutex.try_lock().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    // The client itself would give the session up only after 7/5 of its 10 s timeout.
    assert!(started.elapsed() < connect_timeout + Duration::from_secs(3), "took {:?}", started.elapsed());
    proxy.set_fault(Fault::Pass);
    proxy.reset_connections();
    eventually("no node is left once the connection is back", PATIENCE, || async {
        children(&observer, "/down").await.is_empty().then_some(())
    })
    .await;
}

/// A create whose request was lost is sent again with the same prefix; should the lost one
/// still land late, the duplicate carries that prefix. Released or cancelled, the acquisition
/// deletes every node with its prefix. The late landing is played by the session's own client.
#[tokio::test]
async fn a_late_duplicate_of_a_resent_create_is_removed_when_released_or_cancelled() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let (proxy, contender) = common::proxied_session(&cluster, Duration::from_secs(6)).await;
    let holder = session(&connect, TIMEOUT).await;
    for cancel in [false, true] {
        let path = if cancel { "/late-cancel" } else { "/late-release" };
        let mutex = Mutex::new(&contender, path).unwrap();
        mutex.lock().await.unwrap().release().await.unwrap(); // the directory exists now
        let held = if cancel { Some(Mutex::new(&holder, path).unwrap().lock().await.unwrap()) } else { None };
        let mut states = contender.states();
        proxy.set_fault(Fault::DropRequests);
        let mut locking = tokio::spawn(async move { mutex.lock().await });
        assert_eq!(tokio::time::timeout(PATIENCE, states.changed()).await, Ok(zk_recipes::SessionState::Suspended));
        proxy.set_fault(Fault::Pass);
        proxy.reset_connections();
        let ours = eventually("the create is sent again", PATIENCE, || async {
            let mine = children_of(&observer, path, contender.id().unwrap()).await;
            (mine.len() == 1).then(|| mine[0].clone())
        })
        .await;
        assert_eq!(recorded("the create did not happen before the connection loss; creating again").len(), 1);
        // Acquired, or waiting behind the holder: past the point where a listing would show
        // (and remove) the duplicate.
        let guard = if cancel {
            eventually("the contender waits", PATIENCE, || async { (!recorded("queued").is_empty()).then_some(()) })
                .await;
            None
        } else {
            Some(tokio::time::timeout(PATIENCE, &mut locking).await.unwrap().unwrap().unwrap())
        };
        // The lost create lands after all.
        let prefix = &ours[..ours.find("lock-").unwrap()];
        let client = contender.client().await.unwrap();
        let late = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        client.create(&format!("{path}/{prefix}lock-"), b"", &late).await.unwrap();
        assert_eq!(children_of(&observer, path, contender.id().unwrap()).await.len(), 2);
        match guard {
            Some(guard) => guard.release().await.unwrap(),
            None => {
                locking.abort();
                assert!(locking.await.unwrap_err().is_cancelled());
                drop(held);
            }
        }
        eventually("every node with the attempt's prefix is gone", PATIENCE, || async {
            children_of(&observer, path, contender.id().unwrap()).await.is_empty().then_some(())
        })
        .await;
        common::clear_recorded();
    }
}

/// What a holder did before someone deleted its node, in the release tests below.
#[derive(Debug, Clone, Copy)]
enum BeforeTheDelete {
    Nothing,
    /// Made a `lost()` future and dropped it unresolved (a `select!` whose other arm won).
    DroppedLost,
    /// Keeps a `lost()` future that nobody polls.
    KeptLost,
    /// Someone wrote to the holder's node first, which spends a one-shot watch.
    DataChanged,
}

/// Someone deletes a holder's node while it is connected, and nobody listens to `lost()`; the
/// holder's release is then cut off by an outage, so its retry finds no node. The holding's
/// watch on its node saw the deletion, so release reports the loss rather than a release —
/// however `lost()` futures came and went before. After a data change spent the watch, release
/// cannot tell, and says so (`Unconfirmed`).
async fn release_after_an_unheard_delete(before: BeforeTheDelete) -> Result<(), Error> {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let (proxy, holder) = common::proxied_session(&cluster, Duration::from_secs(6)).await;
    let guard = Mutex::new(&holder, "/unheard").unwrap().lock().await.unwrap();
    let node = guard.node().to_owned();
    eventually("the holding watches its node", PATIENCE, || async {
        let watches = common::watches(&cluster).await;
        watches.data.get(&node).is_some_and(|sessions| sessions.contains(&holder.id().unwrap().0)).then_some(())
    })
    .await;
    let _kept = match before {
        BeforeTheDelete::Nothing => None,
        BeforeTheDelete::DroppedLost => {
            let _ = tokio::time::timeout(Duration::from_millis(100), guard.lost()).await;
            None
        }
        BeforeTheDelete::KeptLost => Some(Box::pin(guard.lost())),
        BeforeTheDelete::DataChanged => {
            observer.set_data(&node, b"written", None).await.unwrap();
            None
        }
    };
    observer.delete(&node, None).await.unwrap();
    // Answered after the deletion's event on the same connection: the event has arrived.
    holder.client().await.unwrap().check_stat("/").await.unwrap();

    let mut states = holder.states();
    proxy.set_fault(Fault::Blackhole);
    let release = tokio::spawn(guard.release());
    assert_eq!(tokio::time::timeout(PATIENCE, states.changed()).await, Ok(zk_recipes::SessionState::Suspended));
    proxy.set_fault(Fault::Pass);
    proxy.reset_connections();
    tokio::time::timeout(PATIENCE, release).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_release_reports_a_deletion_seen_while_connected_even_when_the_delete_is_cut_off() {
    for before in [BeforeTheDelete::Nothing, BeforeTheDelete::DroppedLost, BeforeTheDelete::KeptLost] {
        let outcome = release_after_an_unheard_delete(before).await;
        assert!(matches!(outcome, Err(Error::Lost { reason: LossReason::NodeDeleted, .. })), "{before:?}: {outcome:?}");
    }
    let outcome = release_after_an_unheard_delete(BeforeTheDelete::DataChanged).await;
    assert!(matches!(outcome, Err(Error::Lost { reason: LossReason::Unconfirmed, .. })), "{outcome:?}");
}

//! The semaphore against real ZooKeeper: the permit bound, arrival order, one watcher of the
//! lease set, multi-permit leases, cancellation and session loss.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use common::{
    children, children_of, count_is, end_session_from_outside, eventually, observer, proxied_session, session,
    sessions, standalone, watches,
};
use rand::RngExt;
use tokio::sync::mpsc;
use zk_recipes::testing::TestingCluster;
use zk_recipes::{Error, FencingToken, LossReason, Semaphore, zk};

const TIMEOUT: Duration = Duration::from_secs(4);
const PATIENCE: Duration = Duration::from_secs(20);

/// At most one session watches the lease set (the only child watch there is), and every
/// internal-mutex node is watched by at most one session besides its own (its successor): one
/// release wakes at most one waiter.
async fn assert_no_herd(cluster: &TestingCluster, observer: &zk::Client, path: &str) {
    let watches = watches(cluster).await;
    assert!(watches.children <= 1, "{} child watches: {watches:#?}", watches.children);
    for (watched, sessions) in watches.others_under(observer, path).await {
        assert!(sessions <= 1, "{watched} is watched by {sessions} sessions: {watches:#?}");
    }
}

#[tokio::test]
async fn a_lease_is_a_curator_node_and_the_internal_mutex_is_handed_back() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s = session(&connect, TIMEOUT).await;
    let semaphore = Semaphore::new(&s, "/sem", 2).unwrap().with_data("worker-7");
    assert_eq!((semaphore.path(), semaphore.permits()), ("/sem", 2));

    let lease = semaphore.acquire().await.unwrap();
    let leases = children(&observer, "/sem/leases").await;
    assert_eq!(leases.len(), 1);
    let name = &leases[0];
    assert!(name.starts_with("_c_") && name[..name.len() - 10].ends_with("-lease-"), "{name}");
    assert_eq!(lease.nodes().collect::<Vec<_>>(), [format!("/sem/leases/{name}")]);
    assert_eq!(lease.count(), 1);
    let (data, stat) = observer.get_data(&format!("/sem/leases/{name}")).await.unwrap();
    assert_eq!((data.as_slice(), stat.ephemeral_owner), (&b"worker-7"[..], s.id().unwrap().0));
    let (_, dir) = observer.get_children("/sem/leases").await.unwrap();
    assert_eq!(lease.token(), FencingToken::new(dir.czxid as u64, name[name.len() - 10..].parse().unwrap()));
    count_is(&observer, "/sem/locks", 0).await;

    let second = semaphore.try_acquire().await.unwrap().expect("a second permit is free");
    assert!(second.token() > lease.token());
    assert!(semaphore.try_acquire().await.unwrap().is_none(), "both permits are taken");
    lease.release().await.unwrap();
    second.release().await.unwrap();
    count_is(&observer, "/sem/leases", 0).await;
}

/// N permits, 4N workers on separate sessions, several turns each: never more than N holders,
/// every worker gets all its turns, and the permits are used in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_holders_than_permits_and_every_worker_gets_its_turns() {
    const PERMITS: u32 = 3;
    const WORKERS: usize = 4 * PERMITS as usize;
    const TURNS: usize = 5;
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let holders = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let turns = Arc::new(StdMutex::new(vec![0; WORKERS]));
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, s) in sessions(&connect, WORKERS, TIMEOUT).await.into_iter().enumerate() {
        let (holders, most, turns) = (holders.clone(), most.clone(), turns.clone());
        tasks.spawn(async move {
            let semaphore = Semaphore::new(&s, "/pool", PERMITS).unwrap();
            for _ in 0..TURNS {
                let lease = semaphore.acquire().await.unwrap();
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                turns.lock().unwrap()[worker] += 1;
                lease.release().await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(*turns.lock().unwrap(), vec![TURNS; WORKERS]);
    let most = most.load(Ordering::SeqCst);
    assert!(most <= PERMITS as usize, "{most} holders at once with {PERMITS} permits");
    assert_eq!(most, PERMITS as usize, "with 4N workers holding for 20 ms, all permits get used at once");
}

/// Two permits held; six waiters arrive one after another. Each release lets exactly the
/// next waiter in arrival order take a lease, and at every step at most one session watches
/// the lease set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order_and_only_one_watches_the_leases() {
    const WAITERS: usize = 6;
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let holder = session(&connect, TIMEOUT).await;
    let semaphore = Semaphore::new(&holder, "/order", 2).unwrap();
    let mut held = vec![semaphore.acquire().await.unwrap(), semaphore.acquire().await.unwrap()];

    let (acquired_tx, mut acquired) = mpsc::unbounded_channel();
    let (release_tx, _) = tokio::sync::broadcast::channel::<usize>(WAITERS);
    let mut waiters = Vec::new();
    for (waiter, s) in sessions(&connect, WAITERS, TIMEOUT).await.into_iter().enumerate() {
        let (acquired_tx, mut release) = (acquired_tx.clone(), release_tx.subscribe());
        waiters.push(tokio::spawn(async move {
            let lease = Semaphore::new(&s, "/order", 2).unwrap().acquire().await.unwrap();
            acquired_tx.send(waiter).unwrap();
            while release.recv().await.unwrap() != waiter {}
            lease.release().await.unwrap();
        }));
        // The first waiter holds the internal mutex with a third lease node; the others queue
        // for the mutex, one after another.
        count_is(&observer, "/order/locks", waiter + 1).await;
    }
    count_is(&observer, "/order/leases", 3).await;
    eventually("the first waiter watches the lease set", PATIENCE, || async {
        (watches(&cluster).await.children == 1).then_some(())
    })
    .await;
    assert_no_herd(&cluster, &observer, "/order").await;

    for turn in 0..WAITERS {
        match held.pop() {
            Some(lease) => lease.release().await.unwrap(),
            None => {
                release_tx.send(turn - 2).unwrap();
            }
        }
        let next = tokio::time::timeout(PATIENCE, acquired.recv()).await.unwrap().unwrap();
        assert_eq!(next, turn, "the waiter that arrived next acquires next");
        let what = format!("turn {turn}: one release, one new holder");
        common::stays_pending(&what, Duration::from_millis(50), acquired.recv()).await;
        assert_no_herd(&cluster, &observer, "/order").await;
    }
    for waiter in WAITERS - 2..WAITERS {
        release_tx.send(waiter).unwrap();
    }
    for waiter in waiters {
        waiter.await.unwrap();
    }
    count_is(&observer, "/order/leases", 0).await;
}

/// A request for several permits is served in arrival order too, and takes them together: a
/// single-permit request behind it waits although one permit is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_permits_are_taken_together_in_arrival_order() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s = sessions(&connect, 3, TIMEOUT).await;
    let first = Semaphore::new(&s[0], "/many", 3).unwrap().acquire_many(2).await.unwrap();
    assert_eq!(first.count(), 2);

    let (tx, mut order) = mpsc::unbounded_channel();
    let big = Semaphore::new(&s[1], "/many", 3).unwrap();
    let big_tx = tx.clone();
    let big_task = tokio::spawn(async move {
        let lease = big.acquire_many(3).await.unwrap();
        big_tx.send(("three", lease.count())).unwrap();
        lease
    });
    count_is(&observer, "/many/locks", 1).await;
    let small = Semaphore::new(&s[2], "/many", 3).unwrap();
    let small_task = tokio::spawn(async move {
        let lease = small.acquire().await.unwrap();
        tx.send(("one", lease.count())).unwrap();
        lease
    });
    count_is(&observer, "/many/locks", 2).await;
    let quiet = Duration::from_millis(200);
    common::stays_pending("one permit is free, but the earlier request needs three", quiet, order.recv()).await;

    first.release().await.unwrap();
    assert_eq!(order.recv().await.unwrap(), ("three", 3));
    let big_lease = big_task.await.unwrap();
    assert_eq!(big_lease.nodes().count(), 3);
    common::stays_pending("all three permits are taken", quiet, order.recv()).await;
    big_lease.release().await.unwrap();
    assert_eq!(order.recv().await.unwrap(), ("one", 1));
    small_task.await.unwrap().release().await.unwrap();
}

/// Acquisitions dropped at random points — waiting for the internal mutex, waiting for a
/// lease while holding it, around the creates — leave neither lock nor lease nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_acquisitions_leave_no_lock_or_lease_nodes() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let holder = session(&connect, TIMEOUT).await;
    let lease = Semaphore::new(&holder, "/cancel", 1).unwrap().acquire().await.unwrap();
    let canceller = session(&connect, TIMEOUT).await;
    let semaphore = Semaphore::new(&canceller, "/cancel", 1).unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..120u32 {
        let semaphore = semaphore.clone();
        let after = match i % 3 {
            0 => Duration::ZERO,
            1 => Duration::from_micros(rand::rng().random_range(0..8_000)),
            _ => Duration::from_millis(50),
        };
        tasks.spawn(async move { tokio::time::timeout(after, semaphore.acquire()).await.is_err() });
    }
    while let Some(cancelled) = tasks.join_next().await {
        assert!(cancelled.unwrap(), "the only permit was held throughout");
    }
    let owner = canceller.id().unwrap();
    eventually("no node of the cancelling session", PATIENCE, || async {
        let locks = children_of(&observer, "/cancel/locks", owner).await;
        let leases = children_of(&observer, "/cancel/leases", owner).await;
        (locks.is_empty() && leases.is_empty()).then_some(())
    })
    .await;

    // A timed-out acquisition reports the semaphore and withdraws as well.
    let err = semaphore.acquire_timeout(Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(err, Error::Timeout { path: "/cancel".into(), after: Duration::from_millis(300) });
    assert!(children_of(&observer, "/cancel/leases", owner).await.is_empty());
    lease.release().await.unwrap();
    let next = semaphore.acquire_timeout(PATIENCE).await.expect("the permit is free at once");
    assert_eq!(children(&observer, "/cancel/leases").await.len(), 1);
    next.release().await.unwrap();
}

/// A holder whose session ends learns it, its lease disappears with the session, and the
/// waiter that held the internal mutex gets the permit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_session_frees_its_lease_and_the_next_waiter_takes_it() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let (proxy, holder) = proxied_session(&cluster, Duration::from_secs(2)).await;
    let lease = Semaphore::new(&holder, "/loss", 1).unwrap().acquire().await.unwrap();
    let lost = lease.lost();
    let waiter = session(&connect, TIMEOUT).await;
    let semaphore = Semaphore::new(&waiter, "/loss", 1).unwrap();
    let waiting = tokio::spawn(async move { semaphore.acquire().await.unwrap() });
    count_is(&observer, "/loss/leases", 2).await;

    end_session_from_outside(&holder, &proxy, &connect).await;
    let reason = tokio::time::timeout(PATIENCE, lost).await.unwrap();
    assert!(matches!(reason, LossReason::SessionExpired | LossReason::SessionClosed), "{reason}");
    let next = tokio::time::timeout(PATIENCE, waiting).await.unwrap().unwrap();
    assert!(next.token() > lease.token());
    assert_eq!(children(&observer, "/loss/leases").await.len(), 1, "only the new holder's lease");
    assert!(matches!(lease.release().await, Err(Error::Lost { .. })));
    next.release().await.unwrap();
}

/// A waiter holding the internal mutex whose session ends takes its lock and lease nodes with
/// it; the next waiter moves up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_loses_its_session_leaves_nothing_and_the_queue_moves_on() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let holder = session(&connect, TIMEOUT).await;
    let lease = Semaphore::new(&holder, "/gone", 1).unwrap().acquire().await.unwrap();
    let (proxy, doomed) = proxied_session(&cluster, Duration::from_secs(2)).await;
    let doomed_semaphore = Semaphore::new(&doomed, "/gone", 1).unwrap();
    let doomed_wait = tokio::spawn(async move { doomed_semaphore.acquire().await });
    count_is(&observer, "/gone/leases", 2).await;
    let next = session(&connect, TIMEOUT).await;
    let next_semaphore = Semaphore::new(&next, "/gone", 1).unwrap();
    let next_wait = tokio::spawn(async move { next_semaphore.acquire().await.unwrap() });
    count_is(&observer, "/gone/locks", 2).await;

    let doomed_id = doomed.id().unwrap();
    end_session_from_outside(&doomed, &proxy, &connect).await;
    let result = tokio::time::timeout(PATIENCE, doomed_wait).await.unwrap().unwrap();
    assert!(matches!(result, Err(Error::SessionExpired | Error::SessionClosed)), "{result:?}");
    assert!(children_of(&observer, "/gone/locks", doomed_id).await.is_empty());
    assert!(children_of(&observer, "/gone/leases", doomed_id).await.is_empty());

    lease.release().await.unwrap();
    let taken = tokio::time::timeout(PATIENCE, next_wait).await.unwrap().unwrap();
    taken.release().await.unwrap();
}

/// A lease's fenced write checks every one of its nodes: it commits while all exist, and is
/// refused, applying nothing, once any of them — here not the first — is deleted.
#[tokio::test]
async fn a_fenced_write_of_a_lease_needs_every_lease_node() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s = session(&connect, TIMEOUT).await;
    let lease = Semaphore::new(&s, "/fenced-sem", 3).unwrap().acquire_many(2).await.unwrap();
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    observer.create("/resource", b"v0", &options).await.unwrap();

    let mut write = lease.fenced_write();
    write.set_data("/resource", b"v1", None);
    assert_eq!(write.commit().await.unwrap().len(), 1, "one result per operation, none for the checks");
    assert_eq!(observer.get_data("/resource").await.unwrap().0, b"v1");

    let second = lease.nodes().nth(1).unwrap().to_owned();
    observer.delete(&second, None).await.unwrap();
    let mut write = lease.fenced_write();
    write.set_data("/resource", b"v2", None);
    let refused = write.commit().await;
    assert!(
        matches!(&refused, Err(Error::Lost { node, reason: LossReason::NodeDeleted }) if *node == second),
        "{refused:?}"
    );
    assert_eq!(observer.get_data("/resource").await.unwrap().0, b"v1", "the fenced write was rejected");
    assert!(matches!(lease.release().await, Err(Error::Lost { reason: LossReason::NodeDeleted, .. })));
}

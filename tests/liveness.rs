//! The proof of liveness against real servers: a guard never comes back already lost while the
//! server answered in time, and a holder learns it may have lost before anyone else can hold.

mod common;

use std::time::Duration;

use common::{children, count_is, observer, session, standalone};
use futures_util::FutureExt;
use tokio::time::Instant;
use zk_recipes::testing::{Fault, Proxy, TestingCluster};
use zk_recipes::{Error, LeaderLatch, LossReason, Mutex, Semaphore, Session, SessionState};

const PATIENCE: Duration = Duration::from_secs(30);

/// A waiter right behind the head goes silent long enough for its proof of liveness to run out,
/// but not for its session to expire; the head releases meanwhile. On reconnecting, the
/// server reports the head's deletion before the answers that renew the proof arrive. The
/// waiter must not be handed a guard in that gap — it would be lost on arrival and for good —
/// but once the proof is renewed.
#[tokio::test]
async fn a_guard_granted_right_after_a_long_silence_is_not_lost_on_arrival() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let head = session(&connect, Duration::from_secs(4)).await;
    let proxy = Proxy::start(cluster.address(0)).await.unwrap();
    // The proof runs out about 6 s into a silence, the server expires the session after 10 s:
    // the silence below ends in between, as soon as the proof has run out.
    let waiter = session(&proxy.address().to_string(), Duration::from_secs(10)).await;
    let held = Mutex::new(&head, "/silence").unwrap().lock().await.unwrap();
    // A lock of the waiter's session on another path tells when its proof has run out.
    let canary = Mutex::new(&waiter, "/canary").unwrap().lock().await.unwrap();
    let waiting = tokio::spawn({
        let mutex = Mutex::new(&waiter, "/silence").unwrap();
        async move { mutex.lock().await }
    });
    count_is(&observer, "/silence", 2).await;
    let nodes = children(&observer, "/silence").await;
    common::eventually("the waiter watches the head", PATIENCE, || async {
        let watches = common::watches(&cluster).await;
        let id = waiter.id().unwrap().0;
        watches
            .data
            .iter()
            .any(|(path, sessions)| path.starts_with("/silence/") && sessions.contains(&id))
            .then_some(())
    })
    .await;

    let id = waiter.id();
    proxy.set_fault(Fault::Blackhole);
    held.release().await.unwrap();
    let lapsed = tokio::time::timeout(PATIENCE, canary.lost()).await.unwrap();
    assert_eq!(lapsed, LossReason::Unconfirmed, "the silence outlasted the proof");
    proxy.set_fault(Fault::Pass);

    let guard = tokio::time::timeout(PATIENCE, waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(waiter.id(), id, "the same ZooKeeper session lived on");
    assert_eq!(waiter.state(), SessionState::Connected);
    assert!(guard.lost().now_or_never().is_none(), "a guard handed out just now is not lost on arrival");
    assert!(nodes.iter().any(|n| guard.node().ends_with(n.as_str())));
    guard.release().await.expect("held to the end: the session and its node lived on");
}

/// A connect that takes longer than the proof window leaves the new session unproven at birth:
/// the first guard must wait for the proof rather than come back lost. Here the first
/// connection attempt is silenced and the connect completes only once it is healed, later than
/// the window (shortened by a liveness margin, so that the test takes seconds).
#[tokio::test]
async fn the_first_guard_after_a_slow_connect_is_not_lost_on_arrival() {
    let cluster = standalone().await;
    let proxy = Proxy::start(cluster.address(0)).await.unwrap();
    let timeout = Duration::from_secs(4);
    // 4 s × 98 % − 1.2 s: the proof reaches 2.72 s past the connect's start.
    let window = Duration::from_millis(2_720);
    proxy.set_fault(Fault::Blackhole);
    let started = std::time::Instant::now();
    let servers = proxy.address().to_string();
    let connecting = tokio::spawn(async move {
        zk_recipes::Session::builder()
            .session_timeout(timeout)
            .liveness_margin(Duration::from_millis(1_200))
            .connect_timeout(PATIENCE)
            .connect(&servers)
            .await
    });
    // A fault schedule, not a synchronisation: the connect cannot complete before the heal.
    tokio::time::sleep(timeout * 3 / 4).await;
    proxy.set_fault(Fault::Pass);
    let session = connecting.await.unwrap().unwrap();
    assert!(started.elapsed() > window, "the connect outlasted the proof window");

    let guard = tokio::time::timeout(PATIENCE, Mutex::new(&session, "/slow").unwrap().lock()).await.unwrap().unwrap();
    assert!(guard.lost().now_or_never().is_none(), "a guard handed out just now is not lost on arrival");
    guard.release().await.expect("held to the end");
}

/// ZooKeeper's stock timing: a follower cut off from the leader notices after syncLimit ×
/// tickTime = 10 s, which is also the default session timeout.
fn stock_ensemble() -> zk_recipes::testing::ClusterBuilder {
    TestingCluster::builder()
        .size(3)
        .partitionable()
        .setting("tickTime", "2000")
        .setting("syncLimit", "5")
        .setting("initLimit", "10")
}

/// What one recipe's holder and its successor saw, in seconds after the partition began.
#[derive(Debug)]
struct Overlap {
    recipe: &'static str,
    lost: f64,
    succeeded: f64,
}

/// A holder of a mutex, a semaphore lease and a latch leadership, with default options, on
/// a session that reaches only `holder_member`; a successor for each on a session that reaches
/// only `successor_member`. `cut` partitions the ensemble; returns when each holder's `lost()`
/// resolved and when each successor acquired, after the cut.
async fn overlap_after(
    cluster: &TestingCluster,
    holder_member: usize,
    successor_member: usize,
    cut: impl FnOnce(),
) -> Vec<Overlap> {
    let holder = Session::connect(&cluster.address(holder_member).to_string()).await.unwrap();
    let successor = Session::connect(&cluster.address(successor_member).to_string()).await.unwrap();
    let guard = Mutex::new(&holder, "/cut/mutex").unwrap().lock().await.unwrap();
    let lease = Semaphore::new(&holder, "/cut/semaphore", 1).unwrap().acquire().await.unwrap();
    let candidate = LeaderLatch::new(&holder, "/cut/latch", "holder").unwrap().start().await.unwrap();
    let term = candidate.leadership().await.unwrap();

    let mutex = Mutex::new(&successor, "/cut/mutex").unwrap();
    let semaphore = Semaphore::new(&successor, "/cut/semaphore", 1).unwrap();
    let latch = LeaderLatch::new(&successor, "/cut/latch", "successor").unwrap();
    let follower = latch.start().await.unwrap();
    let observer = observer(&cluster.address(successor_member).to_string()).await;
    // The successors' own member leaves the ensemble for an election too: should that take
    // longer than their session allows (on a loaded machine), their wait ends with the
    // session (or the new one is not there yet), and they queue again, as a user would. The
    // latch does so itself.
    let waiting_mutex = tokio::spawn(async move {
        loop {
            match mutex.lock().await {
                Err(Error::SessionExpired | Error::Unreachable { .. }) => continue,
                acquired => break acquired.map(|guard| (Instant::now(), guard)),
            }
        }
    });
    let waiting_lease = tokio::spawn(async move {
        loop {
            match semaphore.acquire().await {
                Err(Error::SessionExpired | Error::Unreachable { .. }) => continue,
                acquired => break acquired.map(|lease| (Instant::now(), lease)),
            }
        }
    });
    count_is(&observer, "/cut/mutex", 2).await;
    count_is(&observer, "/cut/latch", 2).await;
    count_is(&observer, "/cut/semaphore/leases", 2).await;

    // The scenario is a holder that has held for a while, whose proof rests on its heartbeats
    // rather than on its session's creation: a fixed wait as part of the fault schedule (lag and
    // two heartbeats of the 10 s timeout), not a synchronisation.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let started = Instant::now();
    let when_lost = |lost: std::pin::Pin<Box<dyn std::future::Future<Output = LossReason> + Send>>| {
        tokio::spawn(async move { (lost.await, Instant::now()) })
    };
    let losses =
        [when_lost(Box::pin(guard.lost())), when_lost(Box::pin(lease.lost())), when_lost(Box::pin(term.lost()))];
    cut();
    let leading = async { follower.leadership().await.map(|_| Instant::now()) };
    let bound = Duration::from_secs(120);
    let (mutex_at, lease_at, latch_at) = tokio::time::timeout(bound, async {
        let (mutex, lease, latch) = tokio::join!(waiting_mutex, waiting_lease, leading);
        (mutex.unwrap().unwrap().0, lease.unwrap().unwrap().0, latch.unwrap())
    })
    .await
    .expect("every successor acquires once the holder's session expired");
    let mut overlaps = Vec::new();
    for ((recipe, succeeded), loss) in
        [("mutex", mutex_at), ("semaphore", lease_at), ("latch", latch_at)].into_iter().zip(losses)
    {
        let (reason, at) = tokio::time::timeout(bound, loss).await.unwrap().unwrap();
        let secs = |at: Instant| at.duration_since(started).as_secs_f64();
        tracing::info!(recipe, %reason, lost = secs(at), succeeded = secs(succeeded), "after the cut");
        overlaps.push(Overlap { recipe, lost: secs(at), succeeded: secs(succeeded) });
    }
    drop((candidate, follower));
    overlaps
}

fn assert_lost_first(overlaps: &[Overlap]) {
    eprintln!("seconds after the cut: {overlaps:?}");
    for overlap in overlaps {
        assert!(
            overlap.lost < overlap.succeeded,
            "{}: the holder's lost() resolved {:.2} s after the cut, its successor acquired at {:.2} s",
            overlap.recipe,
            overlap.lost,
            overlap.succeeded
        );
    }
}

/// The holder's server is a follower cut off from the leader, which keeps a quorum with the
/// other follower. The follower answers reads until it notices (10 s); the leader, hearing
/// nothing of the session, expires it after 10 s, and successors acquire. Every holder's
/// `lost()` resolves before any successor acquires.
#[tokio::test]
async fn a_holder_on_a_follower_cut_off_from_the_leader_knows_before_a_successor_acquires() {
    common::init_tracing();
    let cluster = stock_ensemble().start().await.unwrap();
    let leader = cluster.leader().await.unwrap();
    let follower = (0..3).find(|&m| m != leader).unwrap();
    let overlaps = overlap_after(&cluster, follower, leader, || cluster.isolate(follower).unwrap()).await;
    assert_lost_first(&overlaps);
}

/// The holder's server is the leader, cut off from both followers (silently, both ways). It
/// serves until it notices it lost its quorum; the followers elect a new leader, which expires
/// the session a full timeout after it began to lead. Every holder's `lost()` resolves first.
#[tokio::test]
async fn a_holder_on_a_leader_cut_off_from_its_followers_knows_before_a_successor_acquires() {
    common::init_tracing();
    let cluster = stock_ensemble().start().await.unwrap();
    let leader = cluster.leader().await.unwrap();
    let follower = (0..3).find(|&m| m != leader).unwrap();
    let overlaps = overlap_after(&cluster, leader, follower, || cluster.isolate(leader).unwrap()).await;
    assert_lost_first(&overlaps);
}

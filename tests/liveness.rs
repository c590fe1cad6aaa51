//! The proof of liveness against real servers: a guard never comes back already lost while the
//! server answered in time, and a holder learns it may have lost before anyone else can hold.

mod common;

use std::time::Duration;

use common::{children, count_is, observer, session, standalone};
use futures_util::FutureExt;
use zk_recipes::testing::{Fault, Proxy};
use zk_recipes::{LossReason, Mutex, SessionState};

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

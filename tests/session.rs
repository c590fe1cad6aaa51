//! Session states, expiry and a new ZooKeeper session, close, and riding out a failover.

mod common;

use std::time::Duration;

use common::{children, eventually, observer, session, standalone};
use zk_recipes::testing::{Fault, TestingCluster};
use zk_recipes::{Error, LossReason, Mutex, SessionState};

const PATIENCE: Duration = Duration::from_secs(20);

async fn next_state(states: &mut zk_recipes::SessionStates) -> SessionState {
    tokio::time::timeout(PATIENCE, states.changed()).await.expect("a state change")
}

#[tokio::test]
async fn states_follow_a_frozen_server_and_the_same_session_returns() {
    let cluster = standalone().await;
    let session = session(&cluster.connect_string(), Duration::from_secs(4)).await;
    let id = session.id().unwrap();
    let mut states = session.states();
    assert_eq!(states.current(), SessionState::Connected);

    cluster.pause(0).await.unwrap();
    assert_eq!(next_state(&mut states).await, SessionState::Suspended);
    cluster.resume(0).await.unwrap();
    assert_eq!(next_state(&mut states).await, SessionState::Connected);
    assert_eq!(session.id(), Some(id), "a short outage keeps the ZooKeeper session");
}

#[tokio::test]
async fn an_expired_session_is_replaced_by_a_new_one() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let (proxy, session) = common::proxied_session(&cluster, Duration::from_secs(4)).await;
    let first = session.id().unwrap();
    let mut states = session.states();

    common::end_session_from_outside(&session, &proxy, &connect).await;
    let mut seen = vec![];
    while seen.last() != Some(&SessionState::Connected) || session.id() == Some(first) {
        seen.push(next_state(&mut states).await);
    }
    assert!(seen.contains(&SessionState::Lost), "{seen:?}");
    assert_ne!(session.id(), Some(first));
    // The new session works.
    Mutex::new(&session, "/after-expiry").unwrap().lock().await.unwrap().release().await.unwrap();
}

#[tokio::test]
async fn a_long_silence_expires_the_session_and_the_holder_hears_of_it() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let (proxy, session) = common::proxied_session(&cluster, Duration::from_secs(2)).await;
    let guard = Mutex::new(&session, "/silence").unwrap().lock().await.unwrap();
    let observer = observer(&connect).await;
    let mut states = session.states();

    proxy.set_fault(Fault::Blackhole);
    assert_eq!(next_state(&mut states).await, SessionState::Suspended);
    assert_eq!(tokio::time::timeout(PATIENCE, guard.lost()).await, Ok(LossReason::Unconfirmed));
    eventually("the server expires the session and deletes its node", PATIENCE, || async {
        children(&observer, "/silence").await.is_empty().then_some(())
    })
    .await;
    proxy.set_fault(Fault::Pass);
    proxy.reset_connections();
    let mut seen = vec![];
    while seen.last() != Some(&SessionState::Connected) {
        seen.push(next_state(&mut states).await);
    }
    assert!(seen.contains(&SessionState::Lost), "{seen:?}");
    assert_eq!(guard.lost().await, LossReason::Unconfirmed, "a loss stays reported with its first reason");
}

#[tokio::test]
async fn close_releases_everything_and_ends_the_session() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let session = session(&connect, Duration::from_secs(4)).await;
    let observer = observer(&connect).await;
    let guard = Mutex::new(&session, "/closing").unwrap().lock().await.unwrap();
    let lost = tokio::spawn(guard.lost());
    let mutex = Mutex::new(&session, "/closing").unwrap();
    // A second acquisition on the same session waits behind the guard.
    let waiting = tokio::spawn({
        let mutex = mutex.clone();
        async move { mutex.lock().await }
    });
    eventually("the waiter is queued", PATIENCE, || async {
        (children(&observer, "/closing").await.len() == 2).then_some(())
    })
    .await;

    session.clone().close().await;
    assert_eq!(session.state(), SessionState::Closed);
    assert_eq!(tokio::time::timeout(PATIENCE, lost).await.unwrap().unwrap(), LossReason::SessionClosed);
    let waited = tokio::time::timeout(PATIENCE, waiting).await.expect("the waiter ends").unwrap();
    assert_eq!(waited.unwrap_err(), Error::SessionClosed);
    assert!(children(&observer, "/closing").await.is_empty(), "closing deleted both nodes");
    assert!(
        matches!(guard.release().await, Err(Error::Lost { reason: LossReason::SessionClosed, .. })),
        "releasing after close reports the close"
    );
    assert_eq!(mutex.lock().await.unwrap_err(), Error::SessionClosed);
    assert_eq!(session.states().changed().await, SessionState::Closed, "never waits after close");
}

#[tokio::test]
async fn digest_credentials_open_an_acl_protected_directory() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let admin = zk_recipes::Session::builder().digest("admin", "s3cret").connect(&connect).await.unwrap();
    let client = admin.client().await.unwrap();
    let creator_only = zk_recipes::zk::CreateMode::Persistent.with_acls(zk_recipes::zk::Acls::creator_all());
    client.create("/guarded", b"", &creator_only).await.unwrap();

    let same_user = zk_recipes::Session::builder().digest("admin", "s3cret").connect(&connect).await.unwrap();
    let guard = Mutex::new(&same_user, "/guarded/lock").unwrap().lock().await.unwrap();
    guard.release().await.unwrap();
}

/// A holder connected to the ZooKeeper leader keeps its lock when the leader dies: its
/// session moves to another member well within the session timeout.
#[tokio::test]
async fn a_holder_keeps_its_lock_through_a_leader_failover() {
    common::init_tracing();
    let cluster = TestingCluster::ensemble(3).await.unwrap();
    let leader = cluster.leader().await.unwrap();
    let others: Vec<String> = (0..3).filter(|&m| m != leader).map(|m| cluster.address(m).to_string()).collect();
    // Connected to the leader first, with the others to fail over to.
    let connect = format!("{},{}", cluster.address(leader), others.join(","));
    let session =
        zk_recipes::Session::builder().session_timeout(Duration::from_secs(8)).connect(&connect).await.unwrap();
    let guard = Mutex::new(&session, "/failover").unwrap().lock().await.unwrap();
    let mut lost = tokio::spawn(guard.lost());

    cluster.kill(leader).await.unwrap();
    eventually("reconnected after the failover", PATIENCE, || async {
        (session.state() == SessionState::Connected && session.client().await.ok()?.check_stat("/").await.is_ok())
            .then_some(())
    })
    .await;
    common::stays_pending("a failover within the session timeout is no loss", Duration::from_secs(1), &mut lost).await;
    let mut write = guard.fenced_write();
    write.set_data("/failover", b"still mine", None);
    write.commit().await.unwrap();
    guard.release().await.unwrap();
}

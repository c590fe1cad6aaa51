//! The real-ZooKeeper harness itself: servers start, serve, fail on command, and never
//! outlive the test.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, observer, process_alive, standalone};
use zk_recipes::testing::{Fault, Link, Mode, Proxy, TestingCluster};
use zk_recipes::{SessionState, zk};

#[tokio::test]
async fn standalone_server_serves_and_dies_with_its_cluster() {
    let cluster = standalone().await;
    assert_eq!(cluster.mode(0).await, Some(Mode::Standalone));
    assert_eq!(cluster.leader().await, Some(0));
    let client = observer(&cluster.connect_string()).await;
    client.create("/x", b"hello", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await.unwrap();
    assert_eq!(client.get_data("/x").await.unwrap().0, b"hello");

    let pid = cluster.pid(0).await.expect("a running server");
    assert!(process_alive(pid));
    let log = cluster.log_path(0);
    drop(client);
    drop(cluster);
    assert!(!process_alive(pid), "the server must die with its cluster");
    assert!(!log.exists(), "the cluster's files are removed with it");
}

#[tokio::test]
async fn ensemble_elects_a_new_leader_when_the_leader_is_killed_and_takes_it_back() {
    common::init_tracing();
    let cluster = TestingCluster::ensemble(3).await.expect("a 3-node ensemble");
    let leader = cluster.leader().await.expect("an elected leader");
    let followers = (0..3).filter(|&m| m != leader);
    for member in followers {
        assert_eq!(cluster.mode(member).await, Some(Mode::Follower));
    }
    let client = observer(&cluster.connect_string()).await;
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.create("/before", b"", &options).await.unwrap();

    cluster.kill(leader).await.unwrap();
    assert_eq!(cluster.pid(leader).await, None);
    let successor = eventually("a new leader", Duration::from_secs(30), || async {
        cluster.leader().await.filter(|&l| l != leader)
    })
    .await;
    assert_ne!(successor, leader);
    eventually("the client writes again", Duration::from_secs(30), || async {
        client.create("/after", b"", &options).await.ok()
    })
    .await;

    cluster.restart(leader).await.unwrap();
    assert_eq!(cluster.mode(leader).await, Some(Mode::Follower), "the old leader rejoins as a follower");
    let direct = observer(&cluster.address(leader).to_string()).await;
    direct.sync("/").await.unwrap();
    assert!(direct.check_stat("/before").await.unwrap().is_some());
    assert!(direct.check_stat("/after").await.unwrap().is_some(), "the restarted member caught up");
}

#[tokio::test]
async fn a_paused_server_is_silent_until_resumed_and_a_stopped_one_can_restart() {
    let cluster = standalone().await;
    cluster.pause(0).await.unwrap();
    assert_eq!(cluster.mode(0).await, None, "a paused server answers nothing");
    cluster.resume(0).await.unwrap();
    assert_eq!(cluster.mode(0).await, Some(Mode::Standalone));

    cluster.stop(0).await.unwrap();
    assert_eq!(cluster.mode(0).await, None);
    assert!(cluster.pause(0).await.is_err(), "a stopped member cannot be paused");
    cluster.restart(0).await.unwrap();
    assert_eq!(cluster.mode(0).await, Some(Mode::Standalone));
}

#[tokio::test]
async fn proxy_faults_silence_and_restore_a_session() {
    let cluster = standalone().await;
    let proxy = Proxy::start(cluster.address(0)).await.unwrap();
    let session = common::session(&proxy.address().to_string(), Duration::from_secs(4)).await;
    let mut states = session.states();
    assert_eq!(states.current(), SessionState::Connected);

    proxy.set_fault(Fault::Blackhole);
    let suspended = tokio::time::timeout(Duration::from_secs(10), states.changed()).await;
    assert_eq!(suspended, Ok(SessionState::Suspended), "a silent connection suspends the session");

    proxy.set_fault(Fault::Pass);
    proxy.reset_connections();
    let reconnected = tokio::time::timeout(Duration::from_secs(10), states.changed()).await;
    assert_eq!(reconnected, Ok(SessionState::Connected), "the same session comes back");
    session.client().await.unwrap().check_stat("/").await.unwrap();
}

#[tokio::test]
async fn a_delayed_proxy_slows_each_round_trip_and_a_link_partitions_one_client() {
    let cluster = TestingCluster::ensemble(3).await.unwrap();
    let link = Link::start(&cluster).await.unwrap();
    // The session must outlive the partition's steps below even on a loaded machine (connecting
    // a JVM-backed session there has taken seconds), so its timeout is generous; the steps wait
    // on state changes, each bounded by the timeout and a margin, never on a fixed sleep.
    let timeout = Duration::from_secs(10);
    let bound = timeout + Duration::from_secs(10);
    let session = common::session(&link.connect_string(), timeout).await;
    let client = session.client().await.unwrap();
    // Connected before the partition: the partition is about this session, not about connecting.
    let other = common::session(&cluster.connect_string(), timeout).await;

    link.set_fault(Fault::Delay(Duration::from_millis(150)));
    let started = std::time::Instant::now();
    client.check_stat("/").await.unwrap();
    // A request and its reply are each held back once: a lower bound, not a timing race.
    assert!(started.elapsed() >= Duration::from_millis(300), "took {:?}", started.elapsed());

    let mut states = session.states();
    link.set_fault(Fault::Blackhole);
    let suspended = tokio::time::timeout(bound, states.changed()).await;
    assert_eq!(suspended, Ok(SessionState::Suspended), "cut off from every member");
    // Others still reach the ensemble directly.
    other.client().await.unwrap().check_stat("/").await.unwrap();

    // One member reachable again is enough: the same session resumes through it.
    link.set_member_fault(2, Fault::Pass);
    link.reset_connections();
    let resumed = tokio::time::timeout(bound, states.changed()).await;
    assert_eq!(resumed, Ok(SessionState::Connected));
    client.check_stat("/").await.unwrap();
}

/// The child half of the test below: starts a cluster, reports its server's pid, and waits to
/// be killed.
const CHILD_ENV: &str = "ZK_RECIPES_WATCHDOG_CHILD";

#[test]
fn servers_die_even_when_the_test_process_is_killed() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let cluster = TestingCluster::standalone().await.expect("a server");
            println!("server-pid={}", cluster.pid(0).await.unwrap());
            std::future::pending::<()>().await;
        });
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "servers_die_even_when_the_test_process_is_killed", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid: u32 = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.split_once("server-pid=").map(|(_, pid)| pid.trim().parse().unwrap()))
        .expect("the child reports its server's pid");
    assert!(process_alive(pid));
    child.kill().unwrap(); // SIGKILL: no unwinding, no Drop
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while process_alive(pid) {
        assert!(std::time::Instant::now() < deadline, "server {pid} outlived the killed test process");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn missing_zookeeper_fails_with_the_install_command() {
    let error = TestingCluster::builder()
        .zookeeper_home("/nonexistent/zookeeper")
        .start()
        .await
        .expect_err("no ZooKeeper there");
    let message = error.to_string();
    assert!(message.contains("apt-get install -y zookeeper"), "{message}");
    assert!(message.contains("/nonexistent/zookeeper"), "{message}");
}

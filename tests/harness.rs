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

    // One member reachable again is enough: the same session resumes through it. The others
    // refuse rather than stay silent, so that the client, which tries members in an order of
    // its own and gives a silent one 2/5 of the timeout, reaches member 2 before the session
    // expires whatever that order.
    link.set_member_fault(0, Fault::Refuse);
    link.set_member_fault(1, Fault::Refuse);
    link.set_member_fault(2, Fault::Pass);
    link.reset_connections();
    let resumed = tokio::time::timeout(bound, states.changed()).await;
    assert_eq!(resumed, Ok(SessionState::Connected));
    client.check_stat("/").await.unwrap();
}

/// The ensemble timing of the partition tests: the harness's `tickTime`, and a `syncLimit` that
/// lets a member notice a silent partition in seconds yet not mistake a loaded machine's
/// stall for one.
const TICK: Duration = Duration::from_millis(500);
const SYNC_LIMIT: u32 = 4;
/// How long a follower serves without hearing from its leader (and about how long a leader
/// leads without hearing from a quorum).
const SYNC_TIMEOUT: Duration = TICK.saturating_mul(SYNC_LIMIT);
/// initLimit × tickTime with the harness's initLimit of 20: what an election or a sync with a
/// new leader may take at most.
const INIT_TIMEOUT: Duration = TICK.saturating_mul(20);
/// Added to every bound that ZooKeeper's timing gives, for a loaded machine.
const MARGIN: Duration = Duration::from_secs(15);

async fn partitionable_ensemble(sync_limit: u32) -> TestingCluster {
    common::init_tracing();
    TestingCluster::builder()
        .size(3)
        .partitionable()
        .setting("syncLimit", &sync_limit.to_string())
        .start()
        .await
        .expect("a partitionable 3-node ensemble")
}

/// A client of these members only.
async fn client_of(cluster: &TestingCluster, members: &[usize]) -> zk::Client {
    let addresses: Vec<String> = members.iter().map(|&m| cluster.address(m).to_string()).collect();
    observer(&addresses.join(",")).await
}

/// Creates `path`, retrying across connection losses until the ensemble takes the write.
async fn write(client: &zk::Client, path: &str) {
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    eventually(&format!("the ensemble takes {path}"), SYNC_TIMEOUT + MARGIN, || async {
        match client.create(path, b"", &options).await {
            // A retry finds the node if the first try's reply was lost.
            Ok(_) | Err(zk::Error::NodeExists) => Some(()),
            Err(_) => None,
        }
    })
    .await;
}

async fn wait_for_mode(cluster: &TestingCluster, member: usize, mode: Option<Mode>, what: &str, within: Duration) {
    eventually(what, within, || async { (cluster.mode(member).await == mode).then_some(()) }).await;
}

/// Whether a fresh client of `member` sees `path` after a sync: the member has caught up.
async fn caught_up(cluster: &TestingCluster, member: usize, path: &str) -> bool {
    let client = client_of(cluster, &[member]).await;
    client.sync("/").await.unwrap();
    client.check_stat(path).await.unwrap().is_some()
}

#[tokio::test]
async fn an_isolated_follower_serves_stale_reads_until_it_notices_and_catches_up_once_healed() {
    let cluster = partitionable_ensemble(SYNC_LIMIT).await;
    let leader = cluster.leader().await.expect("an elected leader");
    let follower = (0..3).find(|&m| m != leader).unwrap();
    let majority: Vec<usize> = (0..3).filter(|&m| m != follower).collect();
    let direct = client_of(&cluster, &[follower]).await;
    let writer = client_of(&cluster, &majority).await;
    write(&writer, "/before").await;
    direct.sync("/").await.unwrap();
    let mut direct_states = direct.state_watcher();

    cluster.isolate(follower).unwrap();
    let isolated = std::time::Instant::now();
    write(&writer, "/during").await;
    let written = isolated.elapsed();
    // Still serving, and stale: the follower has not noticed yet.
    let before = direct.check_stat("/before").await;
    let during = direct.check_stat("/during").await;
    assert!(
        matches!((&before, &during), (Ok(Some(_)), Ok(None))),
        "the isolated follower answers without the majority's write, written {written:?} after isolating: \
         {before:?} {during:?} after {:?}",
        isolated.elapsed()
    );

    // It notices only when it has heard nothing from its leader for syncLimit × tickTime, and
    // then closes its clients' connections.
    let closed = tokio::time::timeout(SYNC_TIMEOUT + MARGIN, async {
        while direct_states.changed().await != zk::SessionState::Disconnected {}
    })
    .await;
    let noticed = isolated.elapsed();
    println!(
        "isolated follower: the majority's write took {written:?}, the follower stopped serving after {noticed:?}"
    );
    assert!(closed.is_ok(), "the isolated follower still serves its client after {noticed:?}");
    // Not at once, as after a reset; a loaded machine may have delayed the leader's last ping
    // before the partition, hence only half.
    assert!(noticed >= SYNC_TIMEOUT / 2, "stopped serving after {noticed:?}, before it could notice the silence");
    assert_eq!(cluster.mode(follower).await, None, "it serves no one");
    assert_eq!(cluster.mode(leader).await, Some(Mode::Leader), "the majority keeps its leader");

    cluster.heal(follower).unwrap();
    let healed = std::time::Instant::now();
    // Back after an election and a sync.
    wait_for_mode(&cluster, follower, Some(Mode::Follower), "the healed follower rejoins", 2 * INIT_TIMEOUT + MARGIN)
        .await;
    println!("isolated follower: rejoined {:?} after healing", healed.elapsed());
    assert!(caught_up(&cluster, follower, "/during").await, "the healed follower caught up");
}

#[tokio::test]
async fn an_isolated_leader_is_replaced_by_the_majority_and_rejoins_as_a_follower() {
    let cluster = partitionable_ensemble(SYNC_LIMIT).await;
    let old = cluster.leader().await.expect("an elected leader");
    let majority: Vec<usize> = (0..3).filter(|&m| m != old).collect();
    let writer = client_of(&cluster, &majority).await;

    cluster.isolate(old).unwrap();
    let isolated = std::time::Instant::now();
    // The followers notice the silence after syncLimit × tickTime, then elect one of them.
    let new = eventually("a leader among the majority", SYNC_TIMEOUT + INIT_TIMEOUT + MARGIN, || async {
        for &member in &majority {
            if cluster.mode(member).await == Some(Mode::Leader) {
                return Some(member);
            }
        }
        None
    })
    .await;
    let elected = isolated.elapsed();
    // The old leader gives up within (syncLimit + 1) × tickTime of losing its quorum.
    wait_for_mode(&cluster, old, None, "the isolated leader steps down", SYNC_TIMEOUT + TICK + MARGIN).await;
    println!(
        "isolated leader: member {new} elected after {elected:?}, the old leader stepped down by {:?}",
        isolated.elapsed()
    );
    write(&writer, "/during").await;

    cluster.heal_all().unwrap();
    let healed = std::time::Instant::now();
    wait_for_mode(
        &cluster,
        old,
        Some(Mode::Follower),
        "the old leader rejoins as a follower",
        2 * INIT_TIMEOUT + MARGIN,
    )
    .await;
    println!("isolated leader: rejoined {:?} after healing", healed.elapsed());
    assert_eq!(cluster.mode(new).await, Some(Mode::Leader), "the new leader keeps leading");
    assert!(caught_up(&cluster, old, "/during").await, "the old leader caught up");
}

#[tokio::test]
async fn refusing_isolates_a_member_at_once_and_a_restarted_member_rejoins_through_its_links() {
    // With a silent partition the follower would serve on for syncLimit × tickTime (10 s here):
    // stopping long before that shows the reset.
    let sync_limit = 20;
    let cluster = partitionable_ensemble(sync_limit).await;
    let leader = cluster.leader().await.expect("an elected leader");
    let follower = (0..3).find(|&m| m != leader).unwrap();
    let majority: Vec<usize> = (0..3).filter(|&m| m != follower).collect();
    let writer = client_of(&cluster, &majority).await;
    // A session only the follower can keep alive.
    let session_timeout = 4 * TICK;
    let address = cluster.address(follower).to_string();
    let direct = zk::Client::connector().with_session_timeout(session_timeout).connect(&address).await.unwrap();
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    direct.create("/only-through-the-follower", b"", &ephemeral).await.unwrap();

    cluster.isolate_with(follower, Fault::Refuse).unwrap();
    let isolated = std::time::Instant::now();
    wait_for_mode(&cluster, follower, None, "the refused follower stops serving", TICK * sync_limit).await;
    println!("refused follower: stopped serving after {:?}", isolated.elapsed());

    // Refused each time it tries to rejoin, it stays out until the leader has expired the
    // session of its client, which could reach no one else.
    eventually("the leader expires the follower's client's session", session_timeout + MARGIN, || async {
        assert_eq!(cluster.mode(follower).await, None, "the refused follower got back in");
        writer.check_stat("/only-through-the-follower").await.unwrap().is_none().then_some(())
    })
    .await;
    println!("refused follower: its client's session expired {:?} after isolating", isolated.elapsed());
    write(&writer, "/during").await;

    cluster.heal(follower).unwrap();
    wait_for_mode(&cluster, follower, Some(Mode::Follower), "the healed follower rejoins", 2 * INIT_TIMEOUT + MARGIN)
        .await;
    assert!(caught_up(&cluster, follower, "/during").await, "the healed follower caught up");

    // Its links outlive its process: restarted, it joins through them again.
    cluster.kill(follower).await.unwrap();
    cluster.restart(follower).await.unwrap();
    assert_eq!(cluster.mode(follower).await, Some(Mode::Follower));
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

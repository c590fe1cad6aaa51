//! Leader election against real ZooKeeper (standalone and a 3-node ensemble): exclusive terms,
//! growing tokens, failover, expiry, stale leaders fenced off, server failures, and the
//! selector's turns.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use common::{children, count_is, eventually, observer, proxied_session, session, sessions, standalone};
use tokio::time::Instant;
use zk_recipes::testing::{Fault, TestingCluster};
use zk_recipes::{Error, FencingToken, LeaderLatch, LeaderSelector, LossReason, Term, zk};

const TIMEOUT: Duration = Duration::from_secs(4);
const PATIENCE: Duration = Duration::from_secs(30);

/// Counts leaders that are acting now; records an overlap if a second one starts.
#[derive(Default)]
struct Referee {
    acting: AtomicUsize,
    overlaps: AtomicUsize,
    terms: StdMutex<Vec<(String, FencingToken)>>,
}

impl Referee {
    fn begin(&self, id: &str, term: &Term) {
        if self.acting.fetch_add(1, Ordering::SeqCst) != 0 {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.terms.lock().unwrap().push((id.to_owned(), term.token()));
    }

    fn end(&self) {
        self.acting.fetch_sub(1, Ordering::SeqCst);
    }

    fn check(&self) -> Vec<(String, FencingToken)> {
        assert_eq!(self.overlaps.load(Ordering::SeqCst), 0, "two leaders acted at once");
        let terms = self.terms.lock().unwrap().clone();
        for pair in terms.windows(2) {
            assert!(pair[0].1 < pair[1].1, "tokens must grow from term to term: {pair:?}");
        }
        terms
    }
}

/// A store that keeps the highest token it has seen (in ZooKeeper, updated by compare-and-set)
/// and rejects writes with a lower one — what a fencing-aware resource does.
async fn store_write(client: &zk::Client, token: FencingToken) -> bool {
    loop {
        let (data, stat) = client.get_data("/resource").await.unwrap();
        let highest: u128 = String::from_utf8(data).unwrap().parse().unwrap();
        if token.as_u128() < highest {
            return false;
        }
        match client.set_data("/resource", token.as_u128().to_string().as_bytes(), Some(stat.version)).await {
            Ok(_) => return true,
            Err(zk::Error::BadVersion) => continue,
            Err(err) => panic!("{err}"),
        }
    }
}

#[tokio::test]
async fn a_latch_writes_curator_nodes_with_its_id_and_lists_participants_in_order() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s = sessions(&connect, 3, TIMEOUT).await;
    let mut candidates = Vec::new();
    for (i, session) in s.iter().enumerate() {
        let latch = LeaderLatch::new(session, "/election", &format!("node-{i}")).unwrap();
        assert_eq!((latch.path(), latch.id()), ("/election", format!("node-{i}").as_str()));
        candidates.push(latch.start().await.unwrap());
    }
    let nodes = children(&observer, "/election").await;
    assert_eq!(nodes.len(), 3);
    for node in &nodes {
        assert!(node.starts_with("_c_") && node[..node.len() - 10].ends_with("-latch-"), "{node}");
        let (data, stat) = observer.get_data(&format!("/election/{node}")).await.unwrap();
        assert!(String::from_utf8(data).unwrap().starts_with("node-"));
        assert_ne!(stat.ephemeral_owner, 0, "ephemeral");
    }
    let term = candidates[0].leadership().await.unwrap();
    assert!(candidates[0].is_leader() && !candidates[1].is_leader() && !candidates[2].is_leader());
    assert_eq!(candidates[0].token(), Some(term.token()));
    assert_eq!(candidates[1].token(), None);
    assert_eq!(candidates[1].lost().await, LossReason::NotLeader);
    assert_eq!(candidates[2].participants().await.unwrap(), ["node-0", "node-1", "node-2"]);

    // Closing a follower leaves the order of the others.
    candidates.remove(1).close().await.unwrap();
    count_is(&observer, "/election", 2).await;
    assert_eq!(candidates[0].participants().await.unwrap(), ["node-0", "node-2"]);
}

/// Five participants on separate sessions take 20 terms between them, each stepping down by
/// `close` and joining again: no two terms overlap, and tokens grow from term to term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terms_of_five_participants_never_overlap_and_tokens_grow() {
    const ROUNDS: usize = 4;
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let referee = Arc::new(Referee::default());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, session) in sessions(&connect, 5, TIMEOUT).await.into_iter().enumerate() {
        let referee = referee.clone();
        tasks.spawn(async move {
            let id = format!("p{i}");
            let latch = LeaderLatch::new(&session, "/terms", &id).unwrap();
            for _ in 0..ROUNDS {
                let candidate = latch.start().await.unwrap();
                let term = tokio::time::timeout(PATIENCE, candidate.leadership()).await.unwrap().unwrap();
                referee.begin(&id, &term);
                tokio::time::sleep(Duration::from_millis(15)).await;
                // The leader stops acting before it steps down.
                referee.end();
                candidate.close().await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let terms = referee.check();
    assert_eq!(terms.len(), 5 * ROUNDS);
    for i in 0..5 {
        assert_eq!(terms.iter().filter(|(id, _)| *id == format!("p{i}")).count(), ROUNDS);
    }
}

/// The leader closes: the next participant leads, with a larger token. Prints how long the
/// handoff took.
#[tokio::test]
async fn when_the_leader_closes_the_next_participant_leads() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let s = sessions(&connect, 3, TIMEOUT).await;
    let mut candidates = Vec::new();
    for (i, session) in s.iter().enumerate() {
        candidates.push(LeaderLatch::new(session, "/failover", &format!("n{i}")).unwrap().start().await.unwrap());
    }
    let mut handoffs = Vec::new();
    let mut previous = candidates[0].leadership().await.unwrap();
    for next in 1..3 {
        let leader = candidates.remove(0);
        let started = Instant::now();
        leader.close().await.unwrap();
        assert_eq!(previous.lost().await, LossReason::Released);
        assert!(!previous.is_current());
        let term = tokio::time::timeout(PATIENCE, candidates[0].leadership()).await.unwrap().unwrap();
        handoffs.push(started.elapsed());
        assert!(term.token() > previous.token());
        assert_eq!(candidates[0].participants().await.unwrap()[0], format!("n{next}"));
        previous = term;
    }
    println!("failover after close: {handoffs:?}");
}

/// The leader's connection goes silent until its session expires. It knows it lost leadership
/// no later than the successor leads; the successor's token is larger; the old leader's writes
/// are rejected by a token-checking store and its fenced writes refused; and it rejoins as a
/// follower on a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_leader_knows_first_is_fenced_off_and_rejoins_as_follower() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let admin = observer(&connect).await;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    admin.create("/resource", b"0", &persistent).await.unwrap();
    let (proxy, doomed) = proxied_session(&cluster, Duration::from_secs(2)).await;
    let a = LeaderLatch::new(&doomed, "/expiry", "a").unwrap().start().await.unwrap();
    let a_term = a.leadership().await.unwrap();
    let b_session = session(&connect, TIMEOUT).await;
    let b = LeaderLatch::new(&b_session, "/expiry", "b").unwrap().start().await.unwrap();
    assert!(store_write(&admin, a_term.token()).await, "the first leader writes");

    let a_lost = tokio::spawn({
        let term = a_term.clone();
        async move { (term.lost().await, Instant::now()) }
    });
    proxy.set_fault(Fault::Blackhole);
    let b_term = tokio::time::timeout(PATIENCE, b.leadership()).await.unwrap().unwrap();
    let b_led_at = Instant::now();
    let (reason, a_lost_at) = a_lost.await.unwrap();
    assert!(matches!(reason, LossReason::Unconfirmed | LossReason::SessionExpired), "{reason}");
    assert!(a_lost_at <= b_led_at, "the old leader knew {:?} after the new one led", a_lost_at - b_led_at);
    assert!(b_term.token() > a_term.token());
    assert!(!a.is_leader());
    assert!(store_write(&admin, b_term.token()).await, "the new leader writes");

    // The old leader wakes up and tries to write with its stale token.
    proxy.set_fault(Fault::Pass);
    assert!(!store_write(&admin, a_term.token()).await, "a stale token must be rejected");
    let mut write = a_term.fenced_write();
    write.set_data("/resource", b"stale", None);
    assert!(matches!(write.commit().await, Err(Error::Lost { .. })));

    // It rejoins behind the new leader, on a new session.
    eventually("the old leader rejoins as a follower", PATIENCE, || async {
        (b.participants().await.unwrap() == ["b", "a"]).then_some(())
    })
    .await;
    assert!(!a.is_leader() && b.is_leader());
    b.close().await.unwrap();
    let again = tokio::time::timeout(PATIENCE, a.leadership()).await.unwrap().unwrap();
    assert!(again.token() > b_term.token(), "the rejoined participant's next term has a larger token");
}

/// Participants keep taking terms on a 3-node ensemble while its ZooKeeper leader is killed
/// and restarted: never two acting leaders, and terms go on after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_election_survives_the_zookeeper_leader_being_killed_and_restarted() {
    let cluster = TestingCluster::ensemble(3).await.expect("a real 3-node ensemble");
    common::init_tracing();
    let connect = cluster.connect_string();
    let referee = Arc::new(Referee::default());
    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, session) in sessions(&connect, 4, Duration::from_secs(6)).await.into_iter().enumerate() {
        let (referee, running) = (referee.clone(), running.clone());
        tasks.spawn(async move {
            let id = format!("p{i}");
            let latch = LeaderLatch::new(&session, "/ha", &id).unwrap();
            while running.load(Ordering::SeqCst) {
                // Joining may fail while the ensemble elects a leader; try again shortly.
                let Ok(candidate) = latch.start().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let term = tokio::time::timeout(PATIENCE, candidate.leadership()).await.unwrap().unwrap();
                referee.begin(&id, &term);
                tokio::select! {
                    _ = term.lost() => {}
                    () = tokio::time::sleep(Duration::from_millis(30)) => {}
                }
                referee.end();
                let _ = candidate.close().await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leader = cluster.leader().await.expect("an elected ZooKeeper leader");
    cluster.kill(leader).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart(leader).await.unwrap();
    let before = referee.terms.lock().unwrap().len();
    eventually("terms go on after the restart", PATIENCE, || async {
        (referee.terms.lock().unwrap().len() >= before + 8).then_some(())
    })
    .await;
    running.store(false, Ordering::SeqCst);
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let terms = referee.check();
    println!("{} terms, ZooKeeper leader {leader} killed and restarted", terms.len());
}

/// Four selectors with auto-requeue: their tasks never overlap, and they lead in turn, in
/// arrival order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_take_turns_and_their_tasks_never_overlap() {
    const TERMS: usize = 12;
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let referee = Arc::new(Referee::default());
    // The first term lasts until everyone has queued, so that the turn order is known.
    let (all_queued, queued) = tokio::sync::watch::channel(false);
    let mut runs = Vec::new();
    for (i, session) in sessions(&connect, 4, TIMEOUT).await.into_iter().enumerate() {
        let (referee, queued) = (referee.clone(), queued.clone());
        runs.push(tokio::spawn(async move {
            let id = format!("s{i}");
            let selector = LeaderSelector::new(&session, "/turns", &id).unwrap().auto_requeue();
            let result = selector
                .run(|term| {
                    let (referee, id, mut queued) = (referee.clone(), id.clone(), queued.clone());
                    async move {
                        referee.begin(&id, &term);
                        queued.wait_for(|all| *all).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        referee.end();
                    }
                })
                .await;
            panic!("run ended: {result:?}");
        }));
        // Queue one after another, so that the turn order is known.
        count_is(&observer, "/turns", i + 1).await;
    }
    all_queued.send(true).unwrap();
    eventually("enough terms", PATIENCE, || async { (referee.terms.lock().unwrap().len() >= TERMS).then_some(()) })
        .await;
    for run in runs {
        run.abort();
        let ended = run.await.unwrap_err();
        assert!(ended.is_cancelled(), "a selector's run ended by itself: {ended}");
    }
    let terms = referee.check();
    let ids: Vec<&str> = terms.iter().take(TERMS).map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["s0", "s1", "s2", "s3"].repeat(TERMS / 4), "every participant leads in turn");
}

/// The leader's node is deleted from outside: its task is dropped at once and `run` reports
/// the loss; a selector without auto-requeue returns after one completed term.
#[tokio::test]
async fn a_selector_task_is_dropped_when_leadership_is_lost() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s = session(&connect, TIMEOUT).await;
    let selector = LeaderSelector::new(&s, "/selector", "only").unwrap();

    selector.run(|_| async {}).await.unwrap();
    assert!(children(&observer, "/selector").await.is_empty(), "the term's node is gone");

    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let running = selector.run(move |_| {
        let guard = Dropped(flag.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        }
    });
    let delete = async {
        count_is(&observer, "/selector", 1).await;
        let node = children(&observer, "/selector").await.remove(0);
        let (data, _) = observer.get_data(&format!("/selector/{node}")).await.unwrap();
        assert_eq!(data, b"only", "the id is the node's data, as in Curator");
        observer.delete(&format!("/selector/{node}"), None).await.unwrap();
        std::future::pending::<()>().await
    };
    let result = tokio::select! {
        result = running => result,
        () = delete => unreachable!(),
    };
    assert!(matches!(result, Err(Error::Lost { reason: LossReason::NodeDeleted, .. })), "{result:?}");
    assert!(dropped.load(Ordering::SeqCst), "the task was dropped");
}

/// The leader's server freezes long enough for the term to be in doubt (`Unconfirmed`) but
/// not for the session to expire. The old term is over for good; the candidate deletes its old
/// node and rejoins behind the follower, which leads next. (Before this was fixed, the old
/// node's delete failed with the client's dead-connection error and blocked the election.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_term_in_doubt_ends_and_the_election_moves_on_while_the_session_lives() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let a_session = zk_recipes::Session::builder()
        .session_timeout(Duration::from_secs(4))
        .liveness_margin(Duration::from_millis(1500))
        .connect(&connect)
        .await
        .unwrap();
    let b_session = session(&connect, Duration::from_secs(20)).await;
    let a = LeaderLatch::new(&a_session, "/doubt", "a").unwrap().start().await.unwrap();
    let a_term = tokio::time::timeout(PATIENCE, a.leadership()).await.unwrap().unwrap();
    let b = LeaderLatch::new(&b_session, "/doubt", "b").unwrap().start().await.unwrap();
    let a_id = a_session.id().unwrap();

    // The term is unconfirmed at most 4 s - 1.5 s after the last answered heartbeat; the
    // server expires the session no sooner than 4 s after it last heard from it.
    cluster.pause(0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2900)).await;
    assert!(!a.is_leader(), "the term is in doubt");
    cluster.resume(0).await.unwrap();
    assert_eq!(a_term.lost().await, LossReason::Unconfirmed);

    let b_term = tokio::time::timeout(PATIENCE, b.leadership()).await.unwrap().unwrap();
    assert!(b_term.token() > a_term.token());
    assert_eq!(a_session.id(), Some(a_id), "the session survived");
    eventually("a rejoined behind b", PATIENCE, || async {
        (b.participants().await.unwrap() == ["b", "a"]).then_some(())
    })
    .await;
    assert!(!a_term.is_current(), "a term reported lost stays lost");
}

/// Joining needs a server: with none reachable, `start` fails in bounded time instead of
/// retrying forever.
#[tokio::test]
async fn start_reports_a_failed_first_join() {
    let cluster = standalone().await;
    let s = session(&cluster.connect_string(), Duration::from_secs(2)).await;
    cluster.kill(0).await.unwrap();
    let latch = LeaderLatch::new(&s, "/nobody", "a").unwrap();
    let result = tokio::time::timeout(PATIENCE, latch.start()).await.expect("start gives up");
    assert!(
        matches!(result, Err(Error::SessionExpired | Error::Unreachable { .. })),
        "{:?}",
        result.map(|c| c.id().to_owned())
    );
}

/// A selector's held term: `lead` waits to lead without running a task, and `release` steps
/// down from that term, deleting its node, and reports that it lasted.
#[tokio::test]
async fn a_selectors_held_term_steps_down_on_release() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s = sessions(&connect, 2, TIMEOUT).await;
    let first = LeaderSelector::new(&s[0], "/held-selector", "a").unwrap();
    let second = LeaderSelector::new(&s[1], "/held-selector", "b").unwrap();
    let leadership = first.lead().await.unwrap();
    assert_eq!((leadership.path(), leadership.term().token()), ("/held-selector", leadership.token()));
    let next = tokio::spawn(async move { second.lead().await });
    count_is(&observer, "/held-selector", 2).await;
    let lost = leadership.lost();
    leadership.release().await.unwrap();
    assert_eq!(lost.await, LossReason::Released);
    let next = tokio::time::timeout(PATIENCE, next).await.unwrap().unwrap().unwrap();
    next.release().await.unwrap();
    count_is(&observer, "/held-selector", 0).await;
}

/// A latch's held term is this term only: once it is lost, the candidacy leads again with a new
/// node, but releasing the held term still reports the loss — and closes the candidacy.
#[tokio::test]
async fn a_latchs_held_term_reports_its_own_loss_though_the_candidacy_leads_again() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s = session(&connect, TIMEOUT).await;
    let candidate = LeaderLatch::new(&s, "/held-latch", "a").unwrap().start().await.unwrap();
    let leadership = candidate.lead().await.unwrap();
    let node = leadership.node().to_owned();
    observer.delete(&node, None).await.unwrap();
    assert_eq!(tokio::time::timeout(PATIENCE, leadership.lost()).await.unwrap(), LossReason::NodeDeleted);
    // The candidacy rejoins alone, so it leads again with another node.
    count_is(&observer, "/held-latch", 1).await;
    let released = leadership.release().await;
    assert!(
        matches!(&released, Err(Error::Lost { node: lost, reason: LossReason::NodeDeleted }) if *lost == node),
        "{released:?}"
    );
    count_is(&observer, "/held-latch", 0).await;
}

/// A latch's held term released while it lasts: `Ok`, and the candidacy is over.
#[tokio::test]
async fn a_latchs_held_term_released_in_time_is_ok() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let s = session(&connect, TIMEOUT).await;
    let leadership = LeaderLatch::new(&s, "/held-latch-ok", "a").unwrap().start().await.unwrap().lead().await.unwrap();
    let term = leadership.term().clone();
    leadership.release().await.unwrap();
    assert_eq!(term.lost().await, LossReason::Released);
    count_is(&observer, "/held-latch-ok", 0).await;
}

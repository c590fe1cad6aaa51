//! Leader election beside Curator's `LeaderLatch` and `LeaderSelector`: one leader across
//! languages, failover across languages, and each side listing the other's participants.

use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use zk_recipes::{LeaderLatch, LeaderSelector, Mutex, Term, zk};
use zk_recipes_peers::{Library, PeerContender, PeerRecipe};

use crate::driver::{PATIENCE, QUIET, until_children, until_empty};
use crate::{ensemble, observer, peer, session};

/// The sequence at the end of a node's name or path.
fn sequence(node: &str) -> u32 {
    node[node.len() - 10..].parse().unwrap()
}

/// Waits for a Curator contender's `leader <node>` event; returns the node.
async fn leads(contender: &mut PeerContender) -> String {
    let event = contender.event().await.unwrap();
    event.strip_prefix("leader ").unwrap_or_else(|| panic!("expected leadership, got {event:?}")).to_owned()
}

/// Fails if a Curator contender reports anything (leadership, say) within [`QUIET`].
async fn stays_quiet(contender: &mut PeerContender, why: &str) {
    if let Ok(event) = timeout(QUIET, contender.event()).await {
        panic!("{event:?} although {why}");
    }
}

/// Whether `node` is gone, as the ensemble's leader sees it (after a `sync`).
async fn gone(observer: &zk::Client, node: &str) -> bool {
    observer.sync(node).await.unwrap();
    observer.check_stat(node).await.unwrap().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_latch_leader_across_rust_and_curator_and_failover_both_ways() {
    const PATH: &str = "/interop/latch";
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    // The first leader runs in a process of its own, to be killed.
    let first_peer = peer(Library::Curator, &connect).await;
    let curator = peer(Library::Curator, &connect).await;
    let rust_session = session(&connect).await;

    let mut first = first_peer.open(PeerRecipe::Latch("curator-first"), PATH).await.unwrap();
    first.acquire(None).await.unwrap();
    let first_node = leads(&mut first).await;
    let latch = LeaderLatch::new(&rust_session, PATH, "rust").unwrap();
    let candidate = latch.start().await.unwrap();
    let mut last = curator.open(PeerRecipe::Latch("curator-last"), PATH).await.unwrap();
    last.acquire(None).await.unwrap();
    until_children(&observer, PATH, 3).await;

    // One leader, and both sides agree on who it is and on the queue.
    assert!(timeout(QUIET, candidate.leadership()).await.is_err(), "Curator's latch leads, not Rust");
    stays_quiet(&mut first, "it still leads").await;
    stays_quiet(&mut last, "Curator's first latch leads").await;
    assert_eq!(latch.participants().await.unwrap(), ["curator-first", "rust", "curator-last"]);
    assert_eq!(last.participants().await.unwrap(), ["curator-first:true", "rust:false", "curator-last:false"]);

    // Curator's leader dies (its process killed): once its session expires, Rust leads, and
    // only Rust.
    drop(first);
    drop(first_peer);
    let term = timeout(PATIENCE, candidate.leadership()).await.expect("Rust leads").unwrap();
    assert!(gone(&observer, &first_node).await, "Rust leads only after {first_node} is gone");
    assert!(term.token().sequence() > sequence(&first_node), "{} after {first_node}", term.node());
    stays_quiet(&mut last, "Rust leads").await;
    assert_eq!(last.participants().await.unwrap(), ["rust:true", "curator-last:false"]);

    // Rust steps down: Curator's last latch leads, with a larger token.
    candidate.close().await.unwrap();
    let last_node = leads(&mut last).await;
    assert!(gone(&observer, term.node()).await, "Curator leads only after the Rust node is gone");
    assert!(sequence(&last_node) > term.token().sequence());
    assert!(!term.is_current(), "the Rust term is over");
    assert_eq!(latch.participants().await.unwrap(), ["curator-last"]);
    last.release().await.unwrap();
    until_empty(&observer, PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_selector_leader_across_rust_and_curator_and_failover_both_ways() {
    const PATH: &str = "/interop/selector";
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let curator = peer(Library::Curator, &connect).await;

    let mut first = curator.open(PeerRecipe::Selector("curator-first"), PATH).await.unwrap();
    first.acquire(None).await.unwrap();
    let first_node = format!("{PATH}/{}", leads(&mut first).await);

    // The Rust selector re-queues after every term; each term waits for the test's word.
    let (terms, mut led) = mpsc::unbounded_channel::<(Term, oneshot::Sender<()>)>();
    let rust_session = session(&connect).await;
    let selector = tokio::spawn(async move {
        let selector = LeaderSelector::new(&rust_session, PATH, "rust").unwrap().auto_requeue();
        selector
            .run(|term| {
                let (step_down, stepped_down) = oneshot::channel();
                terms.send((term, step_down)).unwrap();
                async move {
                    let _ = stepped_down.await;
                }
            })
            .await
    });
    until_children(&observer, PATH, 2).await;
    let mut last = curator.open(PeerRecipe::Selector("curator-last"), PATH).await.unwrap();
    last.acquire(None).await.unwrap();
    until_children(&observer, PATH, 3).await;
    assert_eq!(last.participants().await.unwrap(), ["curator-first:true", "rust:false", "curator-last:false"]);
    assert!(timeout(QUIET, led.recv()).await.is_err(), "Curator leads, not Rust");

    // Curator's leader steps down: Rust leads, and only Rust.
    first.release().await.unwrap();
    let (term, step_down) = timeout(PATIENCE, led.recv()).await.expect("Rust leads").unwrap();
    assert!(gone(&observer, &first_node).await, "Rust leads only after {first_node} is gone");
    assert!(term.token().sequence() > sequence(&first_node));
    stays_quiet(&mut last, "Rust leads").await;
    assert_eq!(last.participants().await.unwrap(), ["rust:true", "curator-last:false"]);

    // Rust steps down and queues again: Curator leads.
    step_down.send(()).unwrap();
    let last_node = format!("{PATH}/{}", leads(&mut last).await);
    assert!(gone(&observer, term.node()).await, "Curator leads only after the Rust node is gone");
    assert!(sequence(&last_node) > term.token().sequence());
    until_children(&observer, PATH, 2).await;
    assert_eq!(last.participants().await.unwrap(), ["curator-last:true", "rust:false"]);
    assert!(timeout(QUIET, led.recv()).await.is_err(), "Curator leads, not Rust");

    // Curator's leader closes its client (its session ends): Rust leads again.
    last.close().await.unwrap();
    let (term, _step_down) = timeout(PATIENCE, led.recv()).await.expect("Rust leads again").unwrap();
    assert!(gone(&observer, &last_node).await);
    assert!(term.token().sequence() > sequence(&last_node));
    selector.abort();
    let _ = selector.await;
    until_empty(&observer, PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_mutex_with_an_id_takes_turns_with_curators_leader_selector() {
    // `zk-recipes elect` is this: a mutex whose node data is the participant id.
    const PATH: &str = "/interop/elect";
    let cluster = ensemble().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let curator = peer(Library::Curator, &connect).await;
    let rust_session = session(&connect).await;

    let mut first = curator.open(PeerRecipe::Selector("curator-first"), PATH).await.unwrap();
    first.acquire(None).await.unwrap();
    leads(&mut first).await;
    let mutex = Mutex::new(&rust_session, PATH).unwrap().with_data("rust-worker");
    assert!(mutex.try_lock().await.unwrap().is_none(), "Curator's leader holds the mutex");
    let waiting = tokio::spawn(async move { mutex.lock().await });
    until_children(&observer, PATH, 2).await;
    let mut last = curator.open(PeerRecipe::Selector("curator-last"), PATH).await.unwrap();
    last.acquire(None).await.unwrap();
    until_children(&observer, PATH, 3).await;
    assert_eq!(last.participants().await.unwrap(), ["curator-first:true", "rust-worker:false", "curator-last:false"]);

    first.release().await.unwrap();
    let guard = timeout(PATIENCE, waiting).await.expect("Rust holds").unwrap().unwrap();
    assert_eq!(last.participants().await.unwrap(), ["rust-worker:true", "curator-last:false"]);
    stays_quiet(&mut last, "Rust holds").await;
    guard.release().await.unwrap();
    leads(&mut last).await;
    last.release().await.unwrap();
    until_empty(&observer, PATH).await;
}

//! The `metrics` feature: each documented metric is recorded, with its labels, by real
//! acquisitions, releases, losses and session changes against real ZooKeeper.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{proxied_session, session, standalone};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use zk_recipes::{Error, LossReason, Mutex, Semaphore};

const TIMEOUT: Duration = Duration::from_secs(4);

/// What the recorder has seen, by name and labels: histograms' sample counts and counters'
/// increments. A snapshot drains both, so they are summed here.
struct Seen {
    snapshotter: Snapshotter,
    totals: HashMap<(String, Vec<(String, String)>), u64>,
}

impl Seen {
    /// How many samples (histograms) or what count (counters) metrics named `name` with at
    /// least these labels have, summed.
    fn amount(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let labels = key.key().labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            let total = self.totals.entry((key.key().name().to_owned(), labels)).or_default();
            match value {
                DebugValue::Histogram(samples) => *total += samples.len() as u64,
                DebugValue::Counter(count) => *total += count,
                DebugValue::Gauge(_) => {}
            }
        }
        self.totals
            .iter()
            .filter(|((n, have), _)| {
                n == name && labels.iter().all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, total)| total)
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_is_recorded_with_its_labels() {
    let recorder = DebuggingRecorder::new();
    let mut seen = Seen { snapshotter: recorder.snapshotter(), totals: HashMap::new() };
    recorder.install().expect("the only recorder in this test process");

    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let (proxy, holder) = proxied_session(&cluster, TIMEOUT).await;
    let other = session(&connect, TIMEOUT).await;
    let connected = seen.amount("zk_recipes_session_state_changes_total", &[("state", "Connected")]);
    assert!(connected >= 2, "both sessions connected: {connected}");

    let guard = Mutex::new(&holder, "/m").unwrap().lock().await.unwrap();
    let mutex = Mutex::new(&other, "/m").unwrap();
    assert!(mutex.try_lock().await.unwrap().is_none());
    let err = mutex.lock_timeout(Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let mut acquire = |outcome| seen.amount("zk_recipes_acquire_seconds", &[("recipe", "lock"), ("outcome", outcome)]);
    assert_eq!((acquire("acquired"), acquire("not_acquired"), acquire("timeout")), (1, 1, 1));
    // Three contenders queued: alone, then behind the holder (twice).
    assert_eq!(seen.amount("zk_recipes_queue_length", &[("recipe", "lock")]), 3);

    guard.release().await.unwrap();
    assert_eq!(seen.amount("zk_recipes_hold_seconds", &[("recipe", "lock")]), 1);

    let lease = Semaphore::new(&other, "/s", 1).unwrap().acquire().await.unwrap();
    lease.release().await.unwrap();
    assert_eq!(seen.amount("zk_recipes_acquire_seconds", &[("recipe", "lease"), ("outcome", "acquired")]), 1);
    assert_eq!(seen.amount("zk_recipes_hold_seconds", &[("recipe", "lease")]), 1);
    // The semaphore's internal mutex has a label of its own, apart from real mutexes.
    assert_eq!(seen.amount("zk_recipes_acquire_seconds", &[("recipe", "semaphore_gate"), ("outcome", "acquired")]), 1);
    assert_eq!(seen.amount("zk_recipes_hold_seconds", &[("recipe", "semaphore_gate")]), 1);
    assert_eq!(seen.amount("zk_recipes_hold_seconds", &[("recipe", "lock")]), 1);
    assert_eq!(seen.amount("zk_recipes_queue_length", &[("recipe", "lock")]), 3);

    // A holding lost to the session's end is counted once, by reason, however often asked.
    let guard = Mutex::new(&holder, "/m").unwrap().lock().await.unwrap();
    common::end_session_from_outside(&holder, &proxy, &connect).await;
    let reason = tokio::time::timeout(Duration::from_secs(30), guard.lost()).await.unwrap();
    assert_eq!(reason, LossReason::SessionExpired);
    let _ = guard.lost().await;
    assert_eq!(seen.amount("zk_recipes_losses_total", &[("recipe", "lock"), ("reason", "SessionExpired")]), 1);
    assert!(guard.release().await.is_err(), "released after the loss");
    assert_eq!(seen.amount("zk_recipes_losses_total", &[("recipe", "lock")]), 1, "counted once");
    // The session's own state follows as soon as its driver sees the expiry.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.amount("zk_recipes_session_state_changes_total", &[("state", "Lost")]) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no Lost state recorded: {:?}", seen.totals);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

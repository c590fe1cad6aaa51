//! A deep queue: N waiters (1,000 by default) on one lock and one session behind a holder,
//! drained once. The time per handoff should not grow with the queue's depth beyond the
//! `getChildren` each waiter reads once.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use zk_recipes::{Mutex, Session, zk};

use crate::report::{Report, ratio, title};
use crate::{Options, Result, Servers};

/// How long a deep queue settles once every node is in it, before the drain (the peers wait
/// as long).
const SETTLE: Duration = Duration::from_secs(3);

pub async fn run(servers: &Servers, options: Options, report: &mut Report) -> Result<()> {
    let n = options.depth;
    let within = Duration::from_secs(600);
    // A fresh server compiles its delete-and-notify path while the first drain runs, and the
    // compiler takes one of the two cores: handoffs at the start took 2-4x as long. Two
    // unmeasured drains warm the server for all three libraries, as a production server is.
    for warm_up in ["/bench/deep/warm-up-1", "/bench/deep/warm-up-2"] {
        drain(servers, warm_up, n).await?;
    }
    let ours = drain(servers, "/bench/deep/mutex", n).await?;
    let curator = offsets(&servers.curator.bench(&format!("deep /bench/deep/curator {n}"), within).await?);
    let kazoo = offsets(&servers.kazoo.bench(&format!("deep /bench/deep/kazoo {n}"), within).await?);
    let depths: Vec<usize> = [n, n / 10, n / 100].into_iter().filter(|d| *d >= 2).collect();
    title(&format!(
        "deep queue, {}: {n} waiters on one session drained once; median time per handoff as the queue shrinks from each depth by 10%",
        servers.name
    ));
    print!("{:<28} {:>10}", "", "total");
    for d in &depths {
        print!(" {:>12}", format!("depth {d}"));
    }
    println!(" {:>18}", "handoffs/s at n");
    let mut results = serde_json::Map::new();
    let rate_at_n = |grants: &[Duration]| 1.0 / per_handoff(grants, n).as_secs_f64();
    for (key, label, grants) in [
        ("mutex", "zk-recipes Mutex", &ours),
        ("curator", "Curator InterProcessMutex", &curator),
        ("kazoo", "kazoo Lock", &kazoo),
    ] {
        let total = *grants.last().expect("grants");
        print!("{label:<28} {:>10.1}", total.as_secs_f64() * 1e3);
        let mut at = serde_json::Map::new();
        for &d in &depths {
            let per = per_handoff(grants, d);
            print!(" {:>9.3} ms", per.as_secs_f64() * 1e3);
            at.insert(d.to_string(), json!(per.as_micros() as u64));
        }
        println!(" {:>12.0} ({} of Curator's)", rate_at_n(grants), ratio(rate_at_n(grants), rate_at_n(&curator)));
        results.insert(key.into(), json!({ "total_ms": total.as_millis() as u64, "per_handoff_us_at_depth": at }));
    }
    println!("(total in ms)");
    report.add(json!({ "bench": "deep_queue", "servers": servers.name, "waiters": n, "results": results }));
    Ok(())
}

/// The time per handoff while the queue is `depth` deep: the median gap between grants while
/// it shrinks from `depth` to 90% of it (at least ten handoffs) — a median, so that one stall
/// of the shared machine does not decide it.
fn per_handoff(grants: &[Duration], depth: usize) -> Duration {
    let first = grants.len() - depth;
    let window = (depth / 10).max(10).min(depth - 1);
    let mut gaps: Vec<Duration> =
        (first..first + window).map(|i| grants[i] - if i == 0 { Duration::ZERO } else { grants[i - 1] }).collect();
    gaps.sort();
    gaps[gaps.len() / 2]
}

/// Grant times from the release of the holder, from a peer's nanoseconds.
fn offsets(numbers: &str) -> Vec<Duration> {
    let mut grants: Vec<Duration> = numbers
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| Duration::from_nanos(n.parse().expect("a number")))
        .collect();
    grants.sort();
    grants
}

/// Our drain on `path`: every waiter a task on one session.
async fn drain(servers: &Servers, path: &'static str, n: usize) -> Result<Vec<Duration>> {
    let session = Session::connect(&servers.connect).await?;
    let observer = zk::Client::connect(&servers.connect).await?;
    let holder = Mutex::new(&session, path)?.lock().await?;
    let granted = Arc::new(StdMutex::new(Vec::with_capacity(n)));
    let mut waiters = Vec::with_capacity(n);
    for _ in 0..n {
        let (session, granted) = (session.clone(), granted.clone());
        waiters.push(tokio::spawn(async move {
            let guard = Mutex::new(&session, path).expect("a path").lock().await.expect("lock");
            granted.lock().unwrap().push(Instant::now());
            guard.release().await.expect("release");
        }));
    }
    while observer.list_children(path).await?.len() < n + 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // As the peers do: every waiter has read the queue and set its watch.
    tokio::time::sleep(SETTLE).await;
    let start = Instant::now();
    holder.release().await?;
    for waiter in waiters {
        waiter.await?;
    }
    let mut grants: Vec<Duration> = granted.lock().unwrap().iter().map(|at| *at - start).collect();
    grants.sort();
    Ok(grants)
}

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
    let ours = drain(servers, n).await?;
    let curator = offsets(&servers.curator.bench(&format!("deep /bench/deep/curator {n}"), within).await?);
    let kazoo = offsets(&servers.kazoo.bench(&format!("deep /bench/deep/kazoo {n}"), within).await?);
    let depths: Vec<usize> = [n, n / 10, n / 100].into_iter().filter(|d| *d >= 2).collect();
    title(&format!("deep queue, {}: {n} waiters on one session drained once; time per handoff at depth", servers.name));
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

/// The mean time per handoff while the queue is `depth` deep: over the (up to) ten handoffs
/// from the grant that left `depth - 1` waiting.
fn per_handoff(grants: &[Duration], depth: usize) -> Duration {
    let n = grants.len();
    let first = n - depth;
    let window = 10.min(depth - 1).max(1);
    let start = if first == 0 { Duration::ZERO } else { grants[first - 1] };
    (grants[first + window - 1] - start) / window as u32
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

/// Our drain: every waiter a task on one session.
async fn drain(servers: &Servers, n: usize) -> Result<Vec<Duration>> {
    const PATH: &str = "/bench/deep/mutex";
    let session = Session::connect(&servers.connect).await?;
    let observer = zk::Client::connect(&servers.connect).await?;
    let holder = Mutex::new(&session, PATH)?.lock().await?;
    let granted = Arc::new(StdMutex::new(Vec::with_capacity(n)));
    let mut waiters = Vec::with_capacity(n);
    for _ in 0..n {
        let (session, granted) = (session.clone(), granted.clone());
        waiters.push(tokio::spawn(async move {
            let guard = Mutex::new(&session, PATH).expect("a path").lock().await.expect("lock");
            granted.lock().unwrap().push(Instant::now());
            guard.release().await.expect("release");
        }));
    }
    while observer.list_children(PATH).await?.len() < n + 1 {
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

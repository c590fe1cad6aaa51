//! A semaphore with 4 permits and 32 workers on separate sessions, each looping acquire →
//! release: acquisitions per second. kazoo's semaphore has a layout of its own; it is timed
//! as kazoo's answer to the same job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use zk_recipes::{Semaphore, Session};

use crate::report::{Report, median, ratio, title};
use crate::{Options, Result, Servers};

const PERMITS: u32 = 4;
const WORKERS: usize = 32;

pub async fn run(servers: &Servers, options: Options, report: &mut Report) -> Result<()> {
    let millis = (options.seconds * 1e3) as u64;
    let rounds = options.rounds.clamp(1, 3);
    let (mut ours, mut curator, mut kazoo) = (Vec::new(), Vec::new(), Vec::new());
    let within = Duration::from_secs(120);
    for round in 0..rounds {
        ours.push(run_ours(servers, millis, round).await? as f64 / options.seconds);
        let command = |who: &str| format!("semaphore /bench/semaphore/{who}-{round} {PERMITS} {WORKERS} {millis}");
        curator.push(servers.curator.bench(&command("curator"), within).await?.parse::<f64>()? / options.seconds);
        kazoo.push(servers.kazoo.bench(&command("kazoo"), within).await?.parse::<f64>()? / options.seconds);
    }
    let (ours, curator, kazoo) = (median(ours), median(curator), median(kazoo));
    title(&format!(
        "semaphore, {}: {PERMITS} permits, {WORKERS} workers, {rounds} rounds x {} s",
        servers.name, options.seconds
    ));
    println!("{:<34} {:>16} {:>10}", "", "acquisitions/s", "/ Curator");
    for (label, rate) in
        [("zk-recipes Semaphore", ours), ("Curator InterProcessSemaphoreV2", curator), ("kazoo Semaphore", kazoo)]
    {
        println!("{label:<34} {rate:>16.0} {:>10}", ratio(rate, curator));
    }
    report.add(json!({
        "bench": "semaphore", "servers": servers.name, "permits": PERMITS, "workers": WORKERS,
        "acquisitions_per_s": { "semaphore": ours, "curator": curator, "kazoo": kazoo },
    }));
    Ok(())
}

async fn run_ours(servers: &Servers, millis: u64, round: usize) -> Result<u64> {
    let path = format!("/bench/semaphore/ours-{round}");
    let mut sessions = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        sessions.push(Session::connect(&servers.connect).await?);
    }
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_millis(millis);
    let mut workers = Vec::new();
    for session in sessions {
        let (count, path) = (count.clone(), path.clone());
        workers.push(tokio::spawn(async move {
            let semaphore = Semaphore::new(&session, &path, PERMITS).expect("a path");
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if let Ok(lease) = semaphore.acquire_timeout(left.max(Duration::from_millis(1))).await {
                    count.fetch_add(1, Ordering::Relaxed);
                    lease.release().await.expect("release");
                }
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    Ok(count.load(Ordering::Relaxed))
}

//! A worker pool that calls a rate-limited partner API: eight workers, each with its own
//! session (as separate processes would have), and a semaphore of three permits.
//!
//! Uses the ZooKeeper ensemble in `ZK_SERVERS` (e.g. `127.0.0.1:2181`), or starts a local
//! server when unset: `cargo run --example semaphore`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use zk_recipes::testing::TestingCluster;
use zk_recipes::{Semaphore, Session};

const PERMITS: u32 = 3;
const WORKERS: usize = 8;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (servers, _local) = TestingCluster::from_env_or_standalone("ZK_SERVERS").await?;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let session = Session::builder().session_timeout(Duration::from_secs(6)).connect(&servers).await?;
        let (in_flight, most) = (in_flight.clone(), most.clone());
        workers.spawn(async move {
            let semaphore = Semaphore::new(&session, "/pools/partner-api", PERMITS)?;
            let lease = semaphore.acquire().await?;
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            println!("worker {worker} calls the API (lease token {}, {now} in flight)", lease.token());
            tokio::select! {
                reason = lease.lost() => eprintln!("worker {worker}: lease lost ({reason}); stopping"),
                () = tokio::time::sleep(Duration::from_millis(150)) => {}
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
            lease.release().await
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    println!("all {WORKERS} workers done; at most {} in flight with {PERMITS} permits", most.load(Ordering::SeqCst));
    Ok(())
}

//! A once-only job under a distributed mutex, writing to its resource with a fencing token.
//!
//! Uses the ZooKeeper ensemble in `ZK_SERVERS` (e.g. `127.0.0.1:2181`), or starts a local
//! server when unset: `cargo run --example mutex`.

use std::time::Duration;

use zk_recipes::testing::TestingCluster;
use zk_recipes::{Error, Mutex, Session};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (servers, _local) = TestingCluster::from_env_or_standalone("ZK_SERVERS").await?;
    let session = Session::builder().session_timeout(Duration::from_secs(6)).connect(&servers).await?;
    let host = format!("{}:{}", hostname(), std::process::id());
    let mutex = Mutex::new(&session, "/jobs/nightly-report")?.with_data(host);

    // Run only if nobody else runs it right now; wait at most 5 s for the lock.
    let guard = match mutex.lock_timeout(Duration::from_secs(5)).await {
        Ok(guard) => guard,
        Err(Error::Timeout { .. }) => {
            println!("another instance holds the lock; skipping this run");
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    };
    println!("holding {} with fencing token {}", guard.node(), guard.token());

    // Do the work, but stop the moment the lock is lost or can no longer be proven held.
    tokio::select! {
        reason = guard.lost() => {
            eprintln!("lock lost ({reason}); abandoning the run");
            return Ok(());
        }
        () = work(guard.token().to_string()) => {}
    }
    guard.release().await?;
    println!("released");
    Ok(())
}

/// Stands for the job; a real one passes the token to every write, e.g. as a column the
/// database compares (`UPDATE ... WHERE last_token <= $token`).
async fn work(token: String) {
    println!("working under token {token}");
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}

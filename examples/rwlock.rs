//! A price catalog in ZooKeeper: many readers share a read lock, and a writer that updates the
//! catalog waits for them, takes the lock alone, and commits with a fenced write.
//!
//! Uses the ZooKeeper ensemble in `ZK_SERVERS` (e.g. `127.0.0.1:2181`), or starts a local
//! server when unset: `cargo run --example rwlock`.

use std::time::Duration;

use zk_recipes::testing::TestingCluster;
use zk_recipes::{ReadWriteLock, Session, zk};

const LOCK: &str = "/catalog/lock";
const CATALOG: &str = "/catalog/prices";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (servers, _local) = TestingCluster::from_env_or_standalone("ZK_SERVERS").await?;
    // Each participant has its own session, as separate processes would.
    let connect = || Session::builder().session_timeout(Duration::from_secs(6)).connect(&servers);
    let admin = connect().await?;
    let client = admin.client().await?;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match client.create(CATALOG, b"v1: apples 3", &persistent).await {
        Ok(_) | Err(zk::Error::NodeExists) => {}
        Err(zk::Error::NoNode) => {
            client.mkdir("/catalog", &persistent).await?;
            client.create(CATALOG, b"v1: apples 3", &persistent).await?;
        }
        Err(err) => return Err(err.into()),
    }

    // Three readers hold the read lock at the same time.
    let mut readers = Vec::new();
    for name in ["reader-a", "reader-b", "reader-c"] {
        let session = connect().await?;
        let guard = ReadWriteLock::new(&session, LOCK)?.read().await?;
        let (prices, _) = session.client().await?.get_data(CATALOG).await?;
        println!("{name} reads under token {}: {}", guard.token(), String::from_utf8_lossy(&prices));
        readers.push((session, guard));
    }

    // The writer queues behind them; a reader arriving after the writer waits for it.
    let writer_session = connect().await?;
    let lock = ReadWriteLock::new(&writer_session, LOCK)?;
    let writer = tokio::spawn(async move {
        let guard = lock.write().await?;
        println!("writer holds the write lock alone, token {}", guard.token());
        let mut write = guard.fenced_write();
        write.set_data(CATALOG, b"v2: apples 4", None);
        write.commit().await?;
        println!("writer committed v2 (fenced: only while holding)");
        guard.release().await?;
        Ok::<_, BoxError>(())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late_session = connect().await?;
    let late = ReadWriteLock::new(&late_session, LOCK)?;
    println!("late reader tries while the writer waits: {}", describe(late.try_read().await?.is_some()));
    let late_reader = tokio::spawn(async move {
        let guard = late.read().await?;
        let (prices, _) = late_session.client().await?.get_data(CATALOG).await?;
        println!("late reader reads under token {}: {}", guard.token(), String::from_utf8_lossy(&prices));
        guard.release().await?;
        Ok::<_, BoxError>(())
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    // Said before, not after: the writer may hold (and say so) before the last release returns.
    println!("early readers release");
    for (_, guard) in readers {
        guard.release().await?;
    }
    writer.await??;
    late_reader.await??;
    Ok(())
}

fn describe(acquired: bool) -> &'static str {
    if acquired { "acquired (bug!)" } else { "not granted, the writer is ahead" }
}

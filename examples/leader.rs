//! A shard owner elected among three processes (each with its own session): the leader writes
//! under its fencing token, steps down, and the next one takes over with a larger token. Then
//! three workers take turns at a periodic job with a `LeaderSelector`.
//!
//! Uses the ZooKeeper ensemble in `ZK_SERVERS` (e.g. `127.0.0.1:2181`), or starts a local
//! server when unset: `cargo run --example leader`.

use std::time::Duration;

use tokio::time::Instant;
use zk_recipes::testing::TestingCluster;
use zk_recipes::{LeaderLatch, LeaderSelector, Session, zk};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (servers, _local) = TestingCluster::from_env_or_standalone("ZK_SERVERS").await?;
    let connect = || Session::builder().session_timeout(Duration::from_secs(6)).connect(&servers);

    // Part 1: LeaderLatch. Three candidates join in order.
    let mut candidates = Vec::new();
    for id in ["shard-owner-a", "shard-owner-b", "shard-owner-c"] {
        let session = connect().await?;
        candidates.push((id, LeaderLatch::new(&session, "/shards/7/owner", id)?.start().await?, session));
    }
    println!("participants: {:?}", candidates[0].1.participants().await?);
    for _ in 0..3 {
        let (id, candidate, session) = candidates.remove(0);
        let term = candidate.leadership().await?;
        // The shard's state lives in ZooKeeper here; the write commits only while leading.
        let mut write = term.fenced_write();
        write.create(&format!("/shards/7/log-{}", term.token()), id.as_bytes(), zk::CreateMode::Persistent);
        write.commit().await?;
        println!("{id} leads with token {} and wrote its log entry", term.token());
        let stepped_down = Instant::now();
        candidate.close().await?;
        if let Some((next, candidate, _)) = candidates.first() {
            let term = candidate.leadership().await?;
            println!("  {next} took over after {:?} with token {}", stepped_down.elapsed(), term.token());
        }
        drop(session);
    }

    // Part 2: LeaderSelector with auto-requeue: workers take turns, in arrival order.
    let (turns_tx, mut turns) = tokio::sync::mpsc::unbounded_channel();
    let mut workers = tokio::task::JoinSet::new();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(connect().await?);
    }
    for (id, session) in ["worker-1", "worker-2", "worker-3"].into_iter().zip(sessions) {
        let turns_tx = turns_tx.clone();
        workers.spawn(async move {
            let selector = LeaderSelector::new(&session, "/jobs/reindex", id)?.auto_requeue();
            selector
                .run(|term| {
                    let turns_tx = turns_tx.clone();
                    async move {
                        let _ = turns_tx.send((id, term.token()));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                })
                .await
        });
        // Let each worker queue before the next (well within a turn), so that turns follow
        // arrival.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..6 {
        let (id, token) = turns.recv().await.expect("workers run");
        println!("{id} runs the reindex job (token {token})");
    }
    workers.abort_all();
    Ok(())
}

//! Leader failover: from the leader's `close()` to the next participant knowing it leads —
//! our `LeaderLatch`, Curator's `LeaderLatch` (to its `isLeader` callback), and the raw floor of
//! the same events (a delete, the successor's watch event, one `getChildren`).

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use zk_recipes::{Candidate, LeaderLatch, Session, zk};

use crate::report::{Report, Stats, durations_us, ms, ratio, title};
use crate::{Options, Result, Servers};

pub async fn run(servers: &Servers, options: Options, report: &mut Report) -> Result<()> {
    let raw = zk::Client::connect(&servers.connect).await?;
    let handoff = Handoff::new(&servers.connect, &raw).await?;
    let (mut floor, mut latch, mut curator) = (Vec::new(), Vec::new(), Vec::new());
    let per_round = (options.cycles / 4).max(1);
    for round in 0..options.rounds {
        floor.extend(handoff.raw(per_round).await?);
        latch.extend(handoff.latch(per_round).await?);
        let command = format!("failover /bench/failover/curator-{round} {per_round}");
        curator.extend(durations_us(&servers.curator.bench(&command, Duration::from_secs(120)).await?));
    }
    let (floor, latch, curator) = (Stats::of(floor), Stats::of(latch), Stats::of(curator));
    title(&format!(
        "leader failover, {} ({} rounds x {per_round}): close -> the next leader knows",
        servers.name, options.rounds
    ));
    println!("{:<46} {:>10} {:>10} {:>8} {:>9}", "", "p50", "p99", "/ floor", "/ Curator");
    let secs = |d: Duration| d.as_secs_f64();
    for (label, s) in [
        ("raw delete -> watch event -> getChildren", floor),
        ("zk-recipes LeaderLatch close -> leadership()", latch),
        ("Curator LeaderLatch close -> isLeader()", curator),
    ] {
        println!(
            "{label:<46} {:>10} {:>10} {:>8} {:>9}",
            ms(s.p50),
            ms(s.p99),
            ratio(secs(s.p50), secs(floor.p50)),
            ratio(secs(s.p50), secs(curator.p50))
        );
    }
    report.add(json!({
        "bench": "failover", "servers": servers.name,
        "results": { "floor": floor.json(), "latch": latch.json(), "curator": curator.json() },
    }));
    Ok(())
}

/// Three candidates on separate sessions, and two raw clients for the floor.
struct Handoff {
    candidates: tokio::sync::Mutex<VecDeque<Candidate>>,
    latches: Vec<LeaderLatch>,
    watcher: zk::Client,
    raw: zk::Client,
}

impl Handoff {
    async fn new(servers: &str, raw: &zk::Client) -> Result<Self> {
        let mut latches = Vec::new();
        let mut candidates = VecDeque::new();
        for i in 0..3 {
            let session = Session::connect(servers).await?;
            let latch = LeaderLatch::new(&session, "/bench/election", &format!("c{i}"))?;
            candidates.push_back(latch.start().await?);
            latches.push(latch);
        }
        let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        raw.mkdir("/bench/handoff", &persistent).await?;
        let watcher = zk::Client::connect(servers).await?;
        Ok(Self { candidates: candidates.into(), latches, watcher, raw: raw.clone() })
    }

    async fn raw(&self, cycles: usize) -> Result<Vec<Duration>> {
        let sequential = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        let mut samples = Vec::with_capacity(cycles);
        for _ in 0..cycles {
            let (_, sequence) = self.raw.create("/bench/handoff/n-", b"", &sequential).await?;
            let path = format!("/bench/handoff/n-{sequence}");
            let (_, _, watch) = self.watcher.get_and_watch_data(&path).await?;
            let started = Instant::now();
            let deleted = self.raw.delete(&path, None);
            watch.changed().await;
            self.watcher.list_children("/bench/handoff").await?;
            samples.push(started.elapsed());
            deleted.await?;
        }
        Ok(samples)
    }

    async fn latch(&self, cycles: usize) -> Result<Vec<Duration>> {
        let mut candidates = self.candidates.lock().await;
        let mut samples = Vec::with_capacity(cycles);
        for _ in 0..cycles {
            let leader = candidates.pop_front().expect("three candidates");
            leader.leadership().await?;
            let started = Instant::now();
            leader.close().await?;
            candidates.front().expect("two more").leadership().await?;
            samples.push(started.elapsed());
            // The one that stepped down joins again, at the back.
            let latch =
                self.latches.iter().find(|l| candidates.iter().all(|c| c.id() != l.id())).expect("one latch is out");
            candidates.push_back(latch.start().await?);
        }
        Ok(samples)
    }
}

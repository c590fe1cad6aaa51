//! `make bench`: the uncontended cycle (acquire + release) of every recipe against two
//! raw-client floors on one session — an ephemeral-sequential create + delete, and the same
//! with the `getChildren` every lock protocol needs sent along with the create — in interleaved
//! rounds on one standalone server, so that machine noise falls on all alike.
//!
//! Run with `cargo run --release --example bench [-- --rounds N --cycles N --no-fsync]`.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use zk_recipes::testing::TestingCluster;
use zk_recipes::{Candidate, LeaderLatch, Mutex, ReadWriteLock, Semaphore, Session, zk};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug)]
struct Options {
    rounds: usize,
    cycles: usize,
    fsync: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Options {
        rounds: value("--rounds", 10),
        cycles: value("--cycles", 200),
        fsync: !args.iter().any(|a| a == "--no-fsync"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = options();
    let mut builder = TestingCluster::builder().jvm_arg("-XX:TieredStopAtLevel=4");
    if !options.fsync {
        builder = builder.system_property("zookeeper.forceSync", "no");
    }
    let cluster = builder.start().await?;
    let servers = cluster.connect_string();
    let session = Session::connect(&servers).await?;
    let recipes = Recipes {
        mutex: Mutex::new(&session, "/bench/lock")?,
        rwlock: ReadWriteLock::new(&session, "/bench/rw")?,
        semaphore: Semaphore::new(&session, "/bench/sem", 2)?,
    };
    let raw = zk::Client::connect(&servers).await?;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    raw.mkdir("/bench/raw", &persistent).await?;

    for which in Which::ALL {
        run(&raw, &recipes, which, options.cycles * 2).await?;
    }
    let mut samples = vec![Vec::new(); Which::ALL.len()];
    for round in 0..options.rounds {
        // Alternate the order, so that none always runs on a warmer server.
        let mut order = Which::ALL;
        if round % 2 == 1 {
            order.reverse();
        }
        for which in order {
            samples[which as usize].extend(run(&raw, &recipes, which, options.cycles).await?);
        }
    }
    let stats: Vec<Stats> = samples.into_iter().map(Stats::of).collect();
    let floor = &stats[Which::Floor as usize];
    let piped = &stats[Which::Pipelined as usize];
    println!(
        "uncontended cycle, standalone ZooKeeper 3.8 (fsync {}), {} rounds x {} cycles",
        if options.fsync { "on" } else { "off" },
        options.rounds,
        options.cycles
    );
    println!("{:<46} {:>9} {:>9} {:>9} {:>11}", "", "p50", "p99", "/ floor", "/ pipelined");
    for which in Which::ALL {
        let s = &stats[which as usize];
        println!(
            "{:<46} {:>9} {:>9} {:>8.2}x {:>10.2}x",
            which.label(),
            ms(s.p50),
            ms(s.p99),
            ratio(s.p50, floor.p50),
            ratio(s.p50, piped.p50)
        );
    }
    let field = |pick: fn(&Stats) -> Duration| {
        Which::ALL
            .iter()
            .map(|w| format!("\"{}\":{}", w.key(), pick(&stats[*w as usize]).as_micros()))
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "{{\"bench\":\"uncontended\",\"fsync\":{},\"p50_us\":{{{}}},\"p99_us\":{{{}}}}}",
        options.fsync,
        field(|s| s.p50),
        field(|s| s.p99)
    );

    // Leader handoff: from the leader's close to the successor knowing it leads, against the
    // raw floor of the same events (delete, the watcher's event, one getChildren).
    let handoff = Handoff::new(&servers, &raw).await?;
    let (mut floor, mut latch) = (Vec::new(), Vec::new());
    let per_round = (options.cycles / 4).max(1);
    for _ in 0..options.rounds {
        floor.extend(handoff.raw(per_round).await?);
        latch.extend(handoff.latch(per_round).await?);
    }
    let (floor, latch) = (Stats::of(floor), Stats::of(latch));
    println!();
    println!("leader handoff, {} rounds x {per_round}", options.rounds);
    println!("{:<46} {:>9} {:>9} {:>9}", "", "p50", "p99", "/ floor");
    println!(
        "{:<46} {:>9} {:>9} {:>8.2}x",
        "raw delete -> watch event -> getChildren",
        ms(floor.p50),
        ms(floor.p99),
        1.0
    );
    println!(
        "{:<46} {:>9} {:>9} {:>8.2}x",
        "LeaderLatch close -> next leadership()",
        ms(latch.p50),
        ms(latch.p99),
        ratio(latch.p50, floor.p50)
    );
    println!(
        "{{\"bench\":\"handoff\",\"fsync\":{},\"p50_us\":{{\"floor\":{},\"latch\":{}}},\"p99_us\":{{\"floor\":{},\"latch\":{}}}}}",
        options.fsync,
        floor.p50.as_micros(),
        latch.p50.as_micros(),
        floor.p99.as_micros(),
        latch.p99.as_micros()
    );
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

struct Recipes {
    mutex: Mutex,
    rwlock: ReadWriteLock,
    semaphore: Semaphore,
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Floor,
    Pipelined,
    Mutex,
    Read,
    Write,
    Semaphore,
}

impl Which {
    const ALL: [Which; 6] = [Which::Floor, Which::Pipelined, Which::Mutex, Which::Read, Which::Write, Which::Semaphore];

    fn label(self) -> &'static str {
        match self {
            Which::Floor => "raw create + delete (floor)",
            Which::Pipelined => "raw create+getChildren in one flight, delete",
            Which::Mutex => "Mutex lock + release",
            Which::Read => "ReadWriteLock read + release",
            Which::Write => "ReadWriteLock write + release",
            Which::Semaphore => "Semaphore acquire + release",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Which::Floor => "floor",
            Which::Pipelined => "pipelined",
            Which::Mutex => "mutex",
            Which::Read => "read",
            Which::Write => "write",
            Which::Semaphore => "semaphore",
        }
    }
}

async fn run(raw: &zk::Client, recipes: &Recipes, which: Which, cycles: usize) -> Result<Vec<Duration>> {
    let sequential = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let mut samples = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        let started = Instant::now();
        match which {
            Which::Floor => {
                let (_, sequence) = raw.create("/bench/raw/n-", b"", &sequential).await?;
                raw.delete(&format!("/bench/raw/n-{sequence}"), None).await?;
            }
            Which::Pipelined => {
                let create = raw.create("/bench/raw/n-", b"", &sequential);
                let list = raw.get_children("/bench/raw");
                let (created, listed) = tokio::join!(create, list);
                let (_, sequence) = created?;
                listed?;
                raw.delete(&format!("/bench/raw/n-{sequence}"), None).await?;
            }
            Which::Mutex => recipes.mutex.lock().await?.release().await?,
            Which::Read => recipes.rwlock.read().await?.release().await?,
            Which::Write => recipes.rwlock.write().await?.release().await?,
            Which::Semaphore => recipes.semaphore.acquire().await?.release().await?,
        }
        samples.push(started.elapsed());
    }
    Ok(samples)
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self { p50: at(0.50), p99: at(0.99) }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

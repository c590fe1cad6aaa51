//! `make bench`: the uncontended mutex cycle (lock + release) against two raw-client floors on
//! one session — an ephemeral-sequential create + delete, and the same with the `getChildren`
//! every lock protocol needs sent along with the create — in interleaved rounds on one
//! standalone server, so that machine noise falls on all alike.
//!
//! Run with `cargo run --release --example bench [-- --rounds N --cycles N --no-fsync]`.

use std::time::Duration;

use tokio::time::Instant;
use zk_recipes::testing::TestingCluster;
use zk_recipes::{Mutex, Session, zk};

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
    let mutex = Mutex::new(&session, "/bench/lock")?;
    let raw = zk::Client::connect(&servers).await?;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    raw.mkdir("/bench/raw", &persistent).await?;

    let warmup = options.cycles * 2;
    run(&raw, &mutex, Which::Floor, warmup).await?;
    run(&raw, &mutex, Which::Mutex, warmup).await?;
    let (mut floor, mut ours, mut piped) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.rounds {
        // Alternate which goes first, so neither always runs on a warmer server.
        let order = if round % 2 == 0 {
            [Which::Floor, Which::Pipelined, Which::Mutex]
        } else {
            [Which::Mutex, Which::Pipelined, Which::Floor]
        };
        for which in order {
            let samples = run(&raw, &mutex, which, options.cycles).await?;
            match which {
                Which::Floor => floor.extend(samples),
                Which::Mutex => ours.extend(samples),
                Which::Pipelined => piped.extend(samples),
            }
        }
    }
    let (floor, piped, ours) = (Stats::of(floor), Stats::of(piped), Stats::of(ours));
    println!(
        "uncontended cycle, standalone ZooKeeper 3.8 (fsync {}), {} rounds x {} cycles",
        if options.fsync { "on" } else { "off" },
        options.rounds,
        options.cycles
    );
    println!("{:<44} {:>9} {:>9}", "", "p50", "p99");
    println!("{:<44} {:>9} {:>9}", "raw create + delete (floor)", ms(floor.p50), ms(floor.p99));
    println!("{:<44} {:>9} {:>9}", "raw create+getChildren in one flight, delete", ms(piped.p50), ms(piped.p99));
    println!("{:<44} {:>9} {:>9}", "zk-recipes Mutex lock + release", ms(ours.p50), ms(ours.p99));
    println!("{:<44} {:>8.2}x {:>8.2}x", "Mutex / floor", ratio(ours.p50, floor.p50), ratio(ours.p99, floor.p99));
    println!(
        "{:<44} {:>8.2}x {:>8.2}x",
        "Mutex / pipelined protocol",
        ratio(ours.p50, piped.p50),
        ratio(ours.p99, piped.p99)
    );
    println!(
        "{{\"bench\":\"uncontended\",\"fsync\":{},\"p50_us\":{{\"floor\":{},\"pipelined\":{},\"mutex\":{}}},\"p99_us\":{{\"floor\":{},\"pipelined\":{},\"mutex\":{}}}}}",
        options.fsync,
        floor.p50.as_micros(),
        piped.p50.as_micros(),
        ours.p50.as_micros(),
        floor.p99.as_micros(),
        piped.p99.as_micros(),
        ours.p99.as_micros()
    );
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Floor,
    Mutex,
    Pipelined,
}

async fn run(raw: &zk::Client, mutex: &Mutex, which: Which, cycles: usize) -> Result<Vec<Duration>> {
    let sequential = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let mut samples = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        let started = Instant::now();
        match which {
            Which::Floor => {
                let (_, sequence) = raw.create("/bench/raw/n-", b"", &sequential).await?;
                raw.delete(&format!("/bench/raw/n-{sequence}"), None).await?;
            }
            Which::Mutex => mutex.lock().await?.release().await?,
            Which::Pipelined => {
                let create = raw.create("/bench/raw/n-", b"", &sequential);
                let list = raw.get_children("/bench/raw");
                let (created, listed) = tokio::join!(create, list);
                let (_, sequence) = created?;
                listed?;
                raw.delete(&format!("/bench/raw/n-{sequence}"), None).await?;
            }
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

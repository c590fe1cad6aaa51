//! `make bench`: this library against Apache Curator 5.4, kazoo 2.8, `zookeeper-client`'s own
//! `lock` and the raw ZooKeeper floor, on the same servers in interleaved rounds, so that
//! machine noise falls on all alike. Prints one table per benchmark, with ratios, and writes
//! everything as JSON to `target/bench.json`.
//!
//! Run with `cargo run --release --features tls --example bench [-- --rounds N --cycles N
//! --quick]` (without `tls`, the TLS comparison is left out and says so); the CLI
//! comparison needs `cargo build --release --features cli --bin zk-recipes` first (the
//! Makefile does both).

mod contended;
mod deep;
mod failover;
mod heartbeat;
mod memory;
mod oneshot;
mod report;
mod semaphore;
#[cfg(feature = "tls")]
mod tls;
mod uncontended;

use zk_recipes::testing::TestingCluster;
use zk_recipes_peers::{Library, Peer};

use crate::report::Report;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The benchmark settings, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Interleaved rounds per comparison.
    pub rounds: usize,
    /// Cycles per round of the uncontended benchmark.
    pub cycles: usize,
    /// Seconds per contended run.
    pub seconds: f64,
    /// Waiters in the deep-queue drain.
    pub depth: usize,
    /// Run only this benchmark (`--only contended`), if given.
    pub only: Option<&'static str>,
}

impl Options {
    fn runs(&self, bench: &str) -> bool {
        self.only.is_none_or(|only| only == bench)
    }
}

const BENCHES: [&str; 9] =
    ["uncontended", "contended", "deep", "semaphore", "failover", "oneshot", "memory", "heartbeat", "tls"];

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok());
    let quick = args.iter().any(|a| a == "--quick");
    Options {
        rounds: value("--rounds").unwrap_or(if quick { 2 } else { 10 }),
        cycles: value("--cycles").unwrap_or(if quick { 50 } else { 200 }),
        seconds: if quick { 1.0 } else { 3.0 },
        depth: value("--depth").unwrap_or(1000),
        only: args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).map(|name| {
            BENCHES.into_iter().find(|b| b == name).unwrap_or_else(|| panic!("--only takes one of {BENCHES:?}"))
        }),
    }
}

/// One ZooKeeper deployment with a Curator and a kazoo peer on it.
#[derive(Debug)]
pub struct Servers {
    pub name: &'static str,
    pub connect: String,
    pub curator: Peer,
    pub kazoo: Peer,
    cluster: TestingCluster,
}

impl Servers {
    async fn start(name: &'static str, size: usize, fsync: bool) -> Result<Self> {
        let mut builder = TestingCluster::builder().size(size).jvm_arg("-XX:TieredStopAtLevel=4");
        if !fsync {
            builder = builder.system_property("zookeeper.forceSync", "no");
        }
        let cluster = builder.start().await?;
        let connect = cluster.connect_string();
        let curator = Peer::start(Library::Curator, &connect).await?;
        let kazoo = Peer::start(Library::Kazoo, &connect).await?;
        Ok(Self { name, connect, curator, kazoo, cluster })
    }

    /// Requests the servers have received so far (`mntr`'s `zk_packets_received`, summed over
    /// the members): what a benchmark cost the servers, pings included.
    pub async fn requests(&self) -> Result<u64> {
        let mut total = 0;
        for member in 0..self.cluster.size() {
            let mntr = self.cluster.four_letter(member, "mntr").await?;
            let line = mntr.lines().find(|l| l.starts_with("zk_packets_received")).ok_or("no zk_packets_received")?;
            total += line.split_whitespace().nth(1).ok_or("mntr")?.parse::<u64>()?;
        }
        Ok(total)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, servers, path] = args.as_slice()
        && flag == "--oneshot-raw"
    {
        return oneshot::raw(servers, path).await;
    }
    let options = options();
    let mut report = Report::default();

    let standalone = Servers::start("standalone", 1, true).await?;
    if options.runs("uncontended") {
        uncontended::run(&standalone, options, &mut report).await?;
    }
    if options.runs("contended") {
        contended::run(&standalone, options, &mut report).await?;
    }
    if options.runs("deep") {
        deep::run(&standalone, options, &mut report).await?;
    }
    if options.runs("semaphore") {
        semaphore::run(&standalone, options, &mut report).await?;
    }
    if options.runs("failover") {
        failover::run(&standalone, options, &mut report).await?;
    }
    if options.runs("oneshot") {
        oneshot::run(&standalone, options, &mut report).await?;
    }
    if options.runs("memory") {
        memory::run(&standalone, options, &mut report).await?;
    }
    drop(standalone);

    if options.runs("uncontended") {
        let no_fsync = Servers::start("standalone, fsync off", 1, false).await?;
        uncontended::run(&no_fsync, options, &mut report).await?;
    }
    if options.runs("uncontended") || options.runs("contended") || options.runs("heartbeat") {
        let ensemble = Servers::start("3-node ensemble", 3, true).await?;
        if options.runs("uncontended") {
            uncontended::run(&ensemble, options, &mut report).await?;
        }
        if options.runs("contended") {
            contended::run(&ensemble, options, &mut report).await?;
        }
        if options.runs("heartbeat") {
            heartbeat::run(&ensemble, options, &mut report).await?;
        }
    }

    if options.runs("tls") {
        #[cfg(feature = "tls")]
        tls::run(options, &mut report).await?;
        #[cfg(not(feature = "tls"))]
        println!("\nTLS beside plaintext: skipped, built without feature tls (make bench enables it)");
    }

    report.write("target/bench.json")?;
    Ok(())
}

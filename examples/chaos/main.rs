//! `make chaos`: mutual exclusion and fencing under server loss, partitions (of clients, and
//! of members from each other), client pauses, connection resets, an operator deleting
//! contender nodes and cancelled waits, on a real 3-node ZooKeeper ensemble.
//!
//! Every scenario runs a mutex, a 2-permit semaphore, a leader latch, a read-write lock and a
//! leader selector at once, 5 contenders each on sessions of their own (2 of each in child
//! processes, so that they can be frozen), every one through its own fault-injecting proxies.
//! Contenders write to a token-checking store (see `store.rs`) and report what they believed.
//! After the faults heal, every contender must acquire again; then all stop, and no contender
//! node may be left, neither while their sessions are still open nor after they closed.
//!
//! ```text
//! cargo run --release --example chaos -- [--seed N] [--duration 10m] [--scenario-time 20s] [--only NAME]
//! ```
//!
//! Rounds of all scenarios run until `--duration` has passed (at least one round). The seed
//! chooses the faults and the contenders' behaviour; ZooKeeper's own timing is not seeded.
//! Prints a summary and exits 1 if any violation was found.

mod contender;
mod faults;
mod operator;
mod store;

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use zk_recipes::testing::{Link, TestingCluster};
use zk_recipes::{Session, inspect};

use crate::contender::{Contender, Kind, Plan};
use crate::faults::{Scenario, Target};
use crate::store::{Counts, Store};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The contenders' session timeout: short, so that expiries happen often.
const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// The ensemble's `tickTime` (the harness's default, set since the timing below rests on it).
const TICK: Duration = Duration::from_millis(500);
/// The ensemble's `syncLimit` (in ticks): how long a leader serves without a quorum, and a
/// follower without hearing from its leader.
const SYNC_LIMIT_TICKS: u32 = 4;
const SYNC_LIMIT: Duration = TICK.saturating_mul(SYNC_LIMIT_TICKS);
const CONTENDERS: usize = 5;
const CHILDREN: usize = 2;
/// How long every contender has to acquire again once the faults are healed.
const RECOVERY_BOUND: Duration = Duration::from_secs(90);

struct Options {
    seed: u64,
    duration: Duration,
    scenario_time: Duration,
    only: Option<Scenario>,
}

fn options(args: &[String]) -> Result<Options> {
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let duration = |name: &str, default: Duration| -> Result<Duration> {
        value(name).map_or(Ok(default), |v| {
            parse_duration(v).ok_or_else(|| format!("{name}: {v:?} is not like 90s or 10m").into())
        })
    };
    let seed = match value("--seed") {
        Some(seed) => seed.parse()?,
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64,
    };
    let only = match value("--only") {
        Some(name) => Some(
            Scenario::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| format!("--only takes one of {:?}", Scenario::ALL.map(Scenario::name)))?,
        ),
        None => None,
    };
    Ok(Options {
        seed,
        duration: duration("--duration", Duration::ZERO)?,
        scenario_time: duration("--scenario-time", Duration::from_secs(20))?,
        only,
    })
}

fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(number)),
        "m" => Some(Duration::from_secs(number * 60)),
        "ms" => Some(Duration::from_millis(number)),
        _ => None,
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--contender") {
        let (plan, connect) =
            Plan::from_args(&args[1..]).ok_or("usage: chaos --contender KIND ID CONNECT STORE PATH SEED TIMEOUT_MS")?;
        return contender::child(plan, connect).await;
    }
    let options = options(&args)?;
    println!(
        "chaos: seed {} (rerun with --seed {0}), duration {:?}, {:?} of faults per scenario",
        options.seed, options.duration, options.scenario_time
    );
    let cluster = TestingCluster::builder()
        .size(3)
        .setting("tickTime", &TICK.as_millis().to_string())
        .setting("syncLimit", &SYNC_LIMIT_TICKS.to_string())
        .partitionable()
        .start()
        .await?;
    let observer = Session::connect(&cluster.connect_string()).await?;
    let scenarios: Vec<Scenario> = Scenario::ALL.into_iter().filter(|s| options.only.is_none_or(|o| o == *s)).collect();

    let started = Instant::now();
    let mut rows = Vec::new();
    for round in 0.. {
        for (i, &scenario) in scenarios.iter().enumerate() {
            let seed = options.seed.wrapping_add((round * 100 + i) as u64);
            let row = run_scenario(&cluster, &observer, scenario, round, seed, options.scenario_time).await?;
            println!("{}", row.line());
            for violation in &row.violations {
                println!("  VIOLATION: {violation}");
            }
            rows.push(row);
        }
        if started.elapsed() >= options.duration {
            break;
        }
    }
    summary(&rows, started.elapsed());
    observer.close().await;
    if rows.iter().any(|r| !r.violations.is_empty()) {
        std::process::exit(1);
    }
    Ok(())
}

/// One scenario's results.
struct Row {
    scenario: Scenario,
    round: usize,
    faults: u64,
    counts: Counts,
    recovery: Duration,
    violations: Vec<String>,
}

impl Row {
    fn line(&self) -> String {
        let c = &self.counts;
        format!(
            "{:<18} round {:<3} faults {:>4}  acquisitions {:>5}  cancelled {:>4}  errors {:>4}  deletes {:>3}  waiting-deletes {:>3}  stale-attempted {:>3}  stale-rejected {:>3}  window-refusals {:>2}  recovery {:>5.1}s  violations {}",
            self.scenario.name(),
            self.round,
            self.faults,
            c.acquisitions,
            c.cancellations,
            c.errors.values().sum::<u64>(),
            c.deletes,
            c.waiting_deletes,
            c.stale_rejected + c.stale_accepted,
            c.stale_rejected,
            c.window_refusals,
            self.recovery.as_secs_f64(),
            self.violations.len(),
        )
    }
}

fn summary(rows: &[Row], elapsed: Duration) {
    let mut total = Counts::default();
    rows.iter().for_each(|r| total.add(&r.counts));
    let faults: u64 = rows.iter().map(|r| r.faults).sum();
    let violations: usize = rows.iter().map(|r| r.violations.len()).sum();
    let recovery = rows.iter().map(|r| r.recovery).max().unwrap_or_default();
    println!("\nchaos summary: {} scenario runs in {:.0} s", rows.len(), elapsed.as_secs_f64());
    println!("  faults injected:        {faults}");
    println!("  acquisitions:           {}", total.acquisitions);
    println!("  writes accepted:        {}", total.writes_accepted);
    println!("  waits cancelled:        {}", total.cancellations);
    println!("  acquire errors:         {:?}", total.errors);
    println!("  operator deletes:       {} ({} of waiting nodes)", total.deletes, total.waiting_deletes);
    println!("  deleted at the grant:   {}", total.gone_at_grant);
    println!("  stale writes attempted: {}", total.stale_rejected + total.stale_accepted);
    println!("  stale writes rejected:  {}", total.stale_rejected);
    println!("  stale writes accepted:  {}", total.stale_accepted);
    println!("  window refusals:        {}", total.window_refusals);
    println!("  longest recovery:       {:.1} s", recovery.as_secs_f64());
    println!("  violations:             {violations}");
}

async fn run_scenario(
    cluster: &TestingCluster,
    observer: &Session,
    scenario: Scenario,
    round: usize,
    seed: u64,
    time: Duration,
) -> Result<Row> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stores = Vec::new();
    let mut contenders = Vec::new();
    for kind in Kind::ALL {
        let store = Store::start(kind.rule()).await?;
        for i in 0..CONTENDERS {
            let child = i >= CONTENDERS - CHILDREN;
            let plan = Plan {
                kind,
                id: format!("{}-{i}{}", kind.name(), if child { "-child" } else { "" }),
                path: recipe_path(scenario, round, kind),
                store: store.address,
                seed: seed ^ ((contenders.len() as u64 + 1) << 32),
                session_timeout: SESSION_TIMEOUT,
                child,
            };
            contenders.push(Contender::start(plan, Link::start(cluster).await?).await?);
        }
        stores.push((kind, store));
    }
    let target =
        Target { cluster, contenders: &contenders, stores: &stores, session_timeout: SESSION_TIMEOUT, observer };
    let (faults, mut violations) = faults::inject(scenario, &target, Instant::now() + time, &mut rng).await?;
    faults::heal(&target).await?;
    let healed = Instant::now();
    let recovery = recover(&target, healed, &mut violations).await;

    // Told all at once, they wind down together rather than one hold after another.
    for contender in &mut contenders {
        contender.stop().await?;
    }
    for contender in &mut contenders {
        contender.idle().await?;
    }
    // Every contender is idle with its session open: a node left now is an orphan.
    let paths: Vec<String> = Kind::ALL.iter().map(|&k| recipe_path(scenario, round, k)).collect();
    violations.extend(leftovers(observer, &paths, "with every contender idle", Duration::from_secs(10)).await?);
    for contender in contenders {
        contender.close().await?;
    }
    violations.extend(leftovers(observer, &paths, "with every session closed", Duration::ZERO).await?);

    let mut counts = Counts::default();
    for (kind, store) in &stores {
        let mut ledger = store.ledger();
        ledger.finish();
        violations.extend(ledger.violations.iter().map(|v| format!("{}: {v}", kind.name())));
        counts.add(&ledger.counts);
    }
    Ok(Row { scenario, round, faults, counts, recovery, violations })
}

/// Where a recipe runs in one scenario run: a fresh path each time.
fn recipe_path(scenario: Scenario, round: usize, kind: Kind) -> String {
    format!("/chaos/{}-{round}/{}", scenario.name(), kind.name())
}

/// Waits until every contender has acquired since `healed`; the time the last one took.
async fn recover(target: &Target<'_>, healed: Instant, violations: &mut Vec<String>) -> Duration {
    let mut slowest = Duration::ZERO;
    for contender in target.contenders {
        let store = target.store(contender.plan.kind);
        loop {
            if let Some(entered) = store.ledger().entered_after(&contender.plan.id, healed) {
                slowest = slowest.max(entered - healed);
                break;
            }
            if healed.elapsed() > RECOVERY_BOUND {
                violations.push(format!("{} did not acquire within {RECOVERY_BOUND:?} of healing", contender.plan.id));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    slowest
}

/// Violations for contender nodes still under `paths` after `within` (read after a `sync`).
async fn leftovers(observer: &Session, paths: &[String], when: &str, within: Duration) -> Result<Vec<String>> {
    let deadline = Instant::now() + within;
    loop {
        let mut left = Vec::new();
        for path in paths {
            observer.client().await?.sync(path).await.ok();
            let snapshot = inspect(observer, path).await?;
            left.extend(snapshot.holders.iter().chain(&snapshot.waiting).map(|p| p.node.clone()));
        }
        if left.is_empty() {
            return Ok(Vec::new());
        }
        if Instant::now() >= deadline {
            return Ok(vec![format!("{} contender node(s) left {when}: {}", left.len(), left.join(", "))]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

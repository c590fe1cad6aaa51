//! Eight contenders on separate sessions, each looping lock → (empty critical section) →
//! release: handoffs per second, time waited per acquisition, and FIFO inversions (a grant to a
//! node numbered below one granted before it; must be 0).

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use zk_recipes::{Mutex, Session, zk};

use crate::report::{Report, Stats, median, ms, ratio, title};
use crate::{Options, Result, Servers};

const CONTENDERS: usize = 8;

/// One acquisition: the node's sequence, when it was granted (ns, any common origin), and
/// how long it waited.
#[derive(Debug, Clone, Copy)]
struct Grant {
    sequence: u64,
    at_ns: u64,
    waited: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Who {
    Ours,
    ClientLock,
    Curator,
    Kazoo,
}

impl Who {
    const ALL: [Who; 4] = [Who::Ours, Who::ClientLock, Who::Curator, Who::Kazoo];

    fn label(self) -> &'static str {
        match self {
            Who::Ours => "zk-recipes Mutex",
            Who::ClientLock => "zookeeper-client Client::lock",
            Who::Curator => "Curator InterProcessMutex",
            Who::Kazoo => "kazoo Lock",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Who::Ours => "mutex",
            Who::ClientLock => "zookeeper_client_lock",
            Who::Curator => "curator",
            Who::Kazoo => "kazoo",
        }
    }
}

pub async fn run(servers: &Servers, options: Options, report: &mut Report) -> Result<()> {
    let rounds = options.rounds.clamp(1, 3);
    let mut runs: Vec<Vec<(f64, Vec<Grant>)>> = vec![Vec::new(); Who::ALL.len()];
    let mut requests = vec![0u64; Who::ALL.len()];
    for round in 0..rounds {
        let mut order = Who::ALL;
        if round % 2 == 1 {
            order.reverse();
        }
        for who in order {
            let before = servers.requests().await?;
            let grants = contend(servers, who, options.seconds, round).await?;
            requests[who as usize] += servers.requests().await? - before;
            runs[who as usize].push((grants.len() as f64 / options.seconds, grants));
        }
    }
    title(&format!(
        "contended mutex, {} ({CONTENDERS} contenders on separate sessions, {rounds} interleaved rounds x {} s)",
        servers.name, options.seconds
    ));
    println!(
        "{:<34} {:>12} {:>10} {:>10} {:>11} {:>10} {:>13}",
        "", "handoffs/s", "wait p50", "wait p99", "inversions", "/ Curator", "requests/acq"
    );
    let rate = |who: Who| median(runs[who as usize].iter().map(|(rate, _)| *rate).collect());
    let mut results = serde_json::Map::new();
    for who in Who::ALL {
        let grants: Vec<Grant> = runs[who as usize].iter().flat_map(|(_, g)| g.iter().copied()).collect();
        let inversions: usize = runs[who as usize].iter().map(|(_, g)| inversions(g)).sum();
        let waits = Stats::of(grants.iter().map(|g| g.waited).collect());
        // Connecting and closing the sessions are counted too: a few requests per contender.
        let per_acquisition = requests[who as usize] as f64 / grants.len() as f64;
        println!(
            "{:<34} {:>12.0} {:>10} {:>10} {:>11} {:>10} {:>13.2}",
            who.label(),
            rate(who),
            ms(waits.p50),
            ms(waits.p99),
            inversions,
            ratio(rate(who), rate(Who::Curator)),
            per_acquisition
        );
        results.insert(
            who.key().into(),
            json!({
                "handoffs_per_s": rate(who), "wait": waits.json(), "fifo_inversions": inversions,
                "requests_per_acquisition": per_acquisition,
            }),
        );
    }
    report.add(json!({ "bench": "contended", "servers": servers.name, "contenders": CONTENDERS, "results": results }));
    Ok(())
}

/// Grants, in the order they happened, that went to a node numbered below an earlier grant's.
fn inversions(grants: &[Grant]) -> usize {
    let mut ordered = grants.to_vec();
    ordered.sort_by_key(|g| g.at_ns);
    ordered.windows(2).filter(|w| w[1].sequence < w[0].sequence).count()
}

async fn contend(servers: &Servers, who: Who, seconds: f64, round: usize) -> Result<Vec<Grant>> {
    let path = format!("/bench/contended/{}-{round}", who.key());
    let millis = (seconds * 1e3) as u64;
    let peer = match who {
        Who::Curator => Some(&servers.curator),
        Who::Kazoo => Some(&servers.kazoo),
        Who::Ours | Who::ClientLock => None,
    };
    if let Some(peer) = peer {
        let records = peer.bench(&format!("contend {path} {CONTENDERS} {millis}"), Duration::from_secs(120)).await?;
        return Ok(records
            .split(',')
            .filter(|r| !r.is_empty())
            .map(|record| {
                let mut fields =
                    record.split(':').map(|f| f.parse::<u64>().unwrap_or_else(|_| panic!("record {record}")));
                let (sequence, at_ns, waited) =
                    (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap());
                Grant { sequence, at_ns, waited: Duration::from_nanos(waited) }
            })
            .collect());
    }
    // Connect everyone first: the clock starts when all are ready.
    let mut sessions = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..CONTENDERS {
        match who {
            Who::Ours => sessions.push(Session::connect(&servers.connect).await?),
            _ => clients.push(zk::Client::connect(&servers.connect).await?),
        }
    }
    let origin = Instant::now();
    let deadline = origin + Duration::from_millis(millis);
    let grants = Arc::new(StdMutex::new(Vec::new()));
    let sequence = |node: &str| node[node.len() - 10..].parse::<u64>().expect("a sequence");
    let grant = move |node: &str, asked: Instant| {
        let at = Instant::now();
        Grant { sequence: sequence(node), at_ns: (at - origin).as_nanos() as u64, waited: at - asked }
    };
    let mut tasks = Vec::new();
    for session in sessions {
        let (grants, path) = (grants.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mutex = Mutex::new(&session, &path).expect("a path");
            while Instant::now() < deadline {
                let asked = Instant::now();
                let guard = mutex.lock().await.expect("lock");
                grants.lock().unwrap().push(grant(guard.node(), asked));
                guard.release().await.expect("release");
            }
        }));
    }
    for client in clients {
        let (grants, path) = (grants.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
            while Instant::now() < deadline {
                let asked = Instant::now();
                let prefix = zk::LockPrefix::new_curator(&path, "lock-").expect("a prefix");
                let options = zk::LockOptions::new(zk::Acls::anyone_all())
                    .with_ancestor_options(container.clone())
                    .expect("options");
                let lock = client.lock(prefix, b"", options).await.expect("lock");
                grants.lock().unwrap().push(grant(lock.lock_path(), asked));
                drop(lock);
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let grants = grants.lock().unwrap().clone();
    Ok(grants)
}

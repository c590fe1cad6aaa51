//! The uncontended cycle (acquire + release on one session) of every recipe, of
//! `zookeeper-client`'s `lock`, of Curator and of kazoo, against two raw-client floors: an
//! ephemeral-sequential create + delete, and the same with the `getChildren` every lock
//! protocol needs sent along with the create.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use zk_recipes::{Mutex, ReadWriteLock, Semaphore, Session, zk};

use crate::report::{Report, Stats, durations_us, ms, ratio, title};
use crate::{Options, Result, Servers};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Which {
    Floor,
    Pipelined,
    Mutex,
    Read,
    Write,
    Semaphore,
    ClientLock,
    Curator,
    Kazoo,
}

impl Which {
    const ALL: [Which; 9] = [
        Which::Floor,
        Which::Pipelined,
        Which::Mutex,
        Which::Read,
        Which::Write,
        Which::Semaphore,
        Which::ClientLock,
        Which::Curator,
        Which::Kazoo,
    ];

    fn label(self) -> &'static str {
        match self {
            Which::Floor => "raw create + delete (floor)",
            Which::Pipelined => "raw create+getChildren in one flight, delete",
            Which::Mutex => "Mutex lock + release",
            Which::Read => "ReadWriteLock read + release",
            Which::Write => "ReadWriteLock write + release",
            Which::Semaphore => "Semaphore acquire + release",
            Which::ClientLock => "zookeeper-client Client::lock + drop",
            Which::Curator => "Curator InterProcessMutex (in its JVM)",
            Which::Kazoo => "kazoo Lock (in its Python)",
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
            Which::ClientLock => "zookeeper_client_lock",
            Which::Curator => "curator",
            Which::Kazoo => "kazoo",
        }
    }
}

struct Contenders {
    raw: zk::Client,
    mutex: Mutex,
    rwlock: ReadWriteLock,
    semaphore: Semaphore,
}

pub async fn run(servers: &Servers, options: Options, report: &mut Report) -> Result<()> {
    let session = Session::connect(&servers.connect).await?;
    let raw = zk::Client::connect(&servers.connect).await?;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    raw.mkdir("/bench/raw", &persistent).await?;
    let contenders = Contenders {
        raw,
        mutex: Mutex::new(&session, "/bench/lock")?,
        rwlock: ReadWriteLock::new(&session, "/bench/rw")?,
        semaphore: Semaphore::new(&session, "/bench/sem", 2)?,
    };
    // Warm up every path (and the peers' JIT), then interleave.
    for which in Which::ALL {
        cycles(servers, &contenders, which, options.cycles * 2).await?;
    }
    let mut samples = vec![Vec::new(); Which::ALL.len()];
    for round in 0..options.rounds {
        // Alternate the order, so that none always runs on a warmer server.
        let mut order = Which::ALL;
        if round % 2 == 1 {
            order.reverse();
        }
        for which in order {
            samples[which as usize].extend(cycles(servers, &contenders, which, options.cycles).await?);
        }
    }
    let stats: Vec<Stats> = samples.into_iter().map(Stats::of).collect();
    let (floor, piped) = (stats[Which::Floor as usize].p50, stats[Which::Pipelined as usize].p50);
    let curator = stats[Which::Curator as usize].p50;
    title(&format!(
        "uncontended cycle, {} ({} rounds x {} cycles); p50 ratios to the floor, the pipelined floor, Curator",
        servers.name, options.rounds, options.cycles
    ));
    println!("{:<46} {:>10} {:>10} {:>8} {:>10} {:>9}", "", "p50", "p99", "/ floor", "/ pipelined", "/ Curator");
    let secs = Duration::as_secs_f64;
    for which in Which::ALL {
        let s = &stats[which as usize];
        println!(
            "{:<46} {:>10} {:>10} {:>8} {:>10} {:>9}",
            which.label(),
            ms(s.p50),
            ms(s.p99),
            ratio(secs(&s.p50), secs(&floor)),
            ratio(secs(&s.p50), secs(&piped)),
            ratio(secs(&s.p50), secs(&curator))
        );
    }
    let results: serde_json::Map<String, serde_json::Value> =
        Which::ALL.iter().map(|w| (w.key().to_owned(), stats[*w as usize].json())).collect();
    report.add(json!({ "bench": "uncontended", "servers": servers.name, "results": results }));
    Ok(())
}

async fn cycles(servers: &Servers, contenders: &Contenders, which: Which, n: usize) -> Result<Vec<Duration>> {
    let within = Duration::from_secs(120);
    match which {
        Which::Curator => {
            return Ok(durations_us(&servers.curator.bench(&format!("cycles /bench/curator {n}"), within).await?));
        }
        Which::Kazoo => {
            return Ok(durations_us(&servers.kazoo.bench(&format!("cycles /bench/kazoo {n}"), within).await?));
        }
        _ => {}
    }
    let raw = &contenders.raw;
    let sequential = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
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
            Which::Mutex => contenders.mutex.lock().await?.release().await?,
            Which::Read => contenders.rwlock.read().await?.release().await?,
            Which::Write => contenders.rwlock.write().await?.release().await?,
            Which::Semaphore => contenders.semaphore.acquire().await?.release().await?,
            Which::ClientLock => {
                let prefix = zk::LockPrefix::new_curator("/bench/client-lock", "lock-")?;
                let options = zk::LockOptions::new(zk::Acls::anyone_all()).with_ancestor_options(container.clone())?;
                drop(raw.lock(prefix, b"", options).await?);
            }
            Which::Curator | Which::Kazoo => unreachable!("measured in the peers"),
        }
        samples.push(started.elapsed());
    }
    Ok(samples)
}

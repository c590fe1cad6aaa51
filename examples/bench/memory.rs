//! Memory per waiting contender in one process: the growth of this process's resident memory
//! with 1,000 waiters queued on one session, and with 1,000 waiters on 1,000 sessions.

use std::time::Duration;

use serde_json::json;
use zk_recipes::{Mutex, Session, zk};

use crate::report::{Report, title};
use crate::{Options, Result, Servers};

const WAITERS: usize = 1000;

pub async fn run(servers: &Servers, _options: Options, report: &mut Report) -> Result<()> {
    let one = per_waiter(servers, false).await?;
    let many = per_waiter(servers, true).await?;
    title(&format!("memory per waiting contender, {}: resident growth / {WAITERS} waiters", servers.name));
    println!("{:<40} {:>10.1} KiB", "1,000 waiters on one session", one);
    println!("{:<40} {:>10.1} KiB", "1,000 waiters on 1,000 sessions", many);
    report.add(json!({
        "bench": "memory_per_waiter", "servers": servers.name, "waiters": WAITERS,
        "kib_per_waiter": { "one_session": one, "one_session_each": many },
    }));
    Ok(())
}

/// KiB of resident memory per waiter, queued behind a holder on the same path.
async fn per_waiter(servers: &Servers, session_each: bool) -> Result<f64> {
    let path = if session_each { "/bench/memory/many" } else { "/bench/memory/one" };
    let holder = Session::connect(&servers.connect).await?;
    let guard = Mutex::new(&holder, path)?.lock().await?;
    let observer = zk::Client::connect(&servers.connect).await?;
    let before = resident_kib()?;
    let shared = Session::connect(&servers.connect).await?;
    let mut waiters = Vec::with_capacity(WAITERS);
    for _ in 0..WAITERS {
        let session = if session_each { Session::connect(&servers.connect).await? } else { shared.clone() };
        let path = path.to_owned();
        waiters.push(tokio::spawn(async move { Mutex::new(&session, &path).expect("a path").lock().await.map(drop) }));
    }
    while observer.list_children(path).await?.len() < WAITERS + 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = resident_kib()?;
    for waiter in &waiters {
        waiter.abort();
    }
    guard.release().await?;
    Ok((after.saturating_sub(before)) as f64 / WAITERS as f64)
}

/// This process's resident memory, from `/proc/self/statm` (pages of 4 KiB).
fn resident_kib() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).ok_or("statm")?.parse()?;
    Ok(pages * 4)
}

//! What the liveness heartbeat costs the ZooKeeper leader. Every session sends a `sync` each
//! 1/8 of its timeout, which a follower forwards to the leader (the proof of liveness needs
//! an answer only the leader can cause: `src/session/liveness.rs`). Measured as the leader's
//! CPU time (`/proc/<pid>/stat`) while clients on the followers send syncs, or `exists`es (which
//! the followers answer themselves), back to back; and while idle sessions of this library, or
//! raw `zookeeper-client` sessions (which only ping), sit on the followers.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use zk_recipes::{Session, zk};

use crate::report::{Report, title};
use crate::{Options, Result, Servers};

/// Requests in flight per client in the back-to-back runs.
const PIPELINE: usize = 32;
const CLIENTS: usize = 4;

pub async fn run(servers: &Servers, options: Options, report: &mut Report) -> Result<()> {
    let leader = servers.cluster.leader().await.ok_or("no leader")?;
    let pid = servers.cluster.pid(leader).await.ok_or("the leader does not run")?;
    let followers: Vec<String> =
        (0..servers.cluster.size()).filter(|&m| m != leader).map(|m| servers.cluster.address(m).to_string()).collect();
    let followers = followers.join(",");
    let seconds = Duration::from_secs_f64(options.seconds * 2.0);

    title(&format!("liveness heartbeat, {}: the leader's CPU time", servers.name));
    let mut per_request = Vec::new();
    for request in ["sync", "exists"] {
        let clients = connect_raw(&followers, CLIENTS).await?;
        let before = cpu_time(pid)?;
        let sent = back_to_back(&clients, request, seconds).await?;
        let used = cpu_time(pid)? - before;
        let each_us = used.as_secs_f64() * 1e6 / sent as f64;
        println!(
            "{request:<8} back to back from {CLIENTS} clients on followers: {sent:>8} in {seconds:?}, {each_us:>6.1} us of leader CPU each"
        );
        per_request.push(json!({ "request": request, "sent": sent, "leader_cpu_us_each": each_us }));
    }

    let sessions = 200;
    let idle = Duration::from_secs(20).min(seconds * 4);
    let raw = connect_raw(&followers, sessions).await?;
    let before = cpu_time(pid)?;
    tokio::time::sleep(idle).await;
    let raw_share = (cpu_time(pid)? - before).as_secs_f64() / idle.as_secs_f64();
    drop(raw);
    let mut ours = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        ours.push(Session::connect(&followers).await?);
    }
    let before = cpu_time(pid)?;
    tokio::time::sleep(idle).await;
    let ours_share = (cpu_time(pid)? - before).as_secs_f64() / idle.as_secs_f64();
    for session in ours {
        session.close().await;
    }
    let syncs_per_second = sessions as f64 * 8.0 / 10.0;
    println!(
        "{sessions} idle sessions on followers (10 s timeout), for {idle:?}: raw zookeeper-client {:.2} % of a leader core, \
         zk-recipes {:.2} % ({syncs_per_second:.0} syncs/s)",
        raw_share * 100.0,
        ours_share * 100.0
    );
    report.add(json!({
        "bench": "heartbeat", "servers": servers.name,
        "results": {
            "back_to_back": per_request,
            "idle": { "sessions": sessions, "raw_leader_core_share": raw_share, "zk_recipes_leader_core_share": ours_share,
                      "syncs_per_second": syncs_per_second },
        },
    }));
    Ok(())
}

async fn connect_raw(servers: &str, n: usize) -> Result<Vec<zk::Client>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(zk::Client::connector().with_session_timeout(Duration::from_secs(10)).connect(servers).await?);
    }
    Ok(clients)
}

/// Sends `request`s (`sync` or `exists` of `/`) from every client, `PIPELINE` in flight each,
/// for `duration`; returns how many were answered.
async fn back_to_back(clients: &[zk::Client], request: &str, duration: Duration) -> Result<u64> {
    let until = Instant::now() + duration;
    let runs = clients.iter().map(|client| async move {
        let mut answered = 0u64;
        while Instant::now() < until {
            let batch: Vec<_> = (0..PIPELINE)
                .map(|_| async {
                    match request {
                        "sync" => client.sync("/").await.map(drop),
                        _ => client.check_stat("/").await.map(drop),
                    }
                })
                .collect();
            for outcome in futures_util::future::join_all(batch).await {
                outcome?;
                answered += 1;
            }
        }
        Ok::<_, zk::Error>(answered)
    });
    let mut total = 0;
    for answered in futures_util::future::join_all(runs).await {
        total += answered?;
    }
    Ok(total)
}

/// The CPU time a process has used (user + system), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit(')').next().ok_or("stat")?.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, in clock ticks).
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let clock = std::process::Command::new("getconf").arg("CLK_TCK").output()?;
    let per_second: u64 = String::from_utf8_lossy(&clock.stdout).trim().parse()?;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

//! One-shot processes, as a cron job runs them: connect, take the lock, release, exit. The
//! CLI (`zk-recipes lock PATH -- true`) against a minimal Rust program (`zookeeper-client`'s
//! own `lock`, this binary with `--oneshot-raw`), a Curator program and a kazoo script: wall
//! time and peak memory (`/usr/bin/time`), medians of interleaved runs.

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use zk_recipes::zk;
use zk_recipes_peers::{Library, Peer};

use crate::report::{Report, median, ratio, title};
use crate::{Options, Result, Servers};

const RUNS: usize = 5;
/// GNU time, for a child's peak resident memory (Debian package `time`).
const TIME: &str = "/usr/bin/time";

/// The minimal Rust program: connect, lock, release (by drop), exit.
pub async fn raw(servers: &str, path: &str) -> Result<()> {
    let client = zk::Client::connect(servers).await?;
    let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
    let options = zk::LockOptions::new(zk::Acls::anyone_all()).with_ancestor_options(container)?;
    let lock = client.lock(zk::LockPrefix::new_curator(path, "lock-")?, b"", options).await?;
    client.delete(lock.lock_path(), None).await?;
    std::mem::forget(lock); // deleted above; its drop would delete again in the background
    Ok(())
}

pub async fn run(servers: &Servers, _options: Options, report: &mut Report) -> Result<()> {
    let exe = std::env::current_exe()?;
    let cli = exe.parent().and_then(|examples| examples.parent()).map(|dir| dir.join("zk-recipes")).unwrap_or_default();
    if !cli.is_file() {
        return Err(
            format!("{} is missing: cargo build --release --features cli --bin zk-recipes", cli.display()).into()
        );
    }
    let peer = |library, path| async move {
        let command = Peer::oneshot(library, &servers.connect, path).await?;
        let command = command.as_std();
        let mut line = vec![command.get_program().to_owned()];
        line.extend(command.get_args().map(|a| a.to_owned()));
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(line)
    };
    let lines: Vec<(&str, &str, Vec<OsString>)> = vec![
        (
            "cli",
            "zk-recipes lock PATH -- true",
            owned([
                cli.as_os_str(),
                "--servers".as_ref(),
                servers.connect.as_ref(),
                "lock".as_ref(),
                "/bench/oneshot/cli".as_ref(),
                "--".as_ref(),
                "true".as_ref(),
            ]),
        ),
        (
            "raw",
            "minimal Rust (zookeeper-client lock)",
            owned([exe.as_os_str(), "--oneshot-raw".as_ref(), servers.connect.as_ref(), "/bench/oneshot/raw".as_ref()]),
        ),
        ("curator", "Curator one-shot (java)", peer(Library::Curator, "/bench/oneshot/curator").await?),
        ("kazoo", "kazoo one-shot (python3)", peer(Library::Kazoo, "/bench/oneshot/kazoo").await?),
    ];
    let mut measured = vec![(Vec::new(), Vec::new()); lines.len()];
    for _ in 0..RUNS {
        for (i, (_, _, line)) in lines.iter().enumerate() {
            let (wall, kib) = time(line)?;
            measured[i].0.push(wall.as_secs_f64());
            measured[i].1.push(kib as f64);
        }
    }
    let medians: Vec<(f64, f64)> = measured.into_iter().map(|(w, m)| (median(w), median(m))).collect();
    let (cli_wall, cli_kib) = medians[0];
    title(&format!("one-shot process, {}: connect + lock + release + exit, median of {RUNS}", servers.name));
    println!("{:<40} {:>10} {:>10} {:>9} {:>11}", "", "wall", "peak RSS", "/ CLI", "RSS / CLI");
    let mut results = serde_json::Map::new();
    for ((key, label, _), (wall, kib)) in lines.iter().zip(&medians) {
        println!(
            "{label:<40} {:>7.1} ms {:>6.1} MiB {:>9} {:>11}",
            wall * 1e3,
            kib / 1024.0,
            ratio(*wall, cli_wall),
            ratio(*kib, cli_kib)
        );
        results.insert((*key).into(), json!({ "wall_ms": wall * 1e3, "peak_rss_kib": kib }));
    }
    report.add(json!({ "bench": "oneshot", "servers": servers.name, "results": results }));
    Ok(())
}

fn owned<const N: usize>(parts: [&std::ffi::OsStr; N]) -> Vec<OsString> {
    parts.iter().map(|p| p.to_os_string()).collect()
}

/// Runs `line` under GNU time: wall time, and peak resident memory in KiB.
fn time(line: &[OsString]) -> Result<(Duration, u64)> {
    let started = Instant::now();
    let output = Command::new(TIME)
        .arg("-f")
        .arg("%M")
        .args(line)
        .output()
        .map_err(|e| format!("{TIME}: {e} (install it with `sudo apt-get install -y time`)"))?;
    let wall = started.elapsed();
    if !output.status.success() {
        return Err(format!("{:?} failed: {}", line, String::from_utf8_lossy(&output.stderr)).into());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let kib = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("no peak RSS in {stderr:?}"))?;
    Ok((wall, kib))
}

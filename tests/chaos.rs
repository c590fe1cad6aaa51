//! The bounded chaos suite: every scenario of `examples/chaos` once, with a few seconds of
//! faults each and an operator deleting contender nodes, against a real 3-node ensemble
//! (`make chaos` runs the same for longer).

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A scenario's row of the report: its numbers by name.
fn row(out: &str, scenario: &str) -> HashMap<String, u64> {
    let line = out.lines().find(|l| l.starts_with(scenario)).unwrap_or_else(|| panic!("no row for {scenario}:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut numbers = HashMap::new();
    for pair in words.windows(2) {
        if let Ok(n) = pair[1].parse::<u64>() {
            numbers.entry(pair[0].to_owned()).or_insert(n);
        }
    }
    numbers
}

#[test]
fn no_violations_under_server_loss_partitions_pauses_resets_isolation_deletes_and_cancellation() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut chaos = Command::new(common::example("chaos"))
        .args(["--seed", &seed.to_string(), "--scenario-time", "6s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stdout, mut stderr) = (chaos.stdout.take().unwrap(), chaos.stderr.take().unwrap());
    let out = std::thread::spawn(move || std::io::read_to_string(&mut stdout).unwrap());
    let err = std::thread::spawn(move || std::io::read_to_string(&mut stderr).unwrap());
    // About 2 minutes here; a hang must not block CI for ever.
    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        if let Some(status) = chaos.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            chaos.kill().unwrap();
            chaos.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.is_some_and(|s| s.success()), "chaos failed or hung (seed {seed}, {status:?}):\n{out}\n{err}");
    assert!(out.contains("stale writes accepted:  0") && out.contains("violations:             0"), "{out}");

    let scenarios =
        ["leader-kills", "quorum-loss", "paused-holder", "partitions", "connection-resets", "member-isolation"];
    for scenario in scenarios {
        let numbers = row(&out, scenario);
        assert!(numbers["faults"] > 0 && numbers["acquisitions"] > 0, "{scenario} did nothing:\n{out}");
        assert!(numbers["cancelled"] > 0, "{scenario} cancelled no waits:\n{out}");
        // The operator deletes nodes in every scenario but the quorum loss.
        if scenario != "quorum-loss" {
            assert!(numbers["waiting-deletes"] > 0, "{scenario}: the operator deleted no waiting node:\n{out}");
        }
    }
    // The frozen holders did write with their stale tokens (each refused: no violations).
    let paused = row(&out, "paused-holder");
    assert!(paused["stale-attempted"] > 0, "no stale write was attempted:\n{out}");
}

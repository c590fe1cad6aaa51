//! The bounded chaos suite: every scenario of `examples/chaos` once, with a few seconds of
//! faults each, against a real 3-node ensemble (`make chaos` runs the same for longer).

mod common;

use std::collections::HashMap;
use std::process::Command;

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
fn no_violations_under_server_loss_partitions_pauses_resets_and_cancellation() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let output = Command::new(common::example("chaos"))
        .args(["--seed", &seed.to_string(), "--scenario-time", "6s"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chaos failed (seed {seed}):\n{out}\n{err}");
    assert!(out.contains("stale writes accepted:  0") && out.contains("violations:             0"), "{out}");

    for scenario in ["leader-kills", "quorum-loss", "paused-holder", "partitions", "connection-resets"] {
        let numbers = row(&out, scenario);
        assert!(numbers["faults"] > 0 && numbers["acquisitions"] > 0, "{scenario} did nothing:\n{out}");
        assert!(numbers["cancelled"] > 0, "{scenario} cancelled no waits:\n{out}");
    }
    // The frozen holders did write with their stale tokens, and every such write was refused.
    let paused = row(&out, "paused-holder");
    assert!(paused["stale-attempted"] > 0, "no stale write was attempted:\n{out}");
    assert_eq!(paused["stale-attempted"], paused["stale-rejected"], "{out}");
}

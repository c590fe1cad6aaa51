//! The examples run and show what they claim: built with the cargo that builds the tests,
//! then run as programs.

use std::path::PathBuf;
use std::process::Command;

use zk_recipes::FencingToken;

/// Builds the example (a no-op when up to date) and returns its path,
/// `target/debug/examples/<name>`, next to this test's `target/debug/deps/`.
fn example(name: &str) -> PathBuf {
    let built = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", name, "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .status()
        .unwrap();
    assert!(built.success(), "building example {name} failed");
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
    deps.parent().unwrap().join("examples").join(name)
}

fn run(name: &str) -> String {
    let output = Command::new(example(name)).env_remove("ZK_SERVERS").output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{name} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[test]
fn the_demo_shows_fifo_turns_and_fences_off_the_stale_holder() {
    let out = run("demo");
    assert!(!out.contains("bug!"), "{out}");
    // Part 1: fifteen turns, round robin in arrival order, tokens growing.
    let turns: Vec<(String, FencingToken)> = out
        .lines()
        .filter(|l| l.contains(" holds (turn "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words[2].to_owned(), words[7].parse().unwrap())
        })
        .collect();
    assert_eq!(turns.len(), 15, "{out}");
    let names: Vec<&str> = turns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol", "dave", "erin"].repeat(3), "FIFO turns");
    assert!(turns.windows(2).all(|w| w[0].1 < w[1].1), "tokens grow: {out}");
    // Part 2: the frozen holder is fenced off.
    assert!(out.contains("guard.lost() is already resolved"), "{out}");
    assert!(out.contains("writes anyway with token") && out.contains("REJECTED"), "{out}");
    assert!(out.contains("fenced write: refused"), "{out}");
    assert!(out.contains("ledger now: ") && !out.contains("AGAIN |") && !out.ends_with("AGAIN\n"), "{out}");
}

#[test]
fn the_mutex_example_holds_works_and_releases() {
    let out = run("mutex");
    assert!(out.contains("holding /jobs/nightly-report/_c_") && out.contains("fencing token"), "{out}");
    assert!(out.contains("released"), "{out}");
}

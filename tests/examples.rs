//! The examples run and show what they claim: built with the cargo that builds the tests,
//! then run as programs.

mod common;

use std::process::Command;

use common::example;
use zk_recipes::FencingToken;

fn run(name: &str) -> String {
    run_built(example(name), name)
}

fn run_built(program: std::path::PathBuf, name: &str) -> String {
    let output = Command::new(program).env_remove("ZK_SERVERS").output().unwrap();
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

#[test]
fn the_rwlock_example_shares_reads_and_lets_the_writer_in_before_a_late_reader() {
    let out = run("rwlock");
    assert!(!out.contains("bug!"), "{out}");
    let position = |needle: &str| out.find(needle).unwrap_or_else(|| panic!("{needle:?} missing:\n{out}"));
    assert_eq!(out.matches(": v1: apples 3").count(), 3, "three readers read together:\n{out}");
    assert!(position("early readers release") < position("writer holds the write lock alone"), "{out}");
    assert!(position("writer committed v2") < position("late reader reads"), "{out}");
    assert!(out.contains("late reader reads under token") && out.contains(": v2: apples 4"), "{out}");
}

#[test]
fn the_semaphore_example_never_exceeds_its_permits() {
    let out = run("semaphore");
    assert_eq!(out.matches(" calls the API ").count(), 8, "{out}");
    assert!(out.contains("at most 3 in flight with 3 permits"), "{out}");
    assert!(!out.contains("4 in flight"), "{out}");
}

#[test]
fn the_leader_example_hands_over_with_growing_tokens_and_takes_turns() {
    let out = run("leader");
    assert!(out.contains(r#"participants: ["shard-owner-a", "shard-owner-b", "shard-owner-c"]"#), "{out}");
    let tokens = |marker: &str| -> Vec<FencingToken> {
        out.lines()
            .filter(|l| l.contains(marker))
            .map(|l| l.split("token ").nth(1).unwrap().trim_end_matches(" and wrote its log entry").parse().unwrap())
            .collect()
    };
    let leaders = tokens(" leads with token ");
    assert_eq!(leaders.len(), 3, "{out}");
    assert!(leaders.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert_eq!(out.matches(" took over after ").count(), 2, "{out}");
    let turns: Vec<&str> = out.lines().filter(|l| l.contains(" runs the reindex job")).collect();
    assert_eq!(turns.len(), 6, "{out}");
    for worker in ["worker-1", "worker-2", "worker-3"] {
        assert_eq!(turns.iter().filter(|l| l.starts_with(worker)).count(), 2, "turns in arrival order:\n{out}");
    }
}

/// The token an example printed right after `marker`.
fn token_after(out: &str, marker: &str) -> FencingToken {
    let line = out.lines().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("{marker:?} missing:\n{out}"));
    line.split(marker).nth(1).unwrap().split([';', ':', ' ']).next().unwrap().parse().unwrap()
}

#[test]
fn the_fencing_example_rejects_the_resumed_holders_stale_write() {
    let out = run("fencing");
    let token_after = |marker: &str| token_after(&out, marker);
    let a = token_after("A: acquired with token ");
    let b = token_after("B: acquired with token ");
    assert!(a < b, "the successor's token is larger:\n{out}");
    assert!(out.contains(&format!("A: acquired with token {a}; write ACCEPTED")), "{out}");
    assert!(out.contains("once A's session expired; write ACCEPTED"), "{out}");
    assert!(out.contains("A: resumed; guard.lost() had already resolved"), "{out}");
    assert!(out.contains(&format!("writes anyway with token {a}: REJECTED (token {a} < highest seen {b})")), "{out}");
    assert!(out.contains("fencing held"), "{out}");
}

#[cfg(feature = "postgres")]
#[test]
fn the_payment_example_has_postgres_refuse_the_frozen_workers_capture() {
    let out = run_built(common::example_with_features("payment", &["postgres"]), "payment");
    let token_after = |marker: &str| token_after(&out, marker);
    let a = token_after("A: acquired with token ");
    let b = token_after("B: acquired with token ");
    assert!(a < b, "the successor's token is larger:\n{out}");
    let position = |needle: &str| out.find(needle).unwrap_or_else(|| panic!("{needle:?} missing:\n{out}"));
    // The order of events: A starts, freezes; B captures; A resumes and is refused.
    assert!(position("A: starts capturing order 42 (pending") < position("A is frozen (SIGSTOP)"), "{out}");
    assert!(position("A is frozen") < position("B: captured order 42 and committed"), "{out}");
    assert!(position("B: captured order 42") < position("A is resumed (SIGCONT)"), "{out}");
    assert!(out.contains("A: resumed; guard.lost() had already resolved; captures anyway"), "{out}");
    assert!(
        out.contains(&format!("A: capture refused by PostgreSQL: stale fencing token {a}: the fence is at {b}")),
        "{out}"
    );
    assert!(!out.contains("a double capture"), "{out}");
    // The table at the end, as PostgreSQL has it.
    assert!(out.contains(&format!("  id 42 | captured | captured by B | fence {b}")), "{out}");
    assert!(out.contains(&format!("  /payments/order-42 | {b}")), "{out}");
    assert!(out.contains("fencing held"), "{out}");
}

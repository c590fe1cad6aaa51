//! The checker's runs: the fixed engine in each recipe and fault setting (no counterexample),
//! the pairings with Curator and kazoo, and the negative controls — each a deliberate defect
//! of the engine that the checker must catch.
//!
//! `cargo test` explores up to `ZK_MODEL_STATES` states a run (default 200,000); `make model`
//! sets it far higher. Runs print their states, depth and time.

use super::super::explore::{self, Bounds, Model, Report};
use super::*;
use crate::queue::attempt::mutation::{self, Mutation};

/// The bounds of a run.
fn bounds() -> Bounds {
    let states = std::env::var("ZK_MODEL_STATES").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    Bounds { depth: 400, states }
}

/// Explores `model`: breadth first (a counterexample found is one of the shortest), or depth
/// first beyond a million states, whose levels no longer fit in memory breadth first.
fn explore<M: Model>(name: &str, model: &M, bounds: Bounds) -> Report<M> {
    let report = if bounds.states > 1_000_000 {
        explore::explore_depth_first(model, bounds)
    } else {
        explore::explore(model, bounds)
    };
    eprintln!(
        "model {name}: {} states, depth {}, {} at rest, {} in {:.1?}: {}",
        report.states,
        report.depth,
        report.at_rest,
        if report.complete { "complete" } else { "bounded" },
        report.elapsed,
        match &report.counterexample {
            None => "every property holds".to_owned(),
            Some(found) => format!("violated: {}", found.violation.property),
        }
    );
    report
}

/// Asserts that the fixed engine breaks no property in `scenario`; true if it was explored
/// completely.
fn holds(name: &str, scenario: &Scenario) -> bool {
    let report = explore(name, scenario, bounds());
    assert!(report.counterexample.is_none(), "{:?}", report.counterexample);
    assert!(report.states > 20, "{name} explored only {} states", report.states);
    report.complete
}

/// [`holds`], for a scenario whose every interleaving fits in a million states: asserted
/// complete when the bound allows that many.
fn holds_everywhere(name: &str, scenario: &Scenario) {
    let complete = holds(name, scenario);
    assert!(complete || bounds().states < 1_000_000, "{name} no longer fits in {} states", bounds().states);
}

/// [`holds`], depth first.
fn holds_depth_first(name: &str, scenario: &Scenario) {
    let report = explore::explore_depth_first(scenario, bounds());
    eprintln!(
        "model {name} (depth first): {} states, depth {}, {} at rest, {} in {:.1?}",
        report.states,
        report.depth,
        report.at_rest,
        if report.complete { "complete" } else { "bounded" },
        report.elapsed
    );
    assert!(report.counterexample.is_none(), "{:?}", report.counterexample);
}

/// The bounds of the negative controls and of the unsafe pairing: breadth first whatever
/// `ZK_MODEL_STATES` says, so that their traces stay the shortest.
const SMALL: Bounds = Bounds { depth: 400, states: 200_000 };

/// The counterexample the checker finds for `scenario` with `mutation` on.
fn caught(name: &str, mutation: Mutation, scenario: &Scenario) -> explore::Counterexample<Scenario> {
    let report = mutation::with(mutation, || explore(name, scenario, SMALL));
    let found = report.counterexample.unwrap_or_else(|| panic!("{mutation:?} went unnoticed"));
    eprintln!("{found:?}");
    found
}

fn steps(found: &explore::Counterexample<Scenario>) -> Vec<&Action> {
    found.steps.iter().map(|(action, _)| action).collect()
}

mod fixed {
    use super::*;

    #[test]
    fn two_mutex_contenders_with_an_outside_delete() {
        let scenario =
            Scenario { budget: Budget { outside_deletes: 1, ..Budget::NONE }, ..Scenario::of(Role::Lock, 2) };
        holds_everywhere("mutex, 2, delete", &scenario);
    }

    #[test]
    fn releases_cut_off_after_an_outside_delete_claim_nothing() {
        let budget = Budget { outside_deletes: 1, disconnects: 1, ..Budget::NONE };
        holds_everywhere("mutex, 2, delete and disconnect", &Scenario { budget, ..Scenario::of(Role::Lock, 2) });
        let plan = Plan::Semaphore { permits: 1, count: 1 };
        holds("semaphore 1, 2, delete and disconnect", &Scenario { budget, ..Scenario::new(vec![plan; 2]) });
    }

    #[test]
    fn readers_and_a_writer_with_an_outside_delete() {
        let plans = [Role::Read, Role::Write, Role::Read].map(Plan::Single).to_vec();
        let scenario = Scenario { budget: Budget { outside_deletes: 1, ..Budget::NONE }, ..Scenario::new(plans) };
        holds_everywhere("rwlock R W R, delete", &scenario);
    }

    #[test]
    fn tokens_increase_across_a_reaped_and_recreated_directory() {
        let scenario =
            Scenario { acquisitions: 2, budget: Budget { reaps: 1, ..Budget::NONE }, ..Scenario::of(Role::Lock, 2) };
        holds_everywhere("mutex, 2 x 2, reap", &scenario);
    }

    #[test]
    fn a_try_and_a_cancelled_wait_leave_no_node() {
        let scenario =
            Scenario { tries: 1, budget: Budget { cancels: 1, ..Budget::NONE }, ..Scenario::of(Role::Lock, 3) };
        holds_everywhere("mutex, 3, a try and a cancel", &scenario);
    }

    #[test]
    fn a_lost_request_a_lost_reply_and_an_impostor() {
        let budget = Budget { lost_requests: 1, disconnects: 1, impostors: 1, ..Budget::NONE };
        holds_everywhere(
            "mutex, 2, lost request, lost reply, impostor",
            &Scenario { budget, ..Scenario::of(Role::Lock, 2) },
        );
    }

    #[test]
    fn leader_latches_with_an_expiry() {
        let scenario = Scenario { budget: Budget { expiries: 1, ..Budget::NONE }, ..Scenario::of(Role::Latch, 3) };
        holds_everywhere("latch, 3, expiry", &scenario);
    }

    #[test]
    fn a_semaphore_of_one_permit_with_an_outside_delete() {
        let plans = vec![Plan::Semaphore { permits: 1, count: 1 }; 2];
        let scenario = Scenario { budget: Budget { outside_deletes: 1, ..Budget::NONE }, ..Scenario::new(plans) };
        holds_everywhere("semaphore 1 permit, 2, delete", &scenario);
    }

    #[test]
    fn a_semaphore_of_two_permits_with_a_lost_reply() {
        let plans = vec![
            Plan::Semaphore { permits: 2, count: 2 },
            Plan::Semaphore { permits: 2, count: 1 },
            Plan::Semaphore { permits: 2, count: 1 },
        ];
        let scenario = Scenario { budget: Budget { disconnects: 1, ..Budget::NONE }, ..Scenario::new(plans) };
        holds("semaphore 2 permits, 3, lost reply", &scenario);
    }

    #[test]
    fn a_wrapped_sequence_fails_the_attempt_and_nobody_holds_beside_the_head() {
        let scenario = Scenario { wrap: true, ..Scenario::of(Role::Lock, 2) };
        holds_everywhere("mutex, 2, wrapping sequence", &scenario);
    }

    /// The bound `make test` checks: three contenders, two acquisitions each, up to two faults
    /// of any kind and two cancellations.
    ///
    /// Breadth first, this many states cover only the first dozen steps of every
    /// interleaving; depth first, they cover whole runs (every acquisition to its end) in the
    /// order the search meets them. Neither exhausts the space: see `recipes/model.md`.
    #[test]
    fn three_mutex_contenders_twice_each_with_two_faults() {
        let scenario = Scenario { acquisitions: 2, budget: Budget::any(2), ..Scenario::of(Role::Lock, 3) };
        holds_depth_first("mutex, 3 x 2, any 2 faults", &scenario);
    }

    #[test]
    fn three_readers_and_writers_twice_each_with_two_faults() {
        let plans = [Role::Read, Role::Write, Role::Read].map(Plan::Single).to_vec();
        let scenario = Scenario { acquisitions: 2, budget: Budget::any(2), ..Scenario::new(plans) };
        holds_depth_first("rwlock R W R x 2, any 2 faults", &scenario);
    }

    #[test]
    fn three_semaphore_contenders_twice_each_with_two_faults() {
        let plans = vec![Plan::Semaphore { permits: 2, count: 1 }; 3];
        let scenario = Scenario { acquisitions: 2, budget: Budget::any(2), ..Scenario::new(plans) };
        holds_depth_first("semaphore 2 permits, 3 x 2, any 2 faults", &scenario);
    }
}

mod peers {
    use super::*;

    /// The pairing the docs call safe: our mutex and Curator's on one path.
    #[test]
    fn the_engine_and_curator_on_one_mutex() {
        let scenario = Scenario { curators: 1, ..Scenario::of(Role::Lock, 1) };
        holds_everywhere("engine + Curator", &scenario);
    }

    /// The pairing the docs call unsafe: a default kazoo Lock ignores Curator-named nodes.
    #[test]
    fn a_default_kazoo_lock_beside_the_engine_is_found_holding_with_it() {
        let scenario = Scenario { kazoo: Some((KAZOO, &[])), ..Scenario::of(Role::Lock, 1) };
        let report = explore("engine + default kazoo", &scenario, SMALL);
        let found = report.counterexample.expect("the unsafe pairing");
        assert_eq!(found.violation.property, "mutual exclusion", "{found:?}");
    }

    /// The pairing the docs call safe: kazoo told Curator's marker, beside our mutex.
    #[test]
    fn a_kazoo_lock_with_curators_pattern_beside_the_engine() {
        let scenario = Scenario { kazoo: Some((KAZOO, &["-lock-"])), ..Scenario::of(Role::Lock, 1) };
        holds_everywhere("engine + kazoo with -lock-", &scenario);
    }

    const KAZOO: &str = "93166b0c5e6f4b1f8f2d0a4c3b2a1908";
}

mod negative_controls {
    use super::*;

    #[test]
    fn without_a_second_look_at_our_node_a_waiter_comes_back_holding() {
        let scenario =
            Scenario { budget: Budget { outside_deletes: 1, ..Budget::NONE }, ..Scenario::of(Role::Lock, 2) };
        let found = caught("phantom holder", Mutation::NoSecondLookAtOwnNode, &scenario);
        assert_eq!(found.violation.property, "no guard for a node heard deleted", "{found:?}");
        // The waiter's node is deleted after the head's release, and both arrive together.
        let actions = steps(&found);
        let released = actions.iter().position(|a| matches!(a, Action::Release(_))).expect("a release");
        let deleted = actions.iter().position(|a| matches!(a, Action::OutsideDelete(_))).expect("a delete");
        assert!(released < deleted, "{found:?}");
    }

    #[test]
    fn without_the_owner_check_an_impostors_node_is_adopted() {
        let budget = Budget { lost_requests: 1, impostors: 1, ..Budget::NONE };
        let found =
            caught("no owner check", Mutation::NoOwnerCheck, &Scenario { budget, ..Scenario::of(Role::Lock, 1) });
        assert_eq!(found.violation.property, "a guard's node is its session's", "{found:?}");
        assert!(steps(&found).iter().any(|a| matches!(a, Action::Impostor(_))), "{found:?}");
    }

    #[test]
    fn a_fresh_prefix_after_a_lost_reply_leaves_a_duplicate_that_blocks_the_queue() {
        let scenario = Scenario { budget: Budget { disconnects: 1, ..Budget::NONE }, ..Scenario::of(Role::Lock, 1) };
        let found = caught("fresh prefix", Mutation::FreshPrefixAfterLostReply, &scenario);
        assert_eq!(found.violation.property, "every live waiter eventually holds", "{found:?}");
        assert!(steps(&found).iter().any(|a| matches!(a, Action::Disconnect(_))), "{found:?}");
    }

    #[test]
    fn a_release_counting_a_cut_off_delete_as_its_own_claims_a_node_deleted_unheard() {
        let budget = Budget { outside_deletes: 1, disconnects: 1, ..Budget::NONE };
        let scenario = Scenario { budget, ..Scenario::of(Role::Lock, 1) };
        let found = caught("probably own delete", Mutation::ProbablyOwnDelete, &scenario);
        assert_eq!(found.violation.property, "a release claims only what it held", "{found:?}");
        // Someone deletes the held node, then the reply to the release's own delete is lost.
        let actions = steps(&found);
        let deleted = actions.iter().position(|a| matches!(a, Action::OutsideDelete(_))).expect("a delete");
        let released = actions.iter().position(|a| matches!(a, Action::Release(_))).expect("a release");
        let cut = actions.iter().position(|a| matches!(a, Action::Disconnect(_))).expect("a disconnect");
        assert!(deleted < released && released < cut, "{found:?}");
    }

    #[test]
    fn a_wrapped_sequence_sorted_as_small_jumps_the_queue() {
        let scenario = Scenario { wrap: true, ..Scenario::of(Role::Lock, 2) };
        let found = caught("wrapped as small", Mutation::WrappedSequenceAsSmall, &scenario);
        assert_eq!(found.violation.property, "grants follow node order", "{found:?}");
    }

    #[test]
    fn a_withdrawal_without_a_delete_leaves_its_node() {
        let scenario = Scenario { tries: 1, ..Scenario::of(Role::Lock, 2) };
        let found = caught("withdrawal without delete", Mutation::WithdrawWithoutDelete, &scenario);
        assert_eq!(found.violation.property, "no contender node is left", "{found:?}");
    }

    #[test]
    fn a_reader_watching_the_first_writer_is_a_herd() {
        let plans = [Role::Write, Role::Write, Role::Read].map(Plan::Single).to_vec();
        let found = caught("reader watches first writer", Mutation::ReaderWatchesFirstWriter, &Scenario::new(plans));
        assert_eq!(found.violation.property, "waiters watch the node the rule names", "{found:?}");
    }

    #[test]
    fn tokens_without_the_directory_epoch_repeat_after_a_reap() {
        let scenario =
            Scenario { acquisitions: 2, budget: Budget { reaps: 1, ..Budget::NONE }, ..Scenario::of(Role::Lock, 1) };
        let found = caught("token without epoch", Mutation::TokenWithoutEpoch, &scenario);
        assert_eq!(found.violation.property, "tokens increase", "{found:?}");
        assert!(steps(&found).iter().any(|a| matches!(a, Action::Reap(_))), "{found:?}");
    }

    /// A counterexample is a test: its steps replay to the same broken state.
    #[test]
    fn a_counterexample_replays() {
        let scenario = Scenario { wrap: true, ..Scenario::of(Role::Lock, 2) };
        let found = caught("wrapped as small", Mutation::WrappedSequenceAsSmall, &scenario);
        let actions: Vec<Action> = found.steps.iter().map(|(a, _)| a.clone()).collect();
        let replayed =
            mutation::with(Mutation::WrappedSequenceAsSmall, || explore::replay(&scenario, &found.init, &actions));
        let last = replayed.expect("replays").pop().expect("steps").1;
        assert_eq!(scenario.check(&last).unwrap_err().property, "grants follow node order");
        // Without the defect, the same steps do not even replay: the attempt fails instead.
        let fixed = explore::replay(&scenario, &found.init, &actions);
        assert!(fixed.map(|steps| scenario.check(&steps.last().unwrap().1).is_ok()).unwrap_or(true));
    }
}

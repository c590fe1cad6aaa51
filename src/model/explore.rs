//! A breadth-first explorer of every interleaving of a [`Model`] up to a depth.
//!
//! Purpose-built rather than a general checker: the models here are small (a few contenders,
//! one server), every state is a plain value, and what matters is a short counterexample that
//! reads as a story and replays as a test. Breadth first, so the first violation found is one
//! of the shortest. States are deduplicated by a 64-bit fingerprint of their canonical form
//! ([`Model::canonical`], where a model folds symmetric states together); only fingerprints
//! and the step that first reached each state are kept, and a counterexample is rebuilt by
//! replaying its steps from the initial state.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

/// A system to explore: its states, and the steps each state allows.
pub(crate) trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Action: Clone + Debug;

    /// The states it can start in.
    fn init(&self) -> Vec<Self::State>;

    /// Every step `state` allows, in a fixed order (so that runs are reproducible).
    fn actions(&self, state: &Self::State, actions: &mut Vec<Self::Action>);

    /// The state after `action`; `None` if, after all, the action does nothing there.
    fn next(&self, state: &Self::State, action: &Self::Action) -> Option<Self::State>;

    /// What must hold in every state: the first property broken, by name and why.
    fn check(&self, state: &Self::State) -> Result<(), Violation>;

    /// What must hold once nothing can happen any more (every contender done or stuck): the
    /// liveness of a bounded, terminating model.
    fn check_at_rest(&self, _state: &Self::State) -> Result<(), Violation> {
        Ok(())
    }

    /// The representative of `state`'s symmetry class (contenders that differ only in their
    /// names, say); states with the same representative are explored once.
    fn canonical(&self, state: &Self::State) -> Self::State {
        state.clone()
    }
}

/// A broken property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) property: &'static str,
    pub(crate) detail: String,
}

impl Violation {
    pub(crate) fn new(property: &'static str, detail: impl Into<String>) -> Self {
        Self { property, detail: detail.into() }
    }
}

/// How far to explore.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// The most steps from an initial state.
    pub(crate) depth: usize,
    /// The most distinct states; exploring stops (incomplete) beyond it.
    pub(crate) states: usize,
}

/// What an exploration found.
#[derive(Debug)]
pub(crate) struct Report<M: Model> {
    /// Distinct states reached (after symmetry reduction).
    pub(crate) states: usize,
    /// The deepest level explored.
    pub(crate) depth: usize,
    /// States that allow no step: where [`Model::check_at_rest`] was checked.
    pub(crate) at_rest: usize,
    /// Whether every state within the depth was explored (no state bound hit).
    pub(crate) complete: bool,
    pub(crate) elapsed: Duration,
    /// The first violation, with the shortest path to it.
    pub(crate) counterexample: Option<Counterexample<M>>,
}

impl<M: Model> Report<M> {
    /// A report of a search that began at `started`.
    fn after(
        started: Instant,
        states: usize,
        depth: usize,
        at_rest: usize,
        complete: bool,
        counterexample: Option<Counterexample<M>>,
    ) -> Self {
        Self { states, depth, at_rest, complete, elapsed: started.elapsed(), counterexample }
    }
}

/// Steps of a path, each with the state it led to.
pub(crate) type Steps<M> = Vec<(<M as Model>::Action, <M as Model>::State)>;

/// A path from an initial state to a state that breaks a property.
pub(crate) struct Counterexample<M: Model> {
    pub(crate) init: M::State,
    pub(crate) steps: Steps<M>,
    pub(crate) violation: Violation,
}

impl<M: Model> Debug for Counterexample<M> {
    /// A readable trace: every step, then the broken property.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "initial state: {:#?}", self.init)?;
        for (i, (action, _)) in self.steps.iter().enumerate() {
            writeln!(f, "step {:>3}: {action:?}", i + 1)?;
        }
        if let Some((_, last)) = self.steps.last() {
            writeln!(f, "final state: {last:#?}")?;
        }
        write!(f, "violated: {} ({})", self.violation.property, self.violation.detail)
    }
}

/// The step that first reached a state, for replay: its parent's index and the action, or
/// for an initial state its place among the initial states (and no action).
struct Reached<A> {
    parent: usize,
    action: Option<A>,
}

/// Explores every interleaving of `model` within `bounds`, breadth first, checking every
/// state; stops at the first violation.
pub(crate) fn explore<M: Model>(model: &M, bounds: Bounds) -> Report<M> {
    let started = Instant::now();
    // A fixed hasher: fingerprints, and so the order of exploration, are the same every run.
    let hasher = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let fingerprint = |state: &M::State| hasher.hash_one(model.canonical(state));
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut reached: Vec<Reached<M::Action>> = Vec::new();
    let mut frontier: Vec<(usize, M::State)> = Vec::new();
    let report = |states, depth, at_rest, complete, counterexample| {
        Report::<M>::after(started, states, depth, at_rest, complete, counterexample)
    };
    let roots = model.init();
    for (root, state) in roots.iter().enumerate() {
        if seen.insert(fingerprint(state), reached.len()).is_none() {
            if let Err(violation) = model.check(state) {
                let found = Counterexample { init: state.clone(), steps: Vec::new(), violation };
                return report(seen.len(), 0, 0, false, Some(found));
            }
            frontier.push((reached.len(), state.clone()));
            reached.push(Reached { parent: root, action: None });
        }
    }
    let mut actions = Vec::new();
    let mut at_rest = 0;
    for depth in 0..bounds.depth {
        let mut next_frontier = Vec::new();
        for (index, state) in &frontier {
            actions.clear();
            model.actions(state, &mut actions);
            let mut moved = false;
            for action in &actions {
                let Some(next) = model.next(state, action) else { continue };
                moved = true;
                let key = fingerprint(&next);
                if seen.contains_key(&key) {
                    continue;
                }
                let next_index = reached.len();
                seen.insert(key, next_index);
                reached.push(Reached { parent: *index, action: Some(action.clone()) });
                if let Err(violation) = model.check(&next) {
                    let found = rebuild(model, &roots, &reached, next_index, violation);
                    return report(seen.len(), depth + 1, at_rest, false, Some(found));
                }
                if seen.len() >= bounds.states {
                    return report(seen.len(), depth + 1, at_rest, false, None);
                }
                next_frontier.push((next_index, next));
            }
            if !moved {
                at_rest += 1;
                if let Err(violation) = model.check_at_rest(state) {
                    let found = rebuild(model, &roots, &reached, *index, violation);
                    return report(seen.len(), depth, at_rest, false, Some(found));
                }
            }
        }
        if next_frontier.is_empty() {
            return report(seen.len(), depth, at_rest, true, None);
        }
        frontier = next_frontier;
    }
    // States at the depth bound are neither expanded nor at rest.
    report(seen.len(), bounds.depth, at_rest, true, None)
}

/// The path to `reached[index]`, replayed from its initial state.
fn rebuild<M: Model>(
    model: &M,
    roots: &[M::State],
    reached: &[Reached<M::Action>],
    index: usize,
    violation: Violation,
) -> Counterexample<M> {
    let mut actions = Vec::new();
    let mut at = index;
    while let Some(action) = &reached[at].action {
        actions.push(action.clone());
        at = reached[at].parent;
    }
    actions.reverse();
    let init = roots[reached[at].parent].clone();
    let steps = replay(model, &init, &actions).expect("a recorded path replays");
    Counterexample { init, steps, violation }
}

/// A state on the depth-first path, the actions still to try from it, and the one that led
/// there.
type Frame<M> = (<M as Model>::State, Vec<<M as Model>::Action>, Option<<M as Model>::Action>);

/// [`explore`], depth first: for bounds too large to keep every state of a level in memory.
/// Only fingerprints are kept (and the path being explored), so tens of millions of states fit;
/// a counterexample is one path to the violation, not necessarily a shortest one. A state met
/// again at a greater depth is not explored again, so near the depth bound a few states may go
/// unexplored that breadth first would reach: use a depth bound the runs never reach.
pub(crate) fn explore_depth_first<M: Model>(model: &M, bounds: Bounds) -> Report<M> {
    let started = Instant::now();
    let hasher = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let fingerprint = |state: &M::State| hasher.hash_one(model.canonical(state));
    let mut seen = std::collections::HashSet::new();
    let (mut deepest, mut at_rest, mut complete) = (0, 0, true);
    let report = |states, depth, at_rest, complete, counterexample| {
        Report::<M>::after(started, states, depth, at_rest, complete, counterexample)
    };
    for init in model.init() {
        if !seen.insert(fingerprint(&init)) {
            continue;
        }
        if let Err(violation) = model.check(&init) {
            return report(seen.len(), 0, 0, false, Some(Counterexample { init, steps: Vec::new(), violation }));
        }
        // The path: each state with the actions still to try from it.
        let mut actions = Vec::new();
        model.actions(&init, &mut actions);
        let mut path: Vec<Frame<M>> = vec![(init.clone(), actions, None)];
        while let Some((state, untried, _)) = path.last_mut() {
            let Some(action) = untried.pop() else {
                path.pop();
                continue;
            };
            let Some(next) = model.next(state, &action) else { continue };
            if !seen.insert(fingerprint(&next)) {
                continue;
            }
            let mut actions = Vec::new();
            model.actions(&next, &mut actions);
            let failed = model.check(&next).err().or_else(|| {
                let rest = actions.iter().all(|a| model.next(&next, a).is_none());
                rest.then(|| {
                    at_rest += 1;
                    model.check_at_rest(&next).err()
                })
                .flatten()
            });
            path.push((next, actions, Some(action)));
            deepest = deepest.max(path.len() - 1);
            if let Some(violation) = failed {
                let steps = path.iter().skip(1).map(|(s, _, a)| (a.clone().expect("a step"), s.clone())).collect();
                return report(seen.len(), deepest, at_rest, false, Some(Counterexample { init, steps, violation }));
            }
            if seen.len() >= bounds.states {
                return report(seen.len(), deepest, at_rest, false, None);
            }
            if path.len() > bounds.depth {
                complete = false;
                path.last_mut().expect("just pushed").1.clear();
            }
        }
    }
    report(seen.len(), deepest, at_rest, complete, None)
}

/// Applies `actions` to `init` one by one: the states they lead to, or the index of the first
/// action that does nothing. How a counterexample becomes a test.
pub(crate) fn replay<M: Model>(model: &M, init: &M::State, actions: &[M::Action]) -> Result<Steps<M>, usize> {
    let mut state = init.clone();
    let mut steps = Vec::with_capacity(actions.len());
    for (i, action) in actions.iter().enumerate() {
        state = model.next(&state, action).ok_or(i)?;
        steps.push((action.clone(), state.clone()));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes and a lock word. Broken: each reads the word, then sets it in a later
    /// step (check-then-act), so both can enter. Fixed: an atomic test-and-set.
    struct Flag {
        atomic: bool,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    enum Pc {
        Idle,
        SawFree,
        Inside,
        Done,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct State {
        taken: bool,
        pcs: [Pc; 2],
    }

    impl Model for Flag {
        type State = State;
        type Action = usize;

        fn init(&self) -> Vec<State> {
            vec![State { taken: false, pcs: [Pc::Idle; 2] }]
        }

        fn actions(&self, _: &State, actions: &mut Vec<usize>) {
            actions.extend([0, 1]);
        }

        fn next(&self, state: &State, &who: &usize) -> Option<State> {
            let mut next = state.clone();
            next.pcs[who] = match (state.pcs[who], state.taken) {
                (Pc::Idle, false) if self.atomic => {
                    next.taken = true;
                    Pc::Inside
                }
                (Pc::Idle, false) => Pc::SawFree,
                (Pc::SawFree, _) => {
                    next.taken = true;
                    Pc::Inside
                }
                (Pc::Inside, _) => {
                    next.taken = false;
                    Pc::Done
                }
                _ => return None,
            };
            Some(next)
        }

        fn check(&self, state: &State) -> Result<(), Violation> {
            if state.pcs.iter().all(|&pc| pc == Pc::Inside) {
                return Err(Violation::new("mutual exclusion", "both inside"));
            }
            Ok(())
        }

        fn check_at_rest(&self, state: &State) -> Result<(), Violation> {
            if state.pcs.iter().all(|&pc| pc == Pc::Done) {
                Ok(())
            } else {
                Err(Violation::new("everyone finishes", format!("{:?}", state.pcs)))
            }
        }

        /// The two processes are interchangeable.
        fn canonical(&self, state: &State) -> State {
            let mut pcs = state.pcs;
            pcs.sort_by_key(|pc| *pc as u8);
            State { pcs, ..state.clone() }
        }
    }

    const BOUNDS: Bounds = Bounds { depth: 20, states: 10_000 };

    #[test]
    fn check_then_act_is_caught_with_a_shortest_trace_that_replays() {
        let report = explore(&Flag { atomic: false }, BOUNDS);
        let found = report.counterexample.expect("a counterexample");
        assert_eq!(found.violation.property, "mutual exclusion");
        // Both look, then both enter: four steps, and none fewer can do it.
        let actions: Vec<usize> = found.steps.iter().map(|(a, _)| *a).collect();
        assert_eq!(actions.len(), 4, "{found:?}");
        let replayed = replay(&Flag { atomic: false }, &found.init, &actions).unwrap();
        assert_eq!(replayed.last().unwrap().1, found.steps.last().unwrap().1);
        assert!(format!("{found:?}").contains("violated: mutual exclusion"));
    }

    #[test]
    fn test_and_set_passes_everywhere_and_everyone_finishes() {
        let report = explore(&Flag { atomic: true }, BOUNDS);
        assert!(report.counterexample.is_none(), "{:?}", report.counterexample);
        assert!(report.complete);
        assert!(report.at_rest > 0, "the liveness check ran");
        // Each process enters and leaves: four steps in all, then nothing is left to do.
        assert_eq!(report.depth, 4);
        assert!(report.elapsed < Duration::from_secs(60));
        // Eight states; symmetry folds (Inside, Idle) and (Idle, Inside) together, and so on.
        assert_eq!(report.states, 5);
    }

    #[test]
    fn a_stuck_process_breaks_liveness_at_rest() {
        /// Process 1 waits for a flag nobody sets.
        struct Stuck;
        impl Model for Stuck {
            type State = bool;
            type Action = ();
            fn init(&self) -> Vec<bool> {
                vec![false]
            }
            fn actions(&self, _: &bool, actions: &mut Vec<()>) {
                actions.push(());
            }
            fn next(&self, _: &bool, _: &()) -> Option<bool> {
                None
            }
            fn check(&self, _: &bool) -> Result<(), Violation> {
                Ok(())
            }
            fn check_at_rest(&self, done: &bool) -> Result<(), Violation> {
                if *done { Ok(()) } else { Err(Violation::new("progress", "waits for ever")) }
            }
        }
        let report = explore(&Stuck, BOUNDS);
        assert_eq!(report.counterexample.expect("stuck").violation.property, "progress");
    }

    #[test]
    fn the_state_bound_makes_a_run_incomplete() {
        let report = explore(&Flag { atomic: true }, Bounds { depth: 20, states: 2 });
        assert!(!report.complete && report.counterexample.is_none());
    }
}

//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, with feature `metrics`;
//! without it every function here is empty. The names, kinds and labels are documented once,
//! in the crate docs (`src/lib.rs`, "Metrics"): keep that table in step with this file.

use std::time::Duration;

use crate::error::LossReason;

/// An acquisition ended after `waited`; `outcome` is one of the documented labels.
pub(crate) fn acquisition(recipe: &'static str, outcome: &'static str, waited: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!("zk_recipes_acquire_seconds", "recipe" => recipe, "outcome" => outcome)
        .record(waited.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (recipe, outcome, waited);
}

/// A contender queued in a directory of `children` children.
pub(crate) fn queued(recipe: &'static str, children: usize) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!("zk_recipes_queue_length", "recipe" => recipe).record(children as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = (recipe, children);
}

/// A holding ended after `held`.
pub(crate) fn held(recipe: &'static str, held: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!("zk_recipes_hold_seconds", "recipe" => recipe).record(held.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (recipe, held);
}

/// A holding was lost.
pub(crate) fn lost(recipe: &'static str, reason: LossReason) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("zk_recipes_losses_total", "recipe" => recipe, "reason" => format!("{reason:?}")).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (recipe, reason);
}

/// The session went into the state named `state` (e.g. `Connected`). A name, not the
/// session's type, so that the session can report to metrics without metrics knowing it.
pub(crate) fn session_state(state: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("zk_recipes_session_state_changes_total", "state" => state).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = state;
}

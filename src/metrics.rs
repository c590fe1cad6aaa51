//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, with feature `metrics`;
//! without it every function here is empty. The names, all labelled `recipe` (`lock`, `read`,
//! `write`, `lease`, `latch`; a semaphore's internal mutex counts as `lock`):
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `zk_recipes_acquire_seconds` | histogram, label `outcome` (`acquired`, `not_acquired`, `timeout`, `error`) | time from asking to the outcome |
//! | `zk_recipes_queue_length` | histogram | children of the directory when a contender queued, its own node included |
//! | `zk_recipes_hold_seconds` | histogram | time from acquiring to releasing (or dropping) |
//! | `zk_recipes_losses_total` | counter, label `reason` (a [`LossReason`] variant, e.g. `SessionExpired`) | holdings lost, by reason |
//! | `zk_recipes_session_state_changes_total` | counter, label `state` (`Connected`, `Suspended`, `Lost`, `Closed`; no `recipe`) | session state changes, by new state |

use std::time::Duration;

use crate::error::LossReason;
use crate::session::SessionState;

/// The `recipe` label of a contender node, from its name or path.
#[cfg(feature = "metrics")]
fn recipe(node: &str) -> &'static str {
    use crate::queue::children::{Kind, Parsed, parse};
    match parse(node.rsplit('/').next().unwrap_or(node)) {
        Parsed::Contender(contender) => match contender.kind {
            Kind::Lock | Kind::KazooLock => "lock",
            Kind::Read | Kind::KazooRead => "read",
            Kind::Write => "write",
            Kind::Latch => "latch",
            Kind::Lease => "lease",
        },
        Parsed::Wrapped | Parsed::Foreign => "other",
    }
}

/// The `recipe` label of a Curator marker such as `lock-`.
#[cfg(feature = "metrics")]
fn recipe_of_marker(marker: &str) -> &'static str {
    recipe(&format!("{marker}0000000000"))
}

/// An acquisition ended after `waited`; `outcome` is one of the documented labels.
pub(crate) fn acquisition(marker: &str, outcome: &'static str, waited: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!("zk_recipes_acquire_seconds", "recipe" => recipe_of_marker(marker), "outcome" => outcome)
        .record(waited.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (marker, outcome, waited);
}

/// A contender queued in a directory of `children` children.
pub(crate) fn queued(marker: &str, children: usize) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!("zk_recipes_queue_length", "recipe" => recipe_of_marker(marker)).record(children as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = (marker, children);
}

/// A holding of `node` ended after `held`.
pub(crate) fn held(node: &str, held: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!("zk_recipes_hold_seconds", "recipe" => recipe(node)).record(held.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (node, held);
}

/// The holding of `node` was lost.
pub(crate) fn lost(node: &str, reason: LossReason) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("zk_recipes_losses_total", "recipe" => recipe(node), "reason" => format!("{reason:?}"))
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (node, reason);
}

/// The session went into `state`.
pub(crate) fn session_state(state: SessionState) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("zk_recipes_session_state_changes_total", "state" => format!("{state:?}")).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = state;
}

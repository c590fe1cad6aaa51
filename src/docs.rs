//! The specifications of the recipes, the same pages as `recipes/*.md` in the repository: for
//! each recipe its znode layout, algorithm, fencing tokens, guarantees, what happens under each
//! failure, cost and interoperability with Curator and kazoo.
//!
//! Documentation only: these modules contain no items.

#[doc = include_str!("../recipes/mutex.md")]
pub mod mutex {}

#[doc = include_str!("../recipes/rwlock.md")]
pub mod rwlock {}

#[doc = include_str!("../recipes/semaphore.md")]
pub mod semaphore {}

#[doc = include_str!("../recipes/leader.md")]
pub mod leader {}

#[doc = include_str!("../recipes/fencing.md")]
pub mod fencing {}

#[doc = include_str!("../recipes/security.md")]
pub mod security {}

#[doc = include_str!("../recipes/model.md")]
pub mod model {}

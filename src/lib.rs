//! Fair ZooKeeper coordination recipes with fencing tokens, compatible with Apache Curator.
//!
//! `zk-recipes` gives Rust services the coordination primitives that JVM services get from
//! Apache Curator, on the same znode layout, so both can contend for one lock:
//!
//! - [`Mutex`]: a fair (FIFO) distributed mutex.
//! - [`ReadWriteLock`]: a fair read-write lock; a writer is never starved by later readers.
//! - [`Semaphore`]: a fair counting semaphore.
//! - [`LeaderLatch`] and [`LeaderSelector`]: leader election.
//!
//! # What every recipe guarantees
//!
//! - **Fencing.** Every acquisition comes with a [`FencingToken`]. An exclusive holder's (mutex,
//!   writer, leader) is strictly larger than every token handed out before on the same path —
//!   also after the server deleted and recreated the lock directory; a reader's is larger than
//!   every earlier writer's and smaller than every later writer's (readers hold together, in no
//!   token order among themselves); a lease's is larger than every earlier lease's. A lock holder can pause past its session timeout and not notice that
//!   it lost the lock; a resource that rejects stale tokens cannot be corrupted by it.
//! - **Fail closed, under stated assumptions.** A guard tells its holder as soon as the
//!   connection drops ([`MutexGuard::suspended`]) and when holding is lost *or can no longer be
//!   proven* ([`MutexGuard::lost`]): before the ZooKeeper leader can have expired the session,
//!   even while the network is silent and when the holder's server is a follower cut off from
//!   the leader. The proof rests on heartbeats only the leader can answer and assumes clock
//!   rates within 2 %, ZooKeeper's default `minSessionTimeout` and the same session timeout on
//!   every member (`recipes/mutex.md`, "Knowing when the lock is lost"). A contender whose node
//!   someone else deletes never comes back as a holder, and no guard is handed out already lost.
//! - **Fair and quiet.** Contenders are served in arrival order. A waiter watches only the node
//!   just ahead of it (and its own): one release wakes one waiter, and an uncontended
//!   acquisition costs one round trip (the create and the `getChildren` travel together).
//! - **Nothing orphaned.** A cancelled, timed-out or failed acquisition deletes its node,
//!   retried until the delete succeeds or the session ends (a delete the server refuses for good
//!   is logged; the node then stays until the session ends). A lost create reply is recovered
//!   by Curator's protected-name search, adopting a node only if this session owns it.
//! - **Curator's layout.** Nodes are Curator's (`_c_<uuid>-lock-<seq>`, `…-__READ__<seq>`,
//!   `…-__WRIT__<seq>`, `…/leases/…-lease-<seq>`) under CONTAINER parents; kazoo's `__lock__`
//!   and `__rlock__` nodes in the same directory count as contenders too.
//!
//! # Example
//!
//! ```no_run
//! use zk_recipes::{Mutex, Session};
//!
//! # async fn example() -> Result<(), zk_recipes::Error> {
//! let session = Session::connect("127.0.0.1:2181").await?;
//! let mutex = Mutex::new(&session, "/locks/nightly-report")?;
//! let guard = mutex.lock().await?;
//! println!("holding with token {}", guard.token());
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! [`inspect`] reads who holds any recipe path and who waits (what `zk-recipes status` shows).
//!
//! # Cargo features
//!
//! - `testing`: [`testing`], real Apache ZooKeeper servers and ensembles started as child
//!   processes, for integration tests (like Curator's `TestingServer` / `TestingCluster`), and
//!   Curator and kazoo peers for interop tests.
//! - `metrics`: acquisition latency, queue length, hold time, losses and session state changes
//!   through the [`metrics`](https://docs.rs/metrics) facade: `zk_recipes_acquire_seconds`
//!   (labels `recipe` = `lock`/`read`/`write`/`latch`/`lease`/`semaphore_gate`, `outcome`), `zk_recipes_queue_length`, `zk_recipes_hold_seconds`
//!   (`recipe`), `zk_recipes_losses_total` (`recipe`, `reason`),
//!   `zk_recipes_session_state_changes_total` (`state`).
//! - `tls`: TLS to the servers' client ports ([`TlsConfig`], [`SessionBuilder::tls`]): rustls,
//!   PEM certificates and keys from text or files, rotated certificate files picked up without
//!   a restart. With `testing`, the harness starts TLS servers.
//! - `sasl`: SASL DIGEST-MD5 authentication ([`SessionBuilder::sasl_digest`]). With `testing`,
//!   the harness starts servers that require it.
//! - `gssapi`: SASL GSSAPI (Kerberos) authentication ([`SessionBuilder::sasl_gssapi`],
//!   `GssapiConfig`) through the system's GSSAPI library (MIT krb5). Building it needs libclang
//!   and the GSSAPI headers (Debian: `libclang-dev libkrb5-dev`). With `testing`, the harness
//!   starts a Kerberos KDC (`testing::TestingKdc`) and servers that require GSSAPI.
//! - `postgres`: [`fence`], the token checked by PostgreSQL (`tokio-postgres`) in the
//!   caller's own transaction; with `testing`, also [`testing::TestingPostgres`].
//! - `cli`: the `zk-recipes` command-line tool (`cargo install zk-recipes --features cli`),
//!   with `tls` and `sasl`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![deny(unused_must_use)]
#![doc(test(attr(deny(warnings, rust_2018_idioms), allow(dead_code, unused_variables))))]

mod error;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod fence;
mod guard;
mod hold;
mod inspect;
mod leader;
mod metrics;
/// A model of one ZooKeeper server as a plain value, for model-checking the queue protocol
/// against every interleaving of a few contenders (tests only).
#[cfg(test)]
mod model;
mod mutex;
mod path;
mod queue;
mod recipe;
mod retry;
mod rwlock;
mod semaphore;
mod session;
#[cfg(all(feature = "testing", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod token;

pub use zookeeper_client as zk;

pub use crate::error::{Error, LossReason, TlsProblem};
pub use crate::guard::{MutexGuard, ReadGuard, WriteGuard};
pub use crate::hold::{AnyHold, Hold};
pub use crate::inspect::{NodeKind, Participant, Snapshot, inspect};
pub use crate::leader::{Candidate, LeaderLatch, LeaderSelector, Leadership, Term};
pub use crate::mutex::Mutex;
pub use crate::path::validate_recipe_path;
pub use crate::queue::FencedWrite;
pub use crate::rwlock::ReadWriteLock;
pub use crate::semaphore::{Lease, MAX_PERMITS, Semaphore};
#[cfg(feature = "gssapi")]
#[cfg_attr(docsrs, doc(cfg(feature = "gssapi")))]
pub use crate::session::GssapiConfig;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use crate::session::TlsConfig;
pub use crate::session::{Session, SessionBuilder, SessionState, SessionStates};
pub use crate::token::{FencingToken, ParseTokenError};

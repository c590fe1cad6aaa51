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
//!   every member ([`docs::mutex`](crate::docs::mutex#knowing-when-the-lock-is-lost)). A
//!   contender whose node someone else deletes never comes back as a holder, and no guard is
//!   handed out already lost.
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
//! # Which recipe should I use?
//!
//! - [`Mutex`]: one holder at a time — a job that must not run twice at once (a nightly
//!   billing run, a payment batch, a migration). You take it, work, and release it.
//! - [`ReadWriteLock`]: any number of readers together, or one writer alone — when most work
//!   only reads what the writers change. A queued writer goes before readers that come after
//!   it, so later readers never starve it; readers that come after a queued writer wait.
//! - [`Semaphore`]: at most `permits` holders at once — to bound concurrent use of something
//!   shared (a partner API's connection limit, a pool of licences). Every participant must say
//!   the same `permits`. Leases hold together, so their tokens order them but cannot fence one
//!   off from another.
//! - [`LeaderLatch`]: one leader among long-running participants — a service instance that
//!   owns a shard or runs the scheduler. A candidacy stays in the election, rejoining after a
//!   loss or an expiry, until you close it or an error that retrying cannot fix ends it;
//!   [`Candidate::leadership`] tells you when you lead.
//! - [`LeaderSelector`]: run a task only while leading — the task gets a [`Term`], and the
//!   term ends when the task returns or leadership is lost. With
//!   [`auto_requeue`](LeaderSelector::auto_requeue) participants take turns in arrival order.
//!
//! Each pairs with its Curator counterpart on the same path: `InterProcessMutex`,
//! `InterProcessReadWriteLock`, `InterProcessSemaphoreV2` (with the same permit count),
//! `LeaderLatch`, `LeaderSelector`.
//!
//! ## When fencing tokens matter
//!
//! [`MutexGuard::lost`] tells a holder that listens, but nothing can stop a holder that is
//! paused (a GC pause, a stalled VM, `SIGSTOP`) between its last check and its write: by the
//! time the write arrives, a successor may hold the lock. Whenever two overlapping holders would
//! do harm — a double charge, a lost update — pass the holder's [`FencingToken`] with every
//! write and have the resource refuse a token lower than the highest it has seen:
//!
//! - state kept in ZooKeeper itself: [`MutexGuard::fenced_write`] (a multi-op that commits only
//!   while the holder's node exists);
//! - PostgreSQL: [`fence`] (feature `postgres`), the token checked inside your own
//!   transaction;
//! - any other store: keep the highest token next to the data and reject lower ones
//!   ([`docs::fencing`] explains why the resource must check, and how).
//!
//! Work whose overlap is harmless (idempotent, or merely wasted when done twice) needs no
//! fencing. Tokens fence exclusive holders — a mutex holder, a writer, a leader; a reader's
//! token lies above every earlier writer's and below every later writer's, so a store can
//! refuse readers that a writer has already overtaken.
//!
//! # Specifications
//!
//! How each recipe works, what it guarantees and what happens under each failure:
//! [`docs::mutex`], [`docs::rwlock`], [`docs::semaphore`], [`docs::leader`]; checking the
//! token at the resource: [`docs::fencing`]; TLS, SASL and ACLs: [`docs::security`]; the model
//! checking of the queue protocol: [`docs::model`].
//!
//! # Cargo features
//!
//! - `testing`: [`testing`], real Apache ZooKeeper servers and ensembles started as child
//!   processes, for integration tests (like Curator's `TestingServer` / `TestingCluster`).
//! - `metrics`: acquisition latency, queue length, hold time, losses and session state changes
//!   through the [`metrics`](https://docs.rs/metrics) facade (names and labels:
//!   [Metrics](#metrics)).
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
//!
//! # Metrics
//!
//! With feature `metrics`, the library records through the [`metrics`](https://docs.rs/metrics)
//! facade (install any exporter; without the feature nothing is recorded). Every name is
//! labelled `recipe` (`lock` for a mutex or selector, `read`, `write`, `latch`, `lease` for a
//! semaphore's leases and `semaphore_gate` for its internal mutex, whose queue is the
//! semaphore's waiting line), except the session's:
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `zk_recipes_acquire_seconds` | histogram, label `outcome` (`acquired`, `not_acquired`, `timeout`, `error`) | time from asking to the outcome |
//! | `zk_recipes_queue_length` | histogram | children of the directory when a contender queued, its own node included |
//! | `zk_recipes_hold_seconds` | histogram | time from acquiring to releasing (or dropping) |
//! | `zk_recipes_losses_total` | counter, label `reason` (a [`LossReason`] variant, e.g. `SessionExpired`) | holdings lost, by reason |
//! | `zk_recipes_session_state_changes_total` | counter, label `state` (`Connected`, `Suspended`, `Lost`, `Closed`; no `recipe`) | session state changes, by new state |
#![cfg_attr(docsrs, feature(doc_cfg))]
// The lints of every target are in Cargo.toml's `[lints]`. These are the library's own: no
// unsafe code (the tool, a test and an example need a little), its public API documented, and
// `pub` only on what it exports (the tool and tests/common use `pub` inside themselves).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![doc(test(attr(deny(warnings, rust_2018_idioms), allow(dead_code, unused_variables))))]

pub mod docs;
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

//! [`LeaderSelector`]: leader election in Curator's LeaderSelector layout (the mutex's), running
//! a task while leader.

use std::future::Future;
use std::sync::Arc;

use backon::BackoffBuilder;

use super::{Leadership, Term, is_final, rejoin_backoff};
use crate::error::{Error, LossReason};
use crate::queue::Role;
use crate::recipe::Recipe;
use crate::session::Session;

/// Leader election that runs a task while leader: the task starts when this participant
/// becomes leader, is cancelled (dropped) the moment leadership is lost, and leadership is given
/// up when the task returns.
///
/// Participants queue in `<path>/_c_<uuid>-lock-<seq>` nodes holding their id — the layout of
/// Apache Curator's `LeaderSelector`, which is its `InterProcessMutex`; a [`Mutex`](crate::Mutex)
/// on the same path takes part in the same queue. With
/// [`auto_requeue`](LeaderSelector::auto_requeue), a participant queues again after each term,
/// so participants take turns in arrival order. See `recipes/leader.md`.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), zk_recipes::Error> {
/// use zk_recipes::{LeaderSelector, Session};
///
/// let session = Session::connect("127.0.0.1:2181").await?;
/// let selector = LeaderSelector::new(&session, "/election/shard-7", "host-a")?.auto_requeue();
/// // Runs until the session is closed; each term lasts until the task returns or is lost.
/// selector
///     .run(|term| async move {
///         println!("leading with token {}", term.token());
///         compact_shard(term.token()).await;
///     })
///     .await?;
/// # Ok(()) }
/// # async fn compact_shard(_: zk_recipes::FencingToken) {}
/// ```
#[derive(Debug, Clone)]
pub struct LeaderSelector {
    recipe: Recipe,
    id: Arc<str>,
    requeue: bool,
}

impl LeaderSelector {
    /// A selector on `path` for the participant `id` (stored in its node, UTF-8, as Curator
    /// does).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] if `path` is not an absolute, canonical znode path, is the root,
    /// or lies under `/zookeeper`.
    pub fn new(session: &Session, path: &str, id: &str) -> Result<Self, Error> {
        let mut recipe = Recipe::new(session, path)?;
        recipe.set_data(id.as_bytes());
        Ok(Self { recipe, id: id.into(), requeue: false })
    }

    /// Queues again after every term — ended by the task, lost, or cut short by a session
    /// expiry — so that [`run`](LeaderSelector::run) keeps taking turns until the session is
    /// closed.
    pub fn auto_requeue(mut self) -> Self {
        self.requeue = true;
        self
    }

    /// The selector's path.
    pub fn path(&self) -> &str {
        &self.recipe.path
    }

    /// This participant's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits to lead, once (whether or not [`auto_requeue`](LeaderSelector::auto_requeue) is
    /// set), and holds the term: [`Leadership::release`] steps down from it and reports whether
    /// it lasted until then. [`run`](LeaderSelector::run) is built on this. Should someone
    /// delete the node it waits with, it queues again with a new one.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`](crate::Mutex::lock), except that a waiting node deleted by someone
    /// else is replaced rather than reported.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`Mutex::lock`](crate::Mutex::lock); cancelling loses the place in the
    /// queue, and the node is deleted in the background.
    pub async fn lead(&self) -> Result<Leadership, Error> {
        loop {
            match self.recipe.wait(Role::Lock, None).await {
                // Someone deleted our waiting node: we never led, so queue again, at once.
                Err(Error::Lost { reason: LossReason::NodeDeleted, node }) => {
                    tracing::info!(%node, "our waiting node was deleted by someone else; queueing again");
                }
                Ok(holding) => return Ok(Leadership::of_node(holding, self.recipe.path.clone())),
                Err(err) => return Err(err),
            }
        }
    }

    /// Waits to lead, then runs `lead(term)` for the term; see the type's description. Without
    /// auto-requeue it returns after one term; with it, it runs term after term. Should someone
    /// delete the node it waits with, it queues again with a new one (it never leads with a
    /// node that is gone).
    ///
    /// # Errors
    ///
    /// - [`Error::Lost`] if the term was lost (the task was dropped), without auto-requeue;
    /// - [`Error::SessionClosed`] once the session is closed;
    /// - [`Error::NoAuth`], [`Error::AuthFailed`], [`Error::SequenceOverflow`]: the election
    ///   cannot go on;
    /// - without auto-requeue, also as [`Mutex::lock`](crate::Mutex::lock) (with it, expiries
    ///   and connection losses are waited out).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future drops the running task and gives leadership up (the
    /// node is deleted in the background).
    pub async fn run<F, Fut>(&self, mut lead: F) -> Result<(), Error>
    where
        F: FnMut(Term) -> Fut,
        Fut: Future<Output = ()>,
    {
        let backoff = rejoin_backoff();
        let mut delays = backoff.build();
        loop {
            let outcome = match self.lead().await {
                Ok(leadership) => {
                    delays = backoff.build();
                    let lost = leadership.lost();
                    let term = leadership.term().clone();
                    tokio::select! {
                        // A term lost before the task starts never runs it.
                        biased;
                        reason = lost => {
                            tracing::info!(node = leadership.node(), %reason, "leadership lost; the task is cancelled");
                            let node = leadership.node().to_owned();
                            // Delete the node before queueing again, not to queue behind it.
                            let _ = leadership.release().await;
                            Err(Error::Lost { node, reason })
                        }
                        () = lead(term) => leadership.release().await,
                    }
                }
                Err(err) => Err(err),
            };
            match outcome {
                Ok(()) if !self.requeue => return Ok(()),
                Err(err) if !self.requeue || is_final(&err) => return Err(err),
                Ok(()) => {}
                Err(err) => {
                    // The backoff never runs out (`without_max_times`).
                    let delay = delays.next().unwrap_or_default();
                    tracing::info!(path = %self.recipe.path, error = %err, ?delay, "queueing again");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

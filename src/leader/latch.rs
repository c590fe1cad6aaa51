//! [`LeaderLatch`]: leader election in Curator's LeaderLatch layout, as a long-running
//! candidacy that rejoins after losing its session.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Leadership, Term, is_final, rejoin_backoff};
use crate::error::{Error, LossReason};
use crate::queue::{self, Held, Holding, Role};
use crate::recipe::Recipe;
use crate::session::Session;
use crate::token::FencingToken;

/// A term lasting this long resets the rejoin backoff.
const STEADY_TERM: Duration = Duration::from_secs(5);

/// Leader election among participants that each keep a node in one directory: the lowest node
/// leads.
///
/// Participants create an ephemeral sequential node `<path>/_c_<uuid>-latch-<seq>` holding
/// their id — the layout of Apache Curator's `LeaderLatch`, so Rust and JVM processes can take
/// part in one election. Every other participant watches only the node just ahead of its own,
/// so a departure wakes one participant. Leadership is claimed only with a node the server
/// reported as owned by this session (the check whose absence caused Curator's double leaders,
/// CURATOR-696). See `recipes/leader.md`.
///
/// [`start`](LeaderLatch::start) joins the election and returns a [`Candidate`], which keeps
/// taking part — rejoining with a new node after its ZooKeeper session expires — until it is
/// closed or dropped.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), zk_recipes::Error> {
/// use zk_recipes::{LeaderLatch, Session};
///
/// let session = Session::connect("127.0.0.1:2181").await?;
/// let candidate = LeaderLatch::new(&session, "/election/billing", "host-a")?.start().await?;
/// loop {
///     let term = candidate.leadership().await?; // waits until this process leads
///     tokio::select! {
///         reason = term.lost() => eprintln!("no longer leader ({reason})"),
///         _ = lead(term.token()) => break,
///     }
/// }
/// candidate.close().await?;
/// # Ok(()) }
/// # async fn lead(_: zk_recipes::FencingToken) {}
/// ```
#[derive(Debug, Clone)]
pub struct LeaderLatch {
    recipe: Recipe,
    id: Arc<str>,
}

impl LeaderLatch {
    /// A latch on `path` for the participant `id` (stored in its node, UTF-8, as Curator does).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] if `path` is not an absolute, canonical znode path, is the root,
    /// or lies under `/zookeeper`.
    pub fn new(session: &Session, path: &str, id: &str) -> Result<Self, Error> {
        let mut recipe = Recipe::new(session, path)?;
        recipe.set_data(id.as_bytes());
        Ok(Self { recipe, id: id.into() })
    }

    /// The latch's path.
    pub fn path(&self) -> &str {
        &self.recipe.path
    }

    /// This participant's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Joins the election: returns once this participant's node is in the queue (it may already
    /// lead). The candidacy then runs in a background task until the [`Candidate`] is closed or
    /// dropped; from then on, expiries and connection losses are retried, not reported.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`](crate::Mutex::lock), for this first attempt to join: for example
    /// [`Error::Unreachable`] if no session can be established within the connect timeout,
    /// [`Error::NoAuth`] without permission.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call stops the candidacy and deletes its node in the background.
    pub async fn start(&self) -> Result<Candidate, Error> {
        let (state, mut standing) = watch::channel(Standing::Joining);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(campaign(self.recipe.clone(), state, stopped));
        let candidate = Candidate { latch: self.clone(), standing: standing.clone(), stop: Some(stop), task };
        let joined = standing.wait_for(|s| !matches!(s, Standing::Joining)).await;
        match joined.as_deref() {
            Ok(Standing::Ended(err)) => Err(err.clone()),
            Ok(_) => Ok(candidate),
            Err(_) => Err(Error::SessionClosed),
        }
    }

    /// The ids of the participants, in queue order: the leader first.
    ///
    /// # Errors
    ///
    /// [`Error::SessionExpired`], [`Error::SessionClosed`] or [`Error::Unreachable`] if no
    /// session is available; [`Error::ZooKeeper`] (or [`Error::NoAuth`]) if reading fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn participants(&self) -> Result<Vec<String>, Error> {
        let (client, _) = self.recipe.session.current().await?;
        let listed = queue::contenders(&client, &self.recipe.path).await?;
        Ok(listed.into_iter().map(|(_, id)| String::from_utf8_lossy(&id).into_owned()).collect())
    }
}

/// Where a candidacy stands, as its background task publishes it.
#[derive(Debug, Clone)]
enum Standing {
    /// Creating its node (after a start or a loss).
    Joining,
    /// In the queue, behind the leader.
    Following,
    Leading(Held),
    /// Stopped for good: closed, the session closed, or an error that retrying cannot fix.
    Ended(Error),
}

/// A participant in a [`LeaderLatch`] election, from [`LeaderLatch::start`] until
/// [`close`](Candidate::close) or drop.
///
/// Dropping it stops the candidacy too; its node is then deleted in the background.
#[must_use = "the candidacy ends as soon as the candidate is dropped"]
#[derive(Debug)]
pub struct Candidate {
    latch: LeaderLatch,
    standing: watch::Receiver<Standing>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
}

impl Candidate {
    /// This participant's id.
    pub fn id(&self) -> &str {
        self.latch.id()
    }

    /// Whether this participant leads now, provably: its term is not lost and its session was
    /// heard from within the session timeout.
    pub fn is_leader(&self) -> bool {
        self.term().is_some()
    }

    /// The current term, if this participant leads now.
    pub fn term(&self) -> Option<Term> {
        match &*self.standing.borrow() {
            Standing::Leading(held) if held.check_held().is_ok() => Some(Term::new(held.clone())),
            _ => None,
        }
    }

    /// The current term's fencing token, if this participant leads now. A later leader always
    /// has a larger one.
    pub fn token(&self) -> Option<FencingToken> {
        self.term().map(|term| term.token())
    }

    /// Waits until this participant leads, and returns the term.
    ///
    /// # Errors
    ///
    /// [`Error::SessionClosed`] if the session was closed; [`Error::NoAuth`],
    /// [`Error::AuthFailed`] or [`Error::SequenceOverflow`] if the candidacy cannot go on.
    /// Expiries and connection losses are not errors: the candidacy rejoins by itself.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    pub async fn leadership(&self) -> Result<Term, Error> {
        let mut standing = self.standing.clone();
        loop {
            // Decide on one snapshot, marked seen, so that no change slips between the look
            // and the wait.
            match &*standing.borrow_and_update() {
                Standing::Leading(held) if held.check_held().is_ok() => return Ok(Term::new(held.clone())),
                Standing::Ended(err) => return Err(err.clone()),
                _ => {}
            }
            if standing.changed().await.is_err() {
                return Err(Error::SessionClosed);
            }
        }
    }

    /// Waits until this participant leads, and holds that term: [`Leadership::release`] steps
    /// down from it, ending the candidacy, and reports whether the term lasted until then.
    ///
    /// # Errors
    ///
    /// As [`leadership`](Candidate::leadership).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is left behind: a dropped call drops the candidate, which
    /// stops the candidacy (its node is deleted in the background).
    pub async fn lead(self) -> Result<Leadership, Error> {
        let term = self.leadership().await?;
        let path = self.latch.recipe.path.clone();
        Ok(Leadership::of_candidacy(self, term, path))
    }

    /// Resolves when the current term ends or is in doubt — see [`Term::lost`] — and at once,
    /// with [`LossReason::NotLeader`], if this participant does not lead now.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    pub fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        let term = self.term();
        async move {
            match term {
                Some(term) => term.lost().await,
                None => LossReason::NotLeader,
            }
        }
    }

    /// The ids of the participants, in queue order: the leader first. See
    /// [`LeaderLatch::participants`].
    ///
    /// # Errors
    ///
    /// As [`LeaderLatch::participants`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn participants(&self) -> Result<Vec<String>, Error> {
        self.latch.participants().await
    }

    /// Leaves the election: a leader steps down at once and its node is deleted before this
    /// returns; a follower's node is deleted in the background.
    ///
    /// # Errors
    ///
    /// - [`Error::Lost`] if this participant leads when closed and the term being stepped down
    ///   from turns out lost (as [`Hold::release`](crate::Hold::release) reports). A term lost
    ///   earlier, after which the candidacy rejoined, is not reported here: to learn whether a
    ///   term lasted, hold it with [`lead`](Candidate::lead) and release the
    ///   [`Leadership`](crate::Leadership);
    /// - the error that had already ended the candidacy, if one did (see
    ///   [`leadership`](Candidate::leadership)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the candidacy stops either way; only the wait for the delete is cut short.
    pub async fn close(mut self) -> Result<(), Error> {
        self.stop.take();
        match (&mut self.task).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // The runtime is shutting down: nothing more to report.
            Err(_) => Ok(()),
        }
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        // Dropping `stop` tells the task to stop; it cleans up on its own.
        self.stop.take();
    }
}

/// The candidacy: join, wait to lead, lead until the term ends, and again — until stopped.
/// Until the first join succeeded, any error ends it (and `start` reports it); later, only
/// errors that retrying cannot fix.
async fn campaign(
    recipe: Recipe,
    state: watch::Sender<Standing>,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), Error> {
    let backoff = rejoin_backoff();
    let mut delays = backoff.build();
    let joined = AtomicBool::new(false);
    loop {
        state.send_replace(Standing::Joining);
        let queued = || {
            joined.store(true, Ordering::Relaxed);
            state.send_replace(Standing::Following);
        };
        let outcome = tokio::select! {
            biased;
            _ = &mut stop => return Ok(()),
            outcome = recipe.wait_reporting(Role::Latch, &queued) => outcome,
        };
        let delay = match outcome {
            Err(err) if is_final(&err) || !joined.load(Ordering::Relaxed) => {
                tracing::warn!(path = %recipe.path, error = %err, "leader latch stopped");
                state.send_replace(Standing::Ended(err.clone()));
                return Err(err);
            }
            Err(err) => {
                let delay = delays.next().unwrap_or_default();
                tracing::info!(path = %recipe.path, error = %err, ?delay, "rejoining the election");
                delay
            }
            Ok(holding) => {
                let started = Instant::now();
                if lead(&holding, &state, &mut stop).await {
                    return holding.release().await;
                }
                // Delete the old node before joining again, so that the new one does not queue
                // behind it (it would, if this session lives on).
                let _ = holding.release().await;
                // A term that lasted is no sign of trouble; one lost at once may be.
                if started.elapsed() >= STEADY_TERM {
                    delays = backoff.build();
                }
                delays.next().unwrap_or_default()
            }
        };
        // The backoff never runs out (`without_max_times`).
        tokio::select! {
            biased;
            _ = &mut stop => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Publishes the term and waits for its end. `true` if stopped, `false` if the term was lost.
async fn lead(holding: &Holding, state: &watch::Sender<Standing>, stop: &mut oneshot::Receiver<()>) -> bool {
    state.send_replace(Standing::Leading(holding.held().clone()));
    let stopped = tokio::select! {
        biased;
        _ = stop => true,
        reason = holding.lost() => {
            tracing::info!(node = holding.node(), %reason, "leadership lost; rejoining");
            false
        }
    };
    // Step down before anything else, so that `is_leader` turns false at once.
    state.send_replace(Standing::Joining);
    stopped
}

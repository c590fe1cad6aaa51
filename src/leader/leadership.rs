//! [`Leadership`]: one term of leadership, held — the leader's counterpart of a guard.

use std::future::Future;
use std::sync::Arc;

use super::{Candidate, Term};
use crate::error::{Error, LossReason};
use crate::hold::Hold;
use crate::hold::sealed::Sealed;
use crate::queue::{FencedWrite, Holding};
use crate::token::FencingToken;

/// One term of leadership, held by this process: from [`LeaderSelector::lead`] or
/// [`Candidate::lead`] until [`release`](Leadership::release) steps down from *this* term and
/// reports whether it was held to the end.
///
/// Where a [`Term`] only observes a term (and can be cloned freely), a `Leadership` is to
/// leadership what a [`MutexGuard`](crate::MutexGuard) is to a lock: dropping it steps down too,
/// as a best effort (the node is deleted in the background).
///
/// [`LeaderSelector::lead`]: crate::LeaderSelector::lead
#[must_use = "leadership ends as soon as it is dropped"]
#[clippy::has_significant_drop]
#[derive(Debug)]
pub struct Leadership {
    term: Term,
    path: Arc<str>,
    step_down: StepDown,
}

/// How a [`Leadership`] steps down.
#[derive(Debug)]
enum StepDown {
    /// A selector's term: the leader's node is owned here; deleting it steps down.
    Node(Holding),
    /// A latch's term: the candidacy's task owns the node; closing the candidacy steps down.
    Candidacy(Candidate),
}

impl Leadership {
    /// The leadership of a selector's term, owning its node.
    pub(crate) fn of_node(holding: Holding, path: Arc<str>) -> Self {
        Self { term: Term::new(holding.held().clone()), path, step_down: StepDown::Node(holding) }
    }

    /// The leadership of `candidate`'s current `term`.
    pub(crate) fn of_candidacy(candidate: Candidate, term: Term, path: Arc<str>) -> Self {
        Self { term, path, step_down: StepDown::Candidacy(candidate) }
    }

    /// The term held, to hand to tasks that lead (it does not prolong leadership).
    pub fn term(&self) -> &Term {
        &self.term
    }

    /// The term's fencing token: larger than that of every earlier leader on the path.
    pub fn token(&self) -> FencingToken {
        self.term.token()
    }

    /// The full path of the leader's node.
    pub fn node(&self) -> &str {
        self.term.node()
    }

    /// The election's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Resolves when the term is lost or can no longer be proven to last, with the reason;
    /// [`Hold::lost`] gives the conditions.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    pub fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        self.term.lost()
    }

    /// Resolves as soon as the connection to ZooKeeper drops (or the session ends); see
    /// [`Hold::suspended`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    pub fn suspended(&self) -> impl Future<Output = ()> + Send + 'static {
        self.term.suspended()
    }

    /// A ZooKeeper multi-op that commits only while the leader's node exists. See
    /// [`FencedWrite`].
    pub fn fenced_write(&self) -> FencedWrite<'_> {
        self.term.fenced_write()
    }

    /// Steps down from this term by deleting the leader's node, retrying connection losses;
    /// `Ok` means the term lasted until then. A latch's candidacy ends with it (as
    /// [`Candidate::close`]).
    ///
    /// # Errors
    ///
    /// As [`Hold::release`]: [`Error::Lost`] if this term had been lost (or cannot be proven to
    /// have lasted) — also when a latch's candidacy led again later; [`Error::ZooKeeper`] if the
    /// delete failed otherwise. For a latch, also the error that had already ended the
    /// candidacy, if one did.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, the node is deleted in the background.
    pub async fn release(self) -> Result<(), Error> {
        match self.step_down {
            StepDown::Node(holding) => holding.release().await,
            StepDown::Candidacy(candidate) => {
                let closed = candidate.close().await;
                // After a loss of this term the candidacy rejoins, and `close` reports how its
                // last term (or its following) ended. The loss of this term was recorded when
                // it was found, and is what counts here. (Only the record: the liveness proof
                // lapsing after the step-down is no loss of the term.)
                match self.term.held().recorded_loss() {
                    Some(reason) if reason != LossReason::Released => {
                        Err(Error::Lost { node: self.term.node().to_owned(), reason })
                    }
                    _ => closed,
                }
            }
        }
    }
}

/// Forwards to the inherent methods of the same names; the trait documents them in full.
impl Hold for Leadership {
    fn token(&self) -> FencingToken {
        Leadership::token(self)
    }

    fn node(&self) -> &str {
        Leadership::node(self)
    }

    fn path(&self) -> &str {
        Leadership::path(self)
    }

    fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        Leadership::lost(self)
    }

    fn suspended(&self) -> impl Future<Output = ()> + Send + 'static {
        Leadership::suspended(self)
    }

    fn fenced_write(&self) -> FencedWrite<'_> {
        Leadership::fenced_write(self)
    }

    fn release(self) -> impl Future<Output = Result<(), Error>> + Send {
        Leadership::release(self)
    }
}

impl Sealed for Leadership {}

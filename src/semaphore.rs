//! [`Semaphore`]: a fair distributed counting semaphore with fencing tokens, in Curator's
//! InterProcessSemaphoreV2 layout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{join_all, select_all};
use tokio::time::Instant;

use crate::error::{Error, LossReason};
use crate::hold::Hold;
use crate::hold::sealed::Sealed;
use crate::queue::{self, FencedWrite, Holding, Patience, Role, Spec};
use crate::recipe::Recipe;
use crate::session::Session;
use crate::token::FencingToken;

/// The most permits a semaphore may have. Every lease is a child of one directory, and the
/// holder of the internal mutex lists that directory while it waits: with up to twice this
/// many children (holders plus the leases being acquired), the listing stays under half of
/// ZooKeeper's default 1 MB reply limit (`jute.maxbuffer`).
pub const MAX_PERMITS: u32 = 4096;

/// A fair distributed counting semaphore: at most `permits` leases at a time, granted in
/// arrival order, each with a [`FencingToken`].
///
/// The layout and algorithm are those of Apache Curator's `InterProcessSemaphoreV2`, so Rust
/// and JVM processes can share a semaphore:
///
/// - `<path>/locks/_c_<uuid>-lock-<seq>`: an internal fair [mutex](crate::Mutex) that orders
///   acquisitions;
/// - `<path>/leases/_c_<uuid>-lease-<seq>`: one ephemeral node per lease held.
///
/// To acquire, a contender takes the internal mutex, creates its lease node, waits while the
/// `leases` directory holds more children than permits, then releases the internal mutex.
/// Only the internal mutex's holder watches the lease set, so a release wakes one waiter. See
/// `recipes/semaphore.md`.
///
/// The number of permits is not stored in ZooKeeper: every participant must pass the same
/// number (as with Curator).
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), zk_recipes::Error> {
/// use zk_recipes::{Semaphore, Session};
///
/// let session = Session::connect("127.0.0.1:2181").await?;
/// // At most three workers call the rate-limited partner API at once.
/// let semaphore = Semaphore::new(&session, "/semaphores/partner-api", 3)?;
/// let lease = semaphore.acquire().await?;
/// tokio::select! {
///     reason = lease.lost() => eprintln!("lease lost ({reason}); stopping"),
///     _ = call_partner_api() => {}
/// }
/// lease.release().await?;
/// # Ok(()) }
/// # async fn call_partner_api() {}
/// ```
#[derive(Debug, Clone)]
pub struct Semaphore {
    recipe: Recipe,
    locks: String,
    leases: String,
    permits: u32,
}

impl Semaphore {
    /// A semaphore on `path` with `permits` permits (its directories are created on first use,
    /// as CONTAINER nodes, like Curator does).
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidPath`] if `path` is not an absolute, canonical znode path, is the
    ///   root, or lies under `/zookeeper`;
    /// - [`Error::InvalidPermits`] if `permits` is 0 or above [`MAX_PERMITS`].
    pub fn new(session: &Session, path: &str, permits: u32) -> Result<Self, Error> {
        let recipe = Recipe::new(session, path)?;
        if !(1..=MAX_PERMITS).contains(&permits) {
            return Err(Error::InvalidPermits { requested: permits, limit: MAX_PERMITS });
        }
        Ok(Self { recipe, locks: format!("{path}/locks"), leases: format!("{path}/leases"), permits })
    }

    /// Sets the data stored in this semaphore's nodes (default: empty), for example a host name
    /// and process id, so that operators can see who holds or waits.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.recipe.set_data(data);
        self
    }

    /// The semaphore's path.
    pub fn path(&self) -> &str {
        &self.recipe.path
    }

    /// The number of permits.
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// Waits for one lease, in arrival order.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the nodes created (or possibly created) — the internal mutex's and the
    /// lease's — are deleted in the session's background task, retried until the delete
    /// succeeds or the session ends.
    pub async fn acquire(&self) -> Result<Lease, Error> {
        self.acquire_many(1).await
    }

    /// Waits for `count` leases at once, in arrival order: they are taken together while
    /// holding the internal mutex, so two multi-lease acquisitions cannot each end up holding
    /// part of what they need and wait for each other. (Curator's `acquire(n)` takes its leases
    /// one by one, releasing the mutex in between: mixed with it, that deadlock is possible
    /// again; see `recipes/semaphore.md`.) A process that holds leases and asks for more than
    /// remain free waits for itself, and everyone else waits behind it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPermits`] if `count` is 0 or more than the semaphore's permits;
    /// otherwise as [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`acquire`](Semaphore::acquire); leases taken so far are released.
    pub async fn acquire_many(&self, count: u32) -> Result<Lease, Error> {
        let lease = self.acquire_with(count, Patience::Forever).await?;
        Ok(lease.expect("waiting without a deadline ends only holding"))
    }

    /// Waits for one lease for at most `timeout` (which covers waiting for the internal mutex
    /// and for a free permit; `Duration::MAX` waits forever).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] with the semaphore's path when the time is up. The node being waited
    /// with has been deleted by then (unless the connection is down or the delete takes over a
    /// second; the call then returns anyway, at most a second late); the attempt's other nodes
    /// are deleted in the background. Otherwise as [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`acquire`](Semaphore::acquire).
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Lease, Error> {
        self.acquire_many_timeout(1, timeout).await
    }

    /// Waits for `count` leases at once for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`acquire_many`](Semaphore::acquire_many) and
    /// [`acquire_timeout`](Semaphore::acquire_timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`acquire_many`](Semaphore::acquire_many).
    pub async fn acquire_many_timeout(&self, count: u32, timeout: Duration) -> Result<Lease, Error> {
        let lease = self.acquire_with(count, Patience::For(timeout)).await?;
        Ok(lease.expect("a deadline ends in a timeout error, not in nothing"))
    }

    /// Takes a lease only if one is free and no other acquisition is under way at this moment
    /// (the internal mutex is free; a node of an abandoned attempt that still awaits its
    /// background delete counts as under way). To wait behind brief acquisitions of others,
    /// use [`acquire_timeout`](Semaphore::acquire_timeout) with a short timeout.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: as [`acquire`](Semaphore::acquire).
    pub async fn try_acquire(&self) -> Result<Option<Lease>, Error> {
        self.acquire_with(1, Patience::None).await
    }

    async fn acquire_with(&self, count: u32, patience: Patience) -> Result<Option<Lease>, Error> {
        if !(1..=self.permits).contains(&count) {
            return Err(Error::InvalidPermits { requested: count, limit: self.permits });
        }
        // Huge timeouts mean no deadline (as `tokio::time::timeout` treats them).
        let deadline = match patience {
            Patience::For(allowed) => Instant::now().checked_add(allowed).map(|at| (at, allowed)),
            Patience::Forever | Patience::None => None,
        };
        // Each phase may use what the earlier ones left of the caller's time.
        let left = || match deadline {
            Some((at, _)) => Patience::For(at.saturating_duration_since(Instant::now())),
            None if matches!(patience, Patience::None) => Patience::None,
            None => Patience::Forever,
        };
        let timed_out = |err| match (err, deadline) {
            (Error::Timeout { .. }, Some((_, after))) => Error::Timeout { path: self.recipe.path.to_string(), after },
            (err, _) => err,
        };
        let session = match deadline {
            Some((at, after)) => tokio::time::timeout_at(at, self.recipe.session.current())
                .await
                .map_err(|_| Error::Timeout { path: self.recipe.path.to_string(), after })??,
            None => self.recipe.session.current().await?,
        };
        // The gate and every lease must belong to one ZooKeeper session: a lease created in a
        // later session would be counted without holding the gate.
        let gate = Spec {
            dir: &self.locks,
            role: Role::SemaphoreGate,
            data: &self.recipe.data,
            on_queued: None,
            requires: None,
            watch_holding: false,
        };
        let Some(gate) =
            queue::acquire_in(&self.recipe.session, session.clone(), &gate, left()).await.map_err(timed_out)?
        else {
            return Ok(None);
        };
        let lease = Spec {
            dir: &self.leases,
            role: Role::Lease { permits: self.permits },
            data: &self.recipe.data,
            on_queued: None,
            // A lease waits for a free permit only under the gate: should someone delete the
            // gate node, the next contender takes the gate and waits beside this one, and two
            // lease nodes waiting for each other's permit would stall the semaphore for good.
            requires: Some(gate.node()),
            watch_holding: true,
        };
        let mut holdings = Vec::with_capacity(count as usize);
        for _ in 0..count {
            // On an early return, the leases taken so far and the gate are dropped: deleted.
            match queue::acquire_in(&self.recipe.session, session.clone(), &lease, left()).await.map_err(timed_out)? {
                Some(holding) => holdings.push(holding),
                None => return Ok(None),
            }
        }
        // Let the next contender in; the delete goes out without delaying this caller.
        gate.release_in_background();
        Ok(Some(Lease { holdings, path: self.recipe.path.clone() }))
    }
}

/// Proof of holding leases of a [`Semaphore`]; releases them when dropped.
///
/// Release with [`release`](Lease::release) to learn whether the leases were held until the
/// end. Dropping the lease releases it too, as a best effort: the session's background task
/// deletes the nodes; should that fail, they go when the session ends.
#[must_use = "the lease is released as soon as it is dropped"]
#[clippy::has_significant_drop]
#[derive(Debug)]
pub struct Lease {
    /// One per permit held, in the order taken; never empty.
    holdings: Vec<Holding>,
    path: Arc<str>,
}

impl Lease {
    /// The lease's fencing token (that of its first lease node): larger than the token of
    /// every lease granted before it on this semaphore. Leases are not exclusive: up to
    /// `permits` holders hold at the same time.
    pub fn token(&self) -> FencingToken {
        self.holdings[0].token()
    }

    /// The number of permits this lease holds.
    pub fn count(&self) -> u32 {
        self.holdings.len() as u32
    }

    /// The full path of the lease's first node (its token's); [`nodes`](Lease::nodes) lists
    /// them all.
    pub fn node(&self) -> &str {
        self.holdings[0].node()
    }

    /// The full paths of the lease nodes, e.g. `/sem/leases/_c_…-lease-0000000007`, one per
    /// permit.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.holdings.iter().map(Holding::node)
    }

    /// The semaphore's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Resolves when a permit of this lease is lost or can no longer be proven, with the
    /// reason; [`Hold::lost`] gives the conditions.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches. While pending, it keeps a watch on each lease node.
    pub fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        let watches = select_all(self.holdings.iter().map(|holding| Box::pin(holding.lost())));
        async move { watches.await.0 }
    }

    /// Resolves as soon as the connection to ZooKeeper drops (or the session ends): the lease
    /// is then in doubt until the connection returns. See [`Hold::suspended`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    pub fn suspended(&self) -> impl Future<Output = ()> + Send + 'static {
        // All lease nodes belong to the same ZooKeeper session.
        self.holdings[0].suspended()
    }

    /// A ZooKeeper multi-op that commits only while every node of this lease exists (one check
    /// per permit). See [`FencedWrite`].
    pub fn fenced_write(&self) -> FencedWrite<'_> {
        FencedWrite::of_all(self.holdings.iter().map(Holding::held).collect())
    }

    /// Releases every permit of the lease by deleting its nodes, retrying connection losses.
    ///
    /// # Errors
    ///
    /// As [`Hold::release`]: [`Error::Lost`] if a permit had been lost (or cannot be proven to
    /// have lasted), [`Error::ZooKeeper`] if a delete failed otherwise — for the first node
    /// that fails; all nodes are released regardless.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, the nodes are deleted in the background.
    pub async fn release(self) -> Result<(), Error> {
        join_all(self.holdings.into_iter().map(Holding::release)).await.into_iter().collect()
    }
}

/// Forwards to the inherent methods of the same names; the trait documents them in full.
impl Hold for Lease {
    fn token(&self) -> FencingToken {
        Lease::token(self)
    }

    fn node(&self) -> &str {
        Lease::node(self)
    }

    fn path(&self) -> &str {
        Lease::path(self)
    }

    fn lost(&self) -> impl Future<Output = LossReason> + Send + 'static {
        Lease::lost(self)
    }

    fn suspended(&self) -> impl Future<Output = ()> + Send + 'static {
        Lease::suspended(self)
    }

    fn fenced_write(&self) -> FencedWrite<'_> {
        Lease::fenced_write(self)
    }

    fn release(self) -> impl Future<Output = Result<(), Error>> + Send {
        Lease::release(self)
    }
}

impl Sealed for Lease {}

//! [`Session`]: one ZooKeeper session shared by any number of recipes, its states, the proof
//! that it is still alive, and a fresh ZooKeeper session after expiry.

mod clock;
mod driver;
#[cfg(feature = "gssapi")]
mod gssapi;
mod liveness;
mod probe;
mod servers;
#[cfg(feature = "tls")]
mod tls;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use zookeeper_client as zk;

pub(crate) use self::clock::Moment;
use self::driver::{ConnectConfig, Driver, SaslCredentials};
#[cfg(feature = "gssapi")]
pub use self::gssapi::GssapiConfig;
use self::liveness::Liveness;
#[cfg(feature = "tls")]
pub use self::tls::TlsConfig;
use crate::error::{Error, LossReason};

const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// ZooKeeper's default `jute.maxbuffer`: the largest request a server accepts, in bytes.
const DEFAULT_JUTE_MAX_BUFFER: usize = 0xfffff;

/// The state of a [`Session`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Connected to a server; the ZooKeeper session is alive.
    Connected,
    /// The connection dropped. The ZooKeeper session may still be alive, and the client is
    /// reconnecting; holders should pause work that needs the lock until `Connected` again,
    /// and must stop when their guard's `lost()` resolves.
    Suspended,
    /// The ZooKeeper session expired: every node it owned is gone. The `Session` is
    /// establishing a new ZooKeeper session, with backoff; it becomes `Connected` again then.
    Lost,
    /// The session was closed ([`Session::close`], every handle dropped, or credentials
    /// rejected). Final.
    Closed,
}

impl SessionState {
    /// The state's name as its `Debug` prints it: the `state` label of the metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SessionState::Connected => "Connected",
            SessionState::Suspended => "Suspended",
            SessionState::Lost => "Lost",
            SessionState::Closed => "Closed",
        }
    }
}

/// Work for the session's task, given the client of the ZooKeeper session it belongs to.
pub(crate) type Job = Box<dyn FnOnce(zk::Client) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A [`Job`] and the generation of the ZooKeeper session it must run in.
pub(crate) struct Background {
    generation: u64,
    job: Job,
}

/// What the driver publishes on every state change, and when the liveness proof lapsed.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub(crate) state: SessionState,
    /// Increases with every new ZooKeeper session; what a node was created under.
    pub(crate) generation: u64,
    pub(crate) client: Option<zk::Client>,
    /// Counts the times the liveness proof was found run out (checked on every heartbeat
    /// tick), so that waiters whose own timers stopped with a suspended machine wake up.
    pub(crate) lapses: u64,
}

/// Why the ZooKeeper session of `generation` is no longer usable, given the current status.
pub(crate) fn end_of(status: &Status, generation: u64) -> Option<LossReason> {
    match status.state {
        SessionState::Closed => Some(LossReason::SessionClosed),
        SessionState::Lost => Some(LossReason::SessionExpired),
        _ if status.generation != generation => Some(LossReason::SessionExpired),
        SessionState::Connected | SessionState::Suspended => None,
    }
}

/// The latest moment until which the server provably keeps the session of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proof {
    pub(crate) generation: u64,
    pub(crate) until: Moment,
}

/// State shared by the handles and the driver task.
#[derive(Debug)]
pub(crate) struct Shared {
    config: ConnectConfig,
    status: watch::Sender<Status>,
    /// The evidence of the current ZooKeeper session, and its generation.
    liveness: StdMutex<(u64, Liveness)>,
    /// What `liveness` proves, for those who wait for the proof to grow.
    proof: watch::Sender<Proof>,
}

impl Shared {
    fn new(config: ConnectConfig, status: Status, timeout: Duration, created: Moment) -> Self {
        let liveness = Liveness::new(timeout, config.liveness_margin, created);
        let proof = Proof { generation: status.generation, until: liveness.until() };
        let (status, _) = watch::channel(status);
        let (proof_tx, _) = watch::channel(proof);
        Self { config, status, liveness: StdMutex::new((proof.generation, liveness)), proof: proof_tx }
    }

    fn publish(&self, state: SessionState, generation: u64, client: Option<zk::Client>) {
        let id = client.as_ref().map(|c| c.session_id());
        tracing::info!(servers = %self.config.servers, ?state, generation, session_id = ?id, "session state");
        crate::metrics::session_state(state.name());
        self.status.send_modify(|status| {
            status.state = state;
            status.generation = generation;
            status.client = client;
        });
    }

    /// Wakes everyone watching the status if the proof of `generation` has run out since
    /// `announced`; returns the deadline announced.
    fn announce_lapse(&self, generation: u64, announced: Option<Moment>) -> Option<Moment> {
        let proof = *self.proof.borrow();
        if proof.generation == generation && proof.until.has_passed() && announced != Some(proof.until) {
            tracing::warn!(generation, "no proof from ZooKeeper that the session lives: the last one ran out");
            self.status.send_modify(|status| status.lapses += 1);
            return Some(proof.until);
        }
        announced
    }

    /// A new ZooKeeper session, of `generation`, created by the server no earlier than `created`.
    fn begin(&self, generation: u64, timeout: Duration, created: Moment) {
        let liveness = Liveness::new(timeout, self.config.liveness_margin, created);
        let until = liveness.until();
        *self.liveness.lock().unwrap_or_else(|e| e.into_inner()) = (generation, liveness);
        self.proof.send_replace(Proof { generation, until });
    }

    /// The connection of `generation`'s session dropped (`reconnected`: it is back, accepted by
    /// the ensemble); see `liveness.rs`.
    fn connection(&self, generation: u64, reconnected: bool) {
        let mut liveness = self.liveness.lock().unwrap_or_else(|e| e.into_inner());
        if liveness.0 != generation {
            return;
        }
        if !reconnected {
            liveness.1.dropped();
        } else if let Some(until) = liveness.1.reconnected() {
            self.proof.send_replace(Proof { generation, until });
        }
    }

    /// Records evidence of `generation`'s session: a request sent at `sent` was just answered;
    /// `synced` if it was a `sync`, which only the leader can answer.
    fn answered(&self, generation: u64, sent: Moment, synced: bool) {
        let answered = Moment::now();
        let mut liveness = self.liveness.lock().unwrap_or_else(|e| e.into_inner());
        if liveness.0 != generation {
            return;
        }
        if !synced {
            liveness.1.touched(sent, answered);
        } else if let Some(until) = liveness.1.synced(sent, answered) {
            // Published under the lock, so that proofs are published in the order they grew.
            self.proof.send_replace(Proof { generation, until });
        }
    }
}

/// One ZooKeeper session, shared by any number of recipes (cheap to clone).
///
/// A `Session` wraps a [`zookeeper_client::Client`] and adds what coordination recipes need:
///
/// - **States** ([`SessionState`]): connected, suspended (connection dropped, the session may
///   live), lost (expired), closed — see [`states`](Session::states).
/// - **A proof of liveness.** The session sends a `sync` every 1/8 of the session timeout. A
///   follower forwards it to the ZooKeeper leader, the member that expires sessions, and answers
///   only once the leader processed it; so the answers prove until when the leader keeps the
///   session, even when the member the session is connected to is cut off from the leader.
///   Guards use this bound to report a possible loss *before* the server can act on it, even
///   while the connection is silent. See `recipes/mutex.md`, "Knowing when the lock is lost",
///   for the rule, its assumptions and what it costs the leader.
/// - **A fresh ZooKeeper session after expiry**, established with exponential backoff. What was
///   held under the old session is reported lost; new acquisitions use the new session.
/// - **Background cleanup**: contender nodes of dropped guards and cancelled acquisitions are
///   deleted by a task of the session, retried until the delete succeeds or the session ends.
///
/// Dropping the last handle (and every guard made from it) closes the ZooKeeper session, which
/// deletes every ephemeral node it owns.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), zk_recipes::Error> {
/// use std::time::Duration;
/// use zk_recipes::Session;
///
/// let session = Session::builder()
///     .session_timeout(Duration::from_secs(10))
///     .connect_timeout(Duration::from_secs(5))
///     .connect("zk1:2181,zk2:2181,zk3:2181")
///     .await?;
/// println!("session {:?} is {:?}", session.id(), session.state());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Background>,
    /// Dropped with the last handle, which tells the driver to close the session.
    closer: watch::Sender<bool>,
    driver: StdMutex<Option<tokio::task::JoinHandle<()>>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.inner.shared.status.borrow();
        f.debug_struct("Session")
            .field("servers", &self.inner.shared.config.servers)
            .field("state", &status.state)
            .field("id", &status.client.as_ref().map(|c| c.session_id()))
            .finish()
    }
}

impl Session {
    /// Connects with default options: 10 s session timeout, 10 s connect timeout, no
    /// credentials. See [`builder`](Session::builder) for more.
    ///
    /// # Errors
    ///
    /// As [`SessionBuilder::connect`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future abandons the attempt; a ZooKeeper session the server
    /// may already have created is never used and expires on its own.
    pub async fn connect(servers: &str) -> Result<Self, Error> {
        Self::builder().connect(servers).await
    }

    /// Starts building a session with non-default options.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.inner.shared.status.borrow().state
    }

    /// The current ZooKeeper session id, if connected or suspended.
    pub fn id(&self) -> Option<zk::SessionId> {
        self.inner.shared.status.borrow().client.as_ref().map(|c| c.session_id())
    }

    /// The negotiated session timeout of the current ZooKeeper session.
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.shared.status.borrow().client.as_ref().map(|c| c.session_timeout())
    }

    /// A receiver of state changes.
    ///
    /// ```no_run
    /// # async fn example(session: zk_recipes::Session) {
    /// use zk_recipes::SessionState;
    ///
    /// let mut states = session.states();
    /// while states.changed().await != SessionState::Closed {
    ///     println!("session is now {:?}", states.current());
    /// }
    /// # }
    /// ```
    pub fn states(&self) -> SessionStates {
        let receiver = self.inner.shared.status.subscribe();
        let seen = {
            let status = receiver.borrow();
            (status.state, status.generation)
        };
        SessionStates { receiver, seen }
    }

    /// The underlying `zookeeper-client` client of the current ZooKeeper session, for requests
    /// of your own (it is cheap to clone). Waits up to the connect timeout while a new session
    /// is being established after expiry.
    ///
    /// ZooKeeper closes the session only when the last clone of its client is dropped: a clone
    /// you keep delays [`close`](Session::close) until you drop it.
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`] if no session is established within the connect timeout;
    /// [`Error::SessionClosed`] after [`close`](Session::close).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn client(&self) -> Result<zk::Client, Error> {
        self.current().await.map(|(client, _)| client)
    }

    /// Closes the ZooKeeper session: the server deletes every ephemeral node it owns, so every
    /// lock held through it is released, every guard's `lost()` resolves, and waiting
    /// acquisitions fail with [`Error::SessionClosed`]. Affects all clones of this handle.
    /// Returns once the server confirmed, or after the connect timeout (when a client clone
    /// taken with [`client`](Session::client) is still alive).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the close proceeds in the background if the future is dropped.
    pub async fn close(self) {
        self.inner.closer.send_replace(true);
        let driver = self.inner.driver.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(driver) = driver {
            let bound = self.inner.shared.config.connect_timeout.saturating_mul(2);
            let _ = tokio::time::timeout(bound, driver).await;
        }
    }

    /// The client and generation to start a new operation with.
    pub(crate) async fn current(&self) -> Result<(zk::Client, u64), Error> {
        let shared = &self.inner.shared;
        let mut status = shared.status.subscribe();
        let wait = status.wait_for(|s| s.client.is_some() || s.state == SessionState::Closed);
        match tokio::time::timeout(shared.config.connect_timeout, wait).await {
            Ok(Ok(status)) => match &status.client {
                Some(client) => Ok((client.clone(), status.generation)),
                None => Err(Error::SessionClosed),
            },
            // The driver only stops after publishing `Closed`.
            Ok(Err(_)) => Err(Error::SessionClosed),
            Err(_) => Err(self.unreachable()),
        }
    }

    /// How long establishing a session, or reaching the server at all, may take.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.inner.shared.config.connect_timeout
    }

    /// The error for a server that could not be reached within the connect timeout.
    pub(crate) fn unreachable(&self) -> Error {
        let config = &self.inner.shared.config;
        Error::Unreachable { servers: config.servers.clone(), timeout: config.connect_timeout }
    }

    /// The most node data a create of a `marker` node in `dir` can carry within the server's
    /// `jute.maxbuffer`, or `None` if not even the request without data fits.
    pub(crate) fn data_limit(&self, dir: &str, marker: &str) -> Option<usize> {
        let config = &self.inner.shared.config;
        // What the server counts against jute.maxbuffer: the request header (xid, type), the
        // path (with a chroot, protected prefix `_c_<uuid>-` and marker), the data and the ACL
        // vector, each with a 4-byte length, and the flags.
        let chroot = servers::chroot(&config.servers).len();
        let path = chroot + dir.len() + 1 + "_c_".len() + 36 + 1 + marker.len();
        let acls: usize = config.acls.iter().map(|acl| 4 + 4 + acl.scheme().len() + 4 + acl.id().len()).sum();
        let fixed = 8 + (4 + path) + 4 + (4 + acls) + 4;
        config.jute_max_buffer.checked_sub(fixed)
    }

    /// The client of `generation`, if that ZooKeeper session is still the current one.
    pub(crate) fn client_of(&self, generation: u64) -> Option<zk::Client> {
        let status = self.inner.shared.status.borrow();
        (status.generation == generation).then(|| status.client.clone()).flatten()
    }

    pub(crate) fn status(&self) -> watch::Receiver<Status> {
        self.inner.shared.status.subscribe()
    }

    /// Why the ZooKeeper session of `generation` is no longer usable, if it is not.
    pub(crate) fn ended(&self, generation: u64) -> Option<LossReason> {
        end_of(&self.inner.shared.status.borrow(), generation)
    }

    /// Resolves when the ZooKeeper session of `generation` ends, with the reason.
    pub(crate) async fn until_ended(&self, generation: u64) -> LossReason {
        let mut status = self.status();
        match status.wait_for(|s| end_of(s, generation).is_some()).await {
            Ok(status) => end_of(&status, generation).unwrap_or(LossReason::SessionClosed),
            // The driver is gone only after the session closed.
            Err(_) => LossReason::SessionClosed,
        }
    }

    /// Until when the server provably keeps the ZooKeeper session of `generation`;
    /// `None` once a newer session replaced it.
    pub(crate) fn proven_until(&self, generation: u64) -> Option<Moment> {
        let proof = *self.inner.shared.proof.borrow();
        (proof.generation == generation).then_some(proof.until)
    }

    /// Waits until the session of `generation` is proven to live on from now, and returns why
    /// not if it ends first. After a silence the proof can have run out while the session lived
    /// on; the next confirmed answers renew it.
    pub(crate) async fn proven(&self, generation: u64) -> Result<(), LossReason> {
        let mut proof = self.inner.shared.proof.subscribe();
        loop {
            if let Some(reason) = self.ended(generation) {
                return Err(reason);
            }
            let current = *proof.borrow_and_update();
            if current.generation != generation {
                return Err(LossReason::SessionExpired);
            }
            if !current.until.has_passed() {
                return Ok(());
            }
            tokio::select! {
                changed = proof.changed() => if changed.is_err() { return Err(LossReason::SessionClosed) },
                reason = self.until_ended(generation) => return Err(reason),
            }
        }
    }

    /// Records that a request of `generation`'s session, sent at `sent`, was answered by the
    /// server: evidence for the liveness proof (see `liveness.rs`).
    pub(crate) fn answered(&self, generation: u64, sent: Moment) {
        self.inner.shared.answered(generation, sent, false);
    }

    /// Runs `job` on the session's task if the ZooKeeper session of `generation` is still
    /// the current one; never blocks and never panics, so `Drop` impls can use it.
    pub(crate) fn in_background(&self, generation: u64, job: Job) {
        // If the driver is gone, so is the ZooKeeper session, and with it its nodes.
        let _ = self.inner.jobs.send(Background { generation, job });
    }

    /// The ACLs for nodes the recipes create.
    pub(crate) fn acls(&self) -> zk::Acls<'_> {
        self.inner.shared.config.acls()
    }
}

/// Builds a [`Session`] with non-default options.
///
/// ```no_run
/// # async fn example() -> Result<(), zk_recipes::Error> {
/// use std::time::Duration;
/// use zk_recipes::Session;
///
/// let session = Session::builder()
///     .session_timeout(Duration::from_secs(6))
///     .digest("payments", "s3cret")
///     .connect("127.0.0.1:2181")
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `connect` is awaited"]
#[derive(Clone)]
pub struct SessionBuilder {
    session_timeout: Duration,
    connect_timeout: Duration,
    liveness_margin: Duration,
    jute_max_buffer: usize,
    digest: Option<(String, String)>,
    acls: Option<Vec<zk::Acl>>,
    #[cfg(feature = "tls")]
    tls: Option<TlsConfig>,
    sasl: Option<SaslCredentials>,
    #[cfg(feature = "gssapi")]
    gssapi: Option<GssapiConfig>,
}

impl Default for SessionBuilder {
    fn default() -> Self {
        Self {
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            liveness_margin: Duration::ZERO,
            jute_max_buffer: DEFAULT_JUTE_MAX_BUFFER,
            digest: None,
            acls: None,
            #[cfg(feature = "tls")]
            tls: None,
            sasl: None,
            #[cfg(feature = "gssapi")]
            gssapi: None,
        }
    }
}

impl fmt::Debug for SessionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("SessionBuilder");
        f.field("session_timeout", &self.session_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("liveness_margin", &self.liveness_margin)
            .field("jute_max_buffer", &self.jute_max_buffer)
            .field("digest_user", &self.digest.as_ref().map(|(user, _)| user))
            .field("acls", &self.acls);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls);
        #[cfg(feature = "gssapi")]
        f.field("gssapi", &self.gssapi);
        f.field("sasl_user", &self.sasl.as_ref().map(|sasl| &sasl.user)).finish()
    }
}

impl SessionBuilder {
    /// The session timeout to ask the server for (default 10 s). The server clamps it to
    /// between 2 and 20 times its `tickTime`. A shorter timeout detects a dead holder sooner
    /// but makes a holder lose its lock after shorter pauses. [`connect`](SessionBuilder::connect)
    /// rejects zero and anything beyond ZooKeeper's limit (`i32::MAX` milliseconds).
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How long [`connect`](SessionBuilder::connect) (and waiting for a new session after
    /// expiry) may take before failing with [`Error::Unreachable`] (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Digest credentials (`user:password`) to authenticate the session with.
    pub fn digest(mut self, user: &str, password: &str) -> Self {
        self.digest = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Connects with TLS (feature `tls`): every server of the connect string is reached with
    /// TLS, except those marked `tcp://` (`"zk1:2281,zk2:2281,tcp://zk3:2181"`). The files of
    /// `config` are read at [`connect`](SessionBuilder::connect) and again whenever they change,
    /// for the next connection; see [`TlsConfig`].
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// SASL DIGEST-MD5 credentials to authenticate the session with (feature `sasl`): the
    /// user and password of the servers' JAAS `Server` section. The session's ACL identity is
    /// then `sasl:<user>`.
    #[cfg(feature = "sasl")]
    pub fn sasl_digest(mut self, user: &str, password: &str) -> Self {
        self.sasl = Some(SaslCredentials { user: user.to_owned(), password: password.to_owned() });
        #[cfg(feature = "gssapi")]
        {
            self.gssapi = None;
        }
        self
    }

    /// Authenticates the session with SASL GSSAPI, Kerberos (feature `gssapi`), instead of
    /// [`sasl_digest`](SessionBuilder::sasl_digest). The client's credentials come from the
    /// environment (`KRB5CCNAME` or `KRB5_CLIENT_KTNAME`, and `KRB5_CONFIG`); `config` names the
    /// servers' principal. See [`GssapiConfig`], and `recipes/security.md`.
    #[cfg(feature = "gssapi")]
    pub fn sasl_gssapi(mut self, config: GssapiConfig) -> Self {
        self.gssapi = Some(config);
        self.sasl = None;
        self
    }

    /// ACLs for the nodes recipes create, and for the missing parents they create (default:
    /// open to anyone, as Curator does). For example `zk::Acls::creator_all().to_vec()` with
    /// credentials — a TLS client certificate, SASL or [`digest`](SessionBuilder::digest) —
    /// keeps sessions with other identities from creating contenders or deleting them; see
    /// `recipes/security.md` for a recommended ACL.
    pub fn acls(mut self, acls: Vec<zk::Acl>) -> Self {
        self.acls = Some(acls);
        self
    }

    /// Extra time subtracted from the liveness proof (default 0), for deployments whose
    /// members relay session touches more slowly than an ensemble of voting members with the
    /// default settings does — for example clients of an observer behind an `ObserverMaster`,
    /// whose touches travel two PING rounds to the leader: a margin of `tickTime` covers them.
    /// See `recipes/mutex.md`, "Knowing when the lock is lost". It must leave some of the proof:
    /// [`connect`](SessionBuilder::connect) rejects a margin above about 58 % of the negotiated
    /// session timeout.
    pub fn liveness_margin(mut self, margin: Duration) -> Self {
        self.liveness_margin = margin;
        self
    }

    /// The servers' `jute.maxbuffer` in bytes (default 1 MiB − 1, ZooKeeper's default): the
    /// largest request they accept. A server drops the connection on a larger one, so node data
    /// that cannot fit ([`Mutex::with_data`](crate::Mutex::with_data), a leader's id) is
    /// rejected with [`Error::DataTooLarge`] before anything is sent.
    pub fn jute_max_buffer(mut self, bytes: usize) -> Self {
        self.jute_max_buffer = bytes;
        self
    }

    /// Connects to `servers`, a ZooKeeper connect string such as
    /// `"zk1:2181,zk2:2181,zk3:2181"` (an optional `/chroot` suffix is allowed; a server
    /// without a port means 2181).
    ///
    /// # Errors
    ///
    /// - [`Error::NoServers`] if `servers` names no server;
    /// - [`Error::InvalidServers`] if it cannot be parsed;
    /// - [`Error::InvalidOption`] for a session timeout of zero or beyond `i32::MAX`
    ///   milliseconds, or a liveness margin that leaves no proof of liveness;
    /// - [`Error::Unreachable`] if no session is established within the connect timeout;
    /// - [`Error::Tls`] once a round of attempts failed, no server answered the probe after
    ///   it, and one failed the TLS handshake or speaks TLS to a session without it (see
    ///   [`TlsProblem`](crate::TlsProblem));
    /// - [`Error::TlsConfig`] if the certificates or key cannot be read or used;
    /// - [`Error::SaslRejected`] if the servers reject the SASL credentials;
    /// - [`Error::AuthRequired`] if the servers require SASL authentication and none was given;
    /// - [`Error::Kerberos`] if the client has no usable Kerberos credentials or gets no
    ///   ticket for the servers' principal, or the servers reject the GSSAPI handshake.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future abandons the attempt; a ZooKeeper session the server
    /// may already have created is never used and expires on its own.
    pub async fn connect(self, servers: &str) -> Result<Session, Error> {
        let most = Duration::from_millis(i32::MAX as u64);
        if self.session_timeout.is_zero() || self.session_timeout > most {
            return Err(Error::InvalidOption {
                reason: format!(
                    "the session timeout {:?} is not one ZooKeeper can grant; give between 1 ms and {most:?} \
                     (servers grant 2 to 20 times their tickTime)",
                    self.session_timeout
                ),
            });
        }
        #[cfg(feature = "tls")]
        let tls = self.tls.map(tls::Tls::new).transpose()?.map(Arc::new);
        #[cfg(feature = "tls")]
        let secure = tls.is_some();
        #[cfg(not(feature = "tls"))]
        let secure = false;
        let servers = servers::normalize(servers, secure)?;
        let config = ConnectConfig {
            endpoints: servers::endpoints(&servers, secure),
            servers,
            session_timeout: self.session_timeout,
            connect_timeout: self.connect_timeout,
            liveness_margin: self.liveness_margin,
            jute_max_buffer: self.jute_max_buffer,
            digest: self.digest,
            acls: self.acls.unwrap_or_else(|| zk::Acls::anyone_all().to_vec()),
            #[cfg(feature = "tls")]
            tls,
            sasl: self.sasl,
            #[cfg(feature = "gssapi")]
            gssapi: self.gssapi,
        };
        let started = Moment::now();
        let client = config.connect().await?;
        let timeout = client.session_timeout();
        if liveness::reach(timeout, config.liveness_margin).is_zero() {
            return Err(Error::InvalidOption {
                reason: format!(
                    "the liveness margin {:?} leaves no proof of liveness within the negotiated session \
                     timeout {timeout:?}; keep it below {:?}",
                    config.liveness_margin,
                    liveness::reach(timeout, Duration::ZERO),
                ),
            });
        }
        let initial = Status { state: SessionState::Connected, generation: 1, client: None, lapses: 0 };
        let shared = Arc::new(Shared::new(config, initial, timeout, started));
        shared.publish(SessionState::Connected, 1, Some(client.clone()));
        let (jobs, job_rx) = mpsc::unbounded_channel();
        let (closer, closer_rx) = watch::channel(false);
        let driver = tokio::spawn(Driver::new(shared.clone(), job_rx, closer_rx).run(client));
        Ok(Session { inner: Arc::new(Inner { shared, jobs, closer, driver: StdMutex::new(Some(driver)) }) })
    }
}

/// A receiver of [`SessionState`] changes, from [`Session::states`].
///
/// Like a `tokio::sync::watch` receiver it yields the latest state: a brief state between two
/// checks can be skipped.
#[derive(Debug, Clone)]
pub struct SessionStates {
    receiver: watch::Receiver<Status>,
    /// The state and ZooKeeper session last reported.
    seen: (SessionState, u64),
}

impl SessionStates {
    /// The latest state, marked as seen.
    pub fn current(&mut self) -> SessionState {
        let status = self.receiver.borrow_and_update();
        self.seen = (status.state, status.generation);
        self.seen.0
    }

    /// Waits for a change after the last one seen and returns the new state (`Connected`
    /// again counts as a change when it is a new ZooKeeper session). Returns `Closed` at once
    /// when the session is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a change that arrives while the future is dropped is reported by the next
    /// call.
    pub async fn changed(&mut self) -> SessionState {
        let seen = self.seen;
        let changed = self.receiver.wait_for(|s| s.state == SessionState::Closed || (s.state, s.generation) != seen);
        if changed.await.is_err() {
            return SessionState::Closed;
        }
        self.current()
    }
}

#[cfg(test)]
mod tests {
    use super::SessionState;

    #[test]
    fn a_state_is_named_as_debug_prints_it() {
        for state in [SessionState::Connected, SessionState::Suspended, SessionState::Lost, SessionState::Closed] {
            assert_eq!(state.name(), format!("{state:?}"));
        }
    }
}

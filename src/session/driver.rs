//! The task behind a [`Session`](super::Session): follows the client's state, proves liveness
//! with heartbeats, runs background jobs, and establishes a new ZooKeeper session after expiry.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
#[cfg(feature = "tls")]
use futures_util::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use zookeeper_client as zk;

use super::probe::{self, Endpoint};
#[cfg(feature = "tls")]
use super::tls::Tls;
use super::{Background, Moment, SessionState, Shared, liveness};
use crate::error::Error;

/// SASL DIGEST-MD5 credentials.
#[derive(Clone)]
pub(crate) struct SaslCredentials {
    pub(crate) user: String,
    #[cfg_attr(not(feature = "sasl"), allow(dead_code))]
    pub(crate) password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials").field("user", &self.user).finish_non_exhaustive()
    }
}

/// Everything needed to establish a ZooKeeper session, again after expiry.
#[derive(Debug)]
pub(super) struct ConnectConfig {
    pub(super) servers: String,
    /// The servers of `servers`, for probing them after a failed connect.
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) session_timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) liveness_margin: Duration,
    pub(super) jute_max_buffer: usize,
    pub(super) digest: Option<(String, String)>,
    pub(super) acls: Vec<zk::Acl>,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<std::sync::Arc<Tls>>,
    pub(super) sasl: Option<SaslCredentials>,
    #[cfg(feature = "gssapi")]
    pub(super) gssapi: Option<super::GssapiConfig>,
}

/// The pause before trying to establish a session again after a round of every server failed.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

impl ConnectConfig {
    /// Establishes a new ZooKeeper session, within the connect timeout.
    pub(super) async fn connect(&self) -> Result<zk::Client, Error> {
        // No deadline at all for a connect timeout beyond the clock's range.
        let deadline = tokio::time::Instant::now().checked_add(self.connect_timeout);
        let unreachable = || Error::Unreachable { servers: self.servers.clone(), timeout: self.connect_timeout };
        loop {
            // Each attempt tries every server once and says so (`NoHosts`), rather than
            // cycling through them until the session timeout: between attempts, the servers
            // are probed for a misconfiguration the client cannot tell from an outage.
            let mut connector = zk::Client::connector().with_session_timeout(self.session_timeout).with_fail_eagerly();
            if let Some((user, password)) = &self.digest {
                connector = connector.with_auth("digest", format!("{user}:{password}").as_bytes());
            }
            #[cfg(feature = "sasl")]
            if let Some(sasl) = &self.sasl {
                connector = connector.with_sasl(zk::SaslOptions::digest_md5(sasl.user.clone(), sasl.password.clone()));
            }
            #[cfg(feature = "gssapi")]
            if let Some(gssapi) = &self.gssapi {
                connector = connector.with_sasl(gssapi.options());
            }
            #[cfg(feature = "tls")]
            let attempt = match &self.tls {
                Some(tls) => {
                    tls.refresh();
                    connector.with_tls(tls.options()).secure_connect(&self.servers).boxed()
                }
                None => connector.connect(&self.servers).boxed(),
            };
            #[cfg(not(feature = "tls"))]
            let attempt = connector.connect(&self.servers);
            let answer = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, attempt).await,
                None => Ok(attempt.await),
            };
            match answer {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(zk::Error::BadArguments(reason))) => {
                    return Err(Error::InvalidServers { servers: self.servers.clone(), reason: reason.to_string() });
                }
                // `zookeeper-client` stops trying after one session timeout, which may be
                // shorter than the connect timeout promised here: an outage of a few seconds
                // must not fail a connect with a short session timeout. Paused between rounds
                // so that servers that fail fast are not stormed.
                Ok(Err(zk::Error::Timeout | zk::Error::NoHosts | zk::Error::ConnectionLoss)) => {
                    let pause = tokio::time::Instant::now() + RETRY_PAUSE;
                    let budget =
                        deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(tokio::time::Instant::now()));
                    // The client only logs why it could not start a GSSAPI handshake.
                    #[cfg(feature = "gssapi")]
                    if let Some(gssapi) = &self.gssapi
                        && let Some(error) = super::gssapi::diagnose(gssapi, &self.endpoints, budget).await
                    {
                        return Err(error);
                    }
                    if let Some(error) = probe::diagnose(&self.endpoints, self.tls(), budget).await {
                        return Err(error);
                    }
                    if let Some(deadline) = deadline.filter(|&deadline| pause >= deadline) {
                        tokio::time::sleep_until(deadline).await;
                        return Err(unreachable());
                    }
                    tokio::time::sleep_until(pause).await;
                }
                Err(_) => return Err(unreachable()),
                Ok(Err(zk::Error::AuthFailed)) => return Err(self.auth_failed()),
                Ok(Err(err)) => return Err(Error::zk("/", err)),
            }
        }
    }

    /// What the server's `AuthFailed` means, given the credentials: the client reports a
    /// rejected SASL handshake and a session closed for want of authentication alike.
    fn auth_failed(&self) -> Error {
        #[cfg(feature = "gssapi")]
        if let Some(gssapi) = &self.gssapi {
            return gssapi.rejected(&self.endpoints);
        }
        match &self.sasl {
            Some(sasl) => Error::SaslRejected { user: sasl.user.clone() },
            // A server's stock digest provider accepts any digest credentials, and only
            // servers that enforce authentication close an unauthenticated session.
            None => Error::AuthRequired,
        }
    }

    #[cfg(feature = "tls")]
    fn tls(&self) -> Option<&Tls> {
        self.tls.as_deref()
    }

    #[cfg(not(feature = "tls"))]
    fn tls(&self) -> Option<&probe::Tls> {
        None
    }

    /// Picks up replaced certificate files for the next handshake (see `tls.rs`).
    pub(super) fn refresh_tls(&self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            tls.refresh();
        }
    }

    pub(super) fn acls(&self) -> zk::Acls<'_> {
        zk::Acls::new(&self.acls)
    }
}

/// Why serving one ZooKeeper session ended.
enum End {
    /// `Session::close`, or every handle dropped.
    Closing,
    /// The ZooKeeper session expired (or the client closed unexpectedly): start a new one.
    Expired,
    /// The server rejected the credentials; another session would be rejected too.
    Rejected,
}

/// An outstanding heartbeat request and when it was sent.
struct Heartbeat<'c> {
    sent: Moment,
    answer: Pin<Box<dyn Future<Output = Result<(), zk::Error>> + Send + 'c>>,
}

pub(super) struct Driver {
    shared: Arc<Shared>,
    requests: mpsc::UnboundedReceiver<Background>,
    closer: watch::Receiver<bool>,
    running: JoinSet<()>,
}

impl Driver {
    pub(super) fn new(
        shared: Arc<Shared>,
        requests: mpsc::UnboundedReceiver<Background>,
        closer: watch::Receiver<bool>,
    ) -> Self {
        Self { shared, requests, closer, running: JoinSet::new() }
    }

    pub(super) async fn run(mut self, mut client: zk::Client) {
        let mut generation = 1;
        loop {
            let end = self.serve(&client, generation).await;
            // Jobs of an ended ZooKeeper session have nothing left to do: its nodes are gone.
            self.running.abort_all();
            match end {
                End::Closing => break,
                End::Rejected => {
                    tracing::error!(servers = %self.shared.config.servers, "credentials rejected; session closed");
                    self.shared.publish(SessionState::Closed, generation, None);
                    return;
                }
                End::Expired => {
                    self.shared.publish(SessionState::Lost, generation, None);
                    let Some((next, started)) = self.reconnect().await else {
                        self.shared.publish(SessionState::Closed, generation, None);
                        return;
                    };
                    generation += 1;
                    let timeout = next.session_timeout();
                    if liveness::reach(timeout, self.shared.config.liveness_margin).is_zero() {
                        tracing::error!(
                            ?timeout, margin = ?self.shared.config.liveness_margin,
                            "the liveness margin leaves no proof within the new session's timeout: every guard will be reported lost"
                        );
                    }
                    self.shared.begin(generation, timeout, started);
                    self.shared.publish(SessionState::Connected, generation, Some(next.clone()));
                    client = next;
                }
            }
        }
        self.close(client, generation).await;
    }

    async fn serve(&mut self, client: &zk::Client, generation: u64) -> End {
        let mut states = client.state_watcher();
        // The client's own pings (after 3/20 of the timeout without sending) are not needed
        // beside heartbeats this frequent, and do not happen.
        let mut beats = tokio::time::interval(liveness::heartbeat_period(client.session_timeout()));
        beats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut beat: Option<Heartbeat<'_>> = None;
        let mut announced = None;
        let mut state = client.state();
        loop {
            match state {
                zk::SessionState::SyncConnected => {
                    if self.publish_if_changed(SessionState::Connected, generation, client) {
                        // Accepted by a member that reached the leader (see liveness.rs).
                        self.shared.connection(generation, true);
                    }
                }
                // Never asked for (the client refuses read-only connections unless told to).
                zk::SessionState::ConnectedReadOnly => {
                    self.publish_if_changed(SessionState::Connected, generation, client);
                }
                zk::SessionState::Disconnected => {
                    self.publish_if_changed(SessionState::Suspended, generation, client);
                }
                zk::SessionState::Expired | zk::SessionState::Closed => return End::Expired,
                zk::SessionState::AuthFailed => return End::Rejected,
            }
            tokio::select! {
                biased;
                closing = self.closer.changed() => {
                    if closing.is_err() || *self.closer.borrow() {
                        return End::Closing;
                    }
                }
                next = states.changed() => {
                    if next == zk::SessionState::Disconnected {
                        // First thing, before anything that could stall: what is answered from
                        // here on may come from a new connection (see liveness.rs).
                        self.shared.connection(generation, false);
                        // The client reconnects on its own: new certificates must be in place.
                        self.shared.config.refresh_tls();
                    }
                    state = next;
                }
                (sent, answer) = answered(&mut beat) => {
                    beat = None;
                    if answer.is_ok() {
                        self.shared.answered(generation, sent, true);
                    }
                }
                _ = beats.tick() => {
                    announced = self.shared.announce_lapse(generation, announced);
                    self.shared.config.refresh_tls();
                    if beat.is_none() {
                        // Only the leader can cause a sync's answer: see liveness.rs.
                        beat = Some(Heartbeat { sent: Moment::now(), answer: Box::pin(client.sync("/")) });
                    }
                }
                request = self.requests.recv() => match request {
                    None => return End::Closing,
                    Some(request) if request.generation == generation => {
                        self.running.spawn((request.job)(client.clone()));
                    }
                    // Meant for an ended ZooKeeper session, whose nodes are gone with it.
                    Some(_) => {}
                },
                Some(_) = self.running.join_next() => {}
            }
        }
    }

    /// Publishes `state` unless it is the current one; whether it did.
    fn publish_if_changed(&self, state: SessionState, generation: u64, client: &zk::Client) -> bool {
        let current = self.shared.status.borrow().state;
        let changed = current != state;
        if changed {
            self.shared.publish(state, generation, Some(client.clone()));
        }
        changed
    }

    /// Establishes a new ZooKeeper session with exponential backoff, until it succeeds, the
    /// credentials are rejected, or the session is closed.
    async fn reconnect(&mut self) -> Option<(zk::Client, Moment)> {
        let shared = self.shared.clone();
        let attempt = || async {
            let started = Moment::now();
            shared.config.connect().await.map(|client| (client, started))
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times();
        let retrying = attempt
            .retry(backoff)
            // Credentials the servers rejected would be rejected again; TLS problems are retried,
            // since certificate files may be fixed while the session waits.
            .when(|err| {
                !matches!(
                    err,
                    Error::AuthFailed | Error::InvalidServers { .. } | Error::SaslRejected { .. } | Error::AuthRequired
                )
            })
            .notify(|err, delay| tracing::warn!(error = %err, retry_in = ?delay, "no new ZooKeeper session yet"));
        tokio::select! {
            connected = retrying => connected.inspect_err(|err| tracing::error!(error = %err, "giving up")).ok(),
            _ = self.closer.wait_for(|closing| *closing) => None,
        }
    }

    /// Closes the ZooKeeper session and waits (within the connect timeout) until the client
    /// confirms, which happens once no clone of the client is left.
    async fn close(mut self, client: zk::Client, generation: u64) {
        let mut states = client.state_watcher();
        self.running.shutdown().await;
        self.shared.publish(SessionState::Closed, generation, None);
        drop(client);
        let confirmed = async {
            let mut state = states.state();
            while !state.is_terminated() {
                state = states.changed().await;
            }
        };
        if tokio::time::timeout(self.shared.config.connect_timeout, confirmed).await.is_err() {
            tracing::warn!("session close not confirmed: a request still holds the client");
        }
    }
}

/// Resolves when the outstanding heartbeat is answered; never while there is none.
async fn answered(beat: &mut Option<Heartbeat<'_>>) -> (Moment, Result<(), zk::Error>) {
    match beat {
        Some(beat) => (beat.sent, beat.answer.as_mut().await),
        None => std::future::pending().await,
    }
}

//! The crate's one error type, and the reasons a holder can lose what it holds.

use std::fmt;
use std::time::Duration;

use zookeeper_client as zk;

/// Everything that can go wrong in this crate. Each message says what to do about it.
///
/// The enum is `Clone + PartialEq` so that tests and callers can match and compare errors
/// directly. New variants may be added in minor releases.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A recipe path is not a usable znode path.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The connect string names no server.
    #[error(
        "no ZooKeeper servers given: pass a connect string such as \"127.0.0.1:2181\" \
         or \"zk1:2181,zk2:2181,zk3:2181\""
    )]
    NoServers,

    /// The connect string could not be parsed.
    #[error("invalid connect string {servers:?}: {reason}; expected \"host:port[,host:port...][/chroot]\"")]
    InvalidServers {
        /// The connect string as given.
        servers: String,
        /// What the parser objected to.
        reason: String,
    },

    /// An option has a value that cannot work.
    #[error("invalid option: {reason}")]
    InvalidOption {
        /// What is wrong and what would work.
        reason: String,
    },

    /// A semaphore was given, or asked for, a number of permits that cannot work.
    #[error("invalid number of permits: {requested}; use 1 to {limit}")]
    InvalidPermits {
        /// The number given.
        requested: u32,
        /// The largest number that works here: the semaphore's permits, or for a new
        /// semaphore the most this library supports.
        limit: u32,
    },

    /// No ZooKeeper session could be established within the connect timeout.
    #[error(
        "could not reach ZooKeeper at {servers} within {timeout:?}: check that the servers run \
         and that this address is right, or raise the connect timeout"
    )]
    Unreachable {
        /// The connect string that was tried.
        servers: String,
        /// How long it was tried.
        timeout: Duration,
    },

    /// The server refused a request for want of authentication. At connect, a rejection is
    /// [`Error::SaslRejected`] or [`Error::AuthRequired`] instead (digest credentials are not
    /// checked when given: a server accepts any).
    #[error("ZooKeeper rejected the session's credentials; check the ones given to SessionBuilder::digest")]
    AuthFailed,

    /// The TLS certificates or key given cannot be read or used.
    #[error("TLS configuration: {reason}")]
    TlsConfig {
        /// Which file or text, and what is wrong with it.
        reason: String,
    },

    /// A server could not be connected to because of TLS: see [`TlsProblem`] for each case.
    /// Reported once a round of connect attempts failed, no server answered the probe that
    /// follows it, and at least one showed this misconfiguration (the first such server is
    /// named); within the connect timeout, provided the first round ends before it.
    #[error("TLS with ZooKeeper at {server} failed: {problem}: {detail}")]
    Tls {
        /// The server, `host:port`.
        server: String,
        /// What went wrong.
        problem: TlsProblem,
        /// What the server did, and what to change (which file, which option).
        detail: String,
    },

    /// The servers rejected the SASL credentials.
    #[error(
        "ZooKeeper rejected SASL authentication as {user:?}: check the password (ZK_SASL_PASSWORD, \
         SessionBuilder::sasl_digest) and that the servers' JAAS Server section has this user"
    )]
    SaslRejected {
        /// The SASL user name given.
        user: String,
    },

    /// The servers closed the session for want of authentication: they require SASL
    /// (`enforce.auth.enabled`, or `sessionRequireClientSASLAuth`), and none was configured.
    #[error(
        "ZooKeeper requires authentication and closed the session: give SASL credentials \
         (SessionBuilder::sasl_digest, or --sasl-user / ZK_SASL_USER with ZK_SASL_PASSWORD)"
    )]
    AuthRequired,

    /// Kerberos (SASL GSSAPI, feature `gssapi`) authentication failed: the client has no usable
    /// credentials, gets no ticket for the servers' principal, or the servers rejected the
    /// handshake. Reported within the connect timeout.
    #[error(
        "Kerberos (SASL GSSAPI) authentication with ZooKeeper as {service} failed: {reason}; check the \
         client's credentials (KRB5_CLIENT_KTNAME for a keytab, or KRB5CCNAME for a ticket cache from \
         kinit), KRB5_CONFIG for the realm and its KDC, and that {service} is the servers' principal \
         (GssapiConfig::service and ::host)"
    )]
    Kerberos {
        /// The servers' principal asked for, `service/host` (without the realm).
        service: String,
        /// What went wrong, as the GSSAPI library or the servers said.
        reason: String,
    },

    /// The ZooKeeper session expired while the operation ran; whatever it held is gone.
    /// The [`Session`](crate::Session) reconnects with a new session by itself: retry the operation.
    #[error(
        "the ZooKeeper session expired during the operation and everything it held is gone; \
         retry on the session's new ZooKeeper session"
    )]
    SessionExpired,

    /// The session was closed, by [`Session::close`](crate::Session::close) or because the
    /// credentials were rejected.
    #[error("the session is closed; create a new Session to continue")]
    SessionClosed,

    /// A timed wait ended before the recipe was acquired. The contender node is withdrawn: at
    /// once, or by the session's background task if the server could not be reached then.
    #[error(
        "gave up waiting for {path} after {after:?}; our place in its queue is withdrawn (at once, or \
         by the session's background task once the server can be reached)"
    )]
    Timeout {
        /// The recipe path that was waited on.
        path: String,
        /// The time that was allowed.
        after: Duration,
    },

    /// The session lacks a permission the node's ACL requires.
    #[error(
        "not allowed at {path}: the ACL there does not grant this session's identity the permission \
         the operation needs (joining a queue needs CREATE and DELETE, status needs READ); connect \
         as an identity the ACL grants (a TLS client certificate, SASL or digest credentials: \
         SessionBuilder::tls, sasl_digest or SessionBuilder::digest), or have the ACL changed \
         (see recipes/security.md)"
    )]
    NoAuth {
        /// The path where permission was denied.
        path: String,
    },

    /// What was held (or the place in a queue) is gone, or can no longer be proven.
    #[error("lost {node} ({reason}); stop acting on what it protected")]
    Lost {
        /// The contender node that was lost.
        node: String,
        /// Why it counts as lost.
        reason: LossReason,
    },

    /// A contender node's data is too large for a request the server accepts.
    #[error(
        "the data for nodes under {path} is {size} bytes, more than the {limit} that fit in a request \
         the server accepts (its jute.maxbuffer, less the node's path and ACLs); store less, or raise \
         jute.maxbuffer on the servers and tell SessionBuilder::jute_max_buffer"
    )]
    DataTooLarge {
        /// The recipe directory.
        path: String,
        /// The data's size in bytes.
        size: usize,
        /// The most that fits.
        limit: usize,
    },

    /// The server dropped the connection on every create of a contender node, again and again.
    #[error(
        "the connection dropped on each of {attempts} creates of a node under {path}; a server does \
         this to a request larger than its jute.maxbuffer: check the node data's size against the \
         servers' setting (SessionBuilder::jute_max_buffer), and the servers' logs"
    )]
    CreateDropped {
        /// The recipe directory.
        path: String,
        /// How many creates were tried.
        attempts: usize,
    },

    /// The directory's sequence counter wrapped past 2^31, so node order is no longer reliable.
    #[error(
        "the sequence counter of {path} has wrapped past 2^31 (child {child:?}), so contenders \
         can no longer be ordered; delete and recreate {path} while nobody uses it"
    )]
    SequenceOverflow {
        /// The recipe directory.
        path: String,
        /// The child whose sequence is negative.
        child: String,
    },

    /// Any other error from ZooKeeper or the client library, with the path it concerned.
    #[error("ZooKeeper error at {path}: {source}")]
    ZooKeeper {
        /// The path the failed request concerned.
        path: String,
        /// The error as reported by `zookeeper-client`.
        #[source]
        source: zk::Error,
    },
}

impl Error {
    /// Maps a client error for a request at `path` to the variant that names the problem.
    pub(crate) fn zk(path: &str, source: zk::Error) -> Self {
        match source {
            zk::Error::NoAuth => Self::NoAuth { path: path.to_owned() },
            zk::Error::SessionExpired => Self::SessionExpired,
            zk::Error::ClientClosed => Self::SessionClosed,
            zk::Error::AuthFailed => Self::AuthFailed,
            source => Self::ZooKeeper { path: path.to_owned(), source },
        }
    }
}

/// Why a TLS connection to a server failed ([`Error::Tls`]).
///
/// `zookeeper-client` reports every one of these only as a server it could not reach; the
/// session tells them apart by probing each server with a handshake of its own (see
/// `recipes/security.md`). The first two are what the client's TLS library found; the two
/// about the client certificate are inferred from the alert the server sent; the last two
/// from what the server answered to each protocol.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsProblem {
    /// The server's certificate is not signed by a trusted CA certificate (or is expired, or
    /// otherwise invalid). A *revoked* server certificate is refused by the client when CRLs are
    /// given, but the probe does not check CRLs: that case ends as [`Error::Unreachable`].
    UntrustedServerCertificate,
    /// The server's certificate does not name the host it was reached by.
    HostnameMismatch,
    /// The server requires a client certificate and none was given.
    ClientCertificateRequired,
    /// The server rejected the client certificate given.
    ClientCertificateRejected,
    /// The session connected without TLS to a port that serves only TLS.
    ServerRequiresTls,
    /// The session connected with TLS to a port that serves only plaintext.
    ServerIsPlaintext,
}

impl fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UntrustedServerCertificate => "the server's certificate is not trusted",
            Self::HostnameMismatch => "the server's certificate is for another host name",
            Self::ClientCertificateRequired => "the server requires a client certificate",
            Self::ClientCertificateRejected => "the server rejected the client certificate",
            Self::ServerRequiresTls => "the server's port requires TLS",
            Self::ServerIsPlaintext => "the server's port does not speak TLS",
        })
    }
}

/// Why a holder no longer holds, or can no longer prove that it holds.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossReason {
    /// The ZooKeeper session expired: the server deleted every node it owned.
    SessionExpired,
    /// The session was closed by this process.
    SessionClosed,
    /// Someone else deleted the holder's node.
    NodeDeleted,
    /// Holding can no longer be proven, though the node may have lasted. Either the ZooKeeper
    /// leader may already have expired the session: the proof of liveness ran out (the
    /// connection was silent, or its server could not reach the leader, for too long; see
    /// `recipes/mutex.md`, "Knowing when the lock is lost"). Or the node's end went unseen: a
    /// release's delete was cut off by a lost connection and its retry found no node, which
    /// looks the same whether the cut-off delete ran or someone else's ran first.
    Unconfirmed,
    /// The server refused to watch the holder's node (it lacks READ permission for this
    /// session): a deletion of it would go unnoticed, so holding can no longer be proven.
    Unwatchable,
    /// The holder released it.
    Released,
    /// There was nothing to lose: the participant did not lead when asked
    /// ([`Candidate::lost`](crate::Candidate::lost)).
    NotLeader,
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SessionExpired => "the ZooKeeper session expired",
            Self::SessionClosed => "the session was closed",
            Self::NodeDeleted => "the node was deleted by someone else",
            Self::Unconfirmed => "holding can no longer be proven",
            Self::Unwatchable => {
                "the server refused to watch the holder's node (does its ACL grant this session READ?), so its deletion would go unnoticed"
            }
            Self::Released => "it was released",
            Self::NotLeader => "this participant was not the leader",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: Send + Sync + 'static + std::error::Error>() {}
        check::<Error>();
    }

    #[test]
    fn client_errors_map_to_named_variants() {
        assert_eq!(Error::zk("/a", zk::Error::NoAuth), Error::NoAuth { path: "/a".into() });
        assert_eq!(Error::zk("/a", zk::Error::SessionExpired), Error::SessionExpired);
        assert_eq!(
            Error::zk("/a", zk::Error::BadVersion),
            Error::ZooKeeper { path: "/a".into(), source: zk::Error::BadVersion }
        );
    }
}

//! Why no server could be reached, when it is a misconfiguration rather than an outage.
//!
//! `zookeeper-client` turns every failure to open a connection into "connection loss" (and
//! after a round of every server, "no hosts"): a TLS handshake that failed because the
//! server's certificate is not trusted looks just like a server that is down. So after a
//! failed round, each server is probed directly, and what it did is classified:
//!
//! - TLS configured: a handshake with the same certificates (rustls, as the client uses).
//!   Its error names an untrusted server certificate or one for another name. A server that
//!   rejects the client's certificate, or wants one that was not given, says so with a TLS
//!   alert — during the handshake (TLS 1.2) or right after it (TLS 1.3, where the client's
//!   side completes before the server has checked the certificate), so the probe then sends
//!   ZooKeeper's connect request and reads the answer. The alert is the only signal, and
//!   what it means is inferred: with no client certificate given, a refusal means one is
//!   required; with one given, that it was rejected. A server that closes the handshake
//!   without ever presenting a certificate but answers a plaintext connect request is a
//!   plaintext port.
//! - No TLS: a plaintext connect request. A server that does not answer it but presents a
//!   certificate to a TLS handshake is a TLS port.
//!
//! The connect request asks to resume a session no server handed out, so the server answers
//! it as expired and creates nothing. A probe that learns nothing definite (refused, silent,
//! closed) leaves the error as "unreachable".

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

#[cfg(feature = "tls")]
pub(crate) use super::tls::Tls;
use crate::error::Error;
#[cfg(feature = "tls")]
use crate::error::TlsProblem;

/// Without the `tls` feature there is no TLS to probe.
#[cfg(not(feature = "tls"))]
#[derive(Debug)]
pub(crate) enum Tls {}

/// One server of the connect string, and whether it is reached with TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
}

#[cfg_attr(not(feature = "tls"), allow(dead_code))]
impl Endpoint {
    fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// What probing a server found.
#[derive(Debug)]
enum Finding {
    /// It answered ZooKeeper's connect request: the way there works.
    Answers,
    /// Nothing definite: refused, silent or closed (a server that is down or starting).
    Inconclusive,
    /// A misconfiguration.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Problem(Error),
}

/// The longest one probe may take: a server that accepts and then stays silent is paused
/// or overloaded, which the probe cannot tell apart from anything else.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A misconfiguration that explains why none of `endpoints` could be reached, if the servers
/// show one and none of them works; `None` if it looks like an outage.
pub(crate) async fn diagnose(endpoints: &[Endpoint], tls: Option<&Tls>, budget: Duration) -> Option<Error> {
    let budget = budget.min(PROBE_TIMEOUT);
    let probes = endpoints.iter().map(|endpoint| async move {
        tokio::time::timeout(budget, probe(endpoint, tls)).await.unwrap_or(Finding::Inconclusive)
    });
    let findings = futures_util::future::join_all(probes).await;
    tracing::debug!(?findings, "probed the servers after a failed connect");
    if findings.iter().any(|finding| matches!(finding, Finding::Answers)) {
        return None;
    }
    findings.into_iter().find_map(|finding| match finding {
        Finding::Problem(error) => Some(error),
        _ => None,
    })
}

async fn probe(endpoint: &Endpoint, tls: Option<&Tls>) -> Finding {
    match (endpoint.tls, tls) {
        #[cfg(feature = "tls")]
        (true, Some(tls)) => tls_probe::probe(endpoint, tls).await,
        _ => plaintext_probe(endpoint).await,
    }
}

async fn plaintext_probe(endpoint: &Endpoint) -> Finding {
    let Ok(stream) = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await else {
        return Finding::Inconclusive;
    };
    if answers_connect(stream).await.unwrap_or(false) {
        return Finding::Answers;
    }
    #[cfg(feature = "tls")]
    if tls_probe::presents_certificate(endpoint).await {
        return Finding::Problem(Error::Tls {
            server: endpoint.name(),
            problem: TlsProblem::ServerRequiresTls,
            detail: "it presented a certificate to a TLS handshake and ignored ZooKeeper's plaintext connect request; \
                     connect with TLS: give the CA certificate that signed the servers' certificates \
                     (SessionBuilder::tls, or --tls-ca / ZK_TLS_CA), or use the servers' plaintext clientPort"
                .to_owned(),
        });
    }
    Finding::Inconclusive
}

/// Sends ZooKeeper's connect request for a session that cannot exist, and reads whether a
/// ZooKeeper answer comes back: a length-prefixed connect response.
async fn answers_connect<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> std::io::Result<bool> {
    stream.write_all(&connect_request()).await?;
    stream.flush().await?;
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await?;
    // A connect response is 36 or 37 bytes (the read-only flag is optional).
    Ok((20..=64).contains(&i32::from_be_bytes(length)))
}

/// A connect request (jute, length-prefixed) to resume a session that no server knows:
/// protocol 0, last zxid 0, timeout 30 s, session id `i64::MAX`, a zero password of 16
/// bytes, not read-only. The server answers that the session expired, and creates none.
fn connect_request() -> Vec<u8> {
    let mut body = Vec::with_capacity(45);
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&30_000i32.to_be_bytes());
    body.extend_from_slice(&i64::MAX.to_be_bytes());
    body.extend_from_slice(&16i32.to_be_bytes());
    body.extend_from_slice(&[0u8; 16]);
    body.push(0);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

#[cfg(feature = "tls")]
mod tls_probe {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, SignatureScheme};
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;

    use super::{Endpoint, Finding, answers_connect};
    use crate::error::{Error, TlsProblem};
    use crate::session::tls::Tls;

    /// Checks certificates as the client does (`inner`), or accepts any (`None`), and records
    /// whether the server presented one.
    #[derive(Debug)]
    struct Recording {
        inner: Option<Arc<WebPkiServerVerifier>>,
        presented: AtomicBool,
        provider: Arc<rustls::crypto::CryptoProvider>,
    }

    impl ServerCertVerifier for Recording {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            self.presented.store(true, Ordering::Relaxed);
            match &self.inner {
                Some(inner) => inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
                None => Ok(ServerCertVerified::assertion()),
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.provider.signature_verification_algorithms;
            rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.provider.signature_verification_algorithms;
            rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }

    /// Whether the server at `endpoint` presents a certificate to a TLS handshake.
    pub(super) async fn presents_certificate(endpoint: &Endpoint) -> bool {
        let provider = provider();
        let verifier =
            Arc::new(Recording { inner: None, presented: AtomicBool::new(false), provider: provider.clone() });
        let Ok(builder) = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
        else {
            return false;
        };
        let config = builder.dangerous().with_custom_certificate_verifier(verifier.clone()).with_no_client_auth();
        let Ok(name) = ServerName::try_from(endpoint.host.clone()) else { return false };
        let Ok(stream) = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await else { return false };
        // Whatever comes of the handshake, the certificate was seen or not.
        let _ = TlsConnector::from(Arc::new(config)).connect(name, stream).await;
        verifier.presented.load(Ordering::Relaxed)
    }

    pub(super) async fn probe(endpoint: &Endpoint, tls: &Tls) -> Finding {
        let server = endpoint.name();
        let current = tls.current();
        let provider = provider();
        let roots = {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(current.roots.iter().cloned());
            Arc::new(roots)
        };
        let Ok(inner) = WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build() else {
            return Finding::Inconclusive;
        };
        let verifier =
            Arc::new(Recording { inner: Some(inner), presented: AtomicBool::new(false), provider: provider.clone() });
        let Ok(builder) = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
        else {
            return Finding::Inconclusive;
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier.clone());
        let config = match &current.identity {
            Some((chain, key)) => match builder.with_client_auth_cert(chain.clone(), key.clone_key()) {
                Ok(config) => config,
                Err(_) => return Finding::Inconclusive,
            },
            None => builder.with_no_client_auth(),
        };
        let Ok(name) = ServerName::try_from(endpoint.host.clone()) else { return Finding::Inconclusive };
        let Ok(stream) = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await else {
            return Finding::Inconclusive;
        };
        let failure = match TlsConnector::from(Arc::new(config)).connect(name, stream).await {
            Ok(stream) => match answers_connect(stream).await {
                Ok(true) => return Finding::Answers,
                Ok(false) => return Finding::Inconclusive,
                Err(error) => error,
            },
            Err(error) => error,
        };
        let rustls_error = failure.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()).cloned();
        let problem =
            |problem, detail: String| Finding::Problem(Error::Tls { server: server.clone(), problem, detail });
        match rustls_error {
            Some(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => problem(
                TlsProblem::HostnameMismatch,
                format!(
                    "its certificate does not name {:?}, the host it was reached by; connect by a name or address \
                     the certificate holds, or have the certificate reissued to name this one",
                    endpoint.host
                ),
            ),
            Some(rustls::Error::InvalidCertificate(reason)) => problem(
                TlsProblem::UntrustedServerCertificate,
                format!(
                    "its certificate was rejected ({reason:?}) against {}; give the CA certificate that signed the \
                     servers' certificates (SessionBuilder::tls, or --tls-ca / ZK_TLS_CA)",
                    tls.config().ca_source()
                ),
            ),
            Some(rustls::Error::AlertReceived(alert)) => client_certificate_problem(tls, alert, &server),
            _ if !verifier.presented.load(Ordering::Relaxed) && super::plaintext_answers(endpoint).await => problem(
                TlsProblem::ServerIsPlaintext,
                "it answers ZooKeeper's plaintext protocol and closed the TLS handshake without a certificate: \
                 connect to the servers' secureClientPort, or mark this server tcp:// in the connect string to \
                 reach it without TLS"
                    .to_owned(),
            ),
            _ => Finding::Inconclusive,
        }
    }

    /// A server's alert during or right after the handshake: about the client certificate,
    /// inferred (see the module docs).
    fn client_certificate_problem(tls: &Tls, alert: AlertDescription, server: &str) -> Finding {
        let (problem, detail) = match tls.config().has_identity() {
            false => (
                TlsProblem::ClientCertificateRequired,
                format!(
                    "it refused the handshake (TLS alert {alert:?}) from a client without a certificate: the servers \
                     require one (ssl.clientAuth=need); give a client certificate and key signed by a CA the servers \
                     trust (TlsConfig::identity_files, or --tls-cert / --tls-key, ZK_TLS_CERT / ZK_TLS_KEY)"
                ),
            ),
            true => (
                TlsProblem::ClientCertificateRejected,
                format!(
                    "it refused {} (TLS alert {alert:?}): check that the certificate is signed by a CA in the servers' \
                     trust store (ssl.trustStore.location), has not expired, and is meant for client authentication",
                    tls.config().identity_source()
                ),
            ),
        };
        Finding::Problem(Error::Tls { server: server.to_owned(), problem, detail })
    }
}

/// Whether the server at `endpoint` answers a plaintext connect request.
#[cfg(feature = "tls")]
async fn plaintext_answers(endpoint: &Endpoint) -> bool {
    match TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await {
        Ok(stream) => answers_connect(stream).await.unwrap_or(false),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::connect_request;

    #[test]
    fn the_connect_request_is_framed_by_its_length() {
        let frame = connect_request();
        assert_eq!(frame.len(), 4 + 45);
        assert_eq!(i32::from_be_bytes(frame[..4].try_into().unwrap()), 45);
        assert_eq!(&frame[20..28], &i64::MAX.to_be_bytes(), "a session id no server has handed out");
    }
}

//! TLS to the servers: the certificates a session trusts and presents, read from PEM text or
//! files, and read again when the files change, so that a long-running process picks up
//! rotated certificates at its next handshake without a restart.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zookeeper_client as zk;

use crate::error::Error;

/// Where one piece of PEM comes from.
#[derive(Clone, PartialEq, Eq)]
enum Pem {
    Text(String),
    File(PathBuf),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A key's text is secret, and a certificate's is long: neither helps in a log.
            Pem::Text(_) => f.write_str("Text(..)"),
            Pem::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl Pem {
    /// The text, and the file's identity when it came from a file.
    fn read(&self, what: &str, option: &str) -> Result<(String, Option<Stamp>), Error> {
        match self {
            Pem::Text(text) => Ok((text.clone(), None)),
            Pem::File(path) => {
                let stamp = Stamp::of(path);
                let text = fs::read_to_string(path).map_err(|e| Error::TlsConfig {
                    reason: format!("cannot read the {what} file {}: {e}; check {option}", path.display()),
                })?;
                Ok((text, stamp))
            }
        }
    }

    fn describe(&self, what: &str) -> String {
        match self {
            Pem::Text(_) => format!("the {what} given as PEM text"),
            Pem::File(path) => format!("the {what} file {}", path.display()),
        }
    }
}

/// What identifies a version of a file: a replaced file (renamed over, or rewritten) differs
/// in at least one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = fs::metadata(path).ok()?;
        Some(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&meta),
        })
    }
}

/// TLS for a session's connections: the CA certificates that sign the servers' certificates,
/// and optionally a client certificate and key.
///
/// A server's certificate must name the host it is reached by, as given in the connect
/// string (a DNS name, or an IP address in the certificate's IP subject alternative names).
/// This check cannot be turned off: without it, anyone with a certificate from the same CA
/// could pose as the servers.
///
/// Certificates and keys are PEM, given as text or as files. Files are read when the session
/// connects, and checked for changes before every handshake that follows (on every heartbeat,
/// a few times per session timeout, and whenever the connection drops): a certificate
/// manager that replaces them is picked up without a restart, by the next connection. A
/// replacement that cannot be read or parsed is logged and the certificates in use are kept.
///
/// ```no_run
/// # async fn example() -> Result<(), zk_recipes::Error> {
/// use zk_recipes::{Session, TlsConfig};
///
/// let tls = TlsConfig::ca_file("/etc/zookeeper/ca.pem")
///     .identity_files("/etc/zookeeper/client.pem", "/etc/zookeeper/client.key");
/// let session = Session::builder().tls(tls).connect("zk1:2281,zk2:2281,zk3:2281").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    ca: Pem,
    identity: Option<(Pem, Pem)>,
}

impl TlsConfig {
    /// Trusts the CA certificates in `pem` (one or more PEM certificates, and optionally
    /// CRLs). Only these are trusted: the system's roots are not.
    pub fn ca_pem(pem: impl Into<String>) -> Self {
        Self { ca: Pem::Text(pem.into()), identity: None }
    }

    /// Trusts the CA certificates in the PEM file at `path`.
    pub fn ca_file(path: impl Into<PathBuf>) -> Self {
        Self { ca: Pem::File(path.into()), identity: None }
    }

    /// Presents this client certificate (PEM, with its chain if any) and private key (PEM:
    /// PKCS#8, PKCS#1 or SEC1), for servers with `ssl.clientAuth=need` or `want`. ZooKeeper's
    /// x509 provider makes the certificate's subject the session's ACL identity.
    pub fn identity_pem(mut self, cert: impl Into<String>, key: impl Into<String>) -> Self {
        self.identity = Some((Pem::Text(cert.into()), Pem::Text(key.into())));
        self
    }

    /// Presents the client certificate and private key in these PEM files.
    pub fn identity_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Whether a client certificate is configured.
    pub(crate) fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// What to change to give or fix the CA certificates.
    pub(crate) fn ca_source(&self) -> String {
        self.ca.describe("CA certificate")
    }

    /// What to change to give or fix the client certificate.
    pub(crate) fn identity_source(&self) -> String {
        match &self.identity {
            Some((cert, _)) => cert.describe("client certificate"),
            None => "no client certificate".to_owned(),
        }
    }

    /// Reads and parses everything, checking it the way the client will use it.
    fn load(&self) -> Result<Loaded, Error> {
        let (ca, ca_stamp) = self.ca.read("CA certificate", "the CA file given (TlsConfig::ca_file, --tls-ca)")?;
        let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| self.bad(&self.ca, "CA certificate", &e.to_string()))?;
        if roots.is_empty() {
            return Err(self.bad(&self.ca, "CA certificate", "it holds no PEM certificate"));
        }
        let zk_ca = zk::TlsCa::from_pem(&ca).map_err(|e| self.bad(&self.ca, "CA certificate", &e.to_string()))?;
        let mut certs = zk::TlsCerts::builder().with_ca(zk_ca);
        let mut stamps = vec![ca_stamp];
        let mut identity = None;
        if let Some((cert_source, key_source)) = &self.identity {
            let (cert, cert_stamp) =
                cert_source.read("client certificate", "the certificate file given (--tls-cert)")?;
            let (key, key_stamp) = key_source.read("client key", "the key file given (--tls-key)")?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| self.bad(cert_source, "client certificate", &e.to_string()))?;
            if chain.is_empty() {
                return Err(self.bad(cert_source, "client certificate", "it holds no PEM certificate"));
            }
            let private = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
                self.bad(key_source, "client key", &format!("{e} (a PEM private key: PKCS#8, PKCS#1 or SEC1)"))
            })?;
            // What zookeeper-client will do with them, so that a key that does not fit the
            // certificate is reported here, naming the files, and not as a failed handshake.
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_client_auth_cert(chain.clone(), private.clone_key())
                .map_err(|e| {
                    self.bad(
                        key_source,
                        "client key",
                        &format!("it does not fit {} ({e})", cert_source.describe("client certificate")),
                    )
                })?;
            let zk_identity = zk::TlsIdentity::from_pem(&cert, &key)
                .map_err(|e| self.bad(cert_source, "client certificate", &e.to_string()))?;
            certs = certs.with_identity(zk_identity);
            stamps.extend([cert_stamp, key_stamp]);
            identity = Some((chain, private));
        }
        let certs = certs.build().map_err(|e| Error::TlsConfig { reason: e.to_string() })?;
        Ok(Loaded { certs, roots, identity, stamps })
    }

    fn bad(&self, source: &Pem, what: &str, reason: &str) -> Error {
        Error::TlsConfig { reason: format!("{} is not usable: {reason}", source.describe(what)) }
    }
}

/// Certificates read and parsed, and the versions of the files they came from.
struct Loaded {
    certs: zk::TlsCerts,
    roots: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    stamps: Vec<Option<Stamp>>,
}

/// The certificates a session uses now, shared with the client, which takes them at each
/// handshake.
pub(crate) struct Tls {
    config: TlsConfig,
    dynamic: zk::TlsDynamicCerts,
    current: StdMutex<Arc<Current>>,
}

/// The parsed certificates in use, for the probe that diagnoses failed handshakes.
pub(crate) struct Current {
    pub(crate) roots: Vec<CertificateDer<'static>>,
    pub(crate) identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    stamps: Vec<Option<Stamp>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificates.
    ///
    /// # Errors
    ///
    /// [`Error::TlsConfig`] naming the file or text that cannot be read or used.
    pub(crate) fn new(config: TlsConfig) -> Result<Self, Error> {
        let loaded = config.load()?;
        let dynamic = zk::TlsDynamicCerts::new(loaded.certs);
        let current = Current { roots: loaded.roots, identity: loaded.identity, stamps: loaded.stamps };
        Ok(Self { config, dynamic, current: StdMutex::new(Arc::new(current)) })
    }

    pub(crate) fn config(&self) -> &TlsConfig {
        &self.config
    }

    /// The options for a client: it reads the certificates in use at every handshake.
    pub(crate) fn options(&self) -> zk::TlsOptions {
        zk::TlsOptions::new().with_certs(self.dynamic.clone())
    }

    pub(crate) fn current(&self) -> Arc<Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the files again if any changed since they were last read, and hands new
    /// certificates to the client. Cheap when nothing changed: a `stat` per file. Returns
    /// whether certificates were replaced.
    pub(crate) fn refresh(&self) -> bool {
        let files = self.config.files();
        let stamps: Vec<Option<Stamp>> = files.iter().map(|path| path.and_then(Stamp::of)).collect();
        if stamps == self.current().stamps {
            return false;
        }
        match self.config.load() {
            Ok(loaded) => {
                self.dynamic.update(loaded.certs);
                let current = Current { roots: loaded.roots, identity: loaded.identity, stamps: loaded.stamps };
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(current);
                tracing::info!("TLS certificate files changed: the next connection uses the new ones");
                true
            }
            Err(err) => {
                // Half-written files are common while a rotation runs: keep what works and
                // try again at the next check.
                tracing::warn!(error = %err, "TLS certificate files changed but cannot be used yet; keeping the current ones");
                false
            }
        }
    }
}

impl TlsConfig {
    /// The files of the CA, certificate and key, in the order `load` stamps them.
    fn files(&self) -> Vec<Option<&Path>> {
        fn path(pem: &Pem) -> Option<&Path> {
            match pem {
                Pem::File(path) => Some(path.as_path()),
                Pem::Text(_) => None,
            }
        }
        let mut files = vec![path(&self.ca)];
        if let Some((cert, key)) = &self.identity {
            files.extend([path(cert), path(key)]);
        }
        files
    }
}

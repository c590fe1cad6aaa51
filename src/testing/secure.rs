//! Secured test servers: TLS on the client port with throw-away certificates, and SASL
//! DIGEST-MD5 authentication that the servers require.
//!
//! Certificates come from `rcgen` (X.509 v3: `zookeeper-client` rejects a v1 certificate, as
//! plain `openssl x509 -req` makes, with a misleading "invalid client private key"). Keys are
//! PKCS#8 PEM, which ZooKeeper's PEM key store reads. Everything is written into the cluster's
//! temporary directory, so the files live exactly as long as the servers.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use super::HarnessError;

/// Whether the servers ask TLS clients for a certificate (ZooKeeper's `ssl.clientAuth`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never ask: any client that trusts the server connects.
    None,
    /// Ask, and accept a client without one; a certificate that is given must be trusted.
    Want,
    /// Require a trusted client certificate (ZooKeeper's default).
    Need,
}

impl ClientAuth {
    fn setting(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Want => "want",
            ClientAuth::Need => "need",
        }
    }
}

/// A certificate and its private key, as PEM text and as files.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its PKCS#8 private key, PEM.
    pub key_pem: String,
    /// The file holding `cert_pem`.
    pub cert_path: PathBuf,
    /// The file holding `key_pem`.
    pub key_path: PathBuf,
    /// Its subject as ZooKeeper's x509 authentication provider names it, the ACL identity
    /// of a client that presents it: `CN=<name>`.
    pub subject: String,
}

impl CertifiedKey {
    /// Replaces the files' contents with `other`'s, the way a certificate manager rotates
    /// certificates: written beside them and renamed over them, so no reader sees half a file.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if a file cannot be written.
    pub fn replace_with(&mut self, other: &CertifiedKey) -> Result<(), HarnessError> {
        replace(&self.cert_path, &other.cert_pem)?;
        replace(&self.key_path, &other.key_pem)?;
        self.cert_pem = other.cert_pem.clone();
        self.key_pem = other.key_pem.clone();
        self.subject = other.subject.clone();
        Ok(())
    }
}

fn replace(path: &Path, contents: &str) -> Result<(), HarnessError> {
    let next = path.with_extension("next");
    fs::write(&next, contents).map_err(|e| HarnessError::io("writing a rotated certificate", e))?;
    fs::rename(&next, path).map_err(|e| HarnessError::io("renaming a rotated certificate into place", e))
}

/// A certificate authority of the harness, which signs server and client certificates.
#[derive(Debug)]
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The file holding `cert_pem`: the trust store to give clients (and servers).
    pub cert_path: PathBuf,
    dir: PathBuf,
    issued: AtomicU64,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/<name>.pem`.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if `dir` cannot be written.
    pub fn new(dir: &Path, name: &str) -> Result<Self, HarnessError> {
        fs::create_dir_all(dir).map_err(|e| HarnessError::io("creating the certificate directory", e))?;
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        let key = generate_key()?;
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        let cert_pem = cert.pem();
        let cert_path = dir.join(format!("{name}.pem"));
        fs::write(&cert_path, &cert_pem).map_err(|e| HarnessError::io("writing a CA certificate", e))?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem,
            cert_path,
            dir: dir.to_owned(),
            issued: AtomicU64::new(0),
        })
    }

    /// A server certificate valid for `names` (DNS names or IP addresses), written to files
    /// named after the first.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if the files cannot be written.
    pub fn server(&self, names: &[&str]) -> Result<CertifiedKey, HarnessError> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).map_err(rcgen_error)?;
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("server"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        // A server certificate is used as a client one too when members talk TLS to each other.
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, "server", names.first().copied().unwrap_or("server"))
    }

    /// A client certificate with subject `CN=<name>`.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if the files cannot be written.
    pub fn client(&self, name: &str) -> Result<CertifiedKey, HarnessError> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, name, name)
    }

    fn issue(&self, params: CertificateParams, stem: &str, common_name: &str) -> Result<CertifiedKey, HarnessError> {
        let key = generate_key()?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        // Every certificate gets files of its own, even one issued again for the same name.
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let stem: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let cert_path = self.dir.join(format!("{stem}-{n}.crt"));
        let key_path = self.dir.join(format!("{stem}-{n}.key"));
        let issued = CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_path,
            key_path,
            subject: format!("CN={common_name}"),
        };
        fs::write(&issued.cert_path, &issued.cert_pem).map_err(|e| HarnessError::io("writing a certificate", e))?;
        fs::write(&issued.key_path, &issued.key_pem).map_err(|e| HarnessError::io("writing a private key", e))?;
        Ok(issued)
    }
}

/// An RSA key: the JVM's PEM key store reads RSA and EC keys alike, but RSA is what every
/// ZooKeeper deployment guide uses, so the tests exercise the common case.
fn generate_key() -> Result<KeyPair, HarnessError> {
    KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).map_err(rcgen_error)
}

fn rcgen_error(e: rcgen::Error) -> HarnessError {
    HarnessError::io("generating a certificate", std::io::Error::other(e.to_string()))
}

/// TLS on the servers' client ports: the CA, each server's certificate, and client
/// certificates made on request.
#[derive(Debug)]
pub struct TestTls {
    /// The CA that signed the servers' certificates, and that the servers trust for client
    /// certificates.
    pub ca: TestCa,
    /// Whether the servers ask for client certificates.
    pub client_auth: ClientAuth,
    /// A client certificate the servers accept, subject `CN=client`, made with the cluster.
    pub client: CertifiedKey,
    dir: PathBuf,
}

impl TestTls {
    pub(super) fn new(dir: &Path, client_auth: ClientAuth) -> Result<Self, HarnessError> {
        let ca = TestCa::new(dir, "harness-ca")?;
        let client = ca.client("client")?;
        Ok(Self { ca, client_auth, client, dir: dir.to_owned() })
    }

    /// A CA the servers do not trust, for certificates that must be rejected (its files are
    /// in the cluster's directory too).
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if the files cannot be written.
    pub fn foreign_ca(&self, name: &str) -> Result<TestCa, HarnessError> {
        TestCa::new(&self.dir.join(name), name)
    }

    /// A PEM key store (key and certificate in one file) of `cert`, as Java's ZooKeeper client
    /// reads them (`zookeeper.ssl.keyStore.location`).
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if the file cannot be written.
    pub fn java_key_store(&self, cert: &CertifiedKey) -> Result<PathBuf, HarnessError> {
        let path = cert.cert_path.with_extension("keystore.pem");
        fs::write(&path, format!("{}{}", cert.key_pem, cert.cert_pem))
            .map_err(|e| HarnessError::io("writing a key store", e))?;
        Ok(path)
    }

    /// The key store (certificate and key in one PEM file) and trust store of a member.
    pub(super) fn member_stores(&self, member: usize, names: &[&str]) -> Result<(PathBuf, PathBuf), HarnessError> {
        let server = self.ca.server(names)?;
        let key_store = self.dir.join(format!("member-{member}-keystore.pem"));
        fs::write(&key_store, format!("{}{}", server.key_pem, server.cert_pem))
            .map_err(|e| HarnessError::io("writing a key store", e))?;
        Ok((key_store, self.ca.cert_path.clone()))
    }

    /// The `zoo.cfg` settings of a member with these stores.
    pub(super) fn settings(&self, key_store: &Path, trust_store: &Path) -> Vec<(String, String)> {
        let settings = [
            ("serverCnxnFactory", "org.apache.zookeeper.server.NettyServerCnxnFactory".to_owned()),
            ("ssl.keyStore.location", key_store.display().to_string()),
            ("ssl.keyStore.type", "PEM".to_owned()),
            ("ssl.trustStore.location", trust_store.display().to_string()),
            ("ssl.trustStore.type", "PEM".to_owned()),
            ("ssl.clientAuth", self.client_auth.setting().to_owned()),
            // A client certificate's subject becomes the ACL identity `x509:CN=...`.
            ("authProvider.x509", "org.apache.zookeeper.server.auth.X509AuthenticationProvider".to_owned()),
        ];
        settings.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

/// SASL DIGEST-MD5 users the servers know, and require every session to authenticate as.
#[derive(Debug, Clone)]
pub struct TestSasl {
    /// User names and passwords.
    pub users: Vec<(String, String)>,
    /// The JAAS file the servers read.
    pub jaas_path: PathBuf,
}

impl TestSasl {
    pub(super) fn new(dir: &Path, users: &[(String, String)]) -> Result<Self, HarnessError> {
        let mut jaas = String::from("Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required");
        for (user, password) in users {
            let _ = write!(jaas, "\n  user_{user}=\"{password}\"");
        }
        jaas.push_str(";\n};\n");
        fs::create_dir_all(dir).map_err(|e| HarnessError::io("creating the SASL directory", e))?;
        let jaas_path = dir.join("jaas.conf");
        fs::write(&jaas_path, jaas).map_err(|e| HarnessError::io("writing the JAAS file", e))?;
        Ok(Self { users: users.to_vec(), jaas_path })
    }

    /// The first user and password.
    ///
    /// # Panics
    ///
    /// Never: a SASL cluster is built with at least one user.
    pub fn user(&self) -> (&str, &str) {
        let (user, password) = &self.users[0];
        (user, password)
    }

    /// A JAAS file whose `Client` section logs Java's ZooKeeper client in as `user`
    /// (`java.security.auth.login.config`).
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if the file cannot be written.
    pub fn java_client_jaas(&self, user: &str, password: &str) -> Result<PathBuf, HarnessError> {
        let jaas = format!(
            "Client {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  username=\"{user}\"\n  password=\"{password}\";\n}};\n"
        );
        let path = self.jaas_path.with_file_name(format!("client-{user}.jaas"));
        fs::write(&path, jaas).map_err(|e| HarnessError::io("writing a JAAS file", e))?;
        Ok(path)
    }

    /// The `zoo.cfg` settings.
    pub(super) fn settings(&self) -> Vec<(String, String)> {
        let settings = [
            ("authProvider.sasl", "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"),
            // ZooKeeper 3.8's way of making authentication mandatory (sessionRequireClientSASLAuth
            // is its deprecated alias): a session that has not authenticated with SASL is closed
            // at its first request, with SESSIONCLOSEDREQUIRESASLAUTH.
            ("enforce.auth.enabled", "true"),
            ("enforce.auth.schemes", "sasl"),
        ];
        settings.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    /// The JVM arguments.
    pub(super) fn jvm_args(&self) -> Vec<String> {
        vec![format!("-Djava.security.auth.login.config={}", self.jaas_path.display())]
    }
}

//! A real Kerberos KDC (MIT krb5) for tests, on a loopback port: what servers and clients
//! that authenticate with SASL GSSAPI need.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::HarnessError;
use super::member::{Process, free_port, spawn_watched};

/// The realm of every test KDC.
pub const REALM: &str = "ZK.TEST";
/// The host part of the servers' principal, `zookeeper/localhost@ZK.TEST`: what clients name
/// as the servers' host (`GssapiConfig::host`), since the connect string says `127.0.0.1`.
pub const SERVICE_HOST: &str = "localhost";
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Where Debian's `krb5-kdc` and `krb5-admin-server` put their programs.
const SBIN: &str = "/usr/sbin";

/// A Kerberos KDC of its own for a test: a realm database in a temporary directory, the
/// servers' principal `zookeeper/localhost@ZK.TEST` and a client principal `client@ZK.TEST`,
/// each with a keytab, and `krb5kdc` on a free port of 127.0.0.1 (UDP and TCP).
///
/// Uses Debian's `krb5-kdc` and `krb5-admin-server` packages (`krb5kdc`, `kdb5_util`,
/// `kadmin.local`); when they are missing, starting fails with an error that names the
/// install command. Dropping it stops the KDC and deletes its directory (kept, with its log,
/// if the thread is panicking); a watchdog stops it even if the test process dies.
///
/// Clients find the realm through [`krb5_conf`](TestingKdc::krb5_conf) (`KRB5_CONFIG`) and
/// their credentials through a client keytab (`KRB5_CLIENT_KTNAME`), from which the GSSAPI
/// library gets tickets into a credential cache (`KRB5CCNAME`) on its own:
/// [`client_env`](TestingKdc::client_env) has the three.
#[derive(Debug)]
pub struct TestingKdc {
    /// Dropped before `root`: the KDC stops before its directory goes.
    process: Option<Process>,
    port: u16,
    dir: PathBuf,
    /// Always `Some` until dropped.
    root: Option<tempfile::TempDir>,
}

impl TestingKdc {
    /// Creates the realm and its principals and starts the KDC; returns once it accepts
    /// connections.
    ///
    /// # Errors
    ///
    /// [`HarnessError::KerberosMissing`] with the install command if the KDC's programs are
    /// missing; [`HarnessError::Kdc`] with the output or log if a program fails or the KDC does
    /// not come up.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, the KDC is stopped and its directory deleted.
    pub async fn start() -> Result<Self, HarnessError> {
        for program in ["krb5kdc", "kdb5_util", "kadmin.local"] {
            if !Path::new(SBIN).join(program).exists() {
                return Err(HarnessError::KerberosMissing(format!("{SBIN}/{program} not found")));
            }
        }
        let root = tempfile::Builder::new()
            .prefix("zk-recipes-kdc-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating a temporary directory", e))?;
        let dir = root.path().to_owned();
        let port = free_port()?;
        let d = dir.display();
        let kdc_conf = format!(
            "[kdcdefaults]\n kdc_listen = 127.0.0.1:{port}\n kdc_tcp_listen = 127.0.0.1:{port}\n\
             [realms]\n {REALM} = {{\n  database_name = {d}/principal\n  key_stash_file = {d}/stash\n  \
             acl_file = {d}/kadm5.acl\n  \
             supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n }}\n\
             [logging]\n kdc = FILE:{d}/kdc.log\n"
        );
        // No DNS at all: the host of a service principal is taken as written (no
        // canonicalization, no domain appended to `localhost`), and the realm is this one.
        let krb5_conf = format!(
            "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n dns_lookup_realm = false\n \
             dns_canonicalize_hostname = false\n qualify_shortname = \"\"\n rdns = false\n \
             udp_preference_limit = 1\n\
             [realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{port}\n }}\n\
             [domain_realm]\n {SERVICE_HOST} = {REALM}\n"
        );
        fs::write(dir.join("kdc.conf"), kdc_conf).map_err(|e| HarnessError::io("writing kdc.conf", e))?;
        fs::write(dir.join("krb5.conf"), krb5_conf).map_err(|e| HarnessError::io("writing krb5.conf", e))?;
        fs::write(dir.join("kadm5.acl"), "").map_err(|e| HarnessError::io("writing kadm5.acl", e))?;
        let mut kdc = Self { process: None, port, dir, root: Some(root) };

        kdc.run("kdb5_util", &["-r", REALM, "create", "-s", "-P", "harness-master-key"])?;
        kdc.add_principal(&format!("zookeeper/{SERVICE_HOST}"), &kdc.server_keytab())?;
        kdc.add_principal("client", &kdc.client_keytab())?;

        let log = kdc.dir.join("krb5kdc.out");
        let mut server = Command::new(Path::new(SBIN).join("krb5kdc"));
        server.args(["-n", "-r", REALM]);
        kdc.environment(&mut server);
        let process = spawn_watched(server, &log, None, None, None).map_err(HarnessError::Kdc)?;
        kdc.process = Some(process);

        // Readiness: the KDC accepts TCP connections once it listens on both sockets.
        let started = Instant::now();
        loop {
            let process = kdc.process.as_mut().expect("running");
            if !process.is_running() {
                return Err(HarnessError::Kdc(format!("krb5kdc exited: {}", kdc.log_tail())));
            }
            if TcpStream::connect(("127.0.0.1", kdc.port)).await.is_ok() {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                let tail = kdc.log_tail();
                return Err(HarnessError::Kdc(format!("krb5kdc not listening after {START_TIMEOUT:?}: {tail}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(port, realm = REALM, "Kerberos KDC serving");
        Ok(kdc)
    }

    /// Adds `principal` (in [`REALM`]) with a random key, and exports it to `keytab`.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Kdc`] with `kadmin.local`'s output if it fails.
    pub fn add_principal(&self, principal: &str, keytab: &Path) -> Result<(), HarnessError> {
        self.run("kadmin.local", &["-r", REALM, "-q", &format!("addprinc -randkey {principal}")])?;
        self.run("kadmin.local", &["-r", REALM, "-q", &format!("ktadd -k {} {principal}", keytab.display())])
    }

    /// Gives `principal` a new random key, so that keytabs exported before hold a stale one.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Kdc`] with `kadmin.local`'s output if it fails.
    pub fn rotate_key(&self, principal: &str) -> Result<(), HarnessError> {
        self.run("kadmin.local", &["-r", REALM, "-q", &format!("cpw -randkey {principal}")])
    }

    /// The client configuration (`KRB5_CONFIG`, Java's `java.security.krb5.conf`): the realm
    /// and this KDC's address.
    pub fn krb5_conf(&self) -> PathBuf {
        self.dir.join("krb5.conf")
    }

    /// The keytab of the servers' principal `zookeeper/localhost@ZK.TEST`.
    pub fn server_keytab(&self) -> PathBuf {
        self.dir.join("zookeeper.keytab")
    }

    /// The keytab of the client principal `client@ZK.TEST`.
    pub fn client_keytab(&self) -> PathBuf {
        self.dir.join("client.keytab")
    }

    /// A path in the KDC's directory for a file of the test's (a keytab of its own, say).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The client principal that [`client_keytab`](TestingKdc::client_keytab) holds; a
    /// session authenticated with it has the ACL identity `sasl:client@ZK.TEST`.
    pub fn client_principal(&self) -> String {
        format!("client@{REALM}")
    }

    /// The port of 127.0.0.1 the KDC serves on (UDP and TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The environment of a client authenticating with `keytab`: `KRB5_CONFIG`,
    /// `KRB5_CLIENT_KTNAME`, and a `KRB5CCNAME` credential cache of its own in the KDC's
    /// directory, named after `cache` (a new name starts without tickets).
    pub fn client_env(&self, keytab: &Path, cache: &str) -> Vec<(&'static str, String)> {
        vec![
            ("KRB5_CONFIG", self.krb5_conf().display().to_string()),
            ("KRB5_CLIENT_KTNAME", keytab.display().to_string()),
            ("KRB5CCNAME", format!("FILE:{}", self.dir.join(format!("ccache-{cache}")).display())),
        ]
    }

    /// A JAAS file whose `Server` section logs the servers in as `zookeeper/localhost@ZK.TEST`
    /// with its keytab (`java.security.auth.login.config`).
    pub(super) fn server_jaas(&self) -> Result<PathBuf, HarnessError> {
        let jaas = format!(
            "Server {{\n  com.sun.security.auth.module.Krb5LoginModule required\n  useKeyTab=true\n  \
             keyTab=\"{}\"\n  storeKey=true\n  useTicketCache=false\n  \
             principal=\"zookeeper/{SERVICE_HOST}@{REALM}\";\n}};\n",
            self.server_keytab().display()
        );
        let path = self.dir.join("server.jaas");
        fs::write(&path, jaas).map_err(|e| HarnessError::io("writing the JAAS file", e))?;
        Ok(path)
    }

    fn environment(&self, command: &mut Command) {
        command.env("KRB5_CONFIG", self.krb5_conf()).env("KRB5_KDC_PROFILE", self.dir.join("kdc.conf"));
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), HarnessError> {
        let mut command = Command::new(Path::new(SBIN).join(program));
        command.args(args);
        self.environment(&mut command);
        let output = command.output().map_err(|e| HarnessError::io("running a Kerberos admin program", e))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // kadmin.local reports a failed query on stderr but exits 0; its other output there
        // is "Authenticating as principal ..." and "No policy specified ...".
        let notes = ["Authenticating as", "No policy specified"];
        let complained =
            stderr.lines().any(|line| !line.trim().is_empty() && !notes.iter().any(|n| line.starts_with(n)));
        if !output.status.success() || complained {
            return Err(HarnessError::Kdc(format!("{program} {}: {}: {stderr}", args.join(" "), output.status)));
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("kdc.log")).unwrap_or_default()
            + &fs::read_to_string(self.dir.join("krb5kdc.out")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for TestingKdc {
    fn drop(&mut self) {
        drop(self.process.take());
        if std::thread::panicking()
            && let Some(root) = self.root.take()
        {
            let kept = root.keep();
            eprintln!("kept the KDC's directory and log: {}", kept.display());
        }
    }
}

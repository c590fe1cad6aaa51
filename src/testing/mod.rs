//! Real Apache ZooKeeper servers and ensembles for tests, started as child processes on
//! loopback ports — the counterpart of Curator's `TestingServer` and `TestingCluster`.
//!
//! Uses the Debian/Ubuntu package (`apt-get install zookeeper`), an unpacked release in
//! `ZOOKEEPER_HOME`, or the jars in `ZOOKEEPER_CLASSPATH`, and `java` from `JAVA_HOME` or
//! `PATH`. When either is missing, starting fails with an error that names the command which
//! installs it; nothing is skipped.
//!
//! Every server runs with a fresh data directory in a temporary directory, which is deleted
//! with the cluster (kept, with its logs, if the thread is panicking). No server outlives its
//! cluster: dropping the cluster kills them, and a watchdog kills them even if the test
//! process itself is killed.
//!
//! The defaults suit tests: `tickTime` 500 ms (session timeouts of 1 to 10 s), container
//! nodes checked for reaping every second, unlimited connections per client address.
//!
//! Faults on the network: a [`Proxy`] between a client and a member, a [`Link`] between a
//! client and every member, and, in an ensemble built
//! [partitionable](ClusterBuilder::partitionable), a proxy on every connection one member
//! opens to another, so that a test can cut a member off from the others
//! ([`TestingCluster::isolate`]) while its clients stay connected to it — and watch it serve
//! stale reads until it notices, stop serving, and catch up once healed. Curator's
//! `TestingCluster` cannot do this: it can kill and restart its servers, but puts nothing
//! between them.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use zk_recipes::testing::TestingCluster;
//! use zk_recipes::{Mutex, Session};
//!
//! let cluster = TestingCluster::ensemble(3).await?;
//! let session = Session::connect(&cluster.connect_string()).await?;
//! let guard = Mutex::new(&session, "/locks/test")?.lock().await?;
//!
//! let leader = cluster.leader().await.expect("an elected leader");
//! cluster.kill(leader).await?; // the ensemble elects another leader; the session survives
//! cluster.restart(leader).await?;
//! # drop(guard);
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use zk_recipes::testing::TestingCluster;
//!
//! let cluster = TestingCluster::builder().size(3).partitionable().start().await?;
//! let leader = cluster.leader().await.expect("an elected leader");
//! cluster.isolate(leader)?; // the others elect a new leader after syncLimit × tickTime
//! cluster.heal(leader)?; // the old leader rejoins as a follower
//! # Ok(()) }
//! ```

mod install;
#[cfg(feature = "gssapi")]
mod kdc;
mod member;
mod partition;
#[cfg(feature = "postgres")]
mod postgres;
mod proxy;
mod secure;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::Mutex;

use self::install::{Installation, Source};
#[cfg(feature = "gssapi")]
#[cfg_attr(docsrs, doc(cfg(feature = "gssapi")))]
pub use self::kdc::{REALM, SERVICE_HOST, TestingKdc};
use self::member::{Member, Process, four_letter};
use self::partition::MemberLinks;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use self::postgres::TestingPostgres;
pub use self::proxy::{Fault, Link, Proxy};
pub use self::secure::{CertifiedKey, ClientAuth, TestCa, TestSasl, TestTls};

/// Errors of the test harness. Each says how to fix the setup.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No Java runtime was found.
    #[error(
        "Java is missing ({0}): install it with `sudo apt-get install -y default-jre-headless` \
         (Debian/Ubuntu), or set JAVA_HOME"
    )]
    JavaMissing(String),

    /// No ZooKeeper installation was found.
    #[error(
        "Apache ZooKeeper is missing ({0}): install it with `sudo apt-get install -y zookeeper` \
         (Debian/Ubuntu), or set ZOOKEEPER_HOME to an unpacked release or ZOOKEEPER_CLASSPATH \
         to its jars"
    )]
    ZooKeeperMissing(String),

    /// The servers cannot serve TLS.
    #[error(
        "ZooKeeper cannot serve TLS here ({0}): install Netty with `sudo apt-get install -y \
         libnetty-java` (Debian/Ubuntu), or add its netty-codec jar to ZOOKEEPER_CLASSPATH"
    )]
    TlsUnavailable(String),

    /// PostgreSQL's server programs are missing (for `TestingPostgres`, feature `postgres`).
    #[error(
        "PostgreSQL is missing ({0}): install it with `sudo apt-get install -y postgresql` \
         (Debian/Ubuntu), or set PG_BIN to the directory of its initdb and postgres"
    )]
    PostgresMissing(String),

    /// A PostgreSQL server did not start serving.
    #[error("PostgreSQL is not serving after {after:?}; its log is {log:?}:\n{tail}")]
    PostgresNotServing {
        /// How long it was given.
        after: Duration,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },

    /// A PostgreSQL client could not connect or a statement of the harness failed.
    #[error("PostgreSQL: {0}")]
    Postgres(String),

    /// MIT Kerberos' KDC programs are missing (for `TestingKdc`, feature `gssapi`).
    #[error(
        "the Kerberos KDC is missing ({0}): install it with `sudo apt-get install -y krb5-kdc \
         krb5-admin-server` (Debian/Ubuntu)"
    )]
    KerberosMissing(String),

    /// A Kerberos program of the harness failed, or the KDC did not start serving.
    #[error("Kerberos KDC: {0}")]
    Kdc(String),

    /// A server did not start serving.
    #[error("ZooKeeper member {member} is not serving after {after:?}; its log is {log:?}:\n{tail}")]
    NotServing {
        /// The member's index.
        member: usize,
        /// How long it was given.
        after: Duration,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },

    /// There is no member with that index.
    #[error("no member {member}: the cluster has {size}")]
    NoSuchMember {
        /// The index asked for.
        member: usize,
        /// The number of members.
        size: usize,
    },

    /// There is no link to put a fault on: only an ensemble built with
    /// [`ClusterBuilder::partitionable`] links its members, each to every other.
    #[error(
        "member {member} has no proxied link there: only an ensemble built with \
         ClusterBuilder::partitionable() links its members, each to every other"
    )]
    NoLink {
        /// The member named.
        member: usize,
    },

    /// The member is stopped (start it with [`TestingCluster::restart`]).
    #[error("the member is not running; start it with restart()")]
    NotRunning,

    /// An operating-system call failed.
    #[error("{doing}: {source}")]
    Io {
        /// What the harness was doing.
        doing: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl HarnessError {
    fn io(doing: &'static str, source: std::io::Error) -> Self {
        Self::Io { doing, source }
    }
}

/// A server's role, as its `srvr` command reports it.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A single server, not part of an ensemble.
    Standalone,
    /// The ensemble's leader.
    Leader,
    /// A follower.
    Follower,
    /// An observer.
    Observer,
}

impl Mode {
    fn parse(srvr: &str) -> Option<Self> {
        let mode = srvr.lines().find_map(|line| line.strip_prefix("Mode: "))?;
        match mode.trim() {
            "standalone" => Some(Self::Standalone),
            "leader" => Some(Self::Leader),
            "follower" => Some(Self::Follower),
            "observer" => Some(Self::Observer),
            _ => None,
        }
    }
}

/// Options for a [`TestingCluster`].
#[must_use = "a builder does nothing until `start` is awaited"]
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    size: usize,
    settings: Vec<(String, String)>,
    jvm_args: Vec<String>,
    start_timeout: Duration,
    source: Option<Source>,
    partitionable: bool,
    tls: Option<ClientAuth>,
    sasl: Vec<(String, String)>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        let settings = [
            ("tickTime", "500"),
            ("initLimit", "20"),
            ("syncLimit", "10"),
            // The default of 60 connections per address breaks tests with many sessions.
            ("maxClientCnxns", "0"),
            ("4lw.commands.whitelist", "*"),
            ("admin.enableServer", "false"),
        ];
        let jvm_args = [
            "-Xms32m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
            "-Djava.net.preferIPv4Stack=true",
            "-Dznode.container.checkIntervalMs=1000",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
        ];
        Self {
            size: 1,
            settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            jvm_args: jvm_args.iter().map(|a| a.to_string()).collect(),
            start_timeout: Duration::from_secs(60),
            source: None,
            partitionable: false,
            tls: None,
            sasl: Vec::new(),
        }
    }
}

impl ClusterBuilder {
    /// The number of servers: 1 runs a standalone server (the default), more an ensemble.
    pub fn size(mut self, size: usize) -> Self {
        self.size = size.max(1);
        self
    }

    /// Sets a `zoo.cfg` setting, replacing the default if there is one (e.g. `tickTime`).
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets a Java system property, e.g. `zookeeper.forceSync` = `no`.
    pub fn system_property(mut self, key: &str, value: &str) -> Self {
        let prefix = format!("-D{key}=");
        self.jvm_args.retain(|a| !a.starts_with(&prefix));
        self.jvm_args.push(format!("{prefix}{value}"));
        self
    }

    /// Adds a JVM argument (e.g. `-XX:TieredStopAtLevel=4` to undo the fast-start default).
    pub fn jvm_arg(mut self, arg: &str) -> Self {
        self.jvm_args.push(arg.to_owned());
        self
    }

    /// Uses the unpacked Apache ZooKeeper release in `home` (instead of `ZOOKEEPER_HOME` or
    /// the Debian package).
    pub fn zookeeper_home(mut self, home: impl Into<PathBuf>) -> Self {
        self.source = Some(Source::Home(home.into()));
        self
    }

    /// Uses this Java classpath for ZooKeeper's jars and their dependencies (instead of
    /// `ZOOKEEPER_CLASSPATH` or the Debian package).
    pub fn classpath(mut self, classpath: &str) -> Self {
        self.source = Some(Source::Classpath(classpath.to_owned()));
        self
    }

    /// Routes every connection one member of the ensemble opens to another through a fault
    /// proxy of that directed pair, so that a test can partition members from each other
    /// ([`TestingCluster::isolate`], [`TestingCluster::set_pair_fault`] and the like) while
    /// clients still reach every member directly.
    ///
    /// Each member's `zoo.cfg` names the others by the ports of its links' proxies, and the
    /// election proxies rewrite the election address a member announces when it connects,
    /// since ZooKeeper connects back to that address. The links outlive the members'
    /// processes ([`TestingCluster::kill`], [`TestingCluster::restart`]) and run on a thread
    /// of their own, so a test that blocks its thread does not partition its ensemble. A
    /// standalone server has no links.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use zk_recipes::testing::{Fault, TestingCluster};
    ///
    /// let cluster = TestingCluster::builder().size(3).partitionable().start().await?;
    /// cluster.isolate(0)?; // member 0 hears nothing from the others, nor they from it
    /// cluster.heal(0)?;
    /// cluster.set_pair_fault(1, 2, Fault::Refuse)?; // 1 and 2 reset and refuse each other
    /// cluster.heal_all()?;
    /// # Ok(()) }
    /// ```
    pub fn partitionable(mut self) -> Self {
        self.partitionable = true;
        self
    }

    /// Serves TLS on every member's client port, with certificates signed by a CA made for
    /// the cluster ([`TestingCluster::tls`] has it, the files, and a client certificate the
    /// servers accept), asking clients for certificates as `client_auth` says. The servers
    /// also authenticate clients by certificate: a client's ACL identity is `x509:CN=<name>`.
    ///
    /// [`connect_string`](TestingCluster::connect_string) and
    /// [`address`](TestingCluster::address) then name the TLS ports. Each member keeps a
    /// plaintext port too, for the harness's own four-letter-word checks
    /// ([`plaintext_connect_string`](TestingCluster::plaintext_connect_string)).
    ///
    /// Needs Netty's codec on the server's classpath: with the Debian package,
    /// `/usr/share/java/netty-codec.jar` from `libnetty-java`, which `zookeeper` depends on.
    pub fn tls(mut self, client_auth: ClientAuth) -> Self {
        self.tls = Some(client_auth);
        self
    }

    /// Makes the servers require SASL DIGEST-MD5 authentication of every session, as `user`
    /// with `password` (call again for more users): a session that has not authenticated is
    /// closed at its first request. A client's ACL identity is then `sasl:<user>`.
    pub fn sasl_user(mut self, user: &str, password: &str) -> Self {
        self.sasl.push((user.to_owned(), password.to_owned()));
        self
    }

    /// Makes the servers require SASL GSSAPI (Kerberos) authentication of every session,
    /// logging them in as `zookeeper/localhost@ZK.TEST` of `kdc` with its keytab (feature
    /// `gssapi`): a session that has not authenticated is closed at its first request. A
    /// client's ACL identity is then `sasl:<principal>`, e.g. `sasl:client@ZK.TEST`. The KDC
    /// must outlive the cluster.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if the servers' JAAS file cannot be written.
    #[cfg(feature = "gssapi")]
    #[cfg_attr(docsrs, doc(cfg(feature = "gssapi")))]
    pub fn kerberos(self, kdc: &TestingKdc) -> Result<Self, HarnessError> {
        let jaas = kdc.server_jaas()?;
        let krb5_conf = kdc.krb5_conf();
        Ok(self
            .system_property("java.security.auth.login.config", &jaas.display().to_string())
            .system_property("java.security.krb5.conf", &krb5_conf.display().to_string())
            .setting("authProvider.sasl", "org.apache.zookeeper.server.auth.SASLAuthenticationProvider")
            .setting("enforce.auth.enabled", "true")
            .setting("enforce.auth.schemes", "sasl"))
    }

    /// How long each server may take to start serving (default 60 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts every server and waits until all serve clients.
    ///
    /// # Errors
    ///
    /// [`HarnessError::JavaMissing`] / [`HarnessError::ZooKeeperMissing`] with the command
    /// that installs them; [`HarnessError::NotServing`] with the server's log if it does not
    /// come up.
    pub async fn start(self) -> Result<TestingCluster, HarnessError> {
        let install = Installation::locate(self.source.as_ref())?;
        let root = tempfile::Builder::new()
            .prefix("zk-recipes-testing-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating a temporary directory", e))?;
        let members = (1..=self.size)
            .map(|id| Member::new(id, root.path().join(format!("member-{id}")), self.tls.is_some()))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = match self.tls {
            Some(client_auth) => {
                install.require_tls()?;
                Some(TestTls::new(&root.path().join("tls"), client_auth)?)
            }
            None => None,
        };
        let sasl = match self.sasl.is_empty() {
            true => None,
            false => Some(TestSasl::new(&root.path().join("sasl"), &self.sasl)?),
        };
        let mut jvm_args = self.jvm_args;
        jvm_args.extend(sasl.iter().flat_map(TestSasl::jvm_args));
        let links = if self.partitionable && self.size > 1 { Some(MemberLinks::start(&members)?) } else { None };
        let ensemble: &[Member] = if self.size > 1 { &members } else { &[] };
        for (index, member) in members.iter().enumerate() {
            // A member reaches another through their link's proxies, if they have a link.
            let servers: Vec<_> = (ensemble.iter().enumerate())
                .map(|(peer, other)| {
                    let real = (other.quorum_port, other.election_port);
                    let (quorum, election) = links.as_ref().and_then(|l| l.ports(index, peer)).unwrap_or(real);
                    (other.id, quorum, election)
                })
                .collect();
            let mut settings = self.settings.clone();
            if let Some(tls) = &tls {
                // Only the loopback address: a client that names the server otherwise (say
                // `localhost`) fails hostname verification, as tests of it need.
                let (key_store, trust_store) = tls.member_stores(member.id, &["127.0.0.1"])?;
                settings.extend(tls.settings(&key_store, &trust_store));
            }
            settings.extend(sasl.iter().flat_map(TestSasl::settings));
            member.write_config(&servers, &settings)?;
        }
        let cluster = TestingCluster {
            links,
            processes: members.iter().map(|_| Mutex::new(None)).collect(),
            install,
            members,
            tls,
            sasl,
            jvm_args,
            start_timeout: self.start_timeout,
            root: Some(root),
        };
        // Start all first: an ensemble member serves only once a quorum is up.
        let mut started = Vec::new();
        for member in &cluster.members {
            started.push(member.spawn(&cluster.install, &cluster.jvm_args)?);
        }
        for ((member, mut process), slot) in cluster.members.iter().zip(started).zip(&cluster.processes) {
            member.wait_serving(&mut process, cluster.start_timeout).await?;
            *slot.lock().await = Some(process);
        }
        tracing::info!(connect = %cluster.connect_string(), "ZooKeeper cluster serving");
        Ok(cluster)
    }
}

/// Real ZooKeeper servers, standalone or as an ensemble, on 127.0.0.1.
///
/// Members are numbered from 0. Every control method waits until its effect is real: `stop`
/// and `kill` until the process is gone, `restart` until the server serves again.
#[derive(Debug)]
pub struct TestingCluster {
    install: Installation,
    members: Vec<Member>,
    processes: Vec<Mutex<Option<Process>>>,
    jvm_args: Vec<String>,
    start_timeout: Duration,
    /// The proxies between members, in a partitionable ensemble.
    links: Option<MemberLinks>,
    tls: Option<TestTls>,
    sasl: Option<TestSasl>,
    /// Always `Some` until dropped.
    root: Option<tempfile::TempDir>,
}

impl TestingCluster {
    /// Starts a standalone server with the default options.
    ///
    /// # Errors
    ///
    /// As [`ClusterBuilder::start`].
    pub async fn standalone() -> Result<Self, HarnessError> {
        Self::builder().start().await
    }

    /// The servers named by the environment variable `var` (for example `ZK_SERVERS`), or else
    /// a standalone server started here: returns the connect string and the server, which runs
    /// until the returned cluster is dropped. For examples and tools that work against a real
    /// ensemble when given one and stand alone otherwise.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let (servers, _local) = zk_recipes::testing::TestingCluster::from_env_or_standalone("ZK_SERVERS").await?;
    /// let session = zk_recipes::Session::connect(&servers).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ClusterBuilder::start`], when `var` is unset.
    pub async fn from_env_or_standalone(var: &str) -> Result<(String, Option<Self>), HarnessError> {
        match std::env::var(var) {
            Ok(servers) => Ok((servers, None)),
            Err(_) => {
                let cluster = Self::standalone().await?;
                Ok((cluster.connect_string(), Some(cluster)))
            }
        }
    }

    /// Starts an ensemble of `size` servers with the default options.
    ///
    /// # Errors
    ///
    /// As [`ClusterBuilder::start`].
    pub async fn ensemble(size: usize) -> Result<Self, HarnessError> {
        Self::builder().size(size).start().await
    }

    /// Options for a cluster.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The connect string naming every member: their TLS ports in a cluster built with
    /// [`tls`](ClusterBuilder::tls).
    pub fn connect_string(&self) -> String {
        let addresses: Vec<String> = self.members.iter().map(|m| m.serving_address().to_string()).collect();
        addresses.join(",")
    }

    /// The connect string naming every member's plaintext port (the same as
    /// [`connect_string`](Self::connect_string) unless the cluster serves TLS).
    pub fn plaintext_connect_string(&self) -> String {
        let addresses: Vec<String> = self.members.iter().map(|m| m.client_address().to_string()).collect();
        addresses.join(",")
    }

    /// The client address of one member: its TLS port in a cluster built with
    /// [`tls`](ClusterBuilder::tls).
    ///
    /// # Panics
    ///
    /// If there is no such member.
    pub fn address(&self, member: usize) -> SocketAddr {
        self.members[member].serving_address()
    }

    /// The certificates of a cluster built with [`tls`](ClusterBuilder::tls).
    pub fn tls(&self) -> Option<&TestTls> {
        self.tls.as_ref()
    }

    /// The users of a cluster built with [`sasl_user`](ClusterBuilder::sasl_user).
    pub fn sasl(&self) -> Option<&TestSasl> {
        self.sasl.as_ref()
    }

    /// The log file of one member.
    ///
    /// # Panics
    ///
    /// If there is no such member.
    pub fn log_path(&self, member: usize) -> PathBuf {
        self.members[member].log_path()
    }

    /// The process id of a member's server, if it runs.
    pub async fn pid(&self, member: usize) -> Option<u32> {
        let mut slot = self.processes.get(member)?.lock().await;
        let process = slot.as_mut()?;
        process.is_running().then(|| process.pid())
    }

    /// Stops a member gracefully (SIGTERM; SIGKILL after 10 s).
    ///
    /// # Errors
    ///
    /// [`HarnessError::NoSuchMember`].
    pub async fn stop(&self, member: usize) -> Result<(), HarnessError> {
        let process = self.slot(member)?.lock().await.take();
        if let Some(process) = process {
            process.stop().await;
        }
        Ok(())
    }

    /// Kills a member at once (SIGKILL), like a crash.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NoSuchMember`].
    pub async fn kill(&self, member: usize) -> Result<(), HarnessError> {
        drop(self.slot(member)?.lock().await.take());
        Ok(())
    }

    /// Starts a member again (stopping it first if it runs), with its data, and waits until
    /// it serves: in an ensemble, until it has joined a quorum.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotServing`] if it does not come up; [`HarnessError::NoSuchMember`].
    pub async fn restart(&self, member: usize) -> Result<(), HarnessError> {
        let mut slot = self.slot(member)?.lock().await;
        if let Some(process) = slot.take() {
            process.stop().await;
        }
        let config = &self.members[member];
        let mut process = config.spawn(&self.install, &self.jvm_args)?;
        config.wait_serving(&mut process, self.start_timeout).await?;
        *slot = Some(process);
        Ok(())
    }

    /// Freezes a member with SIGSTOP: its connections stay open but nothing answers.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotRunning`] if it is stopped; [`HarnessError::NoSuchMember`].
    pub async fn pause(&self, member: usize) -> Result<(), HarnessError> {
        self.signal(member, Signal::SIGSTOP).await?;
        // `kill` returns before the kernel has stopped every thread of the JVM; until then it
        // may still answer. Return only once the process is stopped.
        let pid = self.pid(member).await.ok_or(HarnessError::NotRunning)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !member::is_stopped(pid) {
            if tokio::time::Instant::now() >= deadline {
                return Err(HarnessError::io(
                    "pausing the server",
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "still running 5 s after SIGSTOP"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Lets a paused member run again (SIGCONT).
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotRunning`] if it is stopped; [`HarnessError::NoSuchMember`].
    pub async fn resume(&self, member: usize) -> Result<(), HarnessError> {
        self.signal(member, Signal::SIGCONT).await
    }

    /// Which member leads: in an ensemble the one in `leader` mode, for a standalone server
    /// that server; `None` while no member reports leading (e.g. during an election).
    pub async fn leader(&self) -> Option<usize> {
        for member in 0..self.size() {
            if matches!(self.mode(member).await, Some(Mode::Leader | Mode::Standalone)) {
                return Some(member);
            }
        }
        None
    }

    /// A member's current role, or `None` if it does not serve (stopped, paused, or without
    /// a quorum).
    pub async fn mode(&self, member: usize) -> Option<Mode> {
        let answer = self.four_letter(member, "srvr").await.ok()?;
        Mode::parse(&answer)
    }

    /// Sends a four-letter-word command (`srvr`, `mntr`, `cons`, `wchp`, …) to a member and
    /// returns its answer.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if the member does not answer within 2 s.
    pub async fn four_letter(&self, member: usize, command: &str) -> Result<String, HarnessError> {
        let address = self.members.get(member).ok_or(self.no_such(member))?.client_address();
        four_letter(address, command).await.map_err(|e| HarnessError::io("sending a four-letter command", e))
    }

    /// Cuts `member` off from every other member, both ways, as a real partition would: open
    /// connections stay open and fall silent (bytes already sent are held back, not lost), new
    /// ones are accepted and get nothing through. Its clients stay connected to it. Blackholes
    /// [`isolate_with`](Self::isolate_with).
    ///
    /// An isolated follower serves stale reads until it has heard nothing from its leader for
    /// `syncLimit` × `tickTime`; then it closes its client connections and serves no more. An
    /// isolated leader steps down within (`syncLimit` + 1) × `tickTime`, and the others elect a
    /// leader among themselves if they are a quorum.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NoLink`] unless the ensemble is
    /// [partitionable](ClusterBuilder::partitionable); [`HarnessError::NoSuchMember`].
    pub fn isolate(&self, member: usize) -> Result<(), HarnessError> {
        self.isolate_with(member, Fault::Blackhole)
    }

    /// Puts `fault` between `member` and every other member, both ways. [`Fault::Refuse`]
    /// also resets the open connections (each side sees its connection reset at once), since
    /// members keep theirs open and refusing only new ones would cut nothing off.
    ///
    /// # Errors
    ///
    /// As [`isolate`](Self::isolate).
    pub fn isolate_with(&self, member: usize, fault: Fault) -> Result<(), HarnessError> {
        self.member_links(member)?;
        for other in (0..self.size()).filter(|&other| other != member) {
            self.set_pair_fault(member, other, fault)?;
        }
        Ok(())
    }

    /// Lets everything through between `member` and every other member again; what a
    /// blackhole held back arrives.
    ///
    /// # Errors
    ///
    /// As [`isolate`](Self::isolate).
    pub fn heal(&self, member: usize) -> Result<(), HarnessError> {
        self.isolate_with(member, Fault::Pass)
    }

    /// Lets everything through between all members again.
    ///
    /// # Errors
    ///
    /// As [`isolate`](Self::isolate).
    pub fn heal_all(&self) -> Result<(), HarnessError> {
        let links = self.member_links(0)?;
        links.pairs().try_for_each(|(from, to)| links.set(from, to, Fault::Pass))
    }

    /// Puts `fault` between members `a` and `b`, both ways, leaving their links to others
    /// as they are (e.g. to split an ensemble in two, or to cut one follower off from the
    /// leader alone). [`Fault::Refuse`] resets open connections, as in
    /// [`isolate_with`](Self::isolate_with).
    ///
    /// # Errors
    ///
    /// [`HarnessError::NoLink`] unless the ensemble is
    /// [partitionable](ClusterBuilder::partitionable) and `a` ≠ `b`;
    /// [`HarnessError::NoSuchMember`].
    pub fn set_pair_fault(&self, a: usize, b: usize, fault: Fault) -> Result<(), HarnessError> {
        self.set_one_way_fault(a, b, fault)?;
        self.set_one_way_fault(b, a, fault)
    }

    /// Puts `fault` on the connections member `from` opens to member `to`, not on those `to`
    /// opens to `from`. A fault such as [`Fault::DropReplies`] sees `from`'s bytes as the
    /// requests. Which connections exist is ZooKeeper's choice: a follower opens the
    /// connection to its leader, and of the election connections between two members only
    /// the one the higher-numbered member opened stays open (members are numbered in
    /// `myid` order).
    ///
    /// # Errors
    ///
    /// As [`set_pair_fault`](Self::set_pair_fault).
    pub fn set_one_way_fault(&self, from: usize, to: usize, fault: Fault) -> Result<(), HarnessError> {
        self.slot(to)?;
        self.member_links(from)?.set(from, to, fault)
    }

    fn member_links(&self, member: usize) -> Result<&MemberLinks, HarnessError> {
        self.slot(member)?;
        self.links.as_ref().ok_or(HarnessError::NoLink { member })
    }

    async fn signal(&self, member: usize, signal: Signal) -> Result<(), HarnessError> {
        match self.slot(member)?.lock().await.as_mut() {
            Some(process) => process.signal(signal),
            None => Err(HarnessError::NotRunning),
        }
    }

    fn slot(&self, member: usize) -> Result<&Mutex<Option<Process>>, HarnessError> {
        self.processes.get(member).ok_or(self.no_such(member))
    }

    fn no_such(&self, member: usize) -> HarnessError {
        HarnessError::NoSuchMember { member, size: self.size() }
    }
}

impl Drop for TestingCluster {
    fn drop(&mut self) {
        for slot in &mut self.processes {
            drop(slot.get_mut().take());
        }
        if std::thread::panicking()
            && let Some(root) = self.root.take()
        {
            let kept = root.keep();
            eprintln!("zk-recipes testing: kept the failed test's ZooKeeper logs in {}", kept.display());
        }
    }
}

//! A real PostgreSQL server for tests, started as a child process on a loopback port: the
//! resource that checks fencing tokens in the `fence` tests, examples and interop peers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Command;
use tokio::time::Instant;

use super::HarnessError;
use super::member::{Process, free_port, spawn_watched};

/// The superuser and database every test connects as; the server trusts loopback clients.
const USER: &str = "postgres";
const DATABASE: &str = "postgres";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A PostgreSQL server of its own for a test: `initdb` in a temporary directory, then
/// `postgres` on a free port of 127.0.0.1, trusting local connections as user `postgres`.
///
/// Uses Debian's `postgresql` package (`/usr/lib/postgresql/<version>/bin`), or the
/// directory of `initdb` and `postgres` in `PG_BIN`, or `initdb` on `PATH`. PostgreSQL refuses
/// to run as root, so as root the server runs as the `postgres` user that the package creates.
/// When either is missing, starting fails with an error that names the install command; nothing
/// is skipped.
///
/// Durability is switched off (`fsync`, `synchronous_commit`, `full_page_writes`): tests
/// need transactions and locks, not crash safety. Dropping it shuts the server down (fast
/// shutdown, then SIGKILL) and deletes its directory — kept, with its log, if the thread is
/// panicking. A watchdog shuts the server down and deletes its directory even if the test
/// process dies.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let postgres = zk_recipes::testing::TestingPostgres::start().await?;
/// let client = postgres.connect().await?;
/// client.batch_execute("CREATE TABLE t (id int)").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestingPostgres {
    /// Dropped before `root`: the server stops before its directory goes.
    process: Option<Process>,
    port: u16,
    bin: PathBuf,
    log: PathBuf,
    /// Always `Some` until dropped.
    root: Option<tempfile::TempDir>,
}

impl TestingPostgres {
    /// Creates a database cluster and starts its server; returns once it accepts connections.
    ///
    /// # Errors
    ///
    /// [`HarnessError::PostgresMissing`] with the install command if PostgreSQL's programs (or,
    /// as root, its `postgres` user) are missing; [`HarnessError::PostgresNotServing`] with
    /// the log if `initdb` fails or the server does not come up.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, `initdb` is killed or the server shut down, and
    /// the directory deleted.
    pub async fn start() -> Result<Self, HarnessError> {
        let bin = locate()?;
        let user = server_user()?;
        let root = tempfile::Builder::new()
            .prefix("zk-recipes-postgres-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating a temporary directory", e))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(root.path(), Some(uid), Some(gid))
                .map_err(|e| HarnessError::io("giving the postgres user its directory", e))?;
        }
        let data = root.path().join("data");
        let log = root.path().join("postgres.log");
        let not_serving = |after: Duration, why: String| HarnessError::PostgresNotServing {
            after,
            log: log.clone(),
            tail: format!("({why})\n{}", tail(&log)),
        };

        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data).args(["-U", USER, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"]);
        // Its output goes to the log, which the server's then follows.
        let output = as_user(initdb, user).output().await.map_err(|e| HarnessError::io("running initdb", e))?;
        std::fs::write(&log, [output.stdout, output.stderr].concat())
            .map_err(|e| HarnessError::io("writing the log", e))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid))
                .map_err(|e| HarnessError::io("chown of the log", e))?;
        }
        if !output.status.success() {
            return Err(not_serving(Duration::ZERO, format!("initdb failed: {}", output.status)));
        }

        let port = free_port()?;
        let mut server = std::process::Command::new(bin.join("postgres"));
        server.arg("-D").arg(&data).args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k", ""]);
        for setting in [
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "shared_buffers=16MB",
            "max_connections=40",
            "log_lock_waits=on",
        ] {
            server.args(["-c", setting]);
        }
        // SIGINT is PostgreSQL's fast shutdown: it ends open transactions and exits cleanly.
        // If the test process dies, the watchdog shuts the server down and deletes the cluster
        // (tens of megabytes) that the temporary directory's drop would have.
        let process = spawn_watched(server, &log, user, Some(Signal::SIGINT), Some(root.path()))
            .map_err(|why| not_serving(Duration::ZERO, why))?;
        let mut postgres = Self { process: Some(process), port, bin, log: log.clone(), root: Some(root) };

        let started = Instant::now();
        loop {
            let process = postgres.process.as_mut().expect("running");
            if !process.is_running() {
                return Err(not_serving(started.elapsed(), "the server exited".into()));
            }
            // Connecting is the readiness check: it fails until the server accepts.
            match postgres.config().connect(tokio_postgres::NoTls).await {
                Ok(_) => break,
                Err(error) if started.elapsed() > START_TIMEOUT => {
                    return Err(not_serving(started.elapsed(), format!("timed out; last error: {error}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
        tracing::info!(port, "PostgreSQL serving");
        Ok(postgres)
    }

    /// The process id of the server (its postmaster).
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("running until dropped").pid()
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection settings: 127.0.0.1, [`port`](Self::port), user and database
    /// `postgres`.
    pub fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.host("127.0.0.1").port(self.port).user(USER).dbname(DATABASE);
        config.connect_timeout(Duration::from_secs(10));
        config
    }

    /// The same settings as a libpq connection string, which `psql` and other libpq clients
    /// take in place of a database name: `host=127.0.0.1 port=… user=postgres dbname=postgres`.
    pub fn connection_string(&self) -> String {
        format!("host=127.0.0.1 port={} user={USER} dbname={DATABASE}", self.port)
    }

    /// The same settings as a JDBC URL, for Java clients.
    pub fn jdbc_url(&self) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/{DATABASE}?user={USER}", self.port)
    }

    /// The `psql` program of the same installation.
    pub fn psql(&self) -> PathBuf {
        self.bin.join("psql")
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// A new client connection; its connection task runs on the current tokio runtime until
    /// the client is dropped.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Postgres`] if the server does not accept the connection.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection not yet returned is closed.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, HarnessError> {
        let (client, connection) = self
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| HarnessError::Postgres(format!("connecting to 127.0.0.1:{}: {e}", self.port)))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

impl Drop for TestingPostgres {
    fn drop(&mut self) {
        drop(self.process.take());
        if std::thread::panicking()
            && let Some(root) = self.root.take()
        {
            let kept = root.keep();
            eprintln!("zk-recipes testing: kept the failed test's PostgreSQL directory and log in {}", kept.display());
        }
    }
}

/// The directory with `initdb` and `postgres`.
fn locate() -> Result<PathBuf, HarnessError> {
    let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        return if usable(&dir) {
            Ok(dir)
        } else {
            Err(HarnessError::PostgresMissing(format!("PG_BIN={} has no initdb and postgres", dir.display())))
        };
    }
    // Debian keeps each major version's server programs off PATH, under its own directory.
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| usable(bin))
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH").iter().flat_map(std::env::split_paths).find(|dir| usable(dir)).ok_or_else(|| {
        HarnessError::PostgresMissing("no initdb and postgres in /usr/lib/postgresql/*/bin or on PATH".into())
    })
}

/// As root, the `postgres` user's uid and gid, since PostgreSQL will not run as root.
fn server_user() -> Result<Option<(u32, u32)>, HarnessError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name(USER) {
        Ok(Some(user)) => Ok(Some((user.uid.as_raw(), user.gid.as_raw()))),
        _ => Err(HarnessError::PostgresMissing(
            "running as root, and there is no `postgres` user to run the server as".into(),
        )),
    }
}

fn as_user(mut command: Command, user: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command.kill_on_drop(true);
    command
}

/// The last lines of the log.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

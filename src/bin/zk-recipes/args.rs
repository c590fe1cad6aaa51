//! The command line: global connection options and one subcommand per recipe.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// ZooKeeper coordination recipes from the shell: run a command while holding a fair (FIFO)
/// lock, a read or write lock, a semaphore permit or leadership, with a fencing token, on
/// Apache Curator's znode layout.
///
/// Exit status: the command's own after a normal run (128 + N if signal N ended it); 2 usage
/// error (a malformed connect string too); 3 not acquired in time; 4 the lock was lost while
/// the command ran, or by the time it exited; 130/143/129 interrupted (SIGINT/SIGTERM/SIGHUP)
/// while waiting; 141 stdout closed (`status | head`); 1 any other failure (e.g. no server
/// reachable within the connect timeout).
///
/// The command runs in a process group of its own, which is tied to the lock (a process that
/// leaves the group, as a daemon does with setsid, is not). If the lock is lost (the session
/// expired; or the tool was frozen past the session timeout, and the command ran on until the
/// tool was thawed), the group gets SIGTERM, whatever of it is left gets SIGKILL after
/// --kill-after, and the tool exits 4 once nothing in the group runs (or names the pids SIGKILL
/// could not end). If the tool dies (SIGKILL, the OOM killer), a watchdog kills the group at
/// once. SIGTERM, SIGHUP and SIGINT sent to the tool go to the group; every signal the tool
/// sends the group is followed by SIGCONT, so that a stopped command gets it too.
///
/// At a terminal (the controlling terminal, whether or not stdin is on it) the group has the
/// terminal while the tool runs in the foreground: prompts on /dev/tty work, and Ctrl-C and
/// Ctrl-Z reach everything the command started. A stop from the terminal (Ctrl-Z, or reading
/// it from the background) stops the tool too, as a shell job; fg or bg resumes both. A job
/// stopped past the session timeout loses the lock, and its command is stopped once resumed.
///
/// Processes the command leaves running in the background when it exits on its own are not
/// covered: the lock is released when the command exits.
///
/// A session that expires while waiting takes the place in line with it: the tool queues
/// again on a new session (saying so on stderr), or with --no-wait or --timeout exits 1.
///
/// Digest authentication: set ZK_DIGEST=user:password in the environment (never printed).
/// SASL DIGEST-MD5: --sasl-user (or ZK_SASL_USER) with the password in ZK_SASL_PASSWORD, which
/// is read from the environment only, never printed, and not passed on to CMD (nor is
/// ZK_DIGEST). TLS: --tls-ca, and --tls-cert with --tls-key for servers that want a client
/// certificate; certificate files replaced while the tool runs are used from the next
/// connection on. A failed TLS handshake or authentication exits 1 with what to fix.
#[derive(Debug, Parser)]
#[command(name = "zk-recipes", version, max_term_width = 100)]
pub struct Cli {
    /// ZooKeeper servers, comma-separated host:port (port 2181 if none; [::1]:2181 for IPv6),
    /// optionally followed by a /chroot.
    #[arg(long, env = "ZK_SERVERS", default_value = "127.0.0.1:2181", global = true)]
    pub servers: String,

    /// Session timeout to ask the servers for (e.g. 10s); the servers may adjust it.
    #[arg(long, value_parser = humantime::parse_duration, global = true)]
    pub session_timeout: Option<Duration>,

    /// Give up connecting after this long (e.g. 5s): the tool fails closed, exit status 1.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s", global = true)]
    pub connect_timeout: Duration,

    /// Connect with TLS, trusting the CA certificates in this PEM file.
    #[arg(long, env = "ZK_TLS_CA", value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,

    /// The client certificate (PEM) to present, for servers that want one; needs --tls-key.
    #[arg(long, env = "ZK_TLS_CERT", value_name = "FILE", global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "ZK_TLS_KEY", value_name = "FILE", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Authenticate with SASL DIGEST-MD5 as this user; the password comes from the
    /// environment variable ZK_SASL_PASSWORD only.
    #[arg(long, env = "ZK_SASL_USER", value_name = "USER", global = true)]
    pub sasl_user: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs CMD while holding the mutex at PATH (Curator's InterProcessMutex layout).
    Lock(Run),
    /// Runs CMD while holding the read side of the read-write lock at PATH.
    ReadLock(Run),
    /// Runs CMD while holding the write side of the read-write lock at PATH.
    WriteLock(Run),
    /// Runs CMD while holding one permit of the semaphore at PATH.
    Semaphore {
        /// How many holders the semaphore admits at once; every participant must agree.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(zk_recipes::MAX_PERMITS)))]
        permits: u32,
        #[command(flatten)]
        run: Run,
    },
    /// Runs CMD while leader of the election at PATH (Curator's LeaderSelector layout, ID as
    /// node data); CMD is stopped if leadership is lost.
    Elect {
        /// This participant's id, stored in its node and shown by `status`.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        run: Run,
    },
    /// Shows who holds PATH and who waits, in order, for any recipe (Curator- and kazoo-named
    /// nodes alike).
    Status {
        /// The recipe path, e.g. /locks/nightly.
        #[arg(value_parser = recipe_path)]
        path: String,
        /// Prints JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Starts a local ZooKeeper ensemble (with Debian's zookeeper package), prints its connect
    /// string on stdout, and serves until Ctrl-C: the easy way to try the tool.
    Sandbox {
        /// Number of servers.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=7))]
        nodes: u8,
        /// Serve TLS on the client ports, with throw-away certificates (a CA, the servers' and
        /// a client's), and print the environment lines that use them.
        #[arg(long)]
        tls: bool,
    },
}

/// What every command that runs CMD takes.
#[derive(Debug, Args)]
pub struct Run {
    /// The recipe path, e.g. /locks/nightly.
    #[arg(value_parser = recipe_path)]
    pub path: String,

    /// Wait at most this long to acquire (e.g. 30s, 5m); exit status 3 if not acquired.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "no_wait")]
    pub timeout: Option<Duration>,

    /// Do not wait: exit with status 3 at once if someone else holds.
    #[arg(long)]
    pub no_wait: bool,

    /// After the lock is lost, how long CMD's process group has between SIGTERM and SIGKILL.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub kill_after: Duration,

    /// No progress line while waiting.
    #[arg(long, short)]
    pub quiet: bool,

    /// A progress line on stderr while waiting even when stderr is not a terminal.
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,

    /// The command to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// A path any recipe can use, checked before connecting.
fn recipe_path(path: &str) -> Result<String, String> {
    zk_recipes::validate_recipe_path(path).map(|()| path.to_owned()).map_err(|e| e.to_string())
}

impl Run {
    /// How long to wait for the lock.
    pub fn patience(&self) -> Patience {
        match (self.no_wait, self.timeout) {
            (true, _) => Patience::NoWait,
            (false, Some(timeout)) => Patience::For(timeout),
            (false, None) => Patience::Forever,
        }
    }
}

/// How long to wait for the lock.
#[derive(Debug, Clone, Copy)]
pub enum Patience {
    Forever,
    NoWait,
    For(Duration),
}

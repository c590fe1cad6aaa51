//! The command line: global connection options and one subcommand per recipe.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// ZooKeeper coordination recipes from the shell: run a command while holding a fair (FIFO)
/// lock, a read or write lock, a semaphore permit or leadership, with a fencing token, on
/// Apache Curator's znode layout.
///
/// Exit status: the command's own after a normal run; 2 usage error; 3 not acquired in time;
/// 4 the lock was lost while the command ran; 130/143/129 interrupted (SIGINT/SIGTERM/SIGHUP)
/// while waiting; 1 any other failure (e.g. no server reachable within the connect timeout).
///
/// Without a terminal (cron, systemd, scripts) the command runs in a process group of its own,
/// and signals — the SIGTERM of a lost lock, and SIGTERM/SIGHUP/SIGINT sent to the tool — go to
/// the whole group. Processes the command leaves running in the background when it exits are
/// not covered by the lock, which is released when the command exits.
///
/// Digest authentication: set ZK_DIGEST=user:password in the environment (never printed).
#[derive(Debug, Parser)]
#[command(name = "zk-recipes", version, max_term_width = 100)]
pub struct Cli {
    /// ZooKeeper servers, comma-separated host:port (optionally with a /chroot).
    #[arg(long, env = "ZK_SERVERS", default_value = "127.0.0.1:2181", global = true)]
    pub servers: String,

    /// Session timeout to ask the servers for (e.g. 10s); the servers may adjust it.
    #[arg(long, value_parser = humantime::parse_duration, global = true)]
    pub session_timeout: Option<Duration>,

    /// Give up connecting after this long (e.g. 5s): the tool fails closed, exit status 1.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s", global = true)]
    pub connect_timeout: Duration,

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

    /// After the lock is lost, how long CMD has between SIGTERM and SIGKILL.
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

//! One ZooKeeper server: its files and ports ([`Member`]) and its running process
//! ([`Process`]), which never outlives the test process.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::install::Installation;
use super::{HarnessError, Mode};

/// Runs the server under `sh` with a watchdog: the watchdog reads our pipe on its stdin and
/// kills the server with SIGKILL when the pipe closes — when we drop the process handle, and
/// also when the test process dies without unwinding (a panic with `abort`, a SIGKILL from a
/// test runner's timeout). The server's pid goes to stdout; its output, and the shell's own
/// messages, to the log file `$1`.
///
/// A server with a clean shutdown gets that signal first (`WATCHDOG_SIGNAL`, e.g. `INT`), and
/// SIGKILL only if it is still there 10 s later. If the watchdog fired — the test process died
/// without removing the server's files — the wrapper deletes `WATCHDOG_REMOVE` once the server
/// has exited, so that a killed test leaves no database cluster behind.
const WATCHDOG: &str = r#"
log=$1; shift
exec 3<&0 2>>"$log"
"$@" </dev/null >>"$log" 2>&1 &
pid=$!
echo "$pid"
(
  # Killed once the server has exited: take the grace period's sleep along.
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  while read -r _ <&3; do :; done
  : > "$log.orphaned"
  kill -"${WATCHDOG_SIGNAL:-KILL}" "$pid" 2>/dev/null
  sleep 10 & nap=$!
  wait "$nap"
  kill -9 "$pid" 2>/dev/null
) &
dog=$!
wait "$pid"; status=$?
kill "$dog" 2>/dev/null
if [ -n "$WATCHDOG_REMOVE" ] && [ -e "$log.orphaned" ]; then rm -rf "$WATCHDOG_REMOVE"; fi
exit "$status"
"#;

/// How long `stop` waits for a graceful exit before killing.
const STOP_GRACE: Duration = Duration::from_secs(10);
const FOUR_LETTER_TIMEOUT: Duration = Duration::from_secs(2);

/// The fixed part of a server: its number, files and ports.
#[derive(Debug)]
pub(super) struct Member {
    /// ZooKeeper's `myid`, 1-based.
    pub(super) id: usize,
    pub(super) dir: PathBuf,
    pub(super) client_port: u16,
    /// The TLS client port, if the member serves TLS.
    pub(super) secure_port: Option<u16>,
    pub(super) quorum_port: u16,
    pub(super) election_port: u16,
}

impl Member {
    pub(super) fn new(id: usize, dir: PathBuf, tls: bool) -> Result<Self, HarnessError> {
        let secure_port = if tls { Some(free_port()?) } else { None };
        Ok(Self {
            id,
            dir,
            client_port: free_port()?,
            secure_port,
            quorum_port: free_port()?,
            election_port: free_port()?,
        })
    }

    pub(super) fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The plaintext client port's address (the harness's four-letter words go there).
    pub(super) fn client_address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port))
    }

    /// Where clients connect: the TLS port if there is one.
    pub(super) fn serving_address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.secure_port.unwrap_or(self.client_port)))
    }

    /// Writes `zoo.cfg` and `myid`. `servers` has a line for every member of the ensemble
    /// (none for a standalone server): its `myid` and the loopback ports at which this member
    /// reaches its quorum and election ports — its own real ones, or proxies.
    pub(super) fn write_config(
        &self,
        servers: &[(usize, u16, u16)],
        settings: &[(String, String)],
    ) -> Result<(), HarnessError> {
        let data = self.dir.join("data");
        fs::create_dir_all(&data).map_err(|e| HarnessError::io("creating a data directory", e))?;
        let mut config = String::new();
        let _ = writeln!(config, "dataDir={}", data.display());
        let _ = writeln!(config, "clientPort={}\nclientPortAddress=127.0.0.1", self.client_port);
        if let Some(port) = self.secure_port {
            let _ = writeln!(config, "secureClientPort={port}\nsecureClientPortAddress=127.0.0.1");
        }
        for (key, value) in settings {
            let _ = writeln!(config, "{key}={value}");
        }
        for (id, quorum_port, election_port) in servers {
            let _ = writeln!(config, "server.{id}=127.0.0.1:{quorum_port}:{election_port}");
        }
        fs::write(self.dir.join("zoo.cfg"), config).map_err(|e| HarnessError::io("writing zoo.cfg", e))?;
        fs::write(data.join("myid"), format!("{}\n", self.id)).map_err(|e| HarnessError::io("writing myid", e))
    }

    /// Starts the server process (it serves only later; see [`Member::wait_serving`]).
    pub(super) fn spawn(&self, install: &Installation, jvm_args: &[String]) -> Result<Process, HarnessError> {
        let mut server = Command::new(&install.java);
        server
            .args(jvm_args)
            .arg("-cp")
            .arg(&install.classpath)
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(self.dir.join("zoo.cfg"));
        spawn_watched(server, &self.log_path(), None, None, None).map_err(|why| HarnessError::NotServing {
            member: self.id - 1,
            after: Duration::ZERO,
            log: self.log_path(),
            tail: why,
        })
    }

    /// Waits until the server answers `srvr` with its mode (it serves clients then).
    pub(super) async fn wait_serving(&self, process: &mut Process, timeout: Duration) -> Result<Mode, HarnessError> {
        let started = Instant::now();
        loop {
            if !process.is_running() {
                return Err(self.not_serving(started.elapsed(), "the process exited"));
            }
            if let Ok(answer) = four_letter(self.client_address(), "srvr").await
                && let Some(mode) = Mode::parse(&answer)
            {
                return Ok(mode);
            }
            if started.elapsed() > timeout {
                return Err(self.not_serving(started.elapsed(), "timed out"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn not_serving(&self, after: Duration, why: &str) -> HarnessError {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        HarnessError::NotServing { member: self.id - 1, after, log: self.log_path(), tail: format!("({why})\n{tail}") }
    }
}

/// Starts `server` under the [`WATCHDOG`] wrapper, its output going to `log`. The wrapper runs
/// as `user` (uid, gid) if given, and the server with it. `shutdown` is the signal that stops
/// the server cleanly when the process is dropped (before SIGKILL), or when the watchdog fires;
/// `None` kills it at once. `orphaned_files` is what the wrapper deletes if the watchdog fired.
/// On failure, says what went wrong.
pub(super) fn spawn_watched(
    server: Command,
    log: &Path,
    user: Option<(u32, u32)>,
    shutdown: Option<Signal>,
    orphaned_files: Option<&Path>,
) -> Result<Process, String> {
    let mut wrapper = Command::new("sh");
    if let Some(signal) = shutdown {
        wrapper.env("WATCHDOG_SIGNAL", signal.as_str().trim_start_matches("SIG"));
    }
    if let Some(files) = orphaned_files {
        wrapper.env("WATCHDOG_REMOVE", files);
    }
    wrapper.arg("-c").arg(WATCHDOG).arg("sh").arg(log).arg(server.get_program()).args(server.get_args());
    for (key, value) in server.get_envs() {
        match value {
            Some(value) => wrapper.env(key, value),
            None => wrapper.env_remove(key),
        };
    }
    if let Some(dir) = server.get_current_dir() {
        wrapper.current_dir(dir);
    }
    if let Some((uid, gid)) = user {
        // std drops the supplementary groups too when root changes user.
        std::os::unix::process::CommandExt::uid(&mut wrapper, uid);
        std::os::unix::process::CommandExt::gid(&mut wrapper, gid);
    }
    let mut wrapper = wrapper
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting sh for {}: {e}", server.get_program().to_string_lossy()))?;
    let stdin = wrapper.stdin.take();
    let stdout = wrapper.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("reading the server's pid: {e}"))?;
    let pid = line.trim().parse::<i32>().map_err(|_| format!("the wrapper printed {line:?} instead of a pid"))?;
    Ok(Process { wrapper, watchdog: stdin, pid: Pid::from_raw(pid), shutdown })
}

/// A running server process (through its watchdog wrapper).
#[derive(Debug)]
pub(super) struct Process {
    wrapper: Child,
    /// Closing this pipe makes the watchdog kill the server.
    watchdog: Option<ChildStdin>,
    /// The server's own pid (the wrapper's child).
    pid: Pid,
    /// The signal that shuts the server down cleanly on drop, if it has one.
    shutdown: Option<Signal>,
}

impl Process {
    pub(super) fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    pub(super) fn is_running(&mut self) -> bool {
        matches!(self.wrapper.try_wait(), Ok(None))
    }

    pub(super) fn signal(&mut self, signal: Signal) -> Result<(), HarnessError> {
        // While the wrapper runs, it has not reaped the server, so the pid is still the server's.
        if !self.is_running() {
            return Err(HarnessError::NotRunning);
        }
        kill(self.pid, signal).map_err(|e| HarnessError::io("signalling the server", e.into()))
    }

    /// SIGTERM, then SIGKILL if the server has not exited within the grace period.
    pub(super) async fn stop(mut self) {
        if self.signal(Signal::SIGCONT).and_then(|()| self.signal(Signal::SIGTERM)).is_ok() {
            let deadline = Instant::now() + STOP_GRACE;
            while self.is_running() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Drop kills whatever is left.
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A clean shutdown first where the server has one (PostgreSQL's removes its shared
        // memory, which a SIGKILL leaves behind), bounded by the grace period.
        if let Some(shutdown) = self.shutdown
            && self.signal(Signal::SIGCONT).and_then(|()| self.signal(shutdown)).is_ok()
        {
            let deadline = std::time::Instant::now() + STOP_GRACE;
            while self.is_running() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if self.is_running() {
            // SIGKILL also ends a stopped (SIGSTOP) process.
            let _ = kill(self.pid, Signal::SIGKILL);
        }
        drop(self.watchdog.take());
        let _ = self.wrapper.wait();
    }
}

/// Sends a four-letter-word command and returns the answer.
pub(super) async fn four_letter(address: SocketAddr, command: &str) -> std::io::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(command.as_bytes()).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    };
    tokio::time::timeout(FOUR_LETTER_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer")))
}

/// A loopback port that is free now and reserved for this process, taken outside the kernel's
/// range for outgoing connections (32768 and up on Linux), so that the many client connections
/// of a test cannot take it before the server binds it.
///
/// Test runners such as nextest run every test in a process of its own, and a server binds its
/// port only once its JVM has started (a second or more on a busy machine): two processes that
/// both found a port free could hand it to two servers, and one of them would fail with
/// `BindException`. So each port handed out is reserved by a lock on a file named after it,
/// which this process holds until it exits (the kernel releases it however the process ends).
pub(super) fn free_port() -> Result<u16, HarnessError> {
    use std::collections::BTreeMap;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::Mutex;
    static RESERVED: Mutex<BTreeMap<u16, fs::File>> = Mutex::new(BTreeMap::new());
    let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    let dir = port_locks();
    fs::create_dir_all(&dir).map_err(|e| HarnessError::io("creating the port reservation directory", e))?;
    for _ in 0..1000 {
        let port = 20_000 + (RandomState::new().hash_one(0u8) % 12_000) as u16;
        if reserved.contains_key(&port) {
            continue;
        }
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
            .map_err(|e| HarnessError::io("opening a port reservation", e))?;
        // Held by another process: its server has this port, or is about to bind it.
        if lock.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            reserved.insert(port, lock);
            return Ok(port);
        }
    }
    Err(HarnessError::io("finding a free port", std::io::ErrorKind::AddrInUse.into()))
}

/// Where the port reservations of [`free_port`] live: one directory for every process on
/// this machine.
fn port_locks() -> PathBuf {
    std::env::temp_dir().join("zk-recipes-testing-ports")
}

/// Whether every thread of the process is stopped by a signal (state `T` in
/// `/proc/<pid>/task/<tid>/stat`): a stop reaches a JVM's threads one by one.
pub(super) fn is_stopped(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    threads.flatten().all(|thread| {
        std::fs::read_to_string(thread.path().join("stat"))
            .is_ok_and(|stat| stat.rsplit(')').next().unwrap_or("").trim_start().starts_with(['T', 't']))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_handed_out_is_reserved_against_other_processes() {
        let port = free_port().unwrap();
        // Another process, as a second test process of a runner would be, cannot take it.
        let other = Command::new("flock")
            .args(["--nonblock", "--conflict-exit-code", "75"])
            .arg(port_locks().join(port.to_string()))
            .arg("true")
            .status()
            .expect("flock(1) from util-linux");
        assert_eq!(other.code(), Some(75), "another process could reserve port {port}");
        assert_ne!(free_port().unwrap(), port, "nor is it handed out twice here");
    }
}

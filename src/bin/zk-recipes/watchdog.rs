//! A watchdog that kills the command's process group if the tool dies without saying so —
//! SIGKILL, the OOM killer, a crash — before the group could outlive the lock, which would
//! be released only once the session expires, for a successor to acquire while the group
//! still runs.
//!
//! The watchdog is a small shell process reading a pipe from the tool. The command's process
//! reports its group on the pipe (see `child.rs`); the tool writes `disarm` when the command
//! has ended normally. If the pipe closes without that, the tool is gone, and the watchdog
//! kills the group at once.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

/// The watchdog's program. `read` fails when the pipe closes: before the group was reported,
/// the command cannot have started (it dies of PDEATHSIG before exec; see `child.rs`).
const WATCHDOG: &str = r#"read -r group || exit 0
while read -r line; do [ "$line" = disarm ] && exit 0; done
kill -KILL -"$group" 2>/dev/null"#;

pub struct Watchdog {
    process: std::process::Child,
    /// The write end of the watchdog's stdin. The tool never passes it on (it is close-on-exec),
    /// so it closes when the tool dies, whatever kills it.
    pipe: Arc<File>,
}

impl Watchdog {
    /// Starts the watchdog in a process group of its own, so that signals for the tool's
    /// group (a terminal's Ctrl-C or hangup) or the command's do not end it.
    pub fn start() -> Result<Self, String> {
        // By its path, not through PATH, which may be anything (cron gives little).
        let mut process = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the watchdog (/bin/sh): {e}"))?;
        let pipe = process.stdin.take().expect("stdin is piped");
        Ok(Self { process, pipe: Arc::new(File::from(std::os::fd::OwnedFd::from(pipe))) })
    }

    /// Where the command's process reports its group, between fork and exec.
    pub fn pipe(&self) -> Arc<File> {
        self.pipe.clone()
    }

    /// Leaves the command's group alone from now on: the command has ended and the tool
    /// has dealt with what was left of its group.
    pub fn disarm(mut self) {
        // The watchdog may be gone already (someone killed it): then there is nobody to tell.
        let _ = (&*self.pipe).write_all(b"disarm\n");
        let _ = self.process.wait();
    }
}

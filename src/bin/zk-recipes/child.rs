//! The command's process: started in a process group of its own and tied to the tool's life,
//! then followed through its changes of state (stopped, continued, exited).

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid, getppid};
use tokio::signal::unix::{Signal as Stream, SignalKind, signal};

use crate::terminal;

/// A change in the command's state.
pub enum Change {
    Exited(ExitStatus),
    Stopped(Signal),
    Continued,
}

pub struct Child {
    pid: Pid,
    /// SIGCHLD, which says that some child (the command, or the watchdog) changed state.
    changes: Stream,
}

/// Starts `command` with `env` added (and the secrets `ZK_DIGEST` and `ZK_SASL_PASSWORD`
/// removed), as the leader of a new process
/// group, which it reports on `watchdog` (see `watchdog.rs`) before it runs; `terminal`, if
/// given, becomes its terminal's foreground process group before it runs.
///
/// Must be called on the thread that stays until the tool exits (the runtime's only one):
/// PDEATHSIG fires when the thread that forked the child ends, not the process.
pub fn spawn(
    command: &[OsString],
    env: &[(&str, String)],
    watchdog: Arc<File>,
    terminal: Option<Arc<File>>,
) -> Result<Child, String> {
    let (program, args) = command.split_first().ok_or("no command given")?;
    // Before the child exists, so that none of its changes is missed.
    let changes = signal(SignalKind::child()).map_err(|e| format!("cannot follow the command: {e}"))?;
    let tool = getpid();
    let mut spawn = Command::new(program);
    spawn
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("ZK_DIGEST")
        .env_remove("ZK_SASL_PASSWORD")
        .process_group(0);
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe work is allowed, as the parent may have had other threads (holding
    // locks, the allocator's among them). It makes system calls only, on data captured
    // before the fork, and writes into a stack buffer: no allocation, no locks. There is no
    // safe way to set PDEATHSIG for the program itself: it must be set in the child before
    // exec, and it is what keeps the command from outliving a tool that dies before the
    // watchdog knows the group.
    unsafe {
        spawn.pre_exec(move || {
            prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The tool may have died before PDEATHSIG was set: then nobody would send it.
            if getppid() != tool {
                return Err(std::io::Error::other("the tool exited"));
            }
            if let Some(tty) = &terminal {
                terminal::hand(tty, getpid())?;
            }
            report_group(&watchdog)
        });
    }
    let child = spawn.spawn().map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(|_| "the command's pid is out of range")?);
    // `child` is dropped, not waited for: `Child::change` reaps the command with waitpid.
    Ok(Child { pid, changes })
}

/// Writes the calling process's pid, its group's id, as a line to `pipe`; async-signal-safe.
fn report_group(pipe: &File) -> std::io::Result<()> {
    let mut line = [0u8; 16];
    let unused = {
        let mut rest = &mut line[..];
        writeln!(rest, "{}", getpid())?;
        rest.len()
    };
    (&*pipe).write_all(&line[..line.len() - unused])
}

impl Child {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The command's next change of state; after `Exited`, it is reaped and this must not be
    /// called again.
    ///
    /// Cancel safe: a change is taken from the kernel only when it is returned.
    pub async fn change(&mut self) -> Change {
        let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED | WaitPidFlag::WCONTINUED;
        loop {
            match waitpid(self.pid, Some(flags)) {
                Ok(WaitStatus::Stopped(_, signal)) => return Change::Stopped(signal),
                Ok(WaitStatus::Continued(_)) => return Change::Continued,
                Ok(status) => match exit_status(status) {
                    Some(status) => return Change::Exited(status),
                    // Still running: wait for news.
                    None => self.news().await,
                },
                Err(Errno::EINTR) => {}
                // ECHILD cannot happen: nothing else in the tool reaps the command.
                Err(_) => self.news().await,
            }
        }
    }

    /// Waits for the next SIGCHLD; were the runtime's signal handling gone, polls instead
    /// rather than spin.
    async fn news(&mut self) {
        if self.changes.recv().await.is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The command's exit status if it has exited already (reaping it), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).ok().and_then(exit_status)
    }
}

/// The status of a process that has ended, as the standard library represents it.
fn exit_status(status: WaitStatus) -> Option<ExitStatus> {
    match status {
        WaitStatus::Exited(_, code) => Some(ExitStatus::from_raw(code << 8)),
        WaitStatus::Signaled(_, signal, core) => Some(ExitStatus::from_raw(signal as i32 | i32::from(core) << 7)),
        _ => None,
    }
}

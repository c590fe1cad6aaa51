//! Running the command while holding: its environment, the signals it gets, and how it ends.

use std::ffi::OsString;
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use zk_recipes::LossReason;

/// How the command's run ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited on its own (or by a signal someone else sent).
    Exited(ExitStatus),
    /// Holding was lost while it ran; it was terminated (and how it ended).
    Lost(LossReason, ExitStatus),
}

/// Runs `command` with `env` added to its environment until it exits, or until `lost`
/// resolves: then it gets SIGTERM, and SIGKILL after `kill_after`. SIGTERM and SIGHUP sent to
/// the tool are passed on to it; SIGINT is not, because Ctrl-C in a terminal reaches the
/// command directly (it is in the same process group).
pub async fn run(
    command: &[OsString],
    env: &[(&str, String)],
    lost: impl Future<Output = LossReason>,
    kill_after: Duration,
) -> Result<Ended, String> {
    let (program, args) = command.split_first().ok_or("no command given")?;
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    // Ctrl-C must not kill the tool before the command ends: the lock is released after it.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::pin!(lost);
    loop {
        tokio::select! {
            status = child.wait() => return status.map(Ended::Exited).map_err(|e| e.to_string()),
            reason = &mut lost => {
                eprintln!("zk-recipes: {reason}; stopping the command (SIGTERM, SIGKILL after {kill_after:?})");
                let status = stop(&mut child, kill_after).await?;
                return Ok(Ended::Lost(reason, status));
            }
            Some(()) = terminate.recv() => send(&child, Signal::SIGTERM),
            Some(()) = hangup.recv() => send(&child, Signal::SIGHUP),
            Some(()) = interrupt.recv() => {}
        }
    }
}

/// SIGTERM, then SIGKILL if it has not exited after `grace`.
async fn stop(child: &mut Child, grace: Duration) -> Result<ExitStatus, String> {
    send(child, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.map_err(|e| e.to_string()),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.map_err(|e| e.to_string())
        }
    }
}

fn send(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// The tool's exit status for a command that ended with `status`: its code, or 128 + the
/// signal that ended it, as shells report it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    }
}

//! Running the command while holding: its environment, the signals it gets, and how it ends.

use std::ffi::OsString;
use std::future::Future;
use std::io::IsTerminal;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal as Stream, SignalKind, signal};
use zk_recipes::LossReason;

/// The signals the tool handles, registered once at start so that none is missed between
/// waiting and running.
pub struct Signals {
    pub interrupt: Stream,
    pub terminate: Stream,
    pub hangup: Stream,
}

impl Signals {
    pub fn register() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// How the command's run ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited on its own (or by a signal someone else sent).
    Exited(ExitStatus),
    /// Holding was lost while it ran; it was terminated (and how it ended).
    Lost(LossReason, ExitStatus),
}

/// Where signals for the command go.
enum Target {
    /// Its own process group, with everything it started: when the tool has no terminal
    /// (cron, systemd, scripts), so that a lost lock stops the whole job.
    Group(Pid),
    /// The command alone, in the tool's process group: at a terminal, where the command must
    /// stay in the foreground and Ctrl-C reaches it directly.
    Process(Pid),
}

impl Target {
    fn send(&self, signal: Signal) {
        let _ = match *self {
            Target::Group(group) => killpg(group, signal),
            Target::Process(pid) => kill(pid, signal),
        };
    }
}

/// Runs `command` with `env` added to its environment (and `ZK_DIGEST` removed) until it
/// exits, or until `lost` resolves: then it gets SIGTERM, and SIGKILL after `kill_after`.
/// SIGTERM, SIGHUP and SIGINT sent to the tool are passed on — except SIGINT at a terminal,
/// which Ctrl-C delivers to the command itself.
pub async fn run(
    command: &[OsString],
    env: &[(&str, String)],
    lost: impl Future<Output = LossReason>,
    kill_after: Duration,
    signals: &mut Signals,
) -> Result<Ended, String> {
    let (program, args) = command.split_first().ok_or("no command given")?;
    let at_terminal = std::io::stdin().is_terminal();
    let mut spawn = Command::new(program);
    spawn.args(args).envs(env.iter().map(|(k, v)| (*k, v.as_str()))).env_remove("ZK_DIGEST");
    if !at_terminal {
        spawn.process_group(0);
    }
    let mut child = spawn.spawn().map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    let pid = Pid::from_raw(child.id().and_then(|id| i32::try_from(id).ok()).ok_or("the command has no pid")?);
    let target = if at_terminal { Target::Process(pid) } else { Target::Group(pid) };
    tokio::pin!(lost);
    loop {
        tokio::select! {
            status = child.wait() => return status.map(Ended::Exited).map_err(|e| e.to_string()),
            reason = &mut lost => {
                eprintln!("zk-recipes: {reason}; stopping the command (SIGTERM, SIGKILL after {kill_after:?})");
                let status = stop(&mut child, &target, kill_after).await?;
                return Ok(Ended::Lost(reason, status));
            }
            Some(()) = signals.terminate.recv() => target.send(Signal::SIGTERM),
            Some(()) = signals.hangup.recv() => target.send(Signal::SIGHUP),
            Some(()) = signals.interrupt.recv() => if !at_terminal { target.send(Signal::SIGINT) },
        }
    }
}

/// SIGTERM, then SIGKILL if it has not exited after `grace`.
async fn stop(child: &mut Child, target: &Target, grace: Duration) -> Result<ExitStatus, String> {
    target.send(Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.map_err(|e| e.to_string()),
        Err(_) => {
            target.send(Signal::SIGKILL);
            child.wait().await.map_err(|e| e.to_string())
        }
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

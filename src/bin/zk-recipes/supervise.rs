//! Running the command while holding: the signals it gets, what stops it, and how it ended.

use std::ffi::OsString;
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::signal::unix::{Signal as Stream, SignalKind, signal};
use tokio::time::Instant;
use zk_recipes::LossReason;

use crate::child::{self, Change, Child};
use crate::group::Group;
use crate::output;
use crate::terminal::Terminal;
use crate::watchdog::Watchdog;

/// How long the group has to be gone after SIGKILL before the tool names who is left (only a
/// process stuck in the kernel, e.g. on a dead NFS server, outlasts SIGKILL).
const AFTER_KILL: Duration = Duration::from_secs(5);
/// How often a stopping group is checked for processes left: no event says it is empty.
const POLL: Duration = Duration::from_millis(50);

/// The signals the tool handles, registered once at start so that none is missed between
/// waiting and running.
pub struct Signals {
    pub interrupt: Stream,
    pub terminate: Stream,
    pub hangup: Stream,
    /// SIGCONT: the tool was resumed after a stop.
    pub resume: Stream,
}

impl Signals {
    pub fn register() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            resume: signal(SignalKind::from_raw(Signal::SIGCONT as i32))?,
        })
    }
}

/// How the command's run ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited on its own (or by a signal someone else sent, or passed on by the tool).
    Exited(ExitStatus),
    /// Holding was lost while it ran, and its process group was stopped.
    Lost(LossReason, Stopped),
}

/// How a process group was stopped after a loss.
#[derive(Debug)]
pub struct Stopped {
    /// The command's status; `None` if even SIGKILL did not end it.
    pub status: Option<ExitStatus>,
    /// The grace after which SIGKILL was needed, if it was.
    pub killed_after: Option<Duration>,
    /// The group's processes still running after SIGKILL.
    pub survivors: Vec<Pid>,
}

/// Runs `command` with `env` added to its environment (and the secrets `ZK_DIGEST` and
/// `ZK_SASL_PASSWORD` removed), in a process
/// group of its own, until it exits, or until `lost` resolves: then the group gets SIGTERM,
/// and SIGKILL after `kill_after` if any of it is left, and this returns once the group is
/// gone. SIGTERM, SIGHUP and SIGINT sent to the tool go to the group, each followed by
/// SIGCONT. If the tool dies, the group is killed (see `watchdog.rs`). At a terminal, the
/// group has the terminal while the tool is in the foreground (see `terminal.rs`).
pub async fn run(
    command: &[OsString],
    env: &[(&str, String)],
    lost: impl Future<Output = LossReason>,
    kill_after: Duration,
    signals: &mut Signals,
) -> Result<Ended, String> {
    let terminal = Terminal::controlling();
    let watchdog = Watchdog::start()?;
    let mut child = child::spawn(command, env, watchdog.pipe(), terminal.as_ref().and_then(Terminal::for_command))?;
    let group = Group(child.pid());
    let ended = follow(&mut child, group, terminal.as_ref(), lost, kill_after, signals).await;
    if let Some(terminal) = &terminal {
        terminal.take_back(group);
    }
    // Processes the command left running after exiting on its own are not covered from here.
    watchdog.disarm();
    Ok(ended)
}

async fn follow(
    child: &mut Child,
    group: Group,
    terminal: Option<&Terminal>,
    lost: impl Future<Output = LossReason>,
    kill_after: Duration,
    signals: &mut Signals,
) -> Ended {
    tokio::pin!(lost);
    loop {
        tokio::select! {
            change = child.change() => match change {
                Change::Exited(status) => return Ended::Exited(status),
                Change::Stopped(signal) => if let Some(terminal) = terminal {
                    terminal.stopped(group, signal);
                },
                Change::Continued => {}
            },
            reason = &mut lost => {
                // Noticed only once the command had exited (the tool was frozen, say): there is
                // nothing to stop, and the caller reports the loss with the command's status.
                if let Some(status) = child.exited() {
                    return Ended::Exited(status);
                }
                output::warn(&format!(
                    "{reason}; stopping the command (SIGTERM to its process group, SIGKILL after {})",
                    humantime::format_duration(kill_after)
                ));
                return Ended::Lost(reason, stop(child, group, kill_after).await);
            }
            Some(()) = signals.terminate.recv() => group.signal(Signal::SIGTERM),
            Some(()) = signals.hangup.recv() => group.signal(Signal::SIGHUP),
            Some(()) = signals.interrupt.recv() => group.signal(Signal::SIGINT),
            Some(()) = signals.resume.recv() => if let Some(terminal) = terminal {
                terminal.resumed(group);
            },
        }
    }
}

/// SIGTERM to the group, then SIGKILL to whatever of it is left after `grace`; returns once
/// the command has exited and nothing in its group runs, or, if SIGKILL could not end
/// everything, saying who is left.
async fn stop(child: &mut Child, group: Group, grace: Duration) -> Stopped {
    let mut status = None;
    group.signal(Signal::SIGTERM);
    if settle(child, &mut status, group, grace).await {
        return Stopped { status, killed_after: None, survivors: Vec::new() };
    }
    group.signal(Signal::SIGKILL);
    settle(child, &mut status, group, AFTER_KILL).await;
    Stopped { status, killed_after: Some(grace), survivors: group.running() }
}

/// Waits at most `within` until the command has exited (its status in `status`) and nothing
/// in its group runs; whether it came to that.
async fn settle(child: &mut Child, status: &mut Option<ExitStatus>, group: Group, within: Duration) -> bool {
    // A grace too long to represent is a wait without end.
    let deadline = Instant::now().checked_add(within);
    loop {
        if status.is_some() && group.running().is_empty() {
            return true;
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return false;
        }
        tokio::select! {
            Change::Exited(exited) = child.change(), if status.is_none() => *status = Some(exited),
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

impl Stopped {
    /// What the tool did and what came of it, for the loss message.
    pub fn describe(&self) -> String {
        let mut text = String::from("its process group got SIGTERM");
        if let Some(grace) = self.killed_after {
            text += &format!(", and SIGKILL {} later", humantime::format_duration(grace));
        }
        match self.status {
            Some(status) => text += &format!("; the command {}", describe(status)),
            None => text += "; the command did not end",
        }
        if !self.survivors.is_empty() {
            let pids: Vec<String> = self.survivors.iter().map(ToString::to_string).collect();
            text += &format!("; still running after SIGKILL: pid {}", pids.join(", "));
        }
        text
    }
}

/// What became of a command that ended with `status`: "exited with status 7", "was killed by
/// SIGTERM".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("was killed by {signal}"),
            Err(_) => format!("was killed by signal {signal}"),
        },
        (None, None) => "ended".to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait status as `waitpid` reports it: the exit code in the second byte, or the signal.
    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    fn killed(signal: Signal) -> ExitStatus {
        ExitStatus::from_raw(signal as i32)
    }

    #[test]
    fn a_command_that_exits_passes_its_code_on() {
        for code in [0, 1, 3, 4, 42, 255] {
            assert_eq!(i32::from(exit_code(exited(code))), code);
        }
        assert_eq!(describe(exited(7)), "exited with status 7");
    }

    #[test]
    fn a_command_killed_by_a_signal_is_128_plus_the_signal_as_in_a_shell() {
        assert_eq!(exit_code(killed(Signal::SIGHUP)), 129);
        assert_eq!(exit_code(killed(Signal::SIGINT)), 130);
        assert_eq!(exit_code(killed(Signal::SIGKILL)), 137);
        assert_eq!(exit_code(killed(Signal::SIGPIPE)), 141);
        assert_eq!(exit_code(killed(Signal::SIGTERM)), 143);
        assert_eq!(describe(killed(Signal::SIGTERM)), "was killed by SIGTERM");
    }
}

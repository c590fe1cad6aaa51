//! The controlling terminal, whether or not stdin is on it: the command runs in a process
//! group of its own, so this hands the terminal to that group while the command runs in the
//! foreground (prompts on /dev/tty from sudo, ssh or gpg work, Ctrl-C reaches all of it) and
//! takes it back after; and when the terminal stops the command (Ctrl-Z, or reading the
//! terminal from the background), the tool stops too, so that the shell sees its job stop
//! and can resume it with `fg` or `bg`.

use std::fs::{File, OpenOptions};
use std::sync::Arc;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, pthread_sigmask};
use nix::unistd::{Pid, getpgrp, getpid, tcgetpgrp, tcsetpgrp};

use crate::group::Group;

pub struct Terminal {
    tty: Arc<File>,
}

impl Terminal {
    /// The tool's controlling terminal, if it has one (cron, systemd and `setsid` leave it
    /// none).
    pub fn controlling() -> Option<Self> {
        let tty = OpenOptions::new().read(true).write(true).open("/dev/tty").ok()?;
        Some(Self { tty: Arc::new(tty) })
    }

    /// The terminal, for the command's process to take between fork and exec, if the tool
    /// runs in the foreground (not as a background job, which must not take the terminal).
    pub fn for_command(&self) -> Option<Arc<File>> {
        self.tool_in_foreground().then(|| self.tty.clone())
    }

    fn tool_in_foreground(&self) -> bool {
        tcgetpgrp(&*self.tty) == Ok(getpgrp())
    }

    /// After the command stopped with `signal`: if that is a terminal's job-control stop,
    /// takes the terminal back and stops the tool, so that the shell sees the job stopped.
    /// The tool stops with SIGSTOP, which (unlike SIGTSTP) also stops an orphaned process
    /// group, where nobody could resume a command left stopped with the lock. Once resumed,
    /// [`Terminal::resumed`] carries on.
    pub fn stopped(&self, group: Group, signal: Signal) {
        if matches!(signal, Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU) {
            self.take_back(group);
            let _ = kill(getpid(), Signal::SIGSTOP);
        }
    }

    /// After the tool got SIGCONT: resumes the command, in the foreground (with the
    /// terminal) if the tool was resumed there (`fg`), else in the background (`bg`).
    pub fn resumed(&self, group: Group) {
        if self.tool_in_foreground() {
            let _ = hand(&self.tty, group.0);
        }
        group.resume();
    }

    /// Makes the tool's group the terminal's foreground again if the command's group has it.
    pub fn take_back(&self, group: Group) {
        if tcgetpgrp(&*self.tty) == Ok(group.0) {
            let _ = hand(&self.tty, getpgrp());
        }
    }
}

/// Makes `group` the terminal's foreground process group. A caller in a background group
/// would get SIGTTOU (and stop) for this, as a shell would, unless it blocks SIGTTOU: it is
/// blocked for the call, in this thread only, and unblocked after (a blocked SIGTTOU is not
/// sent at all, so none is left pending).
///
/// Async-signal-safe (system calls only, no allocation), for use between fork and exec.
pub fn hand(tty: &File, group: Pid) -> nix::Result<()> {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut previous))?;
    let handed = tcsetpgrp(tty, group);
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)?;
    handed
}

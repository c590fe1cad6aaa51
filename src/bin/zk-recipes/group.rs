//! The command's process group: the command and everything it starts, which the tool signals
//! as one and waits to see empty.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A process group, named by its leader's pid (the command's).
#[derive(Debug, Clone, Copy)]
pub struct Group(pub Pid);

impl Group {
    /// Sends `signal` to every process in the group, then SIGCONT as `timeout(1)` does: a
    /// stopped process (SIGSTOP, SIGTSTP, SIGTTIN) would otherwise keep the signal pending,
    /// and the lock, for ever. SIGKILL needs none: it ends a stopped process too.
    pub fn signal(self, signal: Signal) {
        let _ = killpg(self.0, signal);
        if signal != Signal::SIGKILL {
            let _ = killpg(self.0, Signal::SIGCONT);
        }
    }

    /// Sends SIGCONT alone, to resume a group stopped at a terminal.
    pub fn resume(self) {
        let _ = killpg(self.0, Signal::SIGCONT);
    }

    /// The group's processes that still run (zombies have ended: their parent, or init once
    /// their parent has gone, only has to reap them). Empty when the group is.
    pub fn running(self) -> Vec<Pid> {
        // Signal 0 checks existence cheaply: ESRCH means no process is left, zombies included.
        if killpg(self.0, None) == Err(Errno::ESRCH) {
            return Vec::new();
        }
        let Ok(processes) = std::fs::read_dir("/proc") else {
            // Without /proc the group is known to exist, not who is in it.
            return vec![self.0];
        };
        processes
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|stat| running_in(&stat, self.0.as_raw()))
            })
            .map(Pid::from_raw)
            .collect()
    }
}

/// Whether a `/proc/<pid>/stat` line is of a process in group `group` that has not ended.
/// The fields after the command name (which may contain anything, ')' included) are the
/// state, the parent's pid and the process group.
fn running_in(stat: &str, group: i32) -> bool {
    let mut fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace();
    let (Some(state), Some(_parent), Some(pgrp)) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    pgrp.parse() == Ok(group) && !matches!(state, "Z" | "X")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_tells_the_group_and_whether_the_process_ended() {
        assert!(running_in("42 (sleep) S 41 40 40 0 -1 4194304", 40));
        assert!(running_in("42 (a) b (c)) T 41 40 40 0", 40), "a name with ') ' in it");
        assert!(!running_in("42 (sleep) S 41 39 39 0", 40), "another group");
        assert!(!running_in("42 (sleep) Z 41 40 40 0", 40), "a zombie has ended");
        assert!(!running_in("42 (sleep)", 40));
    }

    #[test]
    fn a_group_that_does_not_exist_is_empty() {
        // Pid numbers stop far below i32::MAX (4194304 at most on Linux).
        assert!(Group(Pid::from_raw(i32::MAX)).running().is_empty());
    }
}

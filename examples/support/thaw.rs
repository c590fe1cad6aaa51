//! What the `fencing` and `payment` examples share: both freeze a process of their own with
//! SIGSTOP, and neither may leave it frozen.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Resumes and kills a frozen process when dropped before it was reaped, so that an error
/// meanwhile never leaves it frozen. Set it to `None` once the process is reaped: its pid is
/// not ours to signal any more.
#[derive(Debug)]
pub struct Thaw(pub Option<Pid>);

impl Drop for Thaw {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

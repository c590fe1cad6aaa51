//! The clock of liveness deadlines.
//!
//! `std` and tokio `Instant`s use CLOCK_MONOTONIC, which stops while the operating system is
//! suspended. A holder whose machine sleeps past its session timeout would then wake believing
//! its proof of liveness still runs, while the server has expired the session. On Linux the
//! deadlines use CLOCK_BOOTTIME instead: monotonic too, but counting suspended time.
//! Elsewhere they fall back to the monotonic clock.

use std::ops::Add;
use std::time::Duration;

/// A point in time on the boot clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Moment(Duration);

impl Moment {
    pub(crate) fn now() -> Self {
        Self(since_boot())
    }

    /// How long until this moment (zero once it has passed).
    pub(crate) fn remaining(self) -> Duration {
        self.0.saturating_sub(since_boot())
    }

    pub(crate) fn has_passed(self) -> bool {
        self.remaining().is_zero()
    }
}

impl Add<Duration> for Moment {
    type Output = Self;

    /// Saturates: a moment too far away to count to is as good as never.
    fn add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn since_boot() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    // Available since Linux 2.6.39; it cannot fail for a valid clock id.
    clock_gettime(ClockId::CLOCK_BOOTTIME).map(Duration::from).expect("CLOCK_BOOTTIME is readable")
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn since_boot() -> Duration {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_advance_and_pass() {
        let start = Moment::now();
        let soon = start + Duration::from_millis(20);
        assert!(!soon.has_passed());
        assert!(soon.remaining() <= Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(25));
        assert!(soon.has_passed() && start < Moment::now());
        assert_eq!(soon.remaining(), Duration::ZERO);
    }
}

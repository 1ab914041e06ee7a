//! Spin-then-sleep waiting for the shared-memory transport.
//!
//! Nothing crosses the shared-memory boundary except the bytes of the region
//! (no futex, eventfd or socket can cross a VM boundary), so a waiter has to
//! poll. Polling is cheap while the peer is about to answer (a null round
//! trip is a few hundred nanoseconds of cache-line transfers) and wasteful
//! when it is not, hence three phases:
//!
//! 1. spin with `spin_loop` for [`SPIN`]: answers the hot ping-pong case with
//!    no system call at all;
//! 2. `yield_now` until [`YIELD_UNTIL`]: on a machine with fewer cores than
//!    busy threads this lets the peer run;
//! 3. sleep, doubling from [`SLEEP_MIN`] to [`SLEEP_MAX`]: an idle connection
//!    costs ~1000 wake-ups a second of almost no CPU, and a frame arriving
//!    after a pause is seen at most [`SLEEP_MAX`] late.

use std::time::{Duration, Instant};

/// How long to busy-spin before giving the CPU away.
pub(crate) const SPIN: Duration = Duration::from_micros(30);
/// Until when (since the start of the wait) to yield instead of sleeping.
pub(crate) const YIELD_UNTIL: Duration = Duration::from_micros(200);
/// First sleep.
pub(crate) const SLEEP_MIN: Duration = Duration::from_micros(20);
/// Longest sleep, and so the worst added latency for an idle connection.
pub(crate) const SLEEP_MAX: Duration = Duration::from_millis(1);

/// Reading the clock costs ~20 ns; in the spin phase it is read only every
/// this many rounds so that the spin stays tight.
const CLOCK_EVERY: u32 = 64;

/// One wait. Create it when the wait starts; call [`Backoff::snooze`] each
/// time the awaited condition is still false.
#[derive(Debug)]
pub(crate) struct Backoff {
    start: Instant,
    rounds: u32,
    sleep: Duration,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spin,
    Yield,
    Sleep,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            rounds: 0,
            sleep: SLEEP_MIN,
            phase: Phase::Spin,
        }
    }

    /// Waits a little; longer the longer this wait has lasted.
    pub(crate) fn snooze(&mut self) {
        self.rounds = self.rounds.wrapping_add(1);
        match self.phase {
            Phase::Spin => {
                std::hint::spin_loop();
                if self.rounds.is_multiple_of(CLOCK_EVERY) && self.start.elapsed() >= SPIN {
                    self.phase = Phase::Yield;
                }
            }
            Phase::Yield => {
                std::thread::yield_now();
                if self.start.elapsed() >= YIELD_UNTIL {
                    self.phase = Phase::Sleep;
                }
            }
            Phase::Sleep => {
                std::thread::sleep(self.sleep);
                self.sleep = (self.sleep * 2).min(SLEEP_MAX);
            }
        }
    }

    /// Whether the caller should run its (more expensive) periodic checks
    /// now: peer liveness, deadlines. Rarely while spinning, every round once
    /// the wait yields or sleeps (a round then costs far more than a check).
    pub(crate) fn should_check(&self) -> bool {
        self.phase != Phase::Spin || self.rounds.is_multiple_of(CLOCK_EVERY)
    }
}

/// `now + timeout`, saturating: `Duration::MAX` means "practically never"
/// instead of an overflow panic.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_through_the_phases_and_caps_the_sleep() {
        let mut b = Backoff::new();
        let t = Instant::now();
        while b.phase != Phase::Sleep {
            b.snooze();
        }
        assert!(t.elapsed() >= YIELD_UNTIL);
        for _ in 0..20 {
            b.snooze();
        }
        assert_eq!(b.sleep, SLEEP_MAX);
        assert!(b.should_check());
    }

    #[test]
    fn huge_timeouts_do_not_overflow() {
        assert!(deadline_after(Duration::MAX) > Instant::now());
    }
}

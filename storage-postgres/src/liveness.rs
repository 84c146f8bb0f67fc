//! Which idle connections are tested before the pool hands them out.
//!
//! sqlx tests every connection with a round trip (`Sync` → `ReadyForQuery`)
//! when it returns to the pool, and by default again before handing it out.
//! The second test costs every unit of work a round trip on its critical path
//! and tells nothing new about a connection that passed the first a moment
//! ago. So a connection is tested before use only when it has been idle for
//! [`IDLE_TEST_AFTER`] or more, or since before the last connection loss this
//! store saw (the server restarted or dropped sessions: idle ones are likely
//! gone too). A dead connection that slips through fails its first statement
//! with a connection error; the operation's retry records the loss, so the
//! next acquire tests every connection idle since then.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Idle time after which a connection is tested before use.
pub(crate) const IDLE_TEST_AFTER: Duration = Duration::from_secs(1);

/// When this store last lost a connection.
#[derive(Debug)]
pub(crate) struct Liveness {
    started: Instant,
    /// Microseconds after `started` of the last loss, plus one; 0 = none.
    last_loss: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_loss: AtomicU64::new(0),
        }
    }
}

impl Liveness {
    /// Records a connection loss seen now.
    pub(crate) fn lost(&self) {
        let at = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        self.last_loss.fetch_max(at + 1, Ordering::Relaxed);
    }

    /// Whether a connection idle for `idle_for` must be tested before use.
    pub(crate) fn needs_test(&self, idle_for: Duration) -> bool {
        if idle_for >= IDLE_TEST_AFTER {
            return true;
        }
        match self.last_loss.load(Ordering::Relaxed) {
            0 => false,
            at => {
                let since_loss = self
                    .started
                    .elapsed()
                    .saturating_sub(Duration::from_micros(at - 1));
                idle_for >= since_loss
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recently_released_connections_are_trusted_until_a_loss() {
        let liveness = Liveness::default();
        assert!(!liveness.needs_test(Duration::ZERO));
        assert!(!liveness.needs_test(Duration::from_millis(900)));
        assert!(liveness.needs_test(IDLE_TEST_AFTER));

        liveness.lost();
        std::thread::sleep(Duration::from_millis(20));
        // The loss was at least 20 ms ago and, on any machine, far less than
        // 900 ms: a connection idle since before it is tested, one released
        // after it is trusted.
        assert!(liveness.needs_test(Duration::from_millis(900)));
        assert!(!liveness.needs_test(Duration::from_millis(5)));
    }
}

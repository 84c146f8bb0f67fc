//! Waking the relay when outbox rows commit (one process per database).

use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Wakeup(Notify);

impl Wakeup {
    /// Wakes every waiter now and leaves a permit for one arriving between
    /// two waits (spurious wake-ups are allowed).
    pub(crate) fn committed(&self) {
        self.0.notify_waiters();
        self.0.notify_one();
    }

    pub(crate) async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.0.notified()).await;
    }
}

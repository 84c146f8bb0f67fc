//! Readiness of the outbox.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chassis_core::{HealthCheck, HealthStatus};
use storage_abstractions::{OutboxConfig, OutboxStore};

use crate::relay::{RelayHandle, RelayShared};

/// Checks the outbox backlog (name `outbox.backlog`):
/// - unhealthy if the outbox cannot be read, if the watched relay stopped, or
///   if the oldest pending message is older than
///   `storage.outbox.stuck_after` (default 5 minutes: the relay is stuck or
///   not running anywhere);
/// - degraded above `storage.outbox.backlog_warn` pending messages, or while
///   messages sit in quarantine;
/// - healthy otherwise.
pub struct OutboxBacklogCheck {
    outbox: Arc<dyn OutboxStore>,
    backlog_warn: u64,
    stuck_after: Duration,
    relay: Option<Arc<RelayShared>>,
}

impl std::fmt::Debug for OutboxBacklogCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxBacklogCheck")
            .field("backlog_warn", &self.backlog_warn)
            .field("stuck_after", &self.stuck_after)
            .field("watches_relay", &self.relay.is_some())
            .finish()
    }
}

impl OutboxBacklogCheck {
    /// A check with the thresholds of `config`.
    pub fn new(outbox: Arc<dyn OutboxStore>, config: &OutboxConfig) -> Self {
        Self {
            outbox,
            backlog_warn: config.backlog_warn,
            stuck_after: config.stuck_after,
            relay: None,
        }
    }

    /// Age of the oldest pending message beyond which the relay counts as
    /// stuck, instead of `storage.outbox.stuck_after`.
    pub fn stuck_after(mut self, age: Duration) -> Self {
        self.stuck_after = age;
        self
    }

    /// Also reports unhealthy when this relay has stopped.
    pub fn watching(mut self, relay: &RelayHandle) -> Self {
        self.relay = Some(relay.shared());
        self
    }
}

#[async_trait]
impl HealthCheck for OutboxBacklogCheck {
    fn name(&self) -> &str {
        "outbox.backlog"
    }

    async fn check(&self) -> HealthStatus {
        if let Some(relay) = &self.relay
            && !relay.is_running()
        {
            return HealthStatus::Unhealthy("the outbox relay has stopped".into());
        }
        let backlog = match self.outbox.backlog().await {
            Ok(backlog) => backlog,
            Err(error) => {
                return HealthStatus::Unhealthy(format!("cannot read the outbox backlog: {error}"));
            }
        };
        if let Some(age) = backlog.oldest_pending_age
            && age > self.stuck_after
        {
            return HealthStatus::Unhealthy(format!(
                "the oldest of {} pending outbox messages waits for {}s (limit {}s): the relay is stuck or not running",
                backlog.pending,
                age.as_secs(),
                self.stuck_after.as_secs()
            ));
        }
        if backlog.pending > self.backlog_warn {
            return HealthStatus::Degraded(format!(
                "{} outbox messages pending (warning above {})",
                backlog.pending, self.backlog_warn
            ));
        }
        if backlog.quarantined > 0 {
            return HealthStatus::Degraded(format!(
                "{} outbox messages quarantined",
                backlog.quarantined
            ));
        }
        HealthStatus::Healthy
    }
}

//! The readiness port: every concern (bus, store, outbox) registers
//! [`HealthCheck`]s with the host, which runs them on `/health/ready`.

use async_trait::async_trait;
use serde::Serialize;

/// The state one check reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum HealthStatus {
    /// Works as expected.
    Healthy,
    /// Works, but something needs attention (e.g. a growing backlog). Still ready.
    Degraded(String),
    /// Does not work; the service is not ready.
    Unhealthy(String),
}

impl HealthStatus {
    /// Whether a service with this status may receive traffic.
    pub fn is_ready(&self) -> bool {
        !matches!(self, HealthStatus::Unhealthy(_))
    }
}

/// One named check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// The check's name, e.g. `messaging.rabbitmq`.
    pub name: String,
    /// Its state.
    #[serde(flatten)]
    pub status: HealthStatus,
}

/// A readiness check. Implementations must be cheap and bounded in time: the
/// host calls them on every `/health/ready` request (with its own timeout).
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// A stable name, e.g. `storage.postgres` or `outbox.backlog`.
    fn name(&self) -> &str;
    /// Runs the check.
    async fn check(&self) -> HealthStatus;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Always(HealthStatus);

    #[async_trait]
    impl HealthCheck for Always {
        fn name(&self) -> &str {
            "always"
        }
        async fn check(&self) -> HealthStatus {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn object_safe_and_ready_rule() {
        let checks: Vec<Box<dyn HealthCheck>> = vec![
            Box::new(Always(HealthStatus::Healthy)),
            Box::new(Always(HealthStatus::Degraded("slow".into()))),
            Box::new(Always(HealthStatus::Unhealthy("down".into()))),
        ];
        let mut ready = Vec::new();
        for c in &checks {
            ready.push(c.check().await.is_ready());
        }
        assert_eq!(ready, vec![true, true, false]);
        let json = serde_json::to_value(HealthReport {
            name: "x".into(),
            status: HealthStatus::Unhealthy("down".into()),
        })
        .unwrap();
        assert_eq!(json["status"], "unhealthy");
        assert_eq!(json["detail"], "down");
    }
}

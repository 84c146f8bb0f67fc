//! `/health/live` and `/health/ready`.
//!
//! Liveness says the process serves HTTP. Readiness runs every registered
//! [`HealthCheck`] (concurrently, each with `http.readiness_check_timeout`)
//! and turns 503 as soon as shutdown begins, before the listener closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chassis_core::{HealthCheck, HealthReport, HealthStatus};
use http::StatusCode;
use serde::Serialize;

/// Path of the liveness probe.
pub const LIVE_PATH: &str = "/health/live";
/// Path of the readiness probe.
pub const READY_PATH: &str = "/health/ready";

/// The registry of readiness checks and the shutdown flag.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    checks: RwLock<Vec<Arc<dyn HealthCheck>>>,
    shutting_down: AtomicBool,
    timeout: Duration,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("checks", &self.check_names())
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}

/// The readiness answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// `ready`, `not_ready` or `shutting_down`.
    pub status: &'static str,
    /// Each check's result (empty while shutting down: nothing is checked).
    pub checks: Vec<HealthReport>,
}

impl Readiness {
    /// Whether traffic may be sent.
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

impl Health {
    /// A registry whose checks each get `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                checks: RwLock::new(Vec::new()),
                shutting_down: AtomicBool::new(false),
                timeout,
            }),
        }
    }

    /// Adds a check.
    pub fn register(&self, check: Arc<dyn HealthCheck>) {
        self.inner
            .checks
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(check);
    }

    /// Names of the registered checks.
    pub fn check_names(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .map(|c| c.name().to_owned())
            .collect()
    }

    fn snapshot(&self) -> Vec<Arc<dyn HealthCheck>> {
        self.inner
            .checks
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Turns readiness to 503 for good.
    pub fn mark_shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Runs the checks.
    pub async fn readiness(&self) -> Readiness {
        if self.is_shutting_down() {
            return Readiness {
                status: "shutting_down",
                checks: Vec::new(),
            };
        }
        let timeout = self.inner.timeout;
        let checks = self.snapshot();
        let reports = futures::future::join_all(checks.iter().map(|check| async move {
            let status = match tokio::time::timeout(timeout, check.check()).await {
                Ok(status) => status,
                Err(_) => HealthStatus::Unhealthy(format!(
                    "no answer within {} (http.readiness_check_timeout)",
                    chassis_core::duration::format(timeout)
                )),
            };
            HealthReport {
                name: check.name().to_owned(),
                status,
            }
        }))
        .await;
        let ready = reports.iter().all(|r| r.status.is_ready());
        Readiness {
            status: if ready { "ready" } else { "not_ready" },
            checks: reports,
        }
    }

    /// The two probe routes.
    pub fn routes(&self) -> Router {
        Router::new()
            .route(LIVE_PATH, get(live))
            .route(READY_PATH, get(ready))
            .with_state(self.clone())
    }
}

async fn live() -> Response {
    Json(serde_json::json!({ "status": "live" })).into_response()
}

async fn ready(State(health): State<Health>) -> Response {
    let readiness = health.readiness().await;
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;

    struct Fixed(&'static str, HealthStatus, Duration);

    #[async_trait]
    impl HealthCheck for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        async fn check(&self) -> HealthStatus {
            tokio::time::sleep(self.2).await;
            self.1.clone()
        }
    }

    #[tokio::test]
    async fn runs_checks_with_timeout_and_turns_unready_on_shutdown() {
        let health = Health::new(Duration::from_millis(50));
        health.register(Arc::new(Fixed("db", HealthStatus::Healthy, Duration::ZERO)));
        health.register(Arc::new(Fixed(
            "backlog",
            HealthStatus::Degraded("1000 pending".into()),
            Duration::ZERO,
        )));
        let r = health.readiness().await;
        assert_eq!(r.status, "ready");
        assert_eq!(r.checks.len(), 2);

        health.register(Arc::new(Fixed(
            "slow",
            HealthStatus::Healthy,
            Duration::from_secs(5),
        )));
        let r = health.readiness().await;
        assert_eq!(r.status, "not_ready");
        assert!(
            matches!(&r.checks[2].status, HealthStatus::Unhealthy(d) if d.contains("readiness_check_timeout"))
        );

        health.mark_shutting_down();
        let r = health.readiness().await;
        assert_eq!(r.status, "shutting_down");
        assert!(r.checks.is_empty());
    }
}

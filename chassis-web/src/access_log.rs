//! The access log: one line per request (`http.access_log`).
//!
//! ```toml
//! [http.access_log]
//! enabled = true        # default false
//! probes = false        # default: health and metrics probes are not logged
//! exclude = ["/internal/ping"]  # more route templates not logged
//! ```
//!
//! Each line is an INFO event of target `chassis_web::access_log` with the
//! message `request` and the fields `method`, `route` (the matched route
//! template, never the raw path — paths may carry identifiers; `unmatched`
//! for requests no route took, such as 404s and the answers of the
//! security checks), `status`, `duration_us` (until the response head is
//! ready), `bytes` (the response body's length, when known) and `client`
//! (the peer address). It goes through `tracing` like every other line, so
//! it is written in the logging provider's format, and it carries the
//! request's `correlation_id` (and, with tracing on, `trace_id`) from the
//! log context. Filter it like any target: `logging.level =
//! "info,chassis_web::access_log=off"`.
//!
//! The console provider hands lines to a bounded queue: a request never
//! waits for stdout (see `logging-console`).

use std::cell::Cell;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::HttpBody as _;
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use chassis_core::config::InvalidValue;
use http::Method;
use serde::{Deserialize, Serialize};
use tower::Service;

/// The `http.access_log` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogConfig {
    /// Whether a line is written per request (off by default in the
    /// library; the production configurations of the examples and the
    /// template turn it on).
    pub enabled: bool,
    /// Whether the health probes (`/health/live`, `/health/ready`) and the
    /// metrics path are logged too (default: no — they are polled every
    /// few seconds and say nothing about the service's traffic).
    pub probes: bool,
    /// Route templates (`/orders/{id}`) whose requests are not logged.
    pub exclude: Vec<String>,
}

impl AccessLogConfig {
    /// Checks the values; the error names the key.
    pub(crate) fn validate(&self) -> Result<(), InvalidValue> {
        match self.exclude.iter().find(|route| !route.starts_with('/')) {
            Some(route) => Err(InvalidValue::new(
                "http.access_log.exclude",
                "route templates starting with `/`",
            )
            .found(format!("`{route}`"))),
            None => Ok(()),
        }
    }
}

/// What the edge needs to write the access log: which routes are left out.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    excluded: Vec<Arc<str>>,
    probes: bool,
}

impl AccessLog {
    /// The access log `config` asks for; `None` when it is off.
    pub(crate) fn new(config: &AccessLogConfig) -> Option<Self> {
        let mut log = Self {
            excluded: config
                .exclude
                .iter()
                .map(|r| Arc::from(r.as_str()))
                .collect(),
            probes: config.probes,
        };
        for probe in [crate::LIVE_PATH, crate::READY_PATH] {
            log.exclude_probe(probe);
        }
        config.enabled.then_some(log)
    }

    /// Leaves `path` out unless probes are logged.
    pub(crate) fn exclude_probe(&mut self, path: &str) {
        if !self.probes {
            self.excluded.push(Arc::from(path));
        }
    }

    /// Runs `future` (the edge's handling of one request) where the route
    /// layer can report the matched route.
    pub(crate) fn scope<F: Future>(future: F) -> impl Future<Output = F::Output> {
        ROUTE.scope(Cell::new(None), future)
    }

    /// Writes the line of a request answered with `response`, unless its
    /// route is excluded. Called inside [`AccessLog::scope`] and the
    /// request's message context (which gives the line its correlation id).
    pub(crate) fn write(
        &self,
        method: &Method,
        response: &Response,
        started: Instant,
        client: Option<IpAddr>,
    ) {
        let route = ROUTE.try_with(Cell::take).ok().flatten();
        let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
        if self.excluded.iter().any(|excluded| **excluded == *route) {
            return;
        }
        tracing::info!(
            method = method.as_str(),
            route,
            status = response.status().as_u16(),
            duration_us = started.elapsed().as_micros() as u64,
            bytes = response.body().size_hint().exact(),
            client = client.as_ref().map(tracing::field::display),
            "request"
        );
    }
}

tokio::task_local! {
    /// The matched route of the request being served, reported by
    /// [`RouteLayer`] from inside the router (only there is it known) to the
    /// edge outside it.
    static ROUTE: Cell<Option<MatchedPath>>;
}

/// A route layer reporting the matched route template to the edge's
/// access log: one `Arc` clone per request, no extension, no allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteLayer;

impl<S> tower::Layer<S> for RouteLayer {
    type Service = ReportRoute<S>;

    fn layer(&self, inner: S) -> ReportRoute<S> {
        ReportRoute(inner)
    }
}

/// The service of [`RouteLayer`].
#[derive(Debug, Clone)]
pub(crate) struct ReportRoute<S>(S);

impl<S> Service<Request> for ReportRoute<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> S::Future {
        if let Some(route) = req.extensions().get::<MatchedPath>() {
            // Outside an edge with the access log on there is no slot.
            let _ = ROUTE.try_with(|slot| slot.set(Some(route.clone())));
        }
        self.0.call(req)
    }
}

//! The Prometheus recorder, the `[metrics]` section, the `/metrics` route,
//! HTTP request metrics and the outbox gauges.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use std::convert::Infallible;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use axum::routing::get;
use chassis_core::config::InvalidValue;
use http::{Method, StatusCode, header};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

use crate::host::ServiceContext;

/// Metric names (Prometheus conventions: base units, `_total` counters).
pub mod names {
    /// Counter: HTTP requests served, by `route` template, `method`, `status`.
    pub const HTTP_REQUESTS: &str = "http_server_requests_total";
    /// Histogram (seconds): HTTP request duration, same labels.
    pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";
    /// Counter: messages published, by `event_type`.
    pub const BUS_PUBLISHED: &str = "messaging_published_total";
    /// Counter: publishes the bus refused, by `event_type`.
    pub const BUS_PUBLISH_FAILED: &str = "messaging_publish_failed_total";
    /// Counter: deliveries handled (any outcome), by `event_type`, `group`.
    pub const BUS_CONSUMED: &str = "messaging_consumed_total";
    /// Counter: deliveries whose handler failed, by `event_type`, `group`, `kind`.
    pub const BUS_FAILED: &str = "messaging_handler_failed_total";
    /// Counter: failed deliveries the bus will try again, by `event_type`, `group`.
    pub const BUS_RETRIED: &str = "messaging_retried_total";
    /// Counter: deliveries dead-lettered, by `event_type`, `group`, `kind`.
    pub const BUS_DEAD_LETTERED: &str = "messaging_dead_lettered_total";
    /// Histogram (seconds): handler duration, by `event_type`, `group`, `outcome`.
    pub const BUS_HANDLER_DURATION: &str = "messaging_handler_duration_seconds";
    /// Counter: requests sent over the bus (request/response), by
    /// `request_type` and `outcome` (`ok`, `failed`, `no_responder`,
    /// `timeout`, `interrupted`, `unavailable`, `shut_down`, ...).
    pub const BUS_REQUESTS: &str = "chassis_bus_requests_total";
    /// Histogram (seconds): request → answer (or error), same labels.
    pub const BUS_REQUEST_DURATION: &str = "chassis_bus_request_duration_seconds";
    /// Gauge: outbox messages not yet published.
    pub const OUTBOX_PENDING: &str = "outbox_pending_messages";
    /// Gauge: outbox messages set aside (could not be published).
    pub const OUTBOX_QUARANTINED: &str = "outbox_quarantined_messages";
    /// Gauge (seconds): age of the oldest pending outbox message — the
    /// relay's lag (0 when nothing is pending).
    pub const OUTBOX_LAG: &str = "outbox_relay_lag_seconds";
    /// Histogram (seconds): outbox write → publish confirmed, per message
    /// the relay of this process sent.
    pub const OUTBOX_RELAY_DELAY: &str = "outbox_relay_delay_seconds";
    /// Gauge: the store's pooled connections, by `state` (`used`, `idle`)
    /// and `provider` (names after the OpenTelemetry `db.client.connection.*`
    /// conventions).
    pub const DB_POOL_CONNECTIONS: &str = "db_client_connection_count";
    /// Gauge: the most connections the pool opens.
    pub const DB_POOL_MAX: &str = "db_client_connection_max";
    /// Gauge: units of work waiting for a connection.
    pub const DB_POOL_PENDING: &str = "db_client_connection_pending_requests";
    /// Counter: connections acquired for units of work.
    pub const DB_POOL_ACQUIRES: &str = "db_client_connection_acquires_total";
    /// Counter: acquires that timed out (`storage.postgres.acquire_timeout`).
    pub const DB_POOL_TIMEOUTS: &str = "db_client_connection_timeouts_total";
    /// Histogram (seconds): how long units of work waited for a connection.
    pub const DB_POOL_WAIT: &str = "db_client_connection_wait_time_seconds";
    /// Counter: log lines the logging provider dropped because its output
    /// (stdout) could not keep up — process-wide.
    pub const LOG_DROPPED: &str = "log_lines_dropped_total";
    /// Gauge, always 1: `service`, `version`.
    pub const SERVICE_INFO: &str = "service_info";
}

/// Histogram buckets (seconds) of the two duration histograms: 1 ms to 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the process' histograms are compacted when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The `[metrics]` section.
///
/// ```toml
/// [metrics]
/// enabled = true        # default
/// path = "/metrics"     # default
/// port = 9464           # optional: also serve the path on this port
/// refresh_interval = "5s"  # outbox gauges
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Whether the host records and serves metrics.
    pub enabled: bool,
    /// Path of the exposition on the service port (and the metrics port).
    pub path: String,
    /// A separate port serving only the metrics path (on `http.host`).
    pub port: Option<u16>,
    /// How often the outbox gauges are refreshed.
    #[serde(with = "chassis_core::duration")]
    pub refresh_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/metrics".to_owned(),
            port: None,
            refresh_interval: Duration::from_secs(5),
        }
    }
}

impl MetricsConfig {
    /// Checks the values; the error names the key (the host adds the layer).
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if !self.path.starts_with('/') || self.path.len() < 2 || self.path.contains(' ') {
            return Err(
                InvalidValue::new("metrics.path", "an absolute path such as `/metrics`")
                    .found(format!("`{}`", self.path)),
            );
        }
        if self.refresh_interval.is_zero() {
            return Err(InvalidValue::new(
                "metrics.refresh_interval",
                "a duration > 0",
            ));
        }
        Ok(())
    }
}

/// Why metrics could not be set up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetricsError {
    /// The `[metrics]` section is invalid: the key path, what was expected
    /// and the layer the value came from.
    #[error(transparent)]
    Config(#[from] InvalidValue),
    /// The Prometheus recorder could not be set up (its buckets, its upkeep
    /// thread).
    #[error("metrics: {0}")]
    Recorder(String),
    /// Another `metrics` recorder is installed in the process already.
    #[error(
        "metrics: another global `metrics` recorder is installed in this process; the host installs its Prometheus recorder itself (set metrics.enabled = false to keep the other one)"
    )]
    RecorderTaken,
    /// The separate metrics port could not be opened.
    #[error("metrics: cannot listen on {addr} (http.host / metrics.port): {reason}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        reason: String,
    },
}

/// One service's view of the process' Prometheus recorder.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    service: Arc<str>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

static RECORDER: OnceLock<Result<PrometheusHandle, MetricsError>> = OnceLock::new();

impl Metrics {
    /// Installs the Prometheus recorder as the process' global `metrics`
    /// recorder — once: later calls (a second host in the process) share
    /// it — and records `service_info{service, version} 1`.
    pub fn install(service: &str, version: &str) -> Result<Self, MetricsError> {
        let handle = RECORDER.get_or_init(install_recorder).clone()?;
        metrics::gauge!(names::SERVICE_INFO, "service" => service.to_owned(), "version" => version.to_owned())
            .set(1.0);
        Ok(Self {
            handle,
            service: Arc::from(service),
        })
    }

    /// The exposition text of every series in the process.
    pub fn render(&self) -> String {
        sample(&self.service);
        self.handle.render()
    }

    /// The service label value.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// A router serving the exposition at `path`.
    pub fn routes(&self, path: &str) -> Router {
        let handle = self.handle.clone();
        let service = self.service.clone();
        Router::new().route(
            path,
            get(move || {
                sample(&service);
                let text = handle.render();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
    }

    /// Adds HTTP request metrics to every route of `router` (the route
    /// template is the label, never the raw path).
    pub fn track_http(&self, router: Router) -> Router {
        router.layer(TrackLayer(self.http_series()))
    }

    /// The HTTP series of this service, for what the edge answers itself.
    pub(crate) fn http_series(&self) -> Arc<HttpSeries> {
        Arc::new(HttpSeries::new(self.service.clone()))
    }
}

/// Brings the series read at scrape time up to date.
fn sample(service: &str) {
    super::store::sample_pools();
    metrics::counter!(names::LOG_DROPPED, "service" => service.to_owned())
        .absolute(logging_init::dropped_lines());
}

fn install_recorder() -> Result<PrometheusHandle, MetricsError> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), DURATION_BUCKETS)
        .map_err(|e| MetricsError::Recorder(format!("histogram buckets: {e}")))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::RecorderTaken)?;
    let upkeep = handle.clone();
    // A thread, not a task: it must outlive the runtime of the host that
    // installed the recorder (tests run one runtime each).
    std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })
        .map_err(|e| MetricsError::Recorder(format!("cannot start the upkeep thread: {e}")))?;
    Ok(handle)
}

/// Times each request of the route it wraps. A route layer because only
/// inside the router is the matched route template known; one instance per
/// route (and method), so each caches its own handles (see [`RouteSeries`]).
#[derive(Clone)]
struct TrackLayer(Arc<HttpSeries>);

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            series: Arc::new(RouteSeries::new(self.0.clone())),
        }
    }
}

#[derive(Clone)]
struct Track<S> {
    inner: S,
    series: Arc<RouteSeries>,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = Instant::now();
        let method = req.method().clone();
        // An `Arc<str>` clone: no copy of the template per request.
        let route = req.extensions().get::<MatchedPath>().cloned();
        TrackFuture {
            inner: self.inner.call(req),
            series: self.series.clone(),
            start,
            method,
            route,
        }
    }
}

/// The response future of [`Track`]: records when the response is ready.
struct TrackFuture<F> {
    inner: F,
    series: Arc<RouteSeries>,
    start: Instant,
    method: Method,
    route: Option<MatchedPath>,
}

impl<F> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = &mut *self;
        let Ok(response) = std::task::ready!(std::pin::Pin::new(&mut this.inner).poll(cx));
        this.series.record(
            this.route.as_ref(),
            &this.method,
            response.status(),
            this.start.elapsed(),
        );
        std::task::Poll::Ready(Ok(response))
    }
}

/// Handles of one (method, status) of a route.
struct Slot {
    method: Method,
    status: StatusCode,
    count: Counter,
    duration: Histogram,
}

/// Slots per route: the kinds of answer one route gives (200, 404, 422...).
const SLOTS: usize = 8;

/// The handles of one route instance of the layer, filled on first use:
/// recording is a few atomic loads to find the slot and the two updates —
/// no lock, no hashing, no label strings. The route template is checked
/// by address against the one the slots belong to; anything unusual (a
/// route instance serving several templates, more kinds of answer than
/// slots) goes through [`HttpSeries`].
struct RouteSeries {
    all: Arc<HttpSeries>,
    /// Address and length of the route template the slots are for.
    template: OnceLock<(usize, usize)>,
    slots: [OnceLock<Slot>; SLOTS],
}

impl RouteSeries {
    fn new(all: Arc<HttpSeries>) -> Self {
        Self {
            all,
            template: OnceLock::new(),
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn record(
        &self,
        route: Option<&MatchedPath>,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let seconds = elapsed.as_secs_f64();
        let template = route.map_or("unmatched", MatchedPath::as_str);
        let id = (template.as_ptr() as usize, template.len());
        if route.is_none() || *self.template.get_or_init(|| id) != id {
            self.all
                .record(template, method_label(method), status, elapsed);
            return;
        }
        for slot in &self.slots {
            let slot = match slot.get() {
                Some(slot) => slot,
                None => slot.get_or_init(|| self.all.handles(template, method, status)),
            };
            if slot.status == status && slot.method == *method {
                slot.count.increment(1);
                slot.duration.record(seconds);
                return;
            }
        }
        self.all
            .record(template, method_label(method), status, elapsed);
    }
}

/// A route's count and duration handles by method and status.
type ByMethodStatus = HashMap<(&'static str, u16), (Counter, Histogram)>;

/// The HTTP series of one service, their handles cached by route, method
/// and status: after the first request of a kind, recording is a map
/// lookup under a read lock and two atomic updates — no label strings are
/// built and the recorder's registry is not consulted.
pub(crate) struct HttpSeries {
    service: Arc<str>,
    handles: RwLock<HashMap<String, ByMethodStatus>>,
}

impl std::fmt::Debug for HttpSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSeries")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl HttpSeries {
    pub(crate) fn new(service: Arc<str>) -> Self {
        Self {
            service,
            handles: RwLock::new(HashMap::new()),
        }
    }

    /// The handles of one kind of answer of a route (from the cache of
    /// [`HttpSeries::record`], or registered).
    fn handles(&self, route: &str, method: &Method, status: StatusCode) -> Slot {
        let label = method_label(method);
        let key = (label, status.as_u16());
        let cached = {
            let handles = self.handles.read().unwrap_or_else(|p| p.into_inner());
            handles.get(route).and_then(|m| m.get(&key)).cloned()
        };
        let (count, duration) = cached.unwrap_or_else(|| self.register(route, label, status));
        Slot {
            method: method.clone(),
            status,
            count,
            duration,
        }
    }

    fn register(
        &self,
        route: &str,
        method: &'static str,
        status: StatusCode,
    ) -> (Counter, Histogram) {
        let labels = [
            ("service", self.service.to_string()),
            ("method", method.to_owned()),
            ("route", route_label(route)),
            ("status", status.as_u16().to_string()),
        ];
        let count = metrics::counter!(names::HTTP_REQUESTS, &labels);
        let duration = metrics::histogram!(names::HTTP_DURATION, &labels);
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(route.to_owned())
            .or_default()
            .insert((method, status.as_u16()), (count.clone(), duration.clone()));
        (count, duration)
    }

    /// Records one served request of the route template `route`.
    pub(crate) fn record(
        &self,
        route: &str,
        method: &'static str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let key = (method, status.as_u16());
        let seconds = elapsed.as_secs_f64();
        {
            let handles = self.handles.read().unwrap_or_else(|p| p.into_inner());
            if let Some((count, duration)) = handles.get(route).and_then(|m| m.get(&key)) {
                count.increment(1);
                duration.record(seconds);
                return;
            }
        }
        let (count, duration) = self.register(route, method, status);
        count.increment(1);
        duration.record(seconds);
    }
}

/// The route template as a label value, parameters written `:id` instead
/// of `{id}`: braces inside label values trip up some exposition-format
/// parsers (`prometheus-parse` ends the label set at the first `}`).
fn route_label(template: &str) -> String {
    if template.contains('{') {
        template.replace('{', ":").replace('}', "")
    } else {
        template.to_owned()
    }
}

/// Standard methods by name; anything else is `other` (bounded label values).
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Refreshes the outbox gauges of `ctx`'s store every `interval` until
/// shutdown (a background task of the host).
pub(crate) fn spawn_outbox_gauges(ctx: &ServiceContext, interval: Duration) {
    let outbox = ctx.store().outbox();
    let service = ctx.name().to_owned();
    let signal = ctx.shutdown_signal();
    ctx.spawn("metrics-outbox", async move {
        let label = [("service", service)];
        let pending = metrics::gauge!(names::OUTBOX_PENDING, &label);
        let quarantined = metrics::gauge!(names::OUTBOX_QUARANTINED, &label);
        let lag = metrics::gauge!(names::OUTBOX_LAG, &label);
        loop {
            match outbox.backlog().await {
                Ok(backlog) => {
                    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                    {
                        pending.set(backlog.pending as f64);
                        quarantined.set(backlog.quarantined as f64);
                    }
                    lag.set(backlog.oldest_pending_age.unwrap_or_default().as_secs_f64());
                }
                Err(error) => tracing::warn!(%error, "outbox backlog unavailable for metrics"),
            }
            tokio::select! {
                () = signal.stopping() => return Ok(()),
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
}

/// Serves only the metrics path on a port of its own until `stop` fires.
pub(crate) async fn serve_metrics_port(
    metrics: &Metrics,
    host: &str,
    port: u16,
    path: &str,
    stop: tokio_util::sync::CancellationToken,
) -> Result<std::net::SocketAddr, MetricsError> {
    let addr = format!("{host}:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| MetricsError::Bind {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let local = listener.local_addr().map_err(|e| MetricsError::Bind {
        addr,
        reason: e.to_string(),
    })?;
    let router = metrics.routes(path);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(%error, "metrics port stopped");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let config = MetricsConfig::default();
        assert!(config.enabled);
        assert_eq!(config.path, "/metrics");
        config.validate().unwrap();
        let bad = MetricsConfig {
            path: "metrics".into(),
            ..MetricsConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("metrics.path")
        );
    }

    #[test]
    fn route_labels_have_no_braces() {
        assert_eq!(
            route_label("/orders/{id}/items/{*rest}"),
            "/orders/:id/items/:*rest"
        );
        assert_eq!(route_label("/health/live"), "/health/live");
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}

//! Metrics and message tracing of the host.
//!
//! - [`MetricsConfig`] (`[metrics]`): Prometheus exposition at `/metrics`
//!   on the service port (path configurable) and optionally on a port of
//!   its own.
//! - [`Metrics`]: the process' Prometheus recorder. The **host** installs
//!   it, once per process, when the first service starts with metrics
//!   enabled; later hosts in the same process (the in-process demo, tests)
//!   share it. Every series carries a `service` label, so two services in
//!   one process stay apart. A library never installs it on its own.
//! - [`InstrumentedBus`]: an [`EventBus`]
//!   decorator the host wraps around whatever bus it built or was given:
//!   bus metrics, a producer span per publish and a consumer span per
//!   handled message, continuing the envelope's trace, with the handler run
//!   in the message's context (correlation, causation, trace).
//!
//! Metric names are listed in [`names`] and in `docs/observability.md`.

mod bus;
mod dispatch;
mod metrics;
mod store;

pub use self::bus::InstrumentedBus;
pub use self::dispatch::InDispatch;
pub(crate) use self::metrics::{HttpSeries, method_label, serve_metrics_port, spawn_outbox_gauges};
pub use self::metrics::{Metrics, MetricsConfig, MetricsError, names};

use std::sync::Arc;

use axum::Router;
use chassis_core::config::ConfigSource;
use messaging_abstractions::{EventBus, EventBusExt};
use storage_abstractions::Store;
use tokio_util::sync::CancellationToken;
use tracing::Dispatch;

use crate::config::Configuration;
use crate::host::{ServiceContext, StartupError};

/// What the host sets up for telemetry, built once per host at start-up.
pub(crate) struct HostTelemetry {
    metrics: Option<Metrics>,
    config: MetricsConfig,
    service: String,
    max_attempts: u32,
    trace: bool,
    dispatch: Option<Dispatch>,
}

impl HostTelemetry {
    /// Reads `[metrics]` and installs (or joins) the process' recorder when
    /// enabled; builds the host's own dispatcher when its tracing layer is
    /// not in the global subscriber (`installed`: the host just installed
    /// the global subscriber itself).
    pub(crate) fn start(
        config: &Configuration,
        tracing: &traces_init::TracingProvider,
        installed: bool,
    ) -> Result<Self, StartupError> {
        let chassis = config.chassis();
        let dispatch = dispatch::own_dispatch(chassis, tracing, installed)?;
        let metrics_config: MetricsConfig = config
            .read_valid("metrics", MetricsConfig::validate)
            .map_err(MetricsError::Config)?;
        let metrics = if metrics_config.enabled {
            Some(Metrics::install(
                &chassis.service.name,
                &chassis.service.version,
            )?)
        } else {
            None
        };
        Ok(Self {
            metrics,
            config: metrics_config,
            service: chassis.service.name.clone(),
            max_attempts: chassis.messaging.retry.max_attempts,
            trace: tracing.is_enabled(),
            dispatch,
        })
    }

    /// `bus` decorated with [`InstrumentedBus`] (unless neither metrics nor
    /// tracing is on and the service declared no messages to check its
    /// subscriptions and publishes against: `declared`). A bus another host decorated already (shared in one
    /// process) is unwrapped first, so each message is counted and traced
    /// once, under this service.
    pub(crate) fn wrap_bus(
        &self,
        bus: Arc<dyn EventBus>,
        declared: Option<crate::asyncapi::Declared>,
    ) -> Arc<dyn EventBus> {
        let bus = bus.decorated().unwrap_or(bus);
        if self.metrics.is_none() && !self.trace && declared.is_none() {
            return bus;
        }
        Arc::new(
            InstrumentedBus::new(bus, &self.service, self.max_attempts, self.trace)
                .in_dispatch(self.dispatch.clone())
                .checking(declared.map(Arc::new)),
        )
    }

    /// With metrics, `store` with its outbox observed (the relay's write →
    /// publish delay); without, `store` itself.
    pub(crate) fn wrap_store(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        match self.metrics {
            Some(_) => store::ObservedStore::wrap(store, &self.service),
            None => store,
        }
    }

    /// Starts the outbox gauges and registers the pool series of the
    /// service's store.
    pub(crate) fn on_context(&self, ctx: &ServiceContext) {
        if self.metrics.is_some() {
            spawn_outbox_gauges(ctx, self.config.refresh_interval);
            store::register_pool(ctx);
        }
    }

    /// The HTTP series, for the requests the edge answers itself.
    pub(crate) fn http_series(&self) -> Option<Arc<HttpSeries>> {
        self.metrics.as_ref().map(Metrics::http_series)
    }

    /// The path the metrics are served at (a probe, for the access log).
    pub(crate) fn metrics_path(&self) -> &str {
        &self.config.path
    }

    /// HTTP metrics on every route of `router`, and the metrics path.
    pub(crate) fn router(&self, router: Router) -> Router {
        match &self.metrics {
            Some(metrics) => metrics
                .track_http(router)
                .merge(metrics.routes(&self.config.path)),
            None => router,
        }
    }

    /// The host's HTTP service, in the host's own dispatcher if it has one.
    pub(crate) fn in_dispatch<S>(&self, service: S) -> InDispatch<S> {
        InDispatch::new(service, self.dispatch.clone())
    }

    /// Serves the metrics path on `metrics.port` too, when set.
    pub(crate) async fn serve_port(
        &self,
        host: &str,
        stop: CancellationToken,
    ) -> Result<Option<std::net::SocketAddr>, MetricsError> {
        match (&self.metrics, self.config.port) {
            (Some(metrics), Some(port)) => {
                serve_metrics_port(metrics, host, port, &self.config.path, stop)
                    .await
                    .map(Some)
            }
            _ => Ok(None),
        }
    }
}

//! A started service ([`RunningService`]) and its graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use messaging_abstractions::EventBus;
use storage_abstractions::Store;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use traces_init::TracingProvider;
use tracing::Instrument;

use super::{ServiceContext, ShutdownIncomplete};
use crate::shutdown::ShutdownHandle;

/// What the host started and must stop, in reverse order.
#[derive(Default)]
pub(super) struct Concerns {
    pub(super) owned_store: Option<Arc<dyn Store>>,
    pub(super) owned_bus: Option<Arc<dyn EventBus>>,
    pub(super) context: Option<ServiceContext>,
}

impl Concerns {
    /// [`Concerns::stop`] within `timeout` from now (a failed start-up).
    pub(super) async fn stop_within(&self, timeout: Duration) -> Vec<String> {
        self.stop(Instant::now() + timeout).await
    }

    /// Everything after HTTP, within one deadline: the bus stops consuming
    /// (in-flight handlers finish), background tasks stop, the outbox relay
    /// publishes until the outbox is empty, then the bus closes and the store
    /// last. Returns what failed.
    pub(super) async fn stop(&self, deadline: Instant) -> Vec<String> {
        let left = || deadline.saturating_duration_since(Instant::now());
        let mut problems = Vec::new();
        // Handlers write to the outbox: they finish before its last flush.
        if let Some(bus) = &self.owned_bus
            && let Err(error) = bus.stop_consuming(left()).await
        {
            problems.push(format!("stopping the consumers: {error}"));
        }
        if let Some(context) = &self.context {
            context.fire_shutdown();
            for (name, mut handle) in context.take_tasks() {
                match tokio::time::timeout_at(deadline, &mut handle).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(error))) => {
                        tracing::error!(task = %name, %error, "background task failed");
                        problems.push(format!("background task `{name}` failed: {error}"));
                    }
                    Ok(Err(join)) => {
                        problems.push(format!("background task `{name}` panicked: {join}"));
                    }
                    Err(_) => {
                        handle.abort();
                        problems.push(format!(
                            "background task `{name}` did not stop by the shutdown deadline and was aborted"
                        ));
                    }
                }
            }
            if let Some(relay) = context.take_relay() {
                problems.extend(flush_outbox(context, relay, deadline).await);
            }
        }
        if let Some(bus) = &self.owned_bus
            && let Err(error) = bus.shutdown().await
        {
            problems.push(format!("event bus shutdown: {error}"));
        }
        if let Some(store) = &self.owned_store {
            store.shutdown().await;
        }
        problems
    }
}

/// The relay's last run: until the outbox is empty or the deadline.
async fn flush_outbox(
    context: &ServiceContext,
    relay: chassis_storage::RelayHandle,
    deadline: Instant,
) -> Vec<String> {
    let left = deadline.saturating_duration_since(Instant::now());
    // A publish under way may outlast the relay's own deadline check.
    match tokio::time::timeout_at(deadline + RELAY_ROUND_SLACK, relay.drain(left)).await {
        Ok(Ok(stats)) => tracing::info!(published = stats.published, "outbox relay stopped"),
        Ok(Err(error)) => return vec![error.to_string()],
        Err(_) => {
            return vec!["the outbox relay did not stop by the shutdown deadline".to_owned()];
        }
    }
    match context.store().outbox().backlog().await {
        Ok(backlog) if backlog.pending > 0 => vec![format!(
            "{} outbox message(s) not published by the shutdown deadline \
             (http.shutdown_timeout); the next start publishes them",
            backlog.pending
        )],
        Ok(_) => Vec::new(),
        Err(error) => vec![format!("reading the outbox backlog: {error}")],
    }
}

/// How long a relay round that began before the deadline may still take.
const RELAY_ROUND_SLACK: Duration = Duration::from_secs(1);

/// A started service. Drop does not stop it: call [`RunningService::shutdown`]
/// or trigger its [`ShutdownHandle`] and [`RunningService::wait`].
pub struct RunningService {
    pub(super) addr: SocketAddr,
    pub(super) context: ServiceContext,
    pub(super) handle: ShutdownHandle,
    pub(super) server: JoinHandle<std::io::Result<()>>,
    pub(super) stop_accepting: CancellationToken,
    pub(super) concerns: Concerns,
    pub(super) traces: TracingProvider,
    pub(super) http: crate::config::HttpConfig,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("addr", &self.addr)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl RunningService {
    /// The bound address (the real port when `http.port` is 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` to reach the service from this machine (loopback
    /// when bound to all interfaces).
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            match self.addr {
                SocketAddr::V4(_) => "127.0.0.1".to_owned(),
                SocketAddr::V6(_) => "[::1]".to_owned(),
            }
        } else if self.addr.is_ipv6() {
            format!("[{}]", self.addr.ip())
        } else {
            self.addr.ip().to_string()
        };
        format!("http://{ip}:{}", self.addr.port())
    }

    /// The service's context (bus, store, config).
    pub fn context(&self) -> &ServiceContext {
        &self.context
    }

    /// A handle that triggers the graceful shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Waits until the shutdown handle fires, then shuts down gracefully.
    pub async fn wait(self) -> Result<(), ShutdownIncomplete> {
        self.handle.triggered().await;
        self.stop().await
    }

    /// Shuts down gracefully now.
    pub async fn shutdown(self) -> Result<(), ShutdownIncomplete> {
        self.handle.trigger();
        self.stop().await
    }

    /// Readiness 503, wait `http.shutdown_delay`; then, all within
    /// `http.shutdown_timeout`: stop accepting and let in-flight requests
    /// finish, stop consuming and let in-flight handlers finish, stop
    /// background tasks, publish what is left in the outbox, close the bus,
    /// the store and the trace exporter.
    async fn stop(self) -> Result<(), ShutdownIncomplete> {
        let span = tracing::info_span!("service", service = %self.context.name());
        async move {
            tracing::info!("shutting down: readiness now answers 503");
            self.context.health().mark_shutting_down();
            if !self.http.shutdown_delay.is_zero() {
                tokio::time::sleep(self.http.shutdown_delay).await;
            }
            let timeout = self.http.shutdown_timeout;
            let deadline = Instant::now() + timeout;
            self.stop_accepting.cancel();
            let mut problems = Vec::new();
            let mut server = self.server;
            match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => problems.push(format!("http server: {error}")),
                Ok(Err(join)) => problems.push(format!("http server task: {join}")),
                Err(_) => {
                    server.abort();
                    problems.push(format!(
                        "in-flight requests did not finish within {} (http.shutdown_timeout); abandoned, they end with the process",
                        chassis_core::duration::format(timeout)
                    ));
                }
            }
            problems.extend(self.concerns.stop(deadline).await);
            // Last: spans of the shutdown itself are exported too.
            if let Err(error) = self.traces.shutdown().await {
                problems.push(format!("trace export: {error}"));
            }
            if problems.is_empty() {
                tracing::info!("shutdown complete");
                Ok(())
            } else {
                Err(ShutdownIncomplete { problems })
            }
        }
        .instrument(span)
        .await
    }
}

//! A started service ([`RunningService`]) and its graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use messaging_abstractions::EventBus;
use storage_abstractions::Store;
use tokio::task::JoinHandle;
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
    /// Background tasks, then the bus (draining its consumers), then the
    /// store. Returns what failed.
    pub(super) async fn stop(&self, deadline: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(context) = &self.context {
            context.fire_shutdown();
            for (name, mut handle) in context.take_tasks() {
                match tokio::time::timeout(deadline, &mut handle).await {
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
                            "background task `{name}` did not stop within {} and was aborted",
                            chassis_core::duration::format(deadline)
                        ));
                    }
                }
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

    /// Readiness 503, wait `http.shutdown_delay`, stop accepting, let
    /// in-flight requests finish within `http.shutdown_timeout`, then stop
    /// background tasks, the bus, the store and the trace exporter.
    async fn stop(self) -> Result<(), ShutdownIncomplete> {
        let span = tracing::info_span!("service", service = %self.context.name());
        async move {
            tracing::info!("shutting down: readiness now answers 503");
            self.context.health().mark_shutting_down();
            if !self.http.shutdown_delay.is_zero() {
                tokio::time::sleep(self.http.shutdown_delay).await;
            }
            self.stop_accepting.cancel();
            let mut problems = Vec::new();
            let deadline = self.http.shutdown_timeout;
            let mut server = self.server;
            match tokio::time::timeout(deadline, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => problems.push(format!("http server: {error}")),
                Ok(Err(join)) => problems.push(format!("http server task: {join}")),
                Err(_) => {
                    server.abort();
                    problems.push(format!(
                        "in-flight requests did not finish within {} (http.shutdown_timeout); abandoned, they end with the process",
                        chassis_core::duration::format(deadline)
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

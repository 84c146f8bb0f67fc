//! [`ServiceContext`]: what routes, start-up hooks and background tasks get.

use std::sync::{Arc, Mutex};

use chassis_storage::{OutboxBacklogCheck, Persistence, RelayHandle};
use messaging_abstractions::EventBus;
use serde::de::DeserializeOwned;
use storage_abstractions::Store;
use tracing::Instrument;

use super::{BoxError, TaskList};
use crate::config::{ChassisConfig, ConfigError, Configuration};
use crate::readiness::Health;
use crate::shutdown::ShutdownSignal;

/// What routes, start-up hooks and background tasks get: the configuration,
/// the bus, the store, readiness and the shutdown signal. Cheap to clone.
#[derive(Clone)]
pub struct ServiceContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    config: Arc<Configuration>,
    bus: Arc<dyn EventBus>,
    store: Arc<dyn Store>,
    health: Health,
    signal: ShutdownSignal,
    tasks: Mutex<TaskList>,
    /// The outbox relay, stopped by the host after everything that writes
    /// to the outbox.
    relay: Mutex<Option<RelayHandle>>,
}

impl std::fmt::Debug for ServiceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceContext")
            .field("service", &self.name())
            .field("bus", &self.inner.bus.provider())
            .field("store", &self.inner.store.provider())
            .finish_non_exhaustive()
    }
}

impl ServiceContext {
    pub(super) fn new(
        config: Arc<Configuration>,
        bus: Arc<dyn EventBus>,
        store: Arc<dyn Store>,
        health: Health,
    ) -> Self {
        Self {
            inner: Arc::new(ContextInner {
                config,
                bus,
                store,
                health,
                signal: ShutdownSignal::new(),
                tasks: Mutex::new(Vec::new()),
                relay: Mutex::new(None),
            }),
        }
    }

    /// Tells background tasks to stop.
    pub(super) fn fire_shutdown(&self) {
        self.inner.signal.fire();
    }

    /// The service's name (`service.name`).
    pub fn name(&self) -> &str {
        &self.inner.config.chassis().service.name
    }

    /// The loaded configuration.
    pub fn config(&self) -> &Configuration {
        &self.inner.config
    }

    /// The typed chassis sections.
    pub fn chassis(&self) -> &ChassisConfig {
        self.inner.config.chassis()
    }

    /// Reads the service's own section, e.g. `ctx.section::<Shipping>("shipping")`.
    pub fn section<T: DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        self.inner.config.section(key)
    }

    /// The event bus.
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.inner.bus
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The service's [`Persistence`]: the store with the `[storage]`
    /// settings, which opens units of work and makes inboxes and the outbox
    /// relay.
    pub fn persistence(&self) -> Persistence {
        Persistence::new(self.store().clone(), self.chassis().storage.clone())
    }

    /// Publishes what the service writes to its outbox: starts the outbox
    /// relay on the service's bus and registers the outbox backlog readiness
    /// check watching it. With `storage.outbox.relay_enabled = false`
    /// (another process relays this store's outbox) only the backlog check
    /// is registered. Call it from an `on_start` hook; a second call does
    /// nothing (one relay per outbox).
    ///
    /// At shutdown the host stops it last among the writers: after HTTP has
    /// drained, the consumers have stopped and the background tasks have
    /// ended, it publishes until the outbox is empty or the shutdown deadline
    /// (`http.shutdown_timeout`) has passed.
    pub fn start_outbox_relay(&self) {
        let mut slot = self
            .inner
            .relay
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if slot.is_some() {
            tracing::debug!("the outbox relay runs already");
            return;
        }
        let storage = self.persistence();
        let backlog = OutboxBacklogCheck::new(self.store().outbox(), &storage.config().outbox);
        if !storage.config().outbox.relay_enabled {
            self.health().register(Arc::new(backlog));
            return;
        }
        let relay = storage.start_relay(self.bus().clone());
        self.health().register(Arc::new(backlog.watching(&relay)));
        *slot = Some(relay);
    }

    pub(super) fn take_relay(&self) -> Option<RelayHandle> {
        self.inner
            .relay
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take()
    }

    /// Readiness: register more checks at run time.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// Fires when background tasks should stop (after HTTP has drained and
    /// the consumers have stopped).
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.inner.signal.clone()
    }

    /// Runs a background task (outbox relay, poller) until it returns. It
    /// should watch [`ServiceContext::shutdown_signal`]; at shutdown the host
    /// waits for it until the shutdown deadline (what is left of
    /// `http.shutdown_timeout`, shared by every task), then aborts it. An error
    /// it returns is logged and reported by the shutdown.
    pub fn spawn<F>(&self, name: impl Into<String>, task: F)
    where
        F: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let name = name.into();
        let span = tracing::info_span!("task", task = %name);
        let handle = tokio::spawn(task.instrument(span));
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push((name, handle));
    }

    /// Runs a background task until it returns or shutdown begins, whichever
    /// comes first (a poller, a periodic job): the task need not watch the
    /// shutdown signal itself. Stopped at shutdown like [`ServiceContext::spawn`]'s.
    pub fn spawn_until_shutdown<F>(&self, name: impl Into<String>, task: F)
    where
        F: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let stopping = self.shutdown_signal();
        self.spawn(name, async move {
            tokio::select! {
                outcome = task => outcome,
                () = stopping.stopping() => Ok(()),
            }
        });
    }

    pub(super) fn take_tasks(&self) -> TaskList {
        std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
    }
}

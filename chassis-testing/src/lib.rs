//! Test harness for services built on the chassis.
//!
//! - [`TestBus`]: a real in-memory bus (the `messaging-inmemory` provider,
//!   with short retry backoffs) that records every delivery a handler
//!   finished — group, message id, attempt, outcome — so a test can await
//!   "message M was handled by group X" **deterministically**: waits are
//!   woken by the handlers themselves, never by polling or sleeping. The
//!   generous upper bound only turns a hang into a failure that lists what
//!   was handled.
//! - [`start`]: starts a service's [`ServiceHostBuilder`] in-process on a
//!   free loopback port, on the test bus and the in-memory store.
//! - Dead letters: [`TestBus::dead_letters`] and [`TestBus::replay`].
//! - Event contracts: [`contracts::check_event_contract`] checks an event
//!   type against its recorded payload, backward, forward and tolerant of
//!   unknown fields.
//! - Security: [`assert_routes_require_credentials`] calls every operation of
//!   a service's `/openapi.json` without credentials and expects 401.
//! - Real broker: [`rabbitmq`] gives each test a vhost of its own on the
//!   local RabbitMQ, the lock that keeps broker-restart tests alone, and a
//!   guard that always starts a stopped broker again; [`nats`] runs a
//!   `nats-server` of a test's own that it can stop and start.
//! - Benches (feature `bench`): the module `bench` runs the measured sides of a
//!   bench as processes of their own and reports medians and min–max.
//!
//! ```
//! use chassis_testing::TestBus;
//! use messaging_abstractions::{EventBus, Handlers, HandlerError, IntegrationEvent, Subscription};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Ping { n: u32 }
//! impl IntegrationEvent for Ping { const EVENT_TYPE: &'static str = "test.ping.v1"; }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let bus = TestBus::in_memory();
//! let handlers = Handlers::new().on_fn(|p: Ping, _| async move {
//!     if p.n == 0 { Err(HandlerError::permanent("zero")) } else { Ok(()) }
//! });
//! bus.subscribe(Subscription::new("pinger", handlers)).await.unwrap();
//!
//! let ok = bus.publish_event(&Ping { n: 1 }).await;
//! assert!(bus.wait_handled("pinger", ok.message_id).await.is_ok());
//!
//! let bad = bus.publish_event(&Ping { n: 0 }).await;
//! let letter = bus.wait_dead_letter("pinger", bad.message_id).await;
//! assert_eq!((letter.reason.as_str(), letter.attempts), ("zero", 1));
//! bus.shutdown().await.unwrap();
//! # });
//! ```

pub mod asyncapi;
#[cfg(feature = "bench")]
pub mod bench;
pub mod contracts;
pub mod nats;
mod openapi;
pub mod rabbitmq;
mod security;

pub use openapi::{assert_edge_documented, openapi_operations};
pub use security::{
    TEST_API_KEY, assert_production_requires_credentials, assert_routes_require_credentials,
    openapi_document,
};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chassis_web::{RunningService, ServiceHostBuilder, StartupError};
use messaging_abstractions::{
    DeadLetter, Delivery, Envelope, EventBus, EventBusExt, EventBusHooks, FailureKind,
    HandlerError, IntegrationEvent, MessageHandler, MessagingConfig, PublishError, RetryPolicy,
    ShutdownError, SubscribeError, Subscription,
};
use messaging_inmemory::InMemoryBus;
use tokio::sync::Notify;
use uuid::Uuid;

/// How long a wait may take before the test fails (a safety net against
/// hangs, far above any healthy run).
pub const DEFAULT_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// One delivery a handler finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The consumer group.
    pub group: String,
    /// The message.
    pub message_id: Uuid,
    /// Its event type.
    pub event_type: String,
    /// 1 on the first delivery.
    pub attempt: u32,
    /// What the handler returned.
    pub outcome: Result<(), HandlerError>,
}

impl Handled {
    /// Whether the bus will deliver the message to this group again.
    fn is_final(&self, max_attempts: u32) -> bool {
        match &self.outcome {
            Ok(()) => true,
            Err(e) => e.kind != FailureKind::Retryable || self.attempt >= max_attempts,
        }
    }
}

#[derive(Default)]
struct Log {
    entries: Mutex<Vec<Handled>>,
    changed: Notify,
}

impl Log {
    fn record(&self, handled: Handled) {
        self.entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(handled);
        self.changed.notify_waiters();
    }

    fn snapshot(&self) -> Vec<Handled> {
        self.entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

/// An in-memory event bus that records what its handlers did. Cheap to
/// clone; clones share the broker and the record. Give it to every service
/// of a test (`host.event_bus(bus.bus())`), as several services in one
/// process share one bus.
#[derive(Clone)]
pub struct TestBus {
    inner: Arc<dyn EventBus>,
    log: Arc<Log>,
    max_attempts: u32,
    wait_limit: Duration,
}

impl std::fmt::Debug for TestBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBus")
            .field("provider", &self.inner.provider())
            .field("handled", &self.log.snapshot().len())
            .finish()
    }
}

impl TestBus {
    /// An in-memory bus with 3 attempts and short backoffs (10–50 ms), so
    /// retry paths run fast.
    pub fn in_memory() -> Self {
        let config = MessagingConfig {
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
                multiplier: 2.0,
            },
            ..MessagingConfig::default()
        };
        Self::in_memory_with(&config)
    }

    /// An in-memory bus with this configuration.
    pub fn in_memory_with(config: &MessagingConfig) -> Self {
        Self {
            inner: Arc::new(InMemoryBus::new(config)),
            log: Arc::default(),
            max_attempts: config.retry.max_attempts,
            wait_limit: DEFAULT_WAIT_LIMIT,
        }
    }

    /// Fails waits after `limit` instead of [`DEFAULT_WAIT_LIMIT`].
    pub fn with_wait_limit(mut self, limit: Duration) -> Self {
        self.wait_limit = limit;
        self
    }

    /// This bus as the port, for `ServiceHostBuilder::event_bus`.
    pub fn bus(&self) -> Arc<dyn EventBus> {
        Arc::new(self.clone())
    }

    /// Publishes `event`; the envelope sent (its `message_id` is what to
    /// wait for). Panics if the bus refuses it.
    pub async fn publish_event<E: IntegrationEvent>(&self, event: &E) -> Envelope {
        match EventBusExt::publish_event(self, event).await {
            Ok(envelope) => envelope,
            Err(e) => panic!("publishing `{}` failed: {e}", E::EVENT_TYPE),
        }
    }

    /// Publishes an envelope again as it is (same message id): what a broker
    /// does when an acknowledgement is lost.
    pub async fn redeliver(&self, envelope: Envelope) {
        if let Err(e) = self.inner.publish(envelope).await {
            panic!("redelivering failed: {e}");
        }
    }

    /// Drains and stops the bus.
    pub async fn shutdown(&self) -> Result<(), ShutdownError> {
        self.inner.shutdown().await
    }

    /// Every delivery finished so far, in order.
    pub fn handled(&self) -> Vec<Handled> {
        self.log.snapshot()
    }

    /// Waits until `group` has finished with `message_id` — handled, or
    /// failed for good (permanent, undecodable, or out of attempts) — and
    /// returns the last outcome.
    pub async fn wait_handled(&self, group: &str, message_id: Uuid) -> Result<(), HandlerError> {
        let max_attempts = self.max_attempts;
        self.wait_until(
            &format!("group `{group}` to finish message {message_id}"),
            |log| {
                log.iter()
                    .rev()
                    .find(|h| {
                        h.group == group && h.message_id == message_id && h.is_final(max_attempts)
                    })
                    .map(|h| h.outcome.clone())
            },
        )
        .await
    }

    /// Waits until `group` has finished `times` deliveries of `message_id`
    /// (a redelivered message counts once per delivery); their outcomes.
    pub async fn wait_handled_times(
        &self,
        group: &str,
        message_id: Uuid,
        times: usize,
    ) -> Vec<Result<(), HandlerError>> {
        let max_attempts = self.max_attempts;
        self.wait_until(
            &format!("group `{group}` to finish message {message_id} {times} times"),
            |log| {
                let done: Vec<_> = log
                    .iter()
                    .filter(|h| {
                        h.group == group && h.message_id == message_id && h.is_final(max_attempts)
                    })
                    .map(|h| h.outcome.clone())
                    .collect();
                (done.len() >= times).then_some(done)
            },
        )
        .await
    }

    /// Waits until `check` finds what it looks for in the record of handled
    /// deliveries; woken by each finished delivery. Panics after the wait
    /// limit, listing what was handled.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        mut check: impl FnMut(&[Handled]) -> Option<T>,
    ) -> T {
        let wait = async {
            loop {
                // Register for the wake-up before looking, so a delivery that
                // finishes in between is not missed.
                let changed = self.log.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if let Some(found) = check(&self.log.snapshot()) {
                    return found;
                }
                changed.await;
            }
        };
        match tokio::time::timeout(self.wait_limit, wait).await {
            Ok(found) => found,
            Err(_) => panic!(
                "waited {:?} for {what}; handled so far: {:#?}",
                self.wait_limit,
                self.log.snapshot()
            ),
        }
    }

    /// Dead letters of `group` (all groups when `None`), oldest first.
    pub async fn dead_letters(&self, group: Option<&str>) -> Vec<DeadLetter> {
        match self.inner.dead_letters() {
            Some(store) => store.list(group).await,
            None => panic!("the {} bus keeps no dead letters", self.inner.provider()),
        }
    }

    /// Waits until `message_id` failed for good in `group` and the bus has
    /// dead-lettered it; the dead letter. The bus files the letter right
    /// after the handler's last failure, so this only yields to it, never
    /// sleeps.
    pub async fn wait_dead_letter(&self, group: &str, message_id: Uuid) -> DeadLetter {
        if let Ok(()) = self.wait_handled(group, message_id).await {
            panic!("message {message_id} was handled by group `{group}`; no dead letter expected");
        }
        let find = async {
            loop {
                let letters = self.dead_letters(Some(group)).await;
                if let Some(letter) = letters
                    .into_iter()
                    .find(|l| l.envelope.message_id == message_id)
                {
                    return letter;
                }
                tokio::task::yield_now().await;
            }
        };
        match tokio::time::timeout(self.wait_limit, find).await {
            Ok(letter) => letter,
            Err(_) => panic!(
                "message {message_id} failed in group `{group}` but was not dead-lettered within {:?}",
                self.wait_limit
            ),
        }
    }

    /// Sends a dead letter back to its group; `false` if there is none with
    /// this id.
    pub async fn replay(&self, dead_letter: Uuid) -> Result<bool, PublishError> {
        match self.inner.dead_letters() {
            Some(store) => store.replay(dead_letter).await,
            None => panic!("the {} bus keeps no dead letters", self.inner.provider()),
        }
    }
}

/// Records the outcome of the wrapped handler.
struct Recording {
    handler: Arc<dyn MessageHandler>,
    log: Arc<Log>,
}

#[async_trait]
impl MessageHandler for Recording {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let outcome = self.handler.handle(delivery).await;
        self.log.record(Handled {
            group: delivery.group.clone(),
            message_id: delivery.envelope.message_id,
            event_type: delivery.envelope.event_type.clone(),
            attempt: delivery.attempt,
            outcome: outcome.clone(),
        });
        outcome
    }
}

/// Batches keep the wrapped bus' own (pipelined) path.
#[async_trait]
impl EventBusHooks for TestBus {
    async fn publish_all(&self, envelopes: Vec<Envelope>) -> Result<(), PublishError> {
        self.inner.publish_all(envelopes).await
    }
}

#[async_trait]
impl EventBus for TestBus {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    fn hooks(&self) -> Option<&dyn EventBusHooks> {
        Some(self)
    }

    async fn publish(&self, envelope: Envelope) -> Result<(), PublishError> {
        self.inner.publish(envelope).await
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), SubscribeError> {
        let subscription = subscription.map_handlers(|handler| {
            Arc::new(Recording {
                handler,
                log: self.log.clone(),
            })
        });
        self.inner.subscribe(subscription).await
    }

    async fn request(
        &self,
        request: Envelope,
        timeout: std::time::Duration,
    ) -> Result<Envelope, messaging_abstractions::RequestError> {
        self.inner.request(request, timeout).await
    }

    async fn reply(&self, request: &Envelope, reply: Envelope) -> Result<(), PublishError> {
        self.inner.reply(request, reply).await
    }

    fn health_checks(&self) -> Vec<Arc<dyn chassis_core::HealthCheck>> {
        self.inner.health_checks()
    }

    fn dead_letters(&self) -> Option<Arc<dyn messaging_abstractions::DeadLetterStore>> {
        self.inner.dead_letters()
    }

    async fn stop_consuming(&self, grace: Duration) -> Result<(), ShutdownError> {
        self.inner.stop_consuming(grace).await
    }

    async fn shutdown(&self) -> Result<(), ShutdownError> {
        self.inner.shutdown().await
    }
}

/// How tests run a service host in-process (`use chassis_testing::InProcess`).
pub trait InProcess {
    /// On a free loopback port, without command-line arguments,
    /// authentication off (a test of it turns it on), no global log
    /// subscriber. The bus and store stay as configured.
    fn in_process(self) -> Self;
}

impl InProcess for ServiceHostBuilder {
    fn in_process(self) -> Self {
        self.config("http.host", "127.0.0.1")
            .config("http.port", 0_i64)
            .config("security.auth.enabled", false)
            .args(Vec::<String>::new())
            .install_logging(false)
    }
}

/// Starts `service` in-process on a free loopback port, on `bus` and the
/// in-memory store — or, for a service with tables of its own, a private
/// SQLite database ([`ServiceHostBuilder::embedded_storage_provider`]; gone
/// at shutdown, the service's `sqlite` feature compiles it in) — without
/// installing a global log subscriber. Panics with the start-up error.
pub async fn start(service: ServiceHostBuilder, bus: &TestBus) -> RunningService {
    try_start(service, bus)
        .await
        .unwrap_or_else(|e| panic!("the service did not start: {e}"))
}

/// [`start`], returning the start-up error.
pub async fn try_start(
    service: ServiceHostBuilder,
    bus: &TestBus,
) -> Result<RunningService, StartupError> {
    let storage = service.embedded_storage_provider();
    service
        .event_bus(bus.bus())
        .config("storage.provider", storage)
        .in_process()
        .start()
        .await
}

//! [`InMemoryBus`]: one connection to a shared in-process broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::InMemoryConfig;
use async_trait::async_trait;
use chassis_core::{HealthCheck, HealthStatus};
use messaging_abstractions::request::{REPLY_TO_HEADER, set_deadline};
use messaging_abstractions::{
    DeadLetterStore, Envelope, EventBus, EventBusHooks, MessagingConfig, PublishError,
    RequestError, ShutdownError, SubscribeError, Subscription,
};
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, DeadLetters};
use crate::observe::{BrokerStats, GroupStats, Outcomes, WaitTimeout};
use crate::queue::Taken;
use crate::replies::Inbox;

/// The in-process event bus: a real broker living in this process.
///
/// Each consumer group has one bounded queue bound to the event types its
/// subscriptions handle; every message is encoded to bytes on publish and
/// decoded on delivery. See the crate docs for the full semantics.
///
/// **Connections.** An `InMemoryBus` is a connection to a broker.
/// [`InMemoryBus::new`] creates a broker and a first connection; `clone()`
/// opens another connection to the *same* broker. Several services in one
/// process each take a clone: they share queues, bindings and dead letters,
/// and each one's [`EventBus::shutdown`] drains only its own consumers and
/// stops only its own publishing. Dropping a connection (its last clone of
/// the `Arc`, if shared) stops its consumers after their current message.
/// The broker lives until the last connection and consumer are gone.
pub struct InMemoryBus {
    broker: Arc<Broker>,
    conn: Arc<Connection>,
}

struct Connection {
    closed: AtomicBool,
    cancel: CancellationToken,
    workers: AsyncMutex<JoinSet<()>>,
    /// This connection's reply address and pending requests.
    inbox: Arc<Inbox>,
}

impl Connection {
    fn new(broker: &Broker) -> Arc<Self> {
        let inbox = Inbox::new();
        broker.inboxes.register(&inbox);
        Arc::new(Self {
            closed: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            workers: AsyncMutex::new(JoinSet::new()),
            inbox,
        })
    }
}

impl Drop for Connection {
    /// A connection dropped without `shutdown` closes like one whose client
    /// went away: its consumers stop taking messages and finish the ones
    /// they are handling (never aborted half-way, so nothing is lost).
    fn drop(&mut self) {
        self.cancel.cancel();
        self.workers.get_mut().detach_all();
    }
}

impl Clone for InMemoryBus {
    /// Opens another connection to the same broker.
    fn clone(&self) -> Self {
        Self {
            broker: self.broker.clone(),
            conn: Connection::new(&self.broker),
        }
    }
}

impl std::fmt::Debug for InMemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryBus")
            .field("groups", &self.broker.group_names())
            .field("closed", &self.conn.closed.load(Ordering::Acquire))
            .finish()
    }
}

impl InMemoryBus {
    /// A new broker with the shared settings of `config` (prefetch,
    /// concurrency, retry policy, dead-lettering) and the default
    /// [`InMemoryConfig`], and a first connection to it.
    pub fn new(config: &MessagingConfig) -> Self {
        Self::with_settings(config, &InMemoryConfig::default())
    }

    /// A new broker with the shared settings of `config` and the provider's
    /// own `settings` (queue capacity, publish timeout, drain timeout), and a
    /// first connection to it. Both are expected to be valid
    /// ([`MessagingConfig::validate`], [`InMemoryConfig::validate`]); a zero
    /// capacity, prefetch or concurrency is treated as 1.
    pub fn with_settings(config: &MessagingConfig, settings: &InMemoryConfig) -> Self {
        let mut config = config.clone();
        config.concurrency = config.concurrency.max(1);
        config.prefetch = config.prefetch.max(1);
        let mut settings = settings.clone();
        settings.queue_capacity = settings.queue_capacity.max(1);
        let broker = Arc::new(Broker::new(config, settings));
        let conn = Connection::new(&broker);
        Self { broker, conn }
    }

    /// The shared settings the broker runs with.
    pub fn config(&self) -> &MessagingConfig {
        &self.broker.config
    }

    /// The provider's own settings the broker runs with.
    pub fn settings(&self) -> &InMemoryConfig {
        &self.broker.settings
    }

    /// Counters of every consumer group and of unroutable messages.
    pub fn stats(&self) -> BrokerStats {
        self.broker.stats()
    }

    /// Counters of one group, `None` if no subscription ever named it.
    pub fn group_stats(&self, group: &str) -> Option<GroupStats> {
        self.broker.stats().groups.remove(group)
    }

    /// A lossless stream of every delivery outcome (handled, retrying,
    /// dead-lettered) from now on. Create it *before* publishing what you
    /// want to await.
    pub fn outcomes(&self) -> Outcomes {
        self.broker.observers.register()
    }

    /// Waits until `done(stats)` holds; re-checked after every delivery
    /// outcome and retry, so it returns as soon as the condition is met.
    /// Fails after `timeout` with the last stats.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl FnMut(&BrokerStats) -> bool,
    ) -> Result<BrokerStats, WaitTimeout> {
        match tokio::time::timeout(timeout, self.broker.wait_stats(done)).await {
            Ok(stats) => Ok(stats),
            Err(_) => Err(WaitTimeout {
                what: what.to_owned(),
                waited: timeout,
                last: self.broker.stats(),
            }),
        }
    }

    /// Waits until nothing is queued, in flight or waiting for a retry in
    /// any group (messages of groups without consumers stay queued: they
    /// count as not idle).
    pub async fn wait_idle(&self, timeout: Duration) -> Result<BrokerStats, WaitTimeout> {
        self.wait_until("every queue idle", timeout, BrokerStats::is_idle)
            .await
    }

    fn is_open(&self) -> bool {
        !self.conn.closed.load(Ordering::Acquire)
    }
}

/// The broker takes envelopes by reference: no copy for a caller keeping it.
#[async_trait]
impl EventBusHooks for InMemoryBus {
    async fn publish_ref(&self, envelope: &Envelope) -> Result<(), PublishError> {
        if !self.is_open() {
            return Err(PublishError::ShutDown);
        }
        self.broker.publish(envelope).await
    }
}

#[async_trait]
impl EventBus for InMemoryBus {
    fn provider(&self) -> &'static str {
        "inmemory"
    }

    fn hooks(&self) -> Option<&dyn EventBusHooks> {
        Some(self)
    }

    async fn publish(&self, envelope: Envelope) -> Result<(), PublishError> {
        EventBusHooks::publish_ref(self, &envelope).await
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), SubscribeError> {
        subscription.validate()?;
        let mut workers = self.conn.workers.lock().await;
        if !self.is_open() || self.conn.cancel.is_cancelled() {
            return Err(SubscribeError::ShutDown);
        }
        let group = self.broker.group(&subscription.group);
        self.broker
            .bind(&group, subscription.handlers.event_types());
        // A consumer holds at most `prefetch` unacknowledged messages and
        // runs at most `concurrency` handlers: `count` workers, each taking
        // up to `batch` messages at a time (fewer lock round trips and
        // wake-ups under load) and handling them one after the other.
        let config = &self.broker.config;
        let prefetch = usize::from(config.prefetch);
        let count = config.concurrency.min(prefetch);
        let batch = (prefetch / count).max(1);
        let handlers = Arc::new(subscription.handlers);
        for _ in 0..count {
            let broker = self.broker.clone();
            let group = group.clone();
            let handlers = handlers.clone();
            let cancel = self.conn.cancel.clone();
            group.counters.consumers.fetch_add(1, Ordering::AcqRel);
            workers.spawn(async move {
                let mut taken = Vec::with_capacity(batch);
                loop {
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => break,
                        () = group.queue.take(batch, count, &mut taken) => {}
                    }
                    let mut items = taken.drain(..);
                    while let Some(Taken { item, mut turn }) = items.next() {
                        // After the earlier messages of its partition key,
                        // whichever worker took them.
                        turn.wait().await;
                        // Once started, a message is handled to the end even
                        // if shutdown starts meanwhile: that is the drain.
                        broker.deliver(&group, &handlers, item).await;
                        drop(turn);
                        if cancel.is_cancelled() {
                            // Taken but not started: back to the head of the
                            // queue for the group's other consumers.
                            group.queue.requeue_front(items);
                            break;
                        }
                    }
                }
                group.counters.consumers.fetch_sub(1, Ordering::AcqRel);
                broker.changed();
            });
        }
        tracing::debug!(
            group = %group.name,
            workers = count,
            batch,
            event_types = ?handlers.event_types().collect::<Vec<_>>(),
            "subscribed"
        );
        Ok(())
    }

    /// The request goes to the groups bound to its type (none → `NoResponder`
    /// at once); the answer comes straight to this connection's inbox. The
    /// timeout bounds everything, including waiting for room in a full queue.
    async fn request(
        &self,
        mut request: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, RequestError> {
        if !self.is_open() {
            return Err(RequestError::ShutDown);
        }
        let deadline = Instant::now() + timeout;
        let request_type = request.event_type.clone();
        request
            .headers
            .insert(REPLY_TO_HEADER.to_owned(), self.conn.inbox.address.clone());
        set_deadline(&mut request, timeout);
        // Waiting before publishing: a fast responder cannot answer too early.
        let (answer, _pending) = self.conn.inbox.wait_for(request.message_id)?;
        let timed_out = || RequestError::Timeout {
            request_type: request_type.clone(),
            waited: timeout,
        };
        match tokio::time::timeout_at(deadline, self.broker.publish_routed(&request, true)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(RequestError::from_publish(&request_type, e)),
            Err(_) => return Err(timed_out()),
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(answer)) => answer,
            // The inbox went away with its connection.
            Ok(Err(_)) => Err(RequestError::ShutDown),
            Err(_) => Err(timed_out()),
        }
    }

    /// Delivers `reply` to the inbox named in the request. Accepted while this
    /// connection drains (answering is the end of handling an in-flight
    /// request).
    async fn reply(&self, request: &Envelope, reply: Envelope) -> Result<(), PublishError> {
        let Some(address) = request.headers.get(REPLY_TO_HEADER) else {
            tracing::debug!(
                message_id = %request.message_id,
                event_type = %request.event_type,
                "reply to a message without a reply address: nobody waits for it"
            );
            return Err(PublishError::Unroutable {
                message_id: reply.message_id,
                event_type: reply.event_type,
            });
        };
        self.broker.inboxes.deliver(address, request, reply)
    }

    fn health_checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        vec![Arc::new(Health {
            broker: self.broker.clone(),
            conn: self.conn.clone(),
        })]
    }

    fn dead_letters(&self) -> Option<Arc<dyn DeadLetterStore>> {
        Some(Arc::new(DeadLetters(self.broker.clone())))
    }

    async fn stop_consuming(&self, grace: Duration) -> Result<(), ShutdownError> {
        self.drain(grace).await
    }

    async fn shutdown(&self) -> Result<(), ShutdownError> {
        self.conn.closed.store(true, Ordering::Release);
        // Pending requests of this connection fail now rather than time out.
        self.conn.inbox.close();
        self.broker.inboxes.unregister(&self.conn.inbox.address);
        self.drain(self.broker.settings.drain_timeout).await
    }
}

impl InMemoryBus {
    /// Stops this connection's consumers and waits up to `grace` for the
    /// messages they are handling. Concurrent callers queue on the workers'
    /// lock and return once the first has drained.
    async fn drain(&self, grace: Duration) -> Result<(), ShutdownError> {
        self.conn.cancel.cancel();
        let mut workers = self.conn.workers.lock().await;
        let deadline = Instant::now() + grace;
        while !workers.is_empty() {
            if tokio::time::timeout_at(deadline, workers.join_next())
                .await
                .is_err()
            {
                let in_flight = workers.len();
                // Let the stuck handlers finish on their own rather than
                // abort them half-way and lose their messages.
                workers.detach_all();
                return Err(ShutdownError::Timeout {
                    in_flight,
                    waited: grace,
                });
            }
        }
        Ok(())
    }
}

/// Readiness of one connection: unhealthy once shut down, degraded while a
/// queue is nearly full (publishers are about to wait).
struct Health {
    broker: Arc<Broker>,
    conn: Arc<Connection>,
}

#[async_trait]
impl HealthCheck for Health {
    fn name(&self) -> &str {
        "messaging.inmemory"
    }

    async fn check(&self) -> HealthStatus {
        if self.conn.closed.load(Ordering::Acquire) {
            return HealthStatus::Unhealthy("event bus connection is shut down".into());
        }
        let capacity = self.broker.settings.queue_capacity;
        let full: Vec<String> = self
            .broker
            .stats()
            .groups
            .into_iter()
            .filter(|(_, s)| s.queued.saturating_mul(10) >= capacity.saturating_mul(9))
            .map(|(name, s)| format!("`{name}` ({}/{capacity})", s.queued))
            .collect();
        if full.is_empty() {
            HealthStatus::Healthy
        } else {
            HealthStatus::Degraded(format!("queues nearly full: {}", full.join(", ")))
        }
    }
}

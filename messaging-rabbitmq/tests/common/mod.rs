//! Shared helpers of the RabbitMQ integration tests.
//!
//! Every test runs against the real broker on 127.0.0.1:5672 (guest/guest)
//! and fails when it is not there. Isolation: each test gets a vhost of its
//! own (`rabbitmqctl add_vhost`), deleted when the test ends, pass or fail.
//!
//! The broker-restart test stops the whole broker application for a few
//! seconds. All tests of this crate take a cross-process file lock: shared
//! by ordinary tests, exclusive by the restart test, so it never runs while
//! another test of this crate (in any test binary or process) is talking to
//! the broker.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use messaging_abstractions::{MessagingConfig, RetryPolicy};
use messaging_rabbitmq::{QueueType, RabbitMqBus, RabbitMqConfig, RabbitMqError};
use uuid::Uuid;

pub use chassis_testing::rabbitmq::BrokerLock;

/// A vhost of its own for one test (the shared helper), with this crate's
/// test configuration.
pub struct Vhost(chassis_testing::rabbitmq::Vhost);

impl std::ops::Deref for Vhost {
    type Target = chassis_testing::rabbitmq::Vhost;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Vhost {
    pub fn new() -> Self {
        Self::with_lock(BrokerLock::shared())
    }

    pub fn with_lock(lock: BrokerLock) -> Self {
        Self(chassis_testing::rabbitmq::Vhost::with_lock(
            "chassis-test",
            lock,
        ))
    }

    /// A vhost whose queues are quorum queues unless declared otherwise.
    pub fn defaulting_to_quorum() -> Self {
        Self(chassis_testing::rabbitmq::Vhost::with_default_queue_type(
            "chassis-test",
            "quorum",
        ))
    }

    pub fn url(&self) -> String {
        self.amqp_url()
    }

    /// A test config for this vhost: fast retries, small batches.
    pub fn config(&self, queue_type: QueueType) -> TestConfig {
        let shared = MessagingConfig {
            provider: "rabbitmq".into(),
            prefetch: 16,
            concurrency: 4,
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
                multiplier: 2.0,
            },
            ..MessagingConfig::default()
        };
        let rabbitmq = RabbitMqConfig {
            url: self.url().into(),
            exchange: "test.events".into(),
            queue_type,
            reconnect_initial_backoff: Duration::from_millis(100),
            reconnect_max_backoff: Duration::from_secs(1),
            ..RabbitMqConfig::default()
        };
        shared.validate().expect("test config is valid");
        rabbitmq.validate().expect("test config is valid");
        TestConfig { shared, rabbitmq }
    }
}

/// The shared `[messaging]` keys and the provider's section of a test.
#[derive(Debug, Clone)]
pub struct TestConfig {
    pub shared: MessagingConfig,
    pub rabbitmq: RabbitMqConfig,
}

impl TestConfig {
    /// Connects a bus for `service` with these settings.
    pub async fn connect(&self, service: &str) -> Result<RabbitMqBus, RabbitMqError> {
        RabbitMqBus::connect(&self.shared, &self.rabbitmq, service).await
    }
}

impl std::ops::Deref for TestConfig {
    type Target = MessagingConfig;
    fn deref(&self) -> &MessagingConfig {
        &self.shared
    }
}

impl std::ops::DerefMut for TestConfig {
    fn deref_mut(&mut self) -> &mut MessagingConfig {
        &mut self.shared
    }
}

/// A raw handler from an async closure.
pub struct FnHandler<F>(pub F);

#[async_trait::async_trait]
impl<F, Fut> messaging_abstractions::MessageHandler for FnHandler<F>
where
    F: Fn(messaging_abstractions::Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), messaging_abstractions::HandlerError>>
        + Send
        + 'static,
{
    async fn handle(
        &self,
        delivery: &messaging_abstractions::Delivery,
    ) -> Result<(), messaging_abstractions::HandlerError> {
        (self.0)(delivery.clone()).await
    }
}

/// Handlers taking `event_type` with `f`.
pub fn on<F, Fut>(event_type: &str, f: F) -> messaging_abstractions::Handlers
where
    F: Fn(messaging_abstractions::Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), messaging_abstractions::HandlerError>>
        + Send
        + 'static,
{
    messaging_abstractions::Handlers::new().on_raw(event_type, std::sync::Arc::new(FnHandler(f)))
}

/// A small JSON envelope of `event_type` carrying `n`.
pub fn envelope(event_type: &str, n: u64) -> messaging_abstractions::Envelope {
    messaging_abstractions::Envelope::new(
        event_type,
        messaging_abstractions::JSON_CONTENT_TYPE,
        format!("{{\"n\":{n}}}").into_bytes(),
    )
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not seen within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `store` until the dead letter of `message_id` in `group` shows up.
pub async fn dead_letter(
    store: &std::sync::Arc<dyn messaging_abstractions::DeadLetterStore>,
    group: &str,
    message_id: Uuid,
    timeout: Duration,
) -> messaging_abstractions::DeadLetter {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(letter) = store
            .list(Some(group))
            .await
            .into_iter()
            .find(|l| l.envelope.message_id == message_id)
        {
            return letter;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {message_id} not dead-lettered in group {group} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The queues the chassis declares for `group` under `config` (the group
/// queue, its dead-letter queue and its delay queues).
pub fn group_queues(config: &TestConfig, group: &str) -> Vec<String> {
    let exchange = &config.rabbitmq.exchange;
    let mut queues = vec![
        format!("{exchange}.{group}"),
        format!("{exchange}.{group}.dlq"),
    ];
    let retry = &config.retry;
    for attempt in 1..retry.max_attempts {
        if let Some(wait) = retry.backoff(attempt) {
            let queue = format!("{exchange}.{group}.retry.{}ms", wait.as_millis().max(1));
            if !queues.contains(&queue) {
                queues.push(queue);
            }
        }
    }
    queues
}

/// Subscribes `group` to `event_type` with a handler that records the id of
/// every message it handles, in order.
pub async fn subscribe_recording(
    bus: &dyn messaging_abstractions::EventBus,
    group: &str,
    event_type: &str,
) -> std::sync::Arc<parking_lot::Mutex<Vec<Uuid>>> {
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = seen.clone();
    bus.subscribe(messaging_abstractions::Subscription::new(
        group,
        on(event_type, move |d| {
            let log = log.clone();
            async move {
                log.lock().push(d.envelope.message_id);
                Ok(())
            }
        }),
    ))
    .await
    .unwrap();
    seen
}

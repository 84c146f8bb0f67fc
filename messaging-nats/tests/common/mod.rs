//! Shared helpers of the NATS integration tests.
//!
//! Every test runs against the real server on 127.0.0.1:4222 (JetStream
//! on) and fails when it is not there. Isolation: each test uses a subject
//! prefix of its own, so its streams and consumers are its own; they are
//! deleted when the test ends, pass or fail.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use chassis_testing::nats::StreamPrefix;
use messaging_abstractions::{MessagingConfig, RetryPolicy};
use messaging_nats::NatsConfig;

pub use chassis_testing::nats::LOCAL_URL as URL;

/// A subject prefix of one test; its streams go when it is dropped.
pub struct Prefix(pub StreamPrefix);

impl std::ops::Deref for Prefix {
    type Target = StreamPrefix;
    fn deref(&self) -> &StreamPrefix {
        &self.0
    }
}

impl Prefix {
    pub fn new(what: &str) -> Self {
        Self::on(what, URL)
    }

    pub fn on(what: &str, url: &str) -> Self {
        Self(StreamPrefix::on(what, url))
    }

    /// Shared keys for tests: fast retries, small batches.
    pub fn messaging(&self) -> MessagingConfig {
        let config = MessagingConfig {
            provider: "nats".into(),
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
        config.validate().expect("test config is valid");
        config
    }

    /// The provider's section for this prefix.
    pub fn nats(&self) -> NatsConfig {
        let config = NatsConfig {
            url: self.url().into(),
            subject_prefix: self.name.clone(),
            publish_wait: Duration::from_secs(3),
            ack_wait: Duration::from_secs(5),
            ..NatsConfig::default()
        };
        config.validate().expect("test config is valid");
        config
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

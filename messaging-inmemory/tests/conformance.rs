//! The shared conformance suite, run against the in-memory provider with a
//! few flow-control settings.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use messaging_abstractions::{
    DeadLetterStore, Delivery, Envelope, EventBus, HandlerError, MessageHandler, MessagingConfig,
    PublishError, RequestError, RetryPolicy, ShutdownError, SubscribeError, Subscription,
};
use messaging_conformance::{BusFactory, ConnectError, SuiteOptions};
use messaging_inmemory::InMemoryBus;

/// Every `connect` opens another connection to one broker.
struct Factory {
    broker: InMemoryBus,
}

#[async_trait]
impl BusFactory for Factory {
    fn config(&self) -> MessagingConfig {
        self.broker.config().clone()
    }

    async fn connect(&self) -> Result<Arc<dyn EventBus>, ConnectError> {
        Ok(Arc::new(self.broker.clone()))
    }
}

fn config(prefetch: u16, concurrency: usize) -> MessagingConfig {
    let config = MessagingConfig {
        prefetch,
        concurrency,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
            multiplier: 2.0,
        },
        ..MessagingConfig::default()
    };
    config.validate().expect("test config is valid");
    config
}

async fn run(config: MessagingConfig) {
    let broker = InMemoryBus::new(&config);
    let report = messaging_conformance::run(Factory { broker }).await;
    println!("{report}");
    assert_eq!(report.passed.len(), 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_small_prefetch() {
    run(config(4, 2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_default_flow_control() {
    run(config(64, 8)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn conformance_single_consumer_on_one_thread() {
    run(config(1, 1)).await;
}

// --- The suite must catch a provider that breaks a promise. ---

#[derive(Clone, Copy, Debug)]
enum Flaw {
    /// Loses free headers on the way.
    DropsHeaders,
    /// Treats every failure as permanent.
    NeverRetries,
    /// Returns from shutdown without waiting for in-flight handlers.
    NoDrain,
    /// Reports a failed request only when its timeout has passed (does not
    /// notice that nobody responds).
    SlowFailures,
}

struct Flawed {
    inner: Arc<InMemoryBus>,
    flaw: Flaw,
}

struct Permanent(Arc<dyn MessageHandler>);

#[async_trait]
impl MessageHandler for Permanent {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        self.0
            .handle(delivery)
            .await
            .map_err(|e| HandlerError::permanent(e.reason))
    }
}

#[async_trait]
impl EventBus for Flawed {
    fn provider(&self) -> &'static str {
        "flawed"
    }

    async fn publish(&self, mut envelope: Envelope) -> Result<(), PublishError> {
        if let Flaw::DropsHeaders = self.flaw {
            envelope.headers.clear();
        }
        self.inner.publish(envelope).await
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), SubscribeError> {
        let mut subscription = subscription;
        if let Flaw::NeverRetries = self.flaw {
            subscription.handlers = subscription
                .handlers
                .map(|inner| Arc::new(Permanent(inner)));
        }
        self.inner.subscribe(subscription).await
    }

    async fn request(
        &self,
        request: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, RequestError> {
        let reply = self.inner.request(request, timeout).await;
        if let Flaw::SlowFailures = self.flaw
            && reply.is_err()
        {
            tokio::time::sleep(timeout).await;
        }
        reply
    }

    async fn reply(&self, request: &Envelope, reply: Envelope) -> Result<(), PublishError> {
        self.inner.reply(request, reply).await
    }

    fn dead_letters(&self) -> Option<Arc<dyn DeadLetterStore>> {
        self.inner.dead_letters()
    }

    async fn stop_consuming(&self, grace: Duration) -> Result<(), ShutdownError> {
        if let Flaw::NoDrain = self.flaw {
            let inner = self.inner.clone();
            tokio::spawn(async move { inner.stop_consuming(grace).await });
            return Ok(());
        }
        self.inner.stop_consuming(grace).await
    }

    async fn shutdown(&self) -> Result<(), ShutdownError> {
        if let Flaw::NoDrain = self.flaw {
            let inner = self.inner.clone();
            tokio::spawn(async move { inner.shutdown().await });
            return Ok(());
        }
        self.inner.shutdown().await
    }
}

struct FlawedFactory {
    broker: InMemoryBus,
    flaw: Flaw,
}

#[async_trait]
impl BusFactory for FlawedFactory {
    fn config(&self) -> MessagingConfig {
        self.broker.config().clone()
    }

    async fn connect(&self) -> Result<Arc<dyn EventBus>, ConnectError> {
        Ok(Arc::new(Flawed {
            inner: Arc::new(self.broker.clone()),
            flaw: self.flaw,
        }))
    }
}

async fn failure_of(flaw: Flaw) -> String {
    let factory = FlawedFactory {
        broker: InMemoryBus::new(&config(4, 2)),
        flaw,
    };
    // A short timeout: the flaws are caught in seconds.
    let options = SuiteOptions {
        timeout: Duration::from_secs(3),
        ..SuiteOptions::default()
    };
    let outcome = AssertUnwindSafe(messaging_conformance::run_with(factory, options))
        .catch_unwind()
        .await;
    let panic = outcome.expect_err("the suite must reject a flawed provider");
    panic
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| format!("{flaw:?}: non-string panic"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_rejects_lost_headers() {
    let message = failure_of(Flaw::DropsHeaders).await;
    assert!(message.contains("case `envelope_fields`"), "{message}");
    assert!(message.contains("header `x-tenant`"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_rejects_missing_retries() {
    let message = failure_of(Flaw::NeverRetries).await;
    assert!(
        message.contains("case `retry_then_dead_letter`"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_rejects_a_shutdown_that_does_not_drain() {
    let message = failure_of(Flaw::NoDrain).await;
    assert!(message.contains("case `shutdown_drains`"), "{message}");
    assert!(message.contains("no drain"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_rejects_a_late_no_responder() {
    let message = failure_of(Flaw::SlowFailures).await;
    assert!(message.contains("case `request_no_responder`"), "{message}");
    assert!(message.contains("at once"), "{message}");
}

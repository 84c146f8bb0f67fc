//! The shared conformance suite, run against the in-memory provider with a
//! few flow-control settings.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use messaging_abstractions::{EventBus, MessagingConfig, RetryPolicy};
use messaging_conformance::{BusFactory, ConnectError};
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
    assert_eq!(report.passed.len(), 9);
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

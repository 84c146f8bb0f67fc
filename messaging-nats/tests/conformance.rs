//! The shared event-bus conformance suite against the real NATS server
//! (127.0.0.1:4222, JetStream), with file and with memory storage, and in
//! the structured content mode.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::Prefix;
use messaging_abstractions::cloudevents::ContentMode;
use messaging_abstractions::{EventBus, MessagingConfig};
use messaging_conformance::{BusFactory, ConnectError};
use messaging_nats::{NatsBus, NatsConfig, StreamStorage};

struct Factory {
    messaging: MessagingConfig,
    nats: NatsConfig,
}

#[async_trait]
impl BusFactory for Factory {
    fn config(&self) -> MessagingConfig {
        self.messaging.clone()
    }

    async fn connect(&self) -> Result<Arc<dyn EventBus>, ConnectError> {
        Ok(Arc::new(
            NatsBus::connect(&self.messaging, &self.nats, "conformance").await?,
        ))
    }
}

async fn run(storage: StreamStorage, content_mode: ContentMode) {
    let prefix = Prefix::new("conf");
    let mut nats = prefix.nats();
    nats.storage = storage;
    nats.content_mode = content_mode;
    let report = messaging_conformance::run(Factory {
        messaging: prefix.messaging(),
        nats,
    })
    .await;
    println!("{report}");
    assert_eq!(report.passed.len(), 18);
    prefix.delete_streams().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_file_storage() {
    run(StreamStorage::File, ContentMode::Binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_memory_storage() {
    run(StreamStorage::Memory, ContentMode::Binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_in_structured_mode() {
    run(StreamStorage::File, ContentMode::Structured).await;
}

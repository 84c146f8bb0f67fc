//! The shared event-bus conformance suite against the real broker, with
//! quorum and with classic queues, and in a vhost whose default queue type
//! is quorum.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::Vhost;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use messaging_abstractions::{EventBus, MessagingConfig};
use messaging_conformance::{BusFactory, ConnectError};
use messaging_rabbitmq::QueueType;

struct Factory {
    config: common::TestConfig,
}

#[async_trait]
impl BusFactory for Factory {
    fn config(&self) -> MessagingConfig {
        self.config.shared.clone()
    }

    async fn connect(&self) -> Result<Arc<dyn EventBus>, ConnectError> {
        Ok(Arc::new(self.config.connect("conformance").await?))
    }

    /// Deletes the queues the case's groups declared (the vhost goes at the
    /// end of the test anyway; this keeps a long run small).
    async fn cleanup(&self, groups: &[String], _event_types: &[String]) {
        let conn = Connection::connect(
            self.config.rabbitmq.url.expose(),
            ConnectionProperties::default(),
        )
        .await
        .expect("cleanup: connect");
        let channel = conn.create_channel().await.expect("cleanup: channel");
        for group in groups {
            let queues = common::group_queues(&self.config, group);
            for queue in queues {
                channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("cleanup: delete queue {queue}: {e}"));
            }
        }
        let _ = conn.close(200, "cleanup done".into()).await;
    }
}

async fn run(queue_type: QueueType) {
    run_in(Vhost::new(), queue_type).await;
}

async fn run_in(vhost: Vhost, queue_type: QueueType) {
    let config = vhost.config(queue_type);
    let report = messaging_conformance::run(Factory {
        config: config.clone(),
    })
    .await;
    println!("{report}");
    assert_eq!(report.passed.len(), 18);

    // Nothing is left behind but the two exchanges, which go too.
    let conn = Connection::connect(&vhost.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    for exchange in [
        config.rabbitmq.exchange.clone(),
        format!("{}.dlx", config.rabbitmq.exchange),
    ] {
        channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
    }
    conn.close(200, "done".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_quorum_queues() {
    run(QueueType::Quorum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_classic_queues() {
    run(QueueType::Classic).await;
}

/// Operators often make quorum a vhost's default queue type. Every queue the
/// provider declares must work there — the consumer queues of the configured
/// type, the dead-letter queues, and the exclusive, server-named reply queue
/// of request/response, which a quorum queue cannot be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_classic_queues_where_the_vhost_defaults_to_quorum() {
    run_in(Vhost::defaulting_to_quorum(), QueueType::Classic).await;
}

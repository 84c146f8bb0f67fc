//! Order cancellation on the real servers: both services in-process, each
//! connecting from its configuration to RabbitMQ (a vhost of this test) and
//! PostgreSQL (a schema each, dropped at the end): the happy paths; the
//! shipping service down (timeouts, compensation, and its late work undone
//! when it comes back) with an answer delivered twice; and the broker
//! restarting in the middle of cancellations — every order still ends in the
//! right state, every unit released exactly once.
//!
//! Needs RabbitMQ 127.0.0.1:5672 (guest/guest, `rabbitmqctl`) and
//! PostgreSQL 127.0.0.1:5432 (database `test`, `psql`); fails without them.
//! The restart test takes the broker lock exclusively (no other broker test
//! runs meanwhile) and a drop guard always starts the broker again.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chassis_domain::messaging::{EventBus, MessagingConfig};
use chassis_domain::saga::SagaStatus;
use chassis_domain::storage::{StorageConfig, Store};
use chassis_domain::{Envelope, MessageContext};
use chassis_storage::Persistence;
use chassis_testing::InProcess;
use chassis_web::{RunningService, ServiceHostBuilder};
use common::{BrokerStopped, POSTGRES_URL, Schemas, Vhost, box_order};
use messaging_rabbitmq::{RabbitMqBus, RabbitMqConfig};
use order_service::cancellation::{CancellationConfig, runner};
use order_service_client::dto::{OrderStatus, OrderView};
use order_service_client::{ClientConfig, OrderServiceClient};
use shipping_service::domain::cancellation::ShipmentCancellation;
use shipping_service::tables::Shipments;
use shipping_service_client::ShippingServiceClient;
use shipping_service_client::cancellation::ShipmentCancelled;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(90);

/// Cancellation timeouts of the order service: `(answer_timeout, max_attempts)`.
type Timeouts = (&'static str, i64);

/// Long enough not to give up while the broker is away.
const PATIENT: Timeouts = ("10s", 20);

/// The order service with the cancellation saga's timeouts (its own
/// section: the shipping service has none).
fn order_host((answer_timeout, max_attempts): Timeouts) -> ServiceHostBuilder {
    order_service::host()
        .config("cancellation.answer_timeout", answer_timeout)
        .config("cancellation.max_attempts", max_attempts)
        .config("cancellation.timeout_poll_interval", "200ms")
}

async fn start(host: ServiceHostBuilder, vhost: &Vhost, schema: &str) -> RunningService {
    host.config("messaging.provider", "rabbitmq")
        .config("messaging.rabbitmq.url", vhost.amqp_url())
        .config("messaging.rabbitmq.reconnect_initial_backoff", "100ms")
        .config("messaging.rabbitmq.reconnect_max_backoff", "1s")
        .config("storage.provider", "postgres")
        .config("storage.postgres.url", POSTGRES_URL)
        .config("storage.postgres.schema", schema)
        .config("storage.outbox.max_backoff", "1s")
        // One message at a time per group: queued messages are handled in
        // the order they were sent.
        .config("messaging.concurrency", 1_i64)
        .in_process()
        .start()
        .await
        .unwrap_or_else(|e| panic!("the service did not start (RabbitMQ and PostgreSQL up?): {e}"))
}

struct Shop {
    order_svc: RunningService,
    shipping_svc: Option<RunningService>,
    orders: OrderServiceClient,
    shipping: ShippingServiceClient,
}

impl Shop {
    async fn start(vhost: &Vhost, schemas: &Schemas, timeouts: Timeouts) -> Self {
        let order_svc = start(order_host(timeouts), vhost, &schemas.0[0]).await;
        let shipping_svc = start(shipping_service::host(), vhost, &schemas.0[1]).await;
        Self {
            orders: OrderServiceClient::new(&ClientConfig::new(order_svc.base_url())).unwrap(),
            shipping: ShippingServiceClient::new(&ClientConfig::new(shipping_svc.base_url()))
                .unwrap(),
            order_svc,
            shipping_svc: Some(shipping_svc),
        }
    }

    /// Stops the shipping service; its queue stays and fills meanwhile.
    async fn stop_shipping(&mut self) {
        if let Some(svc) = self.shipping_svc.take() {
            svc.shutdown().await.unwrap();
        }
    }

    /// Starts the shipping service again on its schema.
    async fn start_shipping(&mut self, vhost: &Vhost, schemas: &Schemas) {
        let svc = start(shipping_service::host(), vhost, &schemas.0[1]).await;
        self.shipping = ShippingServiceClient::new(&ClientConfig::new(svc.base_url())).unwrap();
        self.shipping_svc = Some(svc);
    }

    async fn place(&self, city: &str, quantity: i64) -> OrderView {
        let order = self
            .orders
            .place_order(&box_order(city, quantity))
            .await
            .unwrap();
        let q = u64::try_from(quantity).unwrap();
        eventually("the order packed", || async {
            self.units(order.id).await == q
        })
        .await;
        order
    }

    async fn units(&self, order: Uuid) -> u64 {
        self.shipping
            .packages_for_order(order)
            .await
            .unwrap()
            .iter()
            .flat_map(|p| &p.items)
            .filter(|i| i.order_id == order)
            .map(|i| u64::from(i.quantity))
            .sum()
    }

    async fn wait_status(&self, id: Uuid, status: OrderStatus) -> OrderView {
        eventually(&format!("order {id} {status:?}"), || async {
            self.orders.get_order(id).await.unwrap().unwrap().status == status
        })
        .await;
        self.orders.get_order(id).await.unwrap().unwrap()
    }

    /// The saga of `order` in the order service's store: status, and how
    /// many steps beyond the start and its timeouts it applied (1 when one
    /// answer had an effect).
    async fn saga_status(&self, order: Uuid) -> (SagaStatus, u64) {
        let storage = Persistence::new(
            self.order_svc.context().store().clone(),
            StorageConfig::default(),
        );
        let saga = runner(&storage, CancellationConfig::default())
            .load(&order.to_string())
            .await
            .unwrap()
            .unwrap();
        // version = 1 (start) + one per timeout fired (attempts - 1) + one
        // per answer applied.
        let timeouts = u64::from(saga.state.attempts - 1);
        (saga.status, saga.version - 1 - timeouts)
    }

    /// What shipping recorded for the cancellation of `order`.
    async fn shipment_cancellation(&self, order: Uuid) -> Option<ShipmentCancellation> {
        let svc = self.shipping_svc.as_ref().expect("shipping runs");
        let store: &Arc<dyn Store> = svc.context().store();
        let storage = Persistence::new(store.clone(), StorageConfig::default());
        let mut uow = storage.begin(MessageContext::default()).await.unwrap();
        let shipment = Shipments.load(&mut uow, order).await.unwrap();
        uow.rollback().await.unwrap();
        shipment.cancellation().cloned()
    }

    async fn shutdown(mut self) {
        self.stop_shipping().await;
        self.order_svc.shutdown().await.unwrap();
    }
}

/// Polls `check` (HTTP state of services: nothing to be woken by).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let limit = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < limit,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_refused_over_rabbitmq_and_postgres() {
    let vhost = Vhost::new("cancel-test");
    let schemas = Schemas::new("cancel");
    let shop = Shop::start(&vhost, &schemas, PATIENT).await;

    let cancelled = shop.place("Leeds", 2).await;
    let kept = shop.place("Leeds", 3).await;
    let sent = shop.place("York", 1).await;
    for p in shop.shipping.packages_for_order(sent.id).await.unwrap() {
        shop.shipping.send_package(p.id).await.unwrap();
    }

    let accepted = shop.orders.cancel_order(cancelled.id).await.unwrap();
    assert_eq!(accepted.status, OrderStatus::Cancelling);
    shop.orders.cancel_order(sent.id).await.unwrap();
    shop.wait_status(cancelled.id, OrderStatus::Cancelled).await;
    let refused = shop
        .wait_status(sent.id, OrderStatus::CancellationRefused)
        .await;
    assert!(
        refused
            .cancellation
            .unwrap()
            .reason
            .unwrap()
            .contains("already sent")
    );
    assert_eq!(shop.units(cancelled.id).await, 0);
    assert_eq!(shop.units(kept.id).await, 3);
    assert_eq!(shop.units(sent.id).await, 1);
    assert_eq!(
        shop.saga_status(cancelled.id).await.0,
        SagaStatus::Completed
    );
    assert_eq!(shop.saga_status(sent.id).await.0, SagaStatus::Compensated);
    assert!(
        shop.orders
            .cancel_order(cancelled.id)
            .await
            .unwrap_err()
            .is_conflict()
    );

    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_restarting_mid_cancellation_changes_no_outcome() {
    let vhost = Vhost::exclusive("cancel-restart-test");
    let schemas = Schemas::new("cancel");
    let shop = Shop::start(&vhost, &schemas, PATIENT).await;

    let before = shop.place("Hull", 2).await;
    let during = shop.place("Hull", 3).await;
    let kept = shop.place("Hull", 4).await;

    // One cancellation on its way when the broker goes, one asked while it
    // is away (HTTP and PostgreSQL still work: the request waits in the
    // outbox).
    shop.orders.cancel_order(before.id).await.unwrap();
    {
        let _broker_down = BrokerStopped::stop_app();
        let accepted = shop.orders.cancel_order(during.id).await.unwrap();
        assert_eq!(accepted.status, OrderStatus::Cancelling);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    for order in [&before, &during] {
        let view = shop.wait_status(order.id, OrderStatus::Cancelled).await;
        assert!(view.cancellation.unwrap().finished_at.is_some());
        assert_eq!(shop.units(order.id).await, 0);
        // Released once: shipping recorded the whole order once (a second
        // release would find nothing and record less), whatever was re-sent
        // or redelivered.
        match shop.shipment_cancellation(order.id).await {
            Some(c @ ShipmentCancellation::Cancelled { .. }) => {
                assert_eq!(c.released_units(), order.items[0].quantity as u64)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(shop.saga_status(order.id).await, (SagaStatus::Completed, 1));
    }
    assert_eq!(
        shop.units(kept.id).await,
        4,
        "the other order keeps its units"
    );
    assert_eq!(
        shop.orders
            .get_order(kept.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        OrderStatus::Completed
    );

    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipping_down_then_back_and_a_duplicated_answer_over_rabbitmq() {
    let vhost = Vhost::new("cancel-down-test");
    let schemas = Schemas::new("cancel");
    // Quick: one second per request, two requests.
    let mut shop = Shop::start(&vhost, &schemas, ("1s", 2)).await;
    let given_up = shop.place("Ely", 2).await;
    let answered = shop.place("Ely", 1).await;
    shop.stop_shipping().await;

    // `answered`: the same answer delivered twice (same message id).
    let settings = RabbitMqConfig {
        url: vhost.amqp_url().into(),
        ..RabbitMqConfig::default()
    };
    let bus = RabbitMqBus::connect(
        &MessagingConfig::default(),
        &settings,
        "cancel-test-publisher",
    )
    .await
    .unwrap();
    shop.orders.cancel_order(answered.id).await.unwrap();
    let answer = Envelope::for_event(&ShipmentCancelled {
        order_id: answered.id,
        released_units: 1,
        discarded_packages: vec![],
    })
    .unwrap();
    bus.publish(answer.clone()).await.unwrap();
    bus.publish(answer).await.unwrap();
    shop.wait_status(answered.id, OrderStatus::Cancelled).await;

    // `given_up`: nobody answers; two requests, then compensation.
    shop.orders.cancel_order(given_up.id).await.unwrap();
    let view = shop
        .wait_status(given_up.id, OrderStatus::CancellationRefused)
        .await;
    let reason = view.cancellation.unwrap().reason.unwrap();
    assert!(reason.contains("did not answer 2"), "{reason}");

    // Shipping comes back and works through its queue: `answered`'s request
    // (released; its answer finds the saga ended), `given_up`'s two
    // requests (released once) and the withdrawal (put back).
    shop.start_shipping(&vhost, &schemas).await;
    eventually("the withdrawal handled", || async {
        matches!(
            shop.shipment_cancellation(given_up.id).await,
            Some(ShipmentCancellation::Withdrawn { .. })
        )
    })
    .await;
    match shop.shipment_cancellation(given_up.id).await {
        Some(ShipmentCancellation::Withdrawn { restored_units, .. }) => {
            assert_eq!(restored_units, 2)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        shop.units(given_up.id).await,
        2,
        "every unit back in a package"
    );
    eventually("the late request of `answered` handled", || async {
        shop.shipment_cancellation(answered.id).await.is_some()
    })
    .await;
    assert_eq!(shop.units(answered.id).await, 0);
    assert_eq!(
        shop.orders
            .get_order(given_up.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        OrderStatus::CancellationRefused,
        "late answers change nothing"
    );
    assert_eq!(
        shop.saga_status(answered.id).await,
        (SagaStatus::Completed, 1),
        "one answer applied: the duplicate and the late answer changed nothing"
    );

    bus.shutdown().await.unwrap();
    shop.shutdown().await;
}

//! Order cancellation (the order service's saga and the shipping service's
//! release/refuse) on the in-memory bus: cancelled, refused because a
//! package was sent, shipping down (timeouts, re-sends, compensation — also
//! shipping coming back late and putting the units back), and duplicated
//! step messages with a single effect.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chassis_domain::messaging::{
    EventBus, HandlerError, Handlers, IntegrationEvent, MessagingConfig, RetryPolicy, Subscription,
};
use chassis_domain::saga::SagaStatus;
use chassis_domain::storage::{StorageConfig, Store};
use chassis_domain::{Envelope, MessageContext};
use chassis_storage::Persistence;
use chassis_testing::InProcess;
use chassis_testing::TestBus;
use chassis_web::{RunningService, ServiceHostBuilder};
use common::box_order;
use messaging_inmemory::InMemoryBus;
use order_service::cancellation::{CancellationConfig, runner};
use order_service_client::cancellation::{OrderCancellationRequested, OrderCancellationWithdrawn};
use order_service_client::dto::{OrderStatus, OrderView};
use order_service_client::events::{ItemToShip, OrderCompleted};
use order_service_client::{ClientConfig, OrderServiceClient};
use shipping_service::domain::Shipment;
use shipping_service::domain::cancellation::ShipmentCancellation;
use shipping_service::tables::Shipments;
use shipping_service_client::ShippingServiceClient;
use shipping_service_client::cancellation::{ShipmentCancellationRefused, ShipmentCancelled};
use uuid::Uuid;

const ORDERS: &str = order_service::SERVICE_NAME;
const SHIPPING: &str = shipping_service::SERVICE_NAME;

/// Order service with quick timeouts (when `quick`).
fn order_host(quick: bool) -> ServiceHostBuilder {
    let host = order_service::host();
    if quick {
        host.config("cancellation.answer_timeout", "100ms")
            .config("cancellation.timeout_poll_interval", "20ms")
            .config("cancellation.max_attempts", 3_i64)
    } else {
        host
    }
}

fn clients(
    orders: &RunningService,
    shipping: &RunningService,
) -> (OrderServiceClient, ShippingServiceClient) {
    (
        OrderServiceClient::new(&ClientConfig::new(orders.base_url())).unwrap(),
        ShippingServiceClient::new(&ClientConfig::new(shipping.base_url())).unwrap(),
    )
}

/// Waits until `group` handled `n` messages of `event_type` successfully.
async fn wait_ok(bus: &TestBus, group: &str, event_type: &str, n: usize) {
    bus.wait_until(&format!("{group} to handle {n} {event_type}"), |log| {
        let done = log
            .iter()
            .filter(|h| h.group == group && h.event_type == event_type && h.outcome.is_ok())
            .count();
        (done >= n).then_some(())
    })
    .await;
}

/// Units of `order` in its packages.
async fn units(shipping: &ShippingServiceClient, order: Uuid) -> u64 {
    shipping
        .packages_for_order(order)
        .await
        .unwrap()
        .iter()
        .flat_map(|p| &p.items)
        .filter(|i| i.order_id == order)
        .map(|i| u64::from(i.quantity))
        .sum()
}

async fn status(orders: &OrderServiceClient, id: Uuid) -> OrderView {
    orders.get_order(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_cancelled_order_leaves_its_packages_other_orders_stay() {
    let bus = TestBus::in_memory();
    let order_svc = chassis_testing::start(order_host(false), &bus).await;
    let shipping_svc = chassis_testing::start(shipping_service::host(), &bus).await;
    let (orders, shipping) = clients(&order_svc, &shipping_svc);

    let cancelled = orders.place_order(&box_order("Leeds", 2)).await.unwrap();
    let kept = orders.place_order(&box_order("Leeds", 3)).await.unwrap();
    wait_ok(&bus, SHIPPING, OrderCompleted::EVENT_TYPE, 2).await;
    assert_eq!(units(&shipping, cancelled.id).await, 2);

    let accepted = orders.cancel_order(cancelled.id).await.unwrap();
    assert_eq!(accepted.status, OrderStatus::Cancelling);
    assert!(
        accepted
            .cancellation
            .as_ref()
            .unwrap()
            .finished_at
            .is_none()
    );
    wait_ok(&bus, ORDERS, ShipmentCancelled::EVENT_TYPE, 1).await;

    let view = status(&orders, cancelled.id).await;
    assert_eq!(view.status, OrderStatus::Cancelled);
    let cancellation = view.cancellation.unwrap();
    assert!(cancellation.finished_at.is_some());
    assert_eq!(cancellation.reason, None);
    assert_eq!(units(&shipping, cancelled.id).await, 0);
    assert_eq!(
        units(&shipping, kept.id).await,
        3,
        "the shared package keeps the other order"
    );
    assert_eq!(
        status(&orders, kept.id).await.status,
        OrderStatus::Completed
    );

    // Cancelling again, or an unknown order: problems.
    let again = orders.cancel_order(cancelled.id).await.unwrap_err();
    assert!(again.is_conflict(), "{again:?}");
    assert!(
        format!("{again:?}").contains("already cancelled"),
        "{again:?}"
    );
    let unknown = orders.cancel_order(Uuid::now_v7()).await.unwrap_err();
    assert!(unknown.is_not_found(), "{unknown:?}");
    let problem = unknown.problem().unwrap();
    assert_eq!(problem.status, Some(404));

    // The contract is in the OpenAPI document.
    let doc = reqwest::get(format!("{}/openapi.json", order_svc.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "/orders/{id}/cancel",
        "cancellation_refused",
        "CancellationView",
    ] {
        assert!(
            doc.contains(expected),
            "{expected} missing from /openapi.json"
        );
    }

    shipping_svc.shutdown().await.unwrap();
    order_svc.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_order_with_a_sent_package_is_refused_and_goes_on() {
    let bus = TestBus::in_memory();
    let order_svc = chassis_testing::start(order_host(false), &bus).await;
    let shipping_svc = chassis_testing::start(shipping_service::host(), &bus).await;
    let (orders, shipping) = clients(&order_svc, &shipping_svc);

    let order = orders.place_order(&box_order("York", 2)).await.unwrap();
    wait_ok(&bus, SHIPPING, OrderCompleted::EVENT_TYPE, 1).await;
    let packages = shipping.packages_for_order(order.id).await.unwrap();
    let sent = shipping.send_package(packages[0].id).await.unwrap();

    orders.cancel_order(order.id).await.unwrap();
    wait_ok(&bus, ORDERS, ShipmentCancellationRefused::EVENT_TYPE, 1).await;
    let view = status(&orders, order.id).await;
    assert_eq!(view.status, OrderStatus::CancellationRefused);
    let reason = view.cancellation.unwrap().reason.unwrap();
    assert!(
        reason.contains("already sent") && reason.contains(&sent.id.to_string()),
        "{reason}"
    );
    assert_eq!(units(&shipping, order.id).await, 2, "nothing was taken out");
    let again = orders.cancel_order(order.id).await.unwrap_err();
    assert!(again.is_conflict(), "{again:?}");

    shipping_svc.shutdown().await.unwrap();
    order_svc.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

/// Acknowledges and counts what the order saga sends, in a group of its own.
async fn probe(bus: &TestBus) {
    let handlers = Handlers::new()
        .on_fn(|_: OrderCancellationRequested, _| async { Ok::<(), HandlerError>(()) })
        .on_fn(|_: OrderCancellationWithdrawn, _| async { Ok::<(), HandlerError>(()) });
    bus.subscribe(Subscription::new("probe", handlers))
        .await
        .unwrap();
}

#[tokio::test]
async fn shipping_down_the_request_is_sent_again_then_given_up() {
    let bus = TestBus::in_memory();
    probe(&bus).await;
    let order_svc = chassis_testing::start(order_host(true), &bus).await;
    let orders = OrderServiceClient::new(&ClientConfig::new(order_svc.base_url())).unwrap();

    let order = orders.place_order(&box_order("Bath", 1)).await.unwrap();
    orders.cancel_order(order.id).await.unwrap();
    // Three requests (the first, two re-sends), then the withdrawal, which
    // commits with the order's refusal.
    wait_ok(&bus, "probe", OrderCancellationRequested::EVENT_TYPE, 3).await;
    wait_ok(&bus, "probe", OrderCancellationWithdrawn::EVENT_TYPE, 1).await;
    let view = status(&orders, order.id).await;
    assert_eq!(view.status, OrderStatus::CancellationRefused);
    let reason = view.cancellation.unwrap().reason.unwrap();
    assert!(reason.contains("did not answer 3"), "{reason}");
    let requests = bus
        .handled()
        .into_iter()
        .filter(|h| h.group == "probe" && h.event_type == OrderCancellationRequested::EVENT_TYPE)
        .count();
    assert_eq!(requests, 3, "no request after giving up");

    order_svc.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_duplicated_answer_has_one_effect() {
    let bus = TestBus::in_memory();
    let order_svc = chassis_testing::start(order_host(false), &bus).await;
    let orders = OrderServiceClient::new(&ClientConfig::new(order_svc.base_url())).unwrap();
    let order = orders.place_order(&box_order("Ely", 1)).await.unwrap();
    orders.cancel_order(order.id).await.unwrap();

    // The same answer twice (same message id), as a broker redelivers.
    let answer = Envelope::for_event(&ShipmentCancelled {
        order_id: order.id,
        released_units: 1,
        discarded_packages: vec![],
    })
    .unwrap();
    bus.redeliver(answer.clone()).await;
    bus.redeliver(answer.clone()).await;
    let outcomes = bus.wait_handled_times(ORDERS, answer.message_id, 2).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");

    assert_eq!(
        status(&orders, order.id).await.status,
        OrderStatus::Cancelled
    );
    let storage = Persistence::new(
        order_svc.context().store().clone(),
        StorageConfig::default(),
    );
    let saga = runner(&storage, CancellationConfig::default())
        .load(&order.id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(
        saga.version, 2,
        "started, then one step: the duplicate changed nothing"
    );

    order_svc.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_duplicated_request_releases_once_and_answers_once() {
    let bus = TestBus::in_memory();
    let shipping_svc = chassis_testing::start(shipping_service::host(), &bus).await;
    let shipping = ShippingServiceClient::new(&ClientConfig::new(shipping_svc.base_url())).unwrap();
    let answers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = answers.clone();
    bus.subscribe(Subscription::new(
        "probe",
        Handlers::new().on_fn(move |_: ShipmentCancelled, _| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
        }),
    ))
    .await
    .unwrap();

    let order_id = Uuid::now_v7();
    let other = Uuid::now_v7();
    for (id, quantity) in [(order_id, 2), (other, 1)] {
        let completed = bus.publish_event(&completed(id, quantity)).await;
        bus.wait_handled(SHIPPING, completed.message_id)
            .await
            .unwrap();
    }
    let request = Envelope::for_event(&OrderCancellationRequested {
        order_id,
        attempt: 1,
        requested_at: time::OffsetDateTime::now_utc(),
    })
    .unwrap();
    bus.redeliver(request.clone()).await;
    bus.redeliver(request.clone()).await;
    let outcomes = bus
        .wait_handled_times(SHIPPING, request.message_id, 2)
        .await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    wait_ok(&bus, "probe", ShipmentCancelled::EVENT_TYPE, 1).await;
    assert_eq!(units(&shipping, order_id).await, 0);
    assert_eq!(units(&shipping, other).await, 1);
    let shipment = shipment(shipping_svc.context().store(), order_id).await;
    assert_eq!(shipment.cancellation().unwrap().released_units(), 2);
    assert_eq!(
        answers.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one answer for one request"
    );

    shipping_svc.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_arriving_after_the_withdrawal_is_refused_and_changes_nothing() {
    let bus = TestBus::in_memory();
    let shipping_svc = chassis_testing::start(shipping_service::host(), &bus).await;
    let shipping = ShippingServiceClient::new(&ClientConfig::new(shipping_svc.base_url())).unwrap();
    let refusals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = refusals.clone();
    bus.subscribe(Subscription::new(
        "probe",
        Handlers::new().on_fn(move |r: ShipmentCancellationRefused, _| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(r.reason);
                Ok(())
            }
        }),
    ))
    .await
    .unwrap();
    let order_id = Uuid::now_v7();
    let packed = bus.publish_event(&completed(order_id, 2)).await;
    bus.wait_handled(SHIPPING, packed.message_id).await.unwrap();

    // Overtaken on the way: the withdrawal first, then the request.
    let withdrawn = bus
        .publish_event(&OrderCancellationWithdrawn {
            order_id,
            reason: "gave up".into(),
        })
        .await;
    bus.wait_handled(SHIPPING, withdrawn.message_id)
        .await
        .unwrap();
    let request = bus
        .publish_event(&OrderCancellationRequested {
            order_id,
            attempt: 1,
            requested_at: time::OffsetDateTime::now_utc(),
        })
        .await;
    bus.wait_handled(SHIPPING, request.message_id)
        .await
        .unwrap();
    wait_ok(&bus, "probe", ShipmentCancellationRefused::EVENT_TYPE, 1).await;
    assert!(refusals.lock().unwrap()[0].contains("withdrawn"));
    assert_eq!(units(&shipping, order_id).await, 2, "nothing released");
    let shipment = shipment(shipping_svc.context().store(), order_id).await;
    assert!(matches!(
        shipment.cancellation(),
        Some(ShipmentCancellation::Withdrawn {
            restored_units: 0,
            ..
        })
    ));

    shipping_svc.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

fn completed(order_id: Uuid, quantity: u32) -> OrderCompleted {
    OrderCompleted {
        order_id,
        destination: order_service_client::events::Destination {
            name: "Ada".into(),
            street: "1 Main St".into(),
            city: "Wells".into(),
            postal_code: "N1".into(),
            country: "GB".into(),
        },
        items: vec![ItemToShip {
            sku: "BOX".into(),
            quantity,
            weight_grams: 1_000,
            length_mm: 100,
            width_mm: 100,
            height_mm: 100,
        }],
        completed_at: time::OffsetDateTime::now_utc(),
    }
}

async fn shipment(store: &Arc<dyn Store>, order_id: Uuid) -> Shipment {
    let storage = Persistence::new(store.clone(), StorageConfig::default());
    let mut uow = storage.begin(MessageContext::default()).await.unwrap();
    let shipment = Shipments.load(&mut uow, order_id).await.unwrap();
    uow.rollback().await.unwrap();
    shipment
}

/// Starts `host` on `bus` (the caller's connection: shutting it down stops
/// the service's consumers) and its test store: in memory, or for
/// shipping's tables SQLite — in the file `sqlite_file` when given, so a
/// restarted service finds its data.
async fn start_on(
    host: ServiceHostBuilder,
    bus: Arc<InMemoryBus>,
    sqlite_file: Option<&std::path::Path>,
) -> RunningService {
    let storage = host.embedded_storage_provider();
    let mut host = host
        .event_bus(bus)
        .config("storage.provider", storage)
        .in_process();
    if let Some(file) = sqlite_file {
        host = host.config("storage.sqlite.path", file.to_str().expect("UTF-8 path"));
    }
    host.start().await.unwrap()
}

/// Polls `check` (another service's HTTP state: nothing to be woken by)
/// until it holds; the bound only turns a hang into a failure.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let limit = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < limit,
            "{what}: not within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shipping_back_after_the_saga_gave_up_puts_the_units_back() {
    // One handler at a time per group: shipping takes the queued requests,
    // then the withdrawal, in the order they were sent.
    let config = MessagingConfig {
        concurrency: 1,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            multiplier: 2.0,
        },
        ..MessagingConfig::default()
    };
    let broker = InMemoryBus::new(&config);
    let shipping_file = std::env::temp_dir().join(format!("shop-demo-{}.sqlite", Uuid::now_v7()));
    let order_svc = start_on(order_host(true), Arc::new(broker.clone()), None).await;
    let shipping_bus = Arc::new(broker.clone());
    let shipping_svc = start_on(
        shipping_service::host(),
        shipping_bus.clone(),
        Some(&shipping_file),
    )
    .await;
    let (orders, shipping) = clients(&order_svc, &shipping_svc);
    let order = orders.place_order(&box_order("Hull", 4)).await.unwrap();
    eventually("the order packed", || async {
        units(&shipping, order.id).await == 4
    })
    .await;

    // Shipping goes down (its consumers stop; its queue stays).
    shipping_svc.shutdown().await.unwrap();
    shipping_bus.shutdown().await.unwrap();
    orders.cancel_order(order.id).await.unwrap();
    eventually("the saga to give up", || async {
        orders.get_order(order.id).await.unwrap().unwrap().status
            == OrderStatus::CancellationRefused
    })
    .await;

    // Shipping comes back: it handles the three requests (releasing the
    // units once, answering to a saga that has ended) and the withdrawal
    // (putting them back).
    let back_bus = Arc::new(broker.clone());
    let shipping_svc = start_on(
        shipping_service::host(),
        back_bus.clone(),
        Some(&shipping_file),
    )
    .await;
    let shipping = ShippingServiceClient::new(&ClientConfig::new(shipping_svc.base_url())).unwrap();
    broker.wait_idle(Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        units(&shipping, order.id).await,
        4,
        "every unit back in a package"
    );
    let record = shipment(shipping_svc.context().store(), order.id).await;
    assert!(
        matches!(
            record.cancellation(),
            Some(ShipmentCancellation::Withdrawn {
                restored_units: 4,
                ..
            })
        ),
        "{:?}",
        record.cancellation()
    );
    let held: Vec<Uuid> = shipping
        .packages_for_order(order.id)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert!(
        held.iter().all(|p| record.packages().contains(p)),
        "the shipment lists the packages the units went back to"
    );
    let view = orders.get_order(order.id).await.unwrap().unwrap();
    assert_eq!(
        view.status,
        OrderStatus::CancellationRefused,
        "late answers change nothing"
    );

    shipping_svc.shutdown().await.unwrap();
    back_bus.shutdown().await.unwrap();
    order_svc.shutdown().await.unwrap();
    broker.shutdown().await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", shipping_file.display()));
    }
}

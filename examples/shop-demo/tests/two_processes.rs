//! The two services as two processes on PostgreSQL and a real broker
//! (RabbitMQ, then NATS JetStream: one test body, the broker picked by the
//! processes' environment alone): every ordered unit is packed exactly once,
//! also when the same `OrderCompleted` is delivered twice and when the
//! shipping service is killed and restarted mid-stream.
//!
//! Needs the servers (RabbitMQ 127.0.0.1:5672 guest/guest with
//! `rabbitmqctl`, NATS with JetStream 127.0.0.1:4222, PostgreSQL
//! 127.0.0.1:5432 database `test`) and fails when they are missing.
//! Isolation: two schemas and a vhost (RabbitMQ) or a subject prefix (NATS:
//! streams of its own) per run, removed at the end, pass or fail.

mod common;

use std::time::Duration;

use chassis_testing::nats::{LOCAL_URL as NATS_URL, StreamPrefix};
use common::processes::{Broker, binaries, launches};
use common::{Schemas, Vhost};
use messaging_abstractions::Envelope;
use order_service_client::dto::OrderView;
use order_service_client::events::{Destination, ItemToShip, OrderCompleted};
use order_service_client::{ClientConfig, OrderServiceClient};
use shipping_service_client::ShippingServiceClient;
use shipping_service_client::dto::{RecordTrackingRequest, TrackingStatus};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn event(order_id: Uuid, city: &str, quantity: u32) -> OrderCompleted {
    OrderCompleted {
        order_id,
        destination: Destination {
            name: "Test Recipient".into(),
            street: "1 Queue Street".into(),
            city: city.into(),
            postal_code: "12345".into(),
            country: "DE".into(),
        },
        items: vec![ItemToShip {
            sku: "BOX".into(),
            quantity,
            weight_grams: 2_000,
            length_mm: 200,
            width_mm: 200,
            height_mm: 200,
        }],
        completed_at: time::OffsetDateTime::now_utc(),
    }
}

/// Units of every `(order, sku)` over the packages of `orders`, each
/// package counted once.
async fn packed_units(
    shipping: &ShippingServiceClient,
    orders: &[Uuid],
) -> std::collections::BTreeMap<(Uuid, String), u64> {
    let mut packages = std::collections::BTreeMap::new();
    for order in orders {
        for p in shipping.packages_for_order(*order).await.unwrap() {
            packages.insert(p.id, p);
        }
    }
    let mut units = std::collections::BTreeMap::new();
    for p in packages.values() {
        assert!(p.total_weight_grams <= p.max_weight_grams, "{p:?}");
        for i in &p.items {
            *units.entry((i.order_id, i.sku.clone())).or_default() += u64::from(i.quantity);
        }
    }
    units
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_pack_every_unit_exactly_once_on_rabbitmq() {
    pack_every_unit_exactly_once(Broker::RabbitMq(Vhost::new("shop-demo-test"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_pack_every_unit_exactly_once_on_nats() {
    pack_every_unit_exactly_once(Broker::Nats(StreamPrefix::on("shop_demo", NATS_URL))).await;
}

async fn pack_every_unit_exactly_once(broker: Broker) {
    let binaries = binaries();
    let schemas = Schemas::new("two_processes");
    let [order_launch, shipping_launch] = launches(&binaries, &schemas, &broker);
    let order_svc = order_launch.spawn().await;
    let start_shipping = || shipping_launch.spawn();
    let mut shipping_svc = start_shipping().await;
    let orders = OrderServiceClient::new(&ClientConfig::new(&order_svc.url)).unwrap();
    let shipping = ShippingServiceClient::new(&ClientConfig::new(&shipping_svc.url)).unwrap();

    // 1. Orders over HTTP end up packed.
    let mut placed: Vec<OrderView> = Vec::new();
    for request in shop_demo::samples::orders() {
        placed.push(orders.place_order(&request).await.unwrap());
    }
    let report = shop_demo::await_packed(&shipping, &placed, WAIT)
        .await
        .unwrap();
    assert!(report.missing.is_empty(), "{:?}", report.missing);

    // 2. The same OrderCompleted delivered twice (same message id).
    let bus = broker.bus().await;
    let twice = event(Uuid::now_v7(), "Berlin", 3);
    let envelope = Envelope::for_event(&twice).unwrap();
    bus.publish(envelope.clone()).await.unwrap();
    bus.publish(envelope).await.unwrap();
    // And the same order again in a new message (a republished event).
    bus.publish(Envelope::for_event(&twice).unwrap())
        .await
        .unwrap();

    // 3. Shipping killed mid-stream: orders keep coming, and are packed
    // after the restart, each exactly once.
    let mut more: Vec<OrderView> = Vec::new();
    for (i, request) in shop_demo::samples::orders().into_iter().enumerate() {
        if i == 1 {
            let _ = shipping_svc.child.kill();
            let _ = shipping_svc.child.wait();
        }
        more.push(orders.place_order(&request).await.unwrap());
    }
    for quantity in 1..=5 {
        bus.publish(Envelope::for_event(&event(Uuid::now_v7(), "Hamburg", quantity)).unwrap())
            .await
            .unwrap();
    }
    drop(shipping_svc);
    shipping_svc = start_shipping().await;
    let report = shop_demo::await_packed(&shipping, &more, WAIT)
        .await
        .unwrap();
    assert!(report.missing.is_empty(), "{:?}", report.missing);

    // Every unit of every order, including the duplicated one, exactly once.
    let deadline = tokio::time::Instant::now() + WAIT;
    let all: Vec<Uuid> = placed.iter().chain(&more).map(|o| o.id).collect();
    loop {
        let units = packed_units(&shipping, &[twice.order_id]).await;
        if units.get(&(twice.order_id, "BOX".to_owned())) == Some(&3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "duplicated order not packed: {units:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let units = packed_units(&shipping, &all).await;
    for order in placed.iter().chain(&more) {
        for item in &order.items {
            assert_eq!(
                units.get(&(order.id, item.sku.clone())),
                Some(&(item.quantity as u64)),
                "order {} {}",
                order.id,
                item.sku
            );
        }
    }
    let shipment = shipping.shipment(twice.order_id).await.unwrap().unwrap();
    assert!(shipment.unshippable.is_empty());
    let twice_units = packed_units(&shipping, &[twice.order_id]).await;
    assert_eq!(
        twice_units.get(&(twice.order_id, "BOX".to_owned())),
        Some(&3)
    );

    // 4. A package read back whole: its lines and tracking events, in
    // order, with their times (on PostgreSQL one statement loads a package
    // with both, as JSON).
    let package = shipping.packages_for_order(twice.order_id).await.unwrap()[0].clone();
    shipping.send_package(package.id).await.unwrap();
    let in_transit = RecordTrackingRequest {
        status: TrackingStatus::InTransit,
        description: "hub \"Kassel\" — ünïcode".into(),
    };
    let recorded = shipping
        .record_tracking(package.id, &in_transit)
        .await
        .unwrap();
    let read = shipping.tracking(package.id).await.unwrap();
    assert_eq!(
        read.events.iter().map(|e| e.status).collect::<Vec<_>>(),
        [TrackingStatus::HandedOver, TrackingStatus::InTransit]
    );
    assert_eq!(read.events[1].description, in_transit.description);
    for (read, recorded) in read.events.iter().zip(&recorded.events) {
        // The database keeps microseconds; the answer to the POST had the
        // new event's time before it was stored.
        let apart = (read.at - recorded.at).abs();
        assert!(
            apart < time::Duration::microseconds(1),
            "{read:?} {recorded:?}"
        );
    }
    let again = shipping.get_package(package.id).await.unwrap().unwrap();
    assert_eq!(again.items, package.items, "lines read back in order");

    bus.shutdown().await.unwrap();
    drop(shipping_svc);
    drop(order_svc);
}

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

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chassis_testing::nats::{LOCAL_URL as NATS_URL, StreamPrefix};
use common::{POSTGRES_URL, Schemas, Vhost};
use messaging_abstractions::{Envelope, EventBus, MessagingConfig};
use messaging_nats::{NatsBus, NatsConfig};
use messaging_rabbitmq::{RabbitMqBus, RabbitMqConfig};
use order_service_client::dto::OrderView;
use order_service_client::events::{Destination, ItemToShip, OrderCompleted};
use order_service_client::{ClientConfig, OrderServiceClient};
use shipping_service_client::ShippingServiceClient;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// Builds the two service binaries (with their default features: every
/// provider) into this test's target directory; their paths.
fn binaries() -> (PathBuf, PathBuf) {
    let demo = Path::new(env!("CARGO_BIN_EXE_shop-demo"));
    let dir = demo
        .parent()
        .expect("binaries live in a directory")
        .to_owned();
    let target_dir = dir
        .parent()
        .expect("a profile directory inside the target dir");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--bins",
            "-p",
            "order-service",
            "-p",
            "shipping-service",
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the service binaries failed");
    (dir.join("order-service"), dir.join("shipping-service"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The broker of one run, isolated for it and cleaned up on drop.
enum Broker {
    /// A vhost of its own on the local RabbitMQ.
    RabbitMq(Vhost),
    /// A subject prefix (so streams and consumers) of its own on the local
    /// NATS server.
    Nats(StreamPrefix),
}

impl Broker {
    /// What selects and points the services at this broker: environment
    /// only, as an operator would.
    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Broker::RabbitMq(vhost) => vec![
                ("CHASSIS__MESSAGING__PROVIDER", "rabbitmq".into()),
                ("CHASSIS__MESSAGING__RABBITMQ__URL", vhost.amqp_url()),
            ],
            Broker::Nats(prefix) => vec![
                ("CHASSIS__MESSAGING__PROVIDER", "nats".into()),
                ("CHASSIS__MESSAGING__NATS__URL", prefix.url().into()),
                (
                    "CHASSIS__MESSAGING__NATS__SUBJECT_PREFIX",
                    prefix.name.clone(),
                ),
                // Messages the killed shipping process held come back after
                // this (default 30 s) instead of late in the test's wait.
                ("CHASSIS__MESSAGING__NATS__ACK_WAIT", "5s".into()),
            ],
        }
    }

    /// A bus of the test's own on the same broker, to publish events the
    /// order service would not (duplicates).
    async fn bus(&self) -> Arc<dyn EventBus> {
        let shared = MessagingConfig::default();
        match self {
            Broker::RabbitMq(vhost) => {
                let settings = RabbitMqConfig {
                    url: vhost.amqp_url().into(),
                    ..RabbitMqConfig::default()
                };
                Arc::new(
                    RabbitMqBus::connect(&shared, &settings, "two-process-test")
                        .await
                        .unwrap(),
                )
            }
            Broker::Nats(prefix) => {
                let settings = NatsConfig {
                    url: prefix.url().into(),
                    subject_prefix: prefix.name.clone(),
                    ..NatsConfig::default()
                };
                Arc::new(
                    NatsBus::connect(&shared, &settings, "two-process-test")
                        .await
                        .unwrap(),
                )
            }
        }
    }
}

/// One service process, killed on drop.
struct Service {
    child: Child,
    url: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn(
    binary: &Path,
    config_dir: &str,
    schema: &str,
    broker: &Broker,
    port: u16,
) -> Service {
    let child = Command::new(binary)
        .env("CHASSIS_CONFIG_DIR", config_dir)
        .env("CHASSIS__HTTP__HOST", "127.0.0.1")
        .env("CHASSIS__HTTP__PORT", port.to_string())
        .env("CHASSIS__LOGGING__LEVEL", "warn")
        .envs(broker.env())
        .env("CHASSIS__STORAGE__PROVIDER", "postgres")
        .env("CHASSIS__STORAGE__POSTGRES__URL", POSTGRES_URL)
        .env("CHASSIS__STORAGE__POSTGRES__SCHEMA", schema)
        // The test polls packing state from one address faster than the
        // default per-client rate limit (100/s) allows for long.
        .env("CHASSIS__SECURITY__RATE_LIMIT__PER_SECOND", "100000")
        .env("CHASSIS__SECURITY__RATE_LIMIT__BURST", "100000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{} did not start: {e}", binary.display()));
    let service = Service {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    wait_ready(&service).await;
    service
}

/// Polls `/health/ready` (another process: nothing to be woken by).
async fn wait_ready(service: &Service) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = http
            .get(format!("{}/health/ready", service.url))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} did not become ready within {WAIT:?}",
            service.url
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
    let (order_bin, shipping_bin) = binaries();
    let schemas = Schemas::new("two_processes");
    let order_config = concat!(env!("CARGO_MANIFEST_DIR"), "/../order-service/config");
    let shipping_config = concat!(env!("CARGO_MANIFEST_DIR"), "/../shipping-service/config");
    let shipping_port = free_port();
    let order_svc = spawn(
        &order_bin,
        order_config,
        &schemas.0[0],
        &broker,
        free_port(),
    )
    .await;
    let start_shipping = || {
        spawn(
            &shipping_bin,
            shipping_config,
            &schemas.0[1],
            &broker,
            shipping_port,
        )
    };
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

    bus.shutdown().await.unwrap();
    drop(shipping_svc);
    drop(order_svc);
}

//! The wire format seen from outside the chassis: a message published by a
//! chassis of the previous release (the `chassis-*` headers) or by any
//! CloudEvents producer (binary and structured content mode) is handled like
//! one of ours; a message that is neither is dead-lettered at once with the
//! reason. Every message here is published with the raw AMQP client.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Vhost, on};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use messaging_abstractions::{Envelope, EventBus, FailureKind, Subscription};
use messaging_rabbitmq::QueueType;
use tokio::sync::mpsc;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Publishes one message with the raw client, as another program would.
async fn publish_raw(
    vhost: &Vhost,
    exchange: &str,
    routing_key: &str,
    properties: BasicProperties,
    body: &[u8],
) {
    let connection = Connection::connect(&vhost.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_publish(
            ShortString::from(exchange),
            ShortString::from(routing_key),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    connection.close(0, "done".into()).await.unwrap();
}

/// A bus subscribed to `event_type` in group `g`, and what its handler gets.
async fn receiver(
    vhost: &Vhost,
    event_type: &str,
) -> (
    messaging_rabbitmq::RabbitMqBus,
    String,
    mpsc::UnboundedReceiver<Envelope>,
) {
    let config = vhost.config(QueueType::Quorum);
    let bus = config.connect("shipping").await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    bus.subscribe(Subscription::new(
        "g",
        on(event_type, move |d| {
            let tx = tx.clone();
            async move {
                tx.send(d.envelope).unwrap();
                Ok(())
            }
        }),
    ))
    .await
    .unwrap();
    (bus, config.rabbitmq.exchange.clone(), rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Envelope>) -> Envelope {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("delivered in time")
        .expect("channel open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_the_previous_release_is_handled_with_every_field() {
    let vhost = Vhost::new();
    let (bus, exchange, mut rx) = receiver(&vhost, "order.completed.v1").await;
    // Exactly what the previous release's producer wrote.
    let id = Uuid::now_v7();
    let mut free = FieldTable::default();
    free.insert("tenant".into(), long("acme"));
    free.insert("x-empty".into(), long(""));
    let mut headers = FieldTable::default();
    headers.insert("chassis-causation-id".into(), long("cause-9"));
    headers.insert(
        "traceparent".into(),
        long("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    headers.insert("tracestate".into(), long("congo=t61rcWkgMzE"));
    headers.insert("chassis-partition-key".into(), long("order-42"));
    headers.insert("chassis-timestamp".into(), long("1763700000.123456789"));
    headers.insert("chassis-headers".into(), AMQPValue::FieldTable(free));
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(id.to_string().into())
        .with_type("order.completed.v1".into())
        .with_content_type("application/json".into())
        .with_correlation_id("corr-1".into())
        .with_timestamp(1_763_700_000)
        .with_headers(headers);
    publish_raw(
        &vhost,
        &exchange,
        "order.completed.v1",
        properties,
        br#"{"n":1}"#,
    )
    .await;
    let got = next(&mut rx).await;
    let mut expected = Envelope::new(
        "order.completed.v1",
        "application/json",
        b"{\"n\":1}".to_vec(),
    )
    .with_correlation_id("corr-1")
    .with_header("tenant", "acme")
    .with_header("x-empty", "");
    expected.message_id = id;
    expected.causation_id = Some("cause-9".into());
    expected.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    expected.tracestate = Some("congo=t61rcWkgMzE".into());
    expected.partition_key = Some("order-42".into());
    expected.timestamp = UNIX_EPOCH + Duration::new(1_763_700_000, 123_456_789);
    assert_eq!(got, expected);
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_cloudevent_is_handled_in_binary_and_structured_mode() {
    let vhost = Vhost::new();
    let (bus, exchange, mut rx) = receiver(&vhost, "order.completed.v1").await;

    let mut headers = FieldTable::default();
    for (name, value) in [
        ("cloudEvents_specversion", "1.0"),
        ("cloudEvents_id", "py-1"),
        ("cloudEvents_source", "/python/orders"),
        ("cloudEvents_type", "order.completed.v1"),
        ("cloudEvents_time", "2026-12-06T13:00:00.5+01:00"),
        ("cloudEvents_subject", "order-7"),
        ("cloudEvents_correlationid", "req-7"),
    ] {
        headers.insert(name.into(), long(value));
    }
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(headers);
    publish_raw(
        &vhost,
        &exchange,
        "order.completed.v1",
        properties,
        br#"{"order_id":"7"}"#,
    )
    .await;
    let binary = next(&mut rx).await;
    assert_eq!(binary.event_type, "order.completed.v1");
    assert_eq!(binary.payload, br#"{"order_id":"7"}"#);
    assert_eq!(binary.content_type, "application/json");
    assert_eq!(binary.correlation_id.as_deref(), Some("req-7"));
    assert_eq!(binary.headers["subject"], "order-7");
    assert_eq!(
        binary.timestamp,
        UNIX_EPOCH + Duration::new(1_796_558_400, 500_000_000)
    );

    let structured = br#"{"specversion":"1.0","id":"py-2","source":"/python/orders",
        "type":"order.completed.v1","datacontenttype":"application/json",
        "data":{"order_id":"8"}}"#;
    let properties = BasicProperties::default()
        .with_content_type("application/cloudevents+json; charset=utf-8".into());
    publish_raw(
        &vhost,
        &exchange,
        "order.completed.v1",
        properties,
        structured,
    )
    .await;
    let structured = next(&mut rx).await;
    assert_eq!(structured.payload, br#"{"order_id":"8"}"#);
    assert_eq!(structured.content_type, "application/json");
    assert_ne!(structured.message_id, binary.message_id);
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_no_cloudevent_is_dead_lettered_at_once_with_the_reason() {
    let vhost = Vhost::new();
    let (bus, exchange, mut rx) = receiver(&vhost, "order.completed.v1").await;
    let id = Uuid::now_v7();
    let before = SystemTime::now();
    let properties = BasicProperties::default()
        .with_message_id(id.to_string().into())
        .with_content_type("application/json".into());
    publish_raw(
        &vhost,
        &exchange,
        "order.completed.v1",
        properties,
        br#"{"order_id":"9"}"#,
    )
    .await;
    let store = bus.dead_letters().unwrap();
    let letter = common::dead_letter(&store, "g", id, WAIT).await;
    assert_eq!(letter.kind, FailureKind::Undecodable);
    assert_eq!(letter.attempts, 1);
    assert!(
        letter.reason.contains("neither a CloudEvent"),
        "{}",
        letter.reason
    );
    assert_eq!(letter.envelope.payload, br#"{"order_id":"9"}"#);
    assert!(letter.failed_at >= before);
    assert!(rx.try_recv().is_err(), "the handler never saw it");
    bus.shutdown().await.unwrap();
}

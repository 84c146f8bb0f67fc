//! The wire format seen from outside the chassis: a message published by a
//! chassis of the previous release (one `Chassis-Envelope` header) or by any
//! CloudEvents producer (binary and structured content mode) is handled like
//! one of ours; a message that is neither is dead-lettered at once with the
//! reason. Every message here is published with the raw NATS client.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Prefix, on};
use messaging_abstractions::{Envelope, EventBus, FailureKind, Subscription};
use messaging_nats::NatsBus;
use tokio::sync::mpsc;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// Publishes one message to the event type's subject with the raw client and
/// waits for JetStream's acknowledgement, as another program would.
async fn publish_raw(prefix: &Prefix, event_type: &str, headers: &[(&str, &str)], body: &[u8]) {
    let client = async_nats::connect(prefix.url()).await.unwrap();
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, *value);
    }
    async_nats::jetstream::new(client)
        .publish_with_headers(
            format!("{}.{event_type}", prefix.name),
            map,
            body.to_vec().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// A bus subscribed to `event_type` in group `g`, and what its handler gets.
async fn receiver(
    prefix: &Prefix,
    event_type: &str,
) -> (NatsBus, mpsc::UnboundedReceiver<Envelope>) {
    let bus = NatsBus::connect(&prefix.messaging(), &prefix.nats(), "shipping")
        .await
        .unwrap();
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
    (bus, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Envelope>) -> Envelope {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("delivered in time")
        .expect("channel open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_the_previous_release_is_handled_with_every_field() {
    let prefix = Prefix::new("interop-old");
    let (bus, mut rx) = receiver(&prefix, "order.completed.v1").await;
    // Exactly what the previous release's producer wrote.
    let id = Uuid::now_v7();
    let previous = format!(
        concat!(
            r#"{{"id":"{id}","type":"order.completed.v1","correlation_id":"corr-1","#,
            r#""causation_id":"","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","#,
            r#""tracestate":null,"timestamp":"1763700000.123456789","content_type":"application/json","#,
            r#""partition_key":"order-42","headers":{{"tenant":"größe ✓","x-empty":""}}}}"#
        ),
        id = id
    );
    publish_raw(
        &prefix,
        "order.completed.v1",
        &[("Chassis-Envelope", previous.as_str())],
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
    .with_header("tenant", "größe ✓")
    .with_header("x-empty", "");
    expected.message_id = id;
    expected.causation_id = Some(String::new());
    expected.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    expected.partition_key = Some("order-42".into());
    expected.timestamp = UNIX_EPOCH + Duration::new(1_763_700_000, 123_456_789);
    assert_eq!(got, expected);
    bus.shutdown().await.unwrap();
    prefix.delete_streams().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_cloudevent_is_handled_in_binary_and_structured_mode() {
    let prefix = Prefix::new("interop-foreign");
    let (bus, mut rx) = receiver(&prefix, "order.completed.v1").await;
    publish_raw(
        &prefix,
        "order.completed.v1",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "py-1"),
            ("ce-source", "/python/orders"),
            ("ce-type", "order.completed.v1"),
            ("ce-time", "2026-12-06T13:00:00.5+01:00"),
            ("ce-datacontenttype", "application/json"),
            ("ce-subject", "order%207"),
            ("ce-correlationid", "req-7"),
        ],
        br#"{"order_id":"7"}"#,
    )
    .await;
    let binary = next(&mut rx).await;
    assert_eq!(binary.event_type, "order.completed.v1");
    assert_eq!(binary.payload, br#"{"order_id":"7"}"#);
    assert_eq!(binary.content_type, "application/json");
    assert_eq!(binary.correlation_id.as_deref(), Some("req-7"));
    assert_eq!(binary.headers["subject"], "order 7");
    assert_eq!(
        binary.timestamp,
        UNIX_EPOCH + Duration::new(1_796_558_400, 500_000_000)
    );

    let structured = br#"{"specversion":"1.0","id":"py-2","source":"/python/orders",
        "type":"order.completed.v1","data":{"order_id":"8"}}"#;
    publish_raw(
        &prefix,
        "order.completed.v1",
        &[("Content-Type", "application/cloudevents+json")],
        structured,
    )
    .await;
    let structured = next(&mut rx).await;
    assert_eq!(structured.payload, br#"{"order_id":"8"}"#);
    assert_eq!(structured.content_type, "application/json");
    assert_ne!(structured.message_id, binary.message_id);
    bus.shutdown().await.unwrap();
    prefix.delete_streams().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_no_cloudevent_is_dead_lettered_at_once_with_the_reason() {
    let prefix = Prefix::new("interop-neither");
    let (bus, mut rx) = receiver(&prefix, "order.completed.v1").await;
    let before = SystemTime::now();
    publish_raw(
        &prefix,
        "order.completed.v1",
        &[("Content-Type", "application/json")],
        br#"{"order_id":"9"}"#,
    )
    .await;
    let store = bus.dead_letters().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let letter = loop {
        if let Some(letter) = store.list(Some("g")).await.pop() {
            break letter;
        }
        assert!(tokio::time::Instant::now() < deadline, "not dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
    prefix.delete_streams().await;
}

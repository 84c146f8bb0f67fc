//! Behaviour of the RabbitMQ provider beyond the shared suite: unroutable
//! messages, pipelined batches, a poison message among healthy traffic,
//! crash loops against the delivery limit, connection loss, health, errors.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chassis_core::HealthStatus;
use common::{Vhost, envelope, eventually, on};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use messaging_abstractions::{
    EventBus, EventBusExt, FailureKind, HandlerError, PublishError, SubscribeError, Subscription,
};
use messaging_rabbitmq::QueueType;
use messaging_rabbitmq::RabbitMqError;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// Waits until `health` reports a status `accept` takes.
async fn wait_for_health(
    health: &Arc<dyn chassis_core::HealthCheck>,
    what: &str,
    accept: fn(&HealthStatus) -> bool,
) {
    let what = format!("health turns {what}");
    eventually(&what, WAIT, || {
        let health = health.clone();
        async move { accept(&health.check().await) }
    })
    .await;
}

/// Refuses the user on this vhost and cuts its connections, so the bus cannot
/// reconnect; returns once the bus reports itself unhealthy.
async fn take_broker_away(vhost: &Vhost, health: &Arc<dyn chassis_core::HealthCheck>) {
    vhost.deny_guest();
    vhost.close_connections();
    wait_for_health(health, "unhealthy", |s| {
        matches!(s, HealthStatus::Unhealthy(_))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_message_is_a_failed_publish() {
    let vhost = Vhost::new();
    let bus = vhost
        .config(QueueType::Quorum)
        .connect("svc")
        .await
        .unwrap();
    let sent = envelope("nobody.listens.v1", 1);
    match bus.publish(sent.clone()).await {
        Err(PublishError::Unroutable {
            message_id,
            event_type,
        }) => {
            assert_eq!(message_id, sent.message_id);
            assert_eq!(event_type, "nobody.listens.v1");
        }
        other => panic!("expected Unroutable, got {other:?}"),
    }
    // The bus is still usable afterwards.
    bus.subscribe(Subscription::new(
        "g",
        on("somebody.listens.v1", |_| async { Ok(()) }),
    ))
    .await
    .unwrap();
    bus.publish(envelope("somebody.listens.v1", 2))
        .await
        .unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_batch_arrives_complete_and_in_order() {
    let vhost = Vhost::new();
    let mut config = vhost.config(QueueType::Quorum);
    config.concurrency = 1;
    let bus = config.connect("svc").await.unwrap();
    let seen = common::subscribe_recording(&bus, "g", "batch.item.v1").await;
    let batch: Vec<_> = (0..3000).map(|n| envelope("batch.item.v1", n)).collect();
    let ids: Vec<Uuid> = batch.iter().map(|e| e.message_id).collect();
    bus.publish_all(batch).await.unwrap();
    eventually("3000 messages handled", WAIT, || {
        let n = seen.lock().len();
        async move { n >= 3000 }
    })
    .await;
    assert_eq!(*seen.lock(), ids, "one consumer, one handler: FIFO");
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_one_partition_key_keep_their_order_under_concurrency() {
    let vhost = Vhost::new();
    let mut config = vhost.config(QueueType::Quorum);
    config.concurrency = 8;
    let bus = config.connect("svc").await.unwrap();
    let seen: Arc<Mutex<BTreeMap<String, Vec<u64>>>> = Arc::default();
    let log = seen.clone();
    bus.subscribe(Subscription::new(
        "g",
        on("keyed.v1", move |d| {
            let log = log.clone();
            async move {
                let n: serde_json::Value = serde_json::from_slice(&d.envelope.payload).unwrap();
                // Uneven work so unordered handling would show.
                let n = n["n"].as_u64().unwrap();
                tokio::time::sleep(Duration::from_millis(n % 3)).await;
                let key = d.envelope.partition_key.clone().unwrap();
                log.lock().entry(key).or_default().push(n);
                Ok(())
            }
        }),
    ))
    .await
    .unwrap();
    let batch: Vec<_> = (0..400)
        .map(|n| {
            let mut e = envelope("keyed.v1", n);
            e.partition_key = Some(format!("k{}", n % 5));
            e
        })
        .collect();
    bus.publish_all(batch).await.unwrap();
    eventually("400 messages handled", WAIT, || {
        let n: usize = seen.lock().values().map(Vec::len).sum();
        async move { n >= 400 }
    })
    .await;
    for (key, order) in seen.lock().iter() {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, &sorted, "order of key {key}");
    }
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_envelope_survives_the_broker_exactly() {
    let vhost = Vhost::new();
    let bus = vhost
        .config(QueueType::Quorum)
        .connect("svc")
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    bus.subscribe(Subscription::new(
        "g",
        on("exact.v1", move |d| {
            let tx = tx.clone();
            async move {
                tx.send(d.envelope).unwrap();
                Ok(())
            }
        }),
    ))
    .await
    .unwrap();
    let mut sent = envelope("exact.v1", 1)
        .with_correlation_id("c".repeat(600))
        .with_header("x-death", "free headers never collide with broker headers")
        .with_header("traceparent", "a free header may reuse any name");
    sent.timestamp = UNIX_EPOCH + Duration::new(1_700_000_000, 987_654_321);
    sent.causation_id = Some(String::new());
    sent.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    bus.publish(sent.clone()).await.unwrap();
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, sent);
    bus.shutdown().await.unwrap();
}

/// One message fails retryably on every delivery while healthy traffic
/// keeps flowing through the same queue; the poison message ends in the DLQ
/// after exactly `max_attempts` deliveries with the reason and count.
async fn poison_message(queue_type: QueueType) {
    let vhost = Vhost::new();
    let mut config = vhost.config(queue_type);
    config.retry.max_attempts = 4;
    config.retry.initial_backoff = Duration::from_millis(300);
    config.retry.max_backoff = Duration::from_millis(600);
    let bus = config.connect("svc").await.unwrap();
    let poison = envelope("order.v1", 0);
    let poison_id = poison.message_id;
    let handled = Arc::new(Mutex::new(Vec::<(Uuid, u32, std::time::Instant)>::new()));
    let log = handled.clone();
    bus.subscribe(Subscription::new(
        "shipping",
        on("order.v1", move |d| {
            let log = log.clone();
            async move {
                log.lock()
                    .push((d.envelope.message_id, d.attempt, std::time::Instant::now()));
                if d.envelope.message_id == poison_id {
                    Err(HandlerError::retryable(format!(
                        "warehouse down (attempt {})",
                        d.attempt
                    )))
                } else {
                    Ok(())
                }
            }
        }),
    ))
    .await
    .unwrap();
    bus.publish(poison).await.unwrap();
    // Healthy traffic while the poison message waits between its retries.
    let mut healthy = Vec::new();
    for n in 1..=40 {
        let e = envelope("order.v1", n);
        healthy.push(e.message_id);
        bus.publish(e).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store = bus.dead_letters().unwrap();
    let letter = common::dead_letter(&store, "shipping", poison_id, WAIT).await;
    assert_eq!(letter.kind, FailureKind::Retryable);
    assert_eq!(letter.attempts, 4);
    assert_eq!(letter.group, "shipping");
    assert!(
        letter.reason.contains("warehouse down (attempt 4)"),
        "{}",
        letter.reason
    );

    let log = handled.lock().clone();
    let attempts: Vec<u32> = log
        .iter()
        .filter(|(id, ..)| *id == poison_id)
        .map(|(_, a, _)| *a)
        .collect();
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    let last_poison = log
        .iter()
        .filter(|(id, ..)| *id == poison_id)
        .map(|(.., at)| *at)
        .max()
        .unwrap();
    for id in &healthy {
        let deliveries: Vec<_> = log.iter().filter(|(i, ..)| i == id).collect();
        assert_eq!(deliveries.len(), 1, "healthy message {id} handled once");
        assert_eq!(deliveries[0].1, 1);
    }
    // The queue did not wait for the poison message.
    let before = log
        .iter()
        .filter(|(id, _, at)| *id != poison_id && *at < last_poison)
        .count();
    assert!(
        before >= 30,
        "only {before} healthy messages were handled while the poison message was being retried"
    );
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_while_others_flow_quorum() {
    poison_message(QueueType::Quorum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_while_others_flow_classic() {
    poison_message(QueueType::Classic).await;
}

/// A handler that never settles (the process "crashes": the test cuts the
/// connection each time) is stopped by the delivery limit, not retried
/// forever; the bus reconnects by itself after every cut.
async fn crash_loop(queue_type: QueueType) {
    let vhost = Vhost::new();
    let mut config = vhost.config(queue_type);
    config.rabbitmq.delivery_limit = 2;
    config.concurrency = 8;
    let bus = config.connect("svc").await.unwrap();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let hold = release.clone();
    bus.subscribe(Subscription::new(
        "g",
        on("crash.v1", move |d| {
            let started_tx = started_tx.clone();
            let hold = hold.clone();
            async move {
                started_tx.send(d.attempt).unwrap();
                hold.notified().await;
                Ok(())
            }
        }),
    ))
    .await
    .unwrap();
    let sent = envelope("crash.v1", 1);
    bus.publish(sent.clone()).await.unwrap();
    let store = bus.dead_letters().unwrap();
    let mut attempts = Vec::new();
    // Deliveries 1..=limit+1 each "crash"; then the message is dead-lettered.
    for _ in 0..=config.rabbitmq.delivery_limit {
        let attempt = tokio::time::timeout(WAIT, started.recv())
            .await
            .expect("the message was delivered again after the connection was cut")
            .unwrap();
        attempts.push(attempt);
        vhost.close_connections();
    }
    let letter = common::dead_letter(&store, "g", sent.message_id, WAIT).await;
    assert_eq!(attempts, vec![1, 2, 3], "attempts seen by the handler");
    assert!(
        letter.attempts >= 3,
        "dead letter counts the deliveries: {}",
        letter.attempts
    );
    assert!(
        letter.reason.contains("delivery limit") || letter.reason.contains("delivered more than"),
        "{}",
        letter.reason
    );
    assert_eq!(letter.envelope, sent);
    assert!(
        started.try_recv().is_err(),
        "no delivery after the dead-lettering"
    );
    // Held handlers may go now; the bus drains and closes.
    for _ in 0..attempts.len() {
        release.notify_one();
    }
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_stops_at_the_delivery_limit_quorum() {
    crash_loop(QueueType::Quorum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_stops_at_the_delivery_limit_classic() {
    crash_loop(QueueType::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_reconnects_and_resumes_after_losing_its_connection() {
    let vhost = Vhost::new();
    let bus = vhost
        .config(QueueType::Quorum)
        .connect("svc")
        .await
        .unwrap();
    let health = bus.health_checks().pop().unwrap();
    assert_eq!(health.name(), "messaging.rabbitmq");
    assert_eq!(health.check().await, HealthStatus::Healthy);
    let seen = common::subscribe_recording(&bus, "g", "resume.v1").await;
    let first = envelope("resume.v1", 1);
    bus.publish(first.clone()).await.unwrap();
    eventually("first message handled", WAIT, || {
        let ok = seen.lock().contains(&first.message_id);
        async move { ok }
    })
    .await;

    vhost.close_connections();
    // A publish right after the cut waits for the new connection.
    let second = envelope("resume.v1", 2);
    bus.publish(second.clone()).await.unwrap();
    eventually("message after the reconnection handled", WAIT, || {
        let ok = seen.lock().contains(&second.message_id);
        async move { ok }
    })
    .await;
    assert_eq!(health.check().await, HealthStatus::Healthy);
    bus.shutdown().await.unwrap();
    assert!(matches!(health.check().await, HealthStatus::Unhealthy(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_without_broker_fails_after_publish_wait_never_silently() {
    let vhost = Vhost::new();
    let mut config = vhost.config(QueueType::Quorum);
    config.rabbitmq.publish_wait = Duration::from_secs(1);
    let bus = config.connect("svc").await.unwrap();
    bus.subscribe(Subscription::new("g", on("wait.v1", |_| async { Ok(()) })))
        .await
        .unwrap();
    let health = bus.health_checks().pop().unwrap();
    take_broker_away(&vhost, &health).await;
    let started = std::time::Instant::now();
    let result = bus.publish(envelope("wait.v1", 1)).await;
    let waited = started.elapsed();
    assert!(
        matches!(result, Err(PublishError::Unavailable(_))),
        "{result:?}"
    );
    assert!(result.unwrap_err().is_transient());
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(5),
        "waited {waited:?} for a publish_wait of 1s"
    );
    // The user is allowed back: the bus reconnects on its own.
    vhost.allow_guest();
    wait_for_health(&health, "healthy again", |s| *s == HealthStatus::Healthy).await;
    bus.publish(envelope("wait.v1", 2)).await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dead_lettering_off_a_failed_message_is_dropped_not_redelivered() {
    let vhost = Vhost::new();
    let mut config = vhost.config(QueueType::Quorum);
    config.dead_letter.enabled = false;
    let bus = config.connect("svc").await.unwrap();
    let calls = Arc::new(Mutex::new(0));
    let count = calls.clone();
    bus.subscribe(Subscription::new(
        "g",
        on("drop.v1", move |_| {
            *count.lock() += 1;
            async { Err(HandlerError::permanent("never")) }
        }),
    ))
    .await
    .unwrap();
    bus.publish(envelope("drop.v1", 1)).await.unwrap();
    eventually("handler called", WAIT, || {
        let n = *calls.lock();
        async move { n == 1 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*calls.lock(), 1, "acked, not redelivered");
    assert!(bus.dead_letters().unwrap().list(Some("g")).await.is_empty());
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_declared_differently_is_reported_not_ignored() {
    let vhost = Vhost::new();
    let config = vhost.config(QueueType::Quorum);
    // Someone created the group's queue as a classic queue by hand.
    let conn = Connection::connect(&vhost.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    channel
        .queue_declare(
            "test.events.g".into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .unwrap();
    let bus = config.connect("svc").await.unwrap();
    let err = bus
        .subscribe(Subscription::new("g", on("x.v1", |_| async { Ok(()) })))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SubscribeError::Invalid(m) if m.contains("other arguments")),
        "{err}"
    );
    // The bus itself is fine.
    assert_eq!(bus.health_checks()[0].check().await, HealthStatus::Healthy);
    bus.shutdown().await.unwrap();
    conn.close(200, "done".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_say_what_is_wrong() {
    let vhost = Vhost::new();
    let base = vhost.config(QueueType::Quorum);

    let mut bad_url = base.clone();
    bad_url.rabbitmq.url = "http://example".into();
    let err = bad_url.connect("svc").await.unwrap_err();
    assert!(
        matches!(&err, RabbitMqError::InvalidConfig(m) if m.key.starts_with("messaging.rabbitmq.url")),
        "{err}"
    );

    let mut tls = base.clone();
    tls.rabbitmq.url = "amqps://guest:guest@127.0.0.1:5671/%2f".into();
    let err = tls.connect("svc").await.unwrap_err();
    assert!(
        matches!(&err, RabbitMqError::InvalidConfig(m) if m.expected.contains("amqps://")),
        "{err}"
    );

    let mut bad_exchange = base.clone();
    bad_exchange.rabbitmq.exchange = "amq.topic".into();
    let err = bad_exchange.connect("svc").await.unwrap_err();
    assert!(
        matches!(&err, RabbitMqError::InvalidConfig(m) if m.key.starts_with("messaging.rabbitmq.exchange")),
        "{err}"
    );

    let mut closed_port = base.clone();
    closed_port.rabbitmq.url = "amqp://guest:guest@127.0.0.1:1/%2f".into();
    let err = closed_port.connect("svc").await.unwrap_err();
    assert!(
        matches!(&err, RabbitMqError::Connect { endpoint, .. } if endpoint == "127.0.0.1:1//"),
        "{err}"
    );

    let mut wrong_password = base.clone();
    wrong_password.rabbitmq.url = format!(
        "amqp://guest:not-the-password@127.0.0.1:5672/{}",
        vhost.name
    )
    .into();
    let err = wrong_password.connect("svc").await.unwrap_err();
    assert!(matches!(&err, RabbitMqError::Connect { .. }), "{err}");
    assert!(
        !err.to_string().contains("not-the-password"),
        "the password never shows: {err}"
    );

    let mut unknown_vhost = base;
    unknown_vhost.rabbitmq.url = "amqp://guest:guest@127.0.0.1:5672/no-such-vhost".into();
    let err = unknown_vhost.connect("svc").await.unwrap_err();
    assert!(matches!(&err, RabbitMqError::Connect { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_keeps_headers_and_timestamp_of_its_failure() {
    let vhost = Vhost::new();
    let bus = vhost
        .config(QueueType::Classic)
        .connect("svc")
        .await
        .unwrap();
    bus.subscribe(Subscription::new(
        "g",
        on("bad.v1", |_| async {
            Err(HandlerError::permanent("customer unknown"))
        }),
    ))
    .await
    .unwrap();
    let before = SystemTime::now();
    let sent = envelope("bad.v1", 1).with_header("tenant", "acme");
    bus.publish(sent.clone()).await.unwrap();
    let store = bus.dead_letters().unwrap();
    eventually("dead-lettered", WAIT, || {
        let store = store.clone();
        async move { !store.list(None).await.is_empty() }
    })
    .await;
    let letters = store.list(None).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.envelope, sent);
    assert_eq!(letter.kind, FailureKind::Permanent);
    assert_eq!(letter.reason, "customer unknown");
    assert_eq!(letter.attempts, 1);
    assert!(letter.failed_at >= before && letter.failed_at <= SystemTime::now());
    // Listing does not consume: the letter is still there.
    assert_eq!(store.list(Some("g")).await.len(), 1);
    assert!(!store.replay(Uuid::new_v4()).await.unwrap());
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_while_the_broker_is_away() {
    let vhost = Vhost::new();
    let bus = vhost
        .config(QueueType::Quorum)
        .connect("svc")
        .await
        .unwrap();
    bus.subscribe(Subscription::new("g", on("away.v1", |_| async { Ok(()) })))
        .await
        .unwrap();
    let health = bus.health_checks().pop().unwrap();
    take_broker_away(&vhost, &health).await;
    tokio::time::timeout(Duration::from_secs(10), bus.shutdown())
        .await
        .expect("shutdown does not wait for the broker to come back")
        .unwrap();
    assert!(matches!(
        bus.publish(envelope("away.v1", 1)).await,
        Err(PublishError::ShutDown)
    ));
}

//! Publish with confirms and consume with manual acks through the chassis
//! provider, next to raw lapin doing the same work in the same run, each
//! measured **from outside**: the measured side is a process of its own
//! (this binary run as `throughput --role …`, see `chassis_testing::bench`),
//! the broker is the local RabbitMQ.
//!
//! Three sides: `raw` (lapin with a bare 200-byte payload, what the goal is
//! judged against), `raw+ce` (lapin with the very properties and
//! `cloudEvents_` headers the chassis puts on the wire) and `chassis` (the
//! provider). `raw` → `raw+ce` is the cost of the wire format; `raw+ce` →
//! `chassis` the provider's own code.
//!
//! - **publish**: the worker publishes N persistent messages (200-byte JSON
//!   payload) through a durable topic exchange into one durable quorum
//!   queue (the chassis default) with publisher confirms, 1000 in flight,
//!   and waits for the last confirm; raw: `basic_publish` of the bare
//!   payload (delivery mode, content type); raw+ce: `basic_publish` with a
//!   copy of a chassis message's properties and a fresh id each; chassis:
//!   `publish_all` of N envelopes.
//! - **consume**: the group's queue (declared by the chassis) is pre-filled
//!   by a separate process with N messages (bare payloads for raw, chassis
//!   envelopes for raw+ce and chassis); then the worker consumes and acks
//!   them all with prefetch 500; raw and raw+ce: `basic_consume`,
//!   each ack sent from a task of its own (not holding up the next
//!   delivery, as the chassis does), timed until the last ack is done;
//!   chassis: a subscription with concurrency 64, timed from `subscribe`
//!   until every handler returned and `stop_consuming` drained them. After
//!   the timing the worker checks the queue is empty.
//!
//! Each round measures raw and chassis alternately (reversed every other
//! round), on fresh queues; per side the median and min–max of msg/s and of
//! the worker's CPU µs per message (utime + stime from /proc), and the load
//! average before each measurement. Runs in a vhost of its own (deleted at
//! the end) and takes the crate's broker lock shared, like the tests.
//!
//! ```text
//! cargo bench -p messaging-rabbitmq --bench throughput
//! BENCH_MESSAGES=50000 BENCH_ROUNDS=7 BENCH_QUIET_WAIT=5 cargo bench -p messaging-rabbitmq --bench throughput
//! cargo test -p messaging-rabbitmq --benches     # smoke: 300 messages, 1 round, nothing timed
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chassis_testing::bench::{self, Rounds, Worker};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use messaging_abstractions::{
    Delivery, Envelope, EventBus, EventBusExt, HandlerError, Handlers, JSON_CONTENT_TYPE,
    MessageHandler, MessagingConfig, Subscription,
};
use messaging_rabbitmq::{QueueType, RabbitMqConfig};
use tokio::sync::Notify;

const WINDOW: usize = 1000;
const PREFETCH: u16 = 500;
const RAW_EXCHANGE: &str = "raw.bench";
const SIDES: [&str; 3] = ["raw", "raw+ce", "chassis"];

fn payload(n: usize) -> Vec<u8> {
    let mut body = format!("{{\"seq\":{n},\"pad\":\"").into_bytes();
    body.resize(198, b'x');
    body.extend_from_slice(b"\"}");
    body
}

/// The chassis settings of the bench on the vhost at `url`.
fn config(url: &str) -> common::TestConfig {
    common::TestConfig {
        shared: MessagingConfig {
            provider: "rabbitmq".into(),
            prefetch: PREFETCH,
            concurrency: 64,
            ..MessagingConfig::default()
        },
        rabbitmq: RabbitMqConfig {
            url: url.into(),
            exchange: "bench.events".into(),
            queue_type: QueueType::Quorum,
            ..RabbitMqConfig::default()
        },
    }
}

/// The event type of one measurement (`name`: letters and digits), so no
/// other measurement's queue takes a copy.
fn event_type(name: &str) -> String {
    format!("bench.{name}.v1")
}

fn envelopes(name: &str, messages: usize) -> Vec<Envelope> {
    (0..messages)
        .map(|n| Envelope::new(event_type(name), JSON_CONTENT_TYPE, payload(n)))
        .collect()
}

fn main() {
    if let Some(args) = bench::role_args() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(worker(&args));
        return;
    }
    let benching = bench::benching();
    let messages = bench::env_or("BENCH_MESSAGES", if benching { 50_000 } else { 300 });
    let vhost = common::Vhost::new();
    let url = vhost.url();
    let mut rounds = Rounds::from_env(&SIDES);
    println!(
        "# messaging-rabbitmq: {messages} persistent messages of 200 bytes per measurement, quorum queue; {}",
        rounds.describe()
    );
    let n = messages.to_string();
    for round in 0..rounds.count() {
        for operation in ["publish", "consume"] {
            for side in rounds.order(round) {
                let quiet = rounds.wait_for_quiet();
                let name = format!("r{round}{operation}{side}");
                let mut worker = Worker::start(&[operation, SIDES[side], &url, &name, &n]);
                if operation == "consume" {
                    let kind = if SIDES[side] == "raw" {
                        "bare"
                    } else {
                        "chassis"
                    };
                    bench::run(&["fill", kind, &url, &name, &n]);
                }
                let sample = worker.go();
                worker.finish();
                rounds.record(round, operation, side, sample, &quiet);
            }
        }
    }
    rounds.report();
}

async fn worker(args: &[String]) {
    let [role, rest @ ..] = args else {
        panic!("--role <publish|consume|fill> …");
    };
    match (role.as_str(), rest) {
        ("publish", [side, url, name, n]) => {
            publish(side, url, name, n.parse().expect("count")).await;
        }
        ("consume", [side, url, name, n]) => {
            consume(side, url, name, n.parse().expect("count")).await;
        }
        ("fill", [kind, url, name, n]) => {
            let messages = n.parse().expect("count");
            if kind == "bare" {
                let (conn, channel) = raw_channel(url).await;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .expect("confirms");
                let exchange = config(url).rabbitmq.exchange;
                let bodies = (0..messages).map(payload).collect();
                publish_raw(&channel, &exchange, &event_type(name), bodies, None).await;
                let _ = conn.close(200, "bench done".into()).await;
                return;
            }
            let bus = config(url).connect("bench-fill").await.expect("connect");
            bus.publish_all(envelopes(name, messages))
                .await
                .expect("fill");
            bus.shutdown().await.expect("shutdown");
        }
        _ => panic!("unknown role {args:?}"),
    }
}

/// Blocks (off the runtime's workers) until the parent closes stdin.
async fn parent_done() {
    tokio::task::spawn_blocking(bench::wait_for_parent)
        .await
        .expect("stdin reader");
}

async fn raw_channel(url: &str) -> (Connection, Channel) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    (conn, channel)
}

/// Declares and binds a group's queue by subscribing a chassis bus, which
/// then stops (the queue keeps what is published meanwhile).
async fn declare_group(url: &str, name: &str, counter: Arc<Counter>) {
    let setup = config(url).connect("bench").await.expect("connect");
    setup
        .subscribe(Subscription::new(
            name,
            Handlers::new().on_raw(event_type(name).as_str(), counter),
        ))
        .await
        .expect("subscribe");
    setup.shutdown().await.expect("shutdown");
}

/// One persistent message to `exchange`; its confirm. Without `like`, a
/// bare one (delivery mode, content type); with it, a copy of those
/// properties (a chassis message's) with a fresh id in the message id and
/// the `cloudEvents_id` header — what any producer of events does per
/// message.
async fn raw_publish(
    channel: &Channel,
    exchange: &str,
    key: &str,
    body: Vec<u8>,
    like: Option<&BasicProperties>,
) -> lapin::PublisherConfirm {
    let props = match like {
        None => BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(JSON_CONTENT_TYPE.into()),
        Some(like) => {
            let id = uuid::Uuid::now_v7().to_string();
            let mut headers = like.headers().clone().unwrap_or_default();
            headers.insert(
                "cloudEvents_id".into(),
                AMQPValue::LongString(id.as_str().into()),
            );
            like.clone()
                .with_message_id(id.as_str().into())
                .with_headers(headers)
        }
    };
    let mandatory = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    channel
        .basic_publish(exchange.into(), key.into(), mandatory, &body, props)
        .await
        .expect("publish")
}

/// Publishes `bodies` with raw lapin (confirms selected on `channel`),
/// `WINDOW` confirms in flight, until the last is acked.
async fn publish_raw(
    channel: &Channel,
    exchange: &str,
    key: &str,
    bodies: Vec<Vec<u8>>,
    like: Option<&BasicProperties>,
) {
    let mut window = std::collections::VecDeque::with_capacity(WINDOW);
    for body in bodies {
        if window.len() == WINDOW {
            let confirm: lapin::PublisherConfirm = window.pop_front().unwrap();
            assert!(confirm.await.expect("confirm").is_ack());
        }
        window.push_back(raw_publish(channel, exchange, key, body, like).await);
    }
    for confirm in window {
        assert!(confirm.await.expect("confirm").is_ack());
    }
}

/// The properties of one message the chassis published: the group's queue
/// is declared, one envelope published to it, taken back and the queue
/// deleted.
async fn chassis_properties(url: &str, name: &str, channel: &Channel) -> BasicProperties {
    let group = format!("{name}props");
    declare_group(url, &group, Counter::new(0)).await;
    let bus = config(url).connect("bench").await.expect("connect");
    bus.publish(Envelope::new(
        event_type(&group),
        JSON_CONTENT_TYPE,
        payload(0),
    ))
    .await
    .expect("publish");
    bus.shutdown().await.expect("shutdown");
    let queue = format!("{}.{group}", config(url).rabbitmq.exchange);
    let deadline = Instant::now() + Duration::from_secs(10);
    let message = loop {
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get");
        if let Some(message) = got {
            break message;
        }
        assert!(
            Instant::now() < deadline,
            "the chassis message never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    delete_queues(url, &queue, &group).await;
    message.delivery.properties.clone()
}

async fn publish(side: &str, url: &str, name: &str, messages: usize) {
    let queue = match side {
        "raw" | "raw+ce" => {
            let (conn, channel) = raw_channel(url).await;
            let like = match side {
                "raw+ce" => Some(chassis_properties(url, name, &channel).await),
                _ => None,
            };
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    RAW_EXCHANGE.into(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await
                .expect("exchange");
            let mut args = FieldTable::default();
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            let queue_options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            let queue = format!("raw.{name}");
            channel
                .queue_declare(queue.as_str().into(), queue_options, args)
                .await
                .expect("queue");
            let key = event_type(name);
            channel
                .queue_bind(
                    queue.as_str().into(),
                    RAW_EXCHANGE.into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("bind");
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirms");
            // Warm-up: the connection and the queue's first write.
            assert!(
                raw_publish(&channel, RAW_EXCHANGE, &key, payload(0), like.as_ref())
                    .await
                    .await
                    .expect("confirm")
                    .is_ack()
            );
            let bodies: Vec<Vec<u8>> = (0..messages).map(payload).collect();
            bench::ready();
            let started = Instant::now();
            publish_raw(&channel, RAW_EXCHANGE, &key, bodies, like.as_ref()).await;
            bench::done(messages as u64, started.elapsed());
            let _ = conn.close(200, "bench done".into()).await;
            queue
        }
        "chassis" => {
            declare_group(url, name, Counter::new(0)).await;
            let bus = config(url).connect("bench").await.expect("connect");
            // Warm-up: the exchange known, the channel used.
            bus.publish(Envelope::new(
                event_type(name),
                JSON_CONTENT_TYPE,
                payload(0),
            ))
            .await
            .expect("publish");
            let batch = envelopes(name, messages);
            bench::ready();
            let started = Instant::now();
            bus.publish_all(batch).await.expect("publish_all");
            bench::done(messages as u64, started.elapsed());
            bus.shutdown().await.expect("shutdown");
            format!("{}.{name}", config(url).rabbitmq.exchange)
        }
        other => panic!("unknown side {other}"),
    };
    parent_done().await;
    check_queue(url, &queue, messages as u32 + 1).await;
    delete_queues(url, &queue, name).await;
}

/// Counts handled (or acked) messages.
struct Counter {
    expected: usize,
    handled: AtomicUsize,
    all: Notify,
}

impl Counter {
    fn new(expected: usize) -> Arc<Self> {
        Arc::new(Self {
            expected,
            handled: AtomicUsize::new(0),
            all: Notify::new(),
        })
    }

    fn one(&self) {
        if self.handled.fetch_add(1, Ordering::AcqRel) + 1 == self.expected {
            self.all.notify_one();
        }
    }
}

#[async_trait::async_trait]
impl MessageHandler for Counter {
    async fn handle(&self, _delivery: &Delivery) -> Result<(), HandlerError> {
        self.one();
        Ok(())
    }
}

async fn consume(side: &str, url: &str, name: &str, messages: usize) {
    let counter = Counter::new(messages);
    declare_group(url, name, counter.clone()).await;
    let queue = format!("{}.{name}", config(url).rabbitmq.exchange);
    let all = counter.all.notified();
    match side {
        "raw" | "raw+ce" => {
            let (conn, channel) = raw_channel(url).await;
            channel
                .basic_qos(PREFETCH, BasicQosOptions::default())
                .await
                .expect("qos");
            bench::ready();
            let started = Instant::now();
            let mut consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "raw-bench".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("consume");
            for _ in 0..messages {
                let delivery = consumer
                    .next()
                    .await
                    .expect("a delivery")
                    .expect("delivery");
                let counter = counter.clone();
                tokio::spawn(async move {
                    delivery.ack(BasicAckOptions::default()).await.expect("ack");
                    counter.one();
                });
            }
            tokio::time::timeout(Duration::from_secs(300), all)
                .await
                .expect("every message acked");
            bench::done(messages as u64, started.elapsed());
            // The channel's close-ok comes after the broker took every
            // ack sent before it (a connection closed at once loses some).
            channel
                .close(200, "bench done".into())
                .await
                .expect("channel close");
            let _ = conn.close(200, "bench done".into()).await;
        }
        "chassis" => {
            let bus = config(url).connect("bench").await.expect("connect");
            bench::ready();
            let started = Instant::now();
            bus.subscribe(Subscription::new(
                name,
                Handlers::new().on_raw(event_type(name).as_str(), counter.clone()),
            ))
            .await
            .expect("subscribe");
            tokio::time::timeout(Duration::from_secs(300), all)
                .await
                .expect("every message handled");
            bus.stop_consuming(Duration::from_secs(30))
                .await
                .expect("drained");
            bench::done(messages as u64, started.elapsed());
            bus.shutdown().await.expect("shutdown");
        }
        other => panic!("unknown side {other}"),
    }
    parent_done().await;
    // Not asserted: under heavy load the queue has held more than the N
    // messages filled (seen: 61 and 93 left after N acks, runs of
    // 2026-12-06) — not yet explained; reported so it is not hidden.
    let left = queue_count(url, &queue).await;
    if left > 0 {
        eprintln!(
            "# warning: queue `{queue}` still holds {left} messages after {messages} were acked"
        );
    }
    delete_queues(url, &queue, name).await;
}

/// Ready messages in `queue`, once the broker's count settles (2 s).
async fn queue_count(url: &str, queue: &str) -> u32 {
    let (conn, channel) = raw_channel(url).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let count = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .expect("queue exists")
        .message_count();
    let _ = conn.close(200, "bench done".into()).await;
    count
}

/// The queue holds `expected` messages (ready ones; polled: the broker's
/// count lags a little behind).
async fn check_queue(url: &str, queue: &str, expected: u32) {
    let (conn, channel) = raw_channel(url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let count = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .expect("queue exists")
            .message_count();
        if count == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queue `{queue}` holds {count} messages, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = conn.close(200, "bench done".into()).await;
}

/// Deletes the measurement's queue, and the group's other queues if a
/// chassis bus declared them.
async fn delete_queues(url: &str, queue: &str, group: &str) {
    let (conn, channel) = raw_channel(url).await;
    let mut queues = common::group_queues(&config(url), group);
    queues.push(queue.to_owned());
    queues.dedup();
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await
            .expect("delete queue");
    }
    let _ = conn.close(200, "bench done".into()).await;
}

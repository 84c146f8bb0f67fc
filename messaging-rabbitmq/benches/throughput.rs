//! Publish-with-confirms and consume throughput through the chassis provider,
//! next to raw lapin doing the same work in the same run.
//!
//! ```text
//! cargo bench -p messaging-rabbitmq --bench throughput
//! BENCH_MESSAGES=50000 BENCH_ROUNDS=5 cargo bench -p messaging-rabbitmq --bench throughput
//! ```
//!
//! Work: ~200-byte persistent messages through a durable topic exchange into
//! one durable quorum queue (the chassis default), publisher confirms with
//! 1000 in flight, consumption with manual acks and prefetch 500 (rate from
//! the first delivery to the last message handled). Four sides per round,
//! each on fresh queues, in rotating order: raw lapin with a bare message,
//! raw lapin sending the same properties and headers the chassis envelope
//! puts on the wire ("same bytes": the CloudEvents attributes), raw lapin
//! sending the previous release's envelope (`chassis-*` headers), and the
//! chassis provider. Medians of the rates and of the per-round ratios are
//! printed. Runs in a vhost of its own
//! (deleted at the end) and takes the crate's broker lock shared, like the
//! tests.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Vhost;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use messaging_abstractions::{
    Delivery, Envelope, EventBus, EventBusExt, HandlerError, Handlers, JSON_CONTENT_TYPE,
    MessageHandler, Subscription,
};
use messaging_rabbitmq::QueueType;
use tokio::sync::Notify;

const WINDOW: usize = 1000;
const PREFETCH: u16 = 500;
const RAW_EXCHANGE: &str = "raw.bench";

fn payload(n: usize) -> Vec<u8> {
    // {"seq":…,"pad":"xxx…"} padded to 200 bytes.
    let head = format!("{{\"seq\":{n},\"pad\":\"");
    let mut body = head.into_bytes();
    body.resize(198, b'x');
    body.extend_from_slice(b"\"}");
    body
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Rates of one round: publish and consume, per side.
struct Round {
    bare: (f64, f64),
    same_bytes: (f64, f64),
    previous_bytes: (f64, f64),
    chassis: (f64, f64),
}

async fn raw_channel(url: &str) -> (Connection, Channel) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    (conn, channel)
}

/// What a bare raw client sends: persistent, JSON.
fn bare_props() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(JSON_CONTENT_TYPE.into())
}

fn long(s: String) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// What the chassis puts on the wire for an envelope with no optional field
/// set, built by hand: the CloudEvents attribute headers, the content type
/// and the secondary properties.
fn envelope_props() -> BasicProperties {
    let now = std::time::SystemTime::now();
    let id = uuid::Uuid::now_v7().to_string();
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("cloudEvents_specversion", "1.0".to_owned()),
        ("cloudEvents_id", id.clone()),
        ("cloudEvents_source", "bench".to_owned()),
        ("cloudEvents_type", "bench.raw.v1".to_owned()),
        (
            "cloudEvents_time",
            messaging_abstractions::cloudevents::format_time(now),
        ),
    ] {
        headers.insert(name.into(), long(value));
    }
    let secs = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    bare_props()
        .with_message_id(id.into())
        .with_type("bench.raw.v1".into())
        .with_timestamp(secs)
        .with_headers(headers)
}

/// What the previous release put on the wire for the same envelope: the
/// properties and the exact-timestamp header.
fn previous_props() -> BasicProperties {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let mut headers = FieldTable::default();
    headers.insert(
        "chassis-timestamp".into(),
        long(format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
    );
    bare_props()
        .with_message_id(uuid::Uuid::now_v7().to_string().into())
        .with_type("bench.raw.v1".into())
        .with_timestamp(now.as_secs())
        .with_headers(headers)
}

async fn raw_round(
    url: &str,
    queue: &str,
    messages: usize,
    props: fn() -> BasicProperties,
) -> (f64, f64) {
    let (conn, channel) = raw_channel(url).await;
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
        .unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let queue_options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), queue_options, args)
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.into(),
            RAW_EXCHANGE.into(),
            "bench.raw.v1".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let bodies: Vec<Vec<u8>> = (0..messages).map(payload).collect();

    let started = Instant::now();
    let mut window = std::collections::VecDeque::with_capacity(WINDOW);
    for body in &bodies {
        if window.len() == WINDOW {
            let confirm: lapin::PublisherConfirm = window.pop_front().unwrap();
            assert!(confirm.await.unwrap().is_ack());
        }
        let confirm = channel
            .basic_publish(
                RAW_EXCHANGE.into(),
                "bench.raw.v1".into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                props(),
            )
            .await
            .unwrap();
        window.push_back(confirm);
    }
    for confirm in window {
        assert!(confirm.await.unwrap().is_ack());
    }
    let publish = messages as f64 / started.elapsed().as_secs_f64();

    let consumer_channel = conn.create_channel().await.unwrap();
    consumer_channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consumer_channel
        .basic_consume(
            queue.into(),
            "raw-bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // Acks are sent without holding up the next delivery (as the chassis
    // does): awaiting each ack in the consume loop would cost one round trip
    // to the I/O loop per message.
    let counter = Counter::new(messages);
    for _ in 0..messages {
        let delivery = consumer.next().await.unwrap().unwrap();
        counter.started();
        let counter = counter.clone();
        tokio::spawn(async move {
            delivery.ack(BasicAckOptions::default()).await.unwrap();
            counter.done();
        });
    }
    let consume = counter.rate().await;
    channel
        .queue_delete(queue.into(), Default::default())
        .await
        .unwrap();
    conn.close(200, "bench done".into()).await.unwrap();
    (publish, consume)
}

/// Counts handled messages; remembers when the first and the last were seen.
struct Counter {
    expected: usize,
    handled: AtomicUsize,
    first: std::sync::OnceLock<Instant>,
    last: std::sync::OnceLock<Instant>,
    all_done: Notify,
}

impl Counter {
    fn new(expected: usize) -> Arc<Self> {
        Arc::new(Self {
            expected,
            handled: AtomicUsize::new(0),
            first: std::sync::OnceLock::new(),
            last: std::sync::OnceLock::new(),
            all_done: Notify::new(),
        })
    }

    fn started(&self) {
        self.first.get_or_init(Instant::now);
    }

    fn done(&self) {
        if self.handled.fetch_add(1, Ordering::Relaxed) + 1 == self.expected {
            self.last.get_or_init(Instant::now);
            self.all_done.notify_one();
        }
    }

    /// Messages per second from the first delivery to the last one handled.
    async fn rate(&self) -> f64 {
        tokio::time::timeout(Duration::from_secs(120), self.all_done.notified())
            .await
            .expect("every message consumed");
        let took = *self.last.get().unwrap() - *self.first.get().unwrap();
        self.expected as f64 / took.as_secs_f64()
    }
}

#[async_trait::async_trait]
impl MessageHandler for Counter {
    async fn handle(&self, _delivery: &Delivery) -> Result<(), HandlerError> {
        self.started();
        self.done();
        Ok(())
    }
}

async fn chassis_round(config: &common::TestConfig, group: &str, messages: usize) -> (f64, f64) {
    // One event type per round: earlier rounds' queues must not get copies.
    let event_type = format!("bench.{group}.v1");
    let counter = Counter::new(messages);
    let handlers = Handlers::new().on_raw(event_type.as_str(), counter.clone());
    // Declare the group's queue and bindings, then stop consuming so the
    // publish phase fills the queue.
    let setup = config.connect("bench").await.unwrap();
    setup
        .subscribe(Subscription::new(group, handlers.clone()))
        .await
        .unwrap();
    setup.shutdown().await.unwrap();

    let publisher = config.connect("bench").await.unwrap();
    let envelopes: Vec<Envelope> = (0..messages)
        .map(|n| Envelope::new(event_type.as_str(), JSON_CONTENT_TYPE, payload(n)))
        .collect();
    let started = Instant::now();
    publisher.publish_all(envelopes).await.unwrap();
    let publish = messages as f64 / started.elapsed().as_secs_f64();

    let consumer = config.connect("bench").await.unwrap();
    consumer
        .subscribe(Subscription::new(group, handlers))
        .await
        .unwrap();
    let consume = counter.rate().await;
    consumer.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
    delete_group_queues(config, group).await;
    (publish, consume)
}

async fn delete_group_queues(config: &common::TestConfig, group: &str) {
    let (conn, channel) = raw_channel(config.rabbitmq.url.expose()).await;
    let queues = common::group_queues(config, group);
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await
            .unwrap();
    }
    conn.close(200, "bench done".into()).await.unwrap();
}

/// Concurrent single `publish` calls sharing the bus's channel.
async fn chassis_concurrent_publish(
    config: &common::TestConfig,
    group: &str,
    messages: usize,
) -> f64 {
    let event_type = "bench.concurrent.v1";
    let setup = config.connect("bench").await.unwrap();
    setup
        .subscribe(Subscription::new(
            group,
            Handlers::new().on_raw(
                event_type,
                Arc::new(common::FnHandler(|_| async { Ok(()) })),
            ),
        ))
        .await
        .unwrap();
    setup.shutdown().await.unwrap();
    let bus = config.connect("bench").await.unwrap();
    let tasks = 256;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let bus = bus.clone();
        handles.push(tokio::spawn(async move {
            for n in (t..messages).step_by(tasks) {
                bus.publish(Envelope::new(event_type, JSON_CONTENT_TYPE, payload(n)))
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    bus.shutdown().await.unwrap();
    delete_group_queues(config, group).await;
    rate
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // Without `--bench` (`cargo test --benches`, CI): a smoke run of seconds.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let messages = env_usize("BENCH_MESSAGES", if smoke { 200 } else { 20_000 });
    let rounds = env_usize("BENCH_ROUNDS", if smoke { 1 } else { 5 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let vhost = Vhost::new();
    let mut config = vhost.config(QueueType::Quorum);
    config.prefetch = PREFETCH;
    config.concurrency = 64;
    let results: Vec<Round> = runtime.block_on(async {
        let mut results = Vec::new();
        for round in 0..rounds {
            let url = vhost.url();
            let bare_queue = format!("raw-bare-{round}");
            let same_queue = format!("raw-same-{round}");
            let previous_queue = format!("raw-previous-{round}");
            let group = format!("chassis-{round}");
            // Rotate who goes first so drift in the machine's load hits all.
            let mut r = Round {
                bare: (0.0, 0.0),
                same_bytes: (0.0, 0.0),
                previous_bytes: (0.0, 0.0),
                chassis: (0.0, 0.0),
            };
            for step in 0..4 {
                match (round + step) % 4 {
                    0 => r.bare = raw_round(&url, &bare_queue, messages, bare_props).await,
                    1 => {
                        r.same_bytes = raw_round(&url, &same_queue, messages, envelope_props).await
                    }
                    2 => {
                        r.previous_bytes =
                            raw_round(&url, &previous_queue, messages, previous_props).await
                    }
                    _ => r.chassis = chassis_round(&config, &group, messages).await,
                }
            }
            println!(
                "round {round}: publish raw {:.0}/s, raw same bytes {:.0}/s, raw previous bytes \
                 {:.0}/s, chassis {:.0}/s; consume raw {:.0}/s, raw same bytes {:.0}/s, raw \
                 previous bytes {:.0}/s, chassis {:.0}/s",
                r.bare.0,
                r.same_bytes.0,
                r.previous_bytes.0,
                r.chassis.0,
                r.bare.1,
                r.same_bytes.1,
                r.previous_bytes.1,
                r.chassis.1
            );
            results.push(r);
        }
        results
    });
    let concurrent = runtime.block_on(chassis_concurrent_publish(&config, "concurrent", messages));
    let pick = |f: &dyn Fn(&Round) -> f64| median(results.iter().map(f).collect());
    println!();
    println!(
        "{messages} messages of 200 bytes, persistent, quorum queue, median of {rounds} rounds; \
         ratio = median of the per-round ratios chassis / raw"
    );
    println!(
        "raw = bare lapin message (delivery mode, content type); raw same bytes = lapin sending the chassis envelope's properties and headers (CloudEvents); previous bytes = the previous release's (chassis-* headers)"
    );
    for (what, get) in [
        (
            "publish with confirms (1000 in flight)",
            &(|p: (f64, f64)| p.0) as &dyn Fn((f64, f64)) -> f64,
        ),
        ("consume (manual ack, prefetch 500)    ", &|p: (
            f64,
            f64,
        )| p.1),
    ] {
        println!(
            "{what}: raw {:>6.0}/s | raw same bytes {:>6.0}/s | raw previous bytes {:>6.0}/s | chassis {:>6.0}/s | ratio vs raw {:.2} | vs raw same bytes {:.2} | same bytes vs previous bytes {:.2}",
            pick(&|r| get(r.bare)),
            pick(&|r| get(r.same_bytes)),
            pick(&|r| get(r.previous_bytes)),
            pick(&|r| get(r.chassis)),
            pick(&|r| get(r.chassis) / get(r.bare)),
            pick(&|r| get(r.chassis) / get(r.same_bytes)),
            pick(&|r| get(r.same_bytes) / get(r.previous_bytes)),
        );
    }
    println!(
        "chassis publish from 256 concurrent tasks (one shared channel): {concurrent:.0} msg/s"
    );
    drop(runtime);
}

//! Publish-with-stream-acks and consume-with-acks throughput through the
//! chassis provider, next to raw async-nats doing the same work in the same
//! run (the server is another process: the local nats-server).
//!
//! ```text
//! cargo bench -p messaging-nats --bench throughput                  # 20000 messages, 5 rounds
//! BENCH_SMOKE=1 cargo bench -p messaging-nats --bench throughput    # 500 messages, 1 round
//! cargo test -p messaging-nats --benches                            # the same smoke run
//! BENCH_MESSAGES=50000 BENCH_ROUNDS=7 cargo bench -p messaging-nats --bench throughput
//! ```
//!
//! Work: 200-byte messages into a file-storage stream, 256 PubAcks in
//! flight (`publish_all` for the chassis, the same window for raw), then one
//! durable pull consumer acking each message (batches of 500; the chassis
//! with prefetch 500 and concurrency 64; rate from the first delivery to the
//! last). Sides alternate their order each round; each round uses fresh
//! streams. Medians, min–max and per-round ratios are printed.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use messaging_abstractions::{
    Delivery, Envelope, EventBus, EventBusExt, HandlerError, Handlers, JSON_CONTENT_TYPE,
    MessageHandler, Subscription,
};
use messaging_nats::NatsBus;
use tokio::sync::Notify;

const WINDOW: usize = 256;
const BATCH: usize = 500;

fn payload(n: usize) -> Vec<u8> {
    let mut body = format!("{{\"seq\":{n},\"pad\":\"").into_bytes();
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

async fn raw_round(prefix: &str, messages: usize) -> (f64, f64) {
    let client = async_nats::connect(common::URL).await.unwrap();
    let js = jetstream::new(client);
    let name = format!("{prefix}_raw");
    let stream = js
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.raw.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .get_or_create_consumer(
            "raw",
            pull::Config {
                durable_name: Some("raw".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let subject = format!("{prefix}.raw.bench.v1");
    let started = Instant::now();
    let mut window = VecDeque::new();
    for n in 0..messages {
        window.push_back(
            js.publish(subject.clone(), Bytes::from(payload(n)))
                .await
                .unwrap(),
        );
        if window.len() >= WINDOW {
            window.pop_front().unwrap().await.unwrap();
        }
    }
    for ack in window {
        ack.await.unwrap();
    }
    let publish = messages as f64 / started.elapsed().as_secs_f64();
    let mut pulled = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .messages()
        .await
        .unwrap();
    let mut first = None;
    for _ in 0..messages {
        let message = pulled.next().await.unwrap().unwrap();
        first.get_or_insert_with(Instant::now);
        message.ack().await.unwrap();
    }
    let consume = messages as f64 / first.unwrap().elapsed().as_secs_f64();
    js.delete_stream(&name).await.unwrap();
    (publish, consume)
}

struct Counter {
    expected: usize,
    handled: AtomicUsize,
    first: std::sync::Mutex<Option<Instant>>,
    done: Notify,
}

#[async_trait]
impl MessageHandler for Counter {
    async fn handle(&self, _delivery: &Delivery) -> Result<(), HandlerError> {
        self.first.lock().unwrap().get_or_insert_with(Instant::now);
        if self.handled.fetch_add(1, Ordering::AcqRel) + 1 == self.expected {
            self.done.notify_one();
        }
        Ok(())
    }
}

async fn chassis_round(prefix: &common::Prefix, messages: usize) -> (f64, f64) {
    let mut messaging = prefix.messaging();
    messaging.prefetch = BATCH as u16;
    messaging.concurrency = 64;
    let nats = prefix.nats();
    let publisher = NatsBus::connect(&messaging, &nats, "bench-publisher")
        .await
        .unwrap();
    let consumer = NatsBus::connect(&messaging, &nats, "bench-consumer")
        .await
        .unwrap();
    let counter = Arc::new(Counter {
        expected: messages,
        handled: AtomicUsize::new(0),
        first: std::sync::Mutex::new(None),
        done: Notify::new(),
    });
    let envelopes: Vec<Envelope> = (0..messages)
        .map(|n| Envelope::new("bench.message.v1", JSON_CONTENT_TYPE, payload(n)))
        .collect();
    // The group's consumer is made before the publish (like the raw side's:
    // a new group starts with what comes after it), then its bus stops so
    // publishing and consuming are measured apart, as on the raw side.
    consumer
        .subscribe(Subscription::new(
            "bench",
            Handlers::new().on_raw("bench.message.v1", counter.clone()),
        ))
        .await
        .unwrap();
    consumer.shutdown().await.unwrap();
    let started = Instant::now();
    publisher.publish_all(envelopes).await.unwrap();
    let publish = messages as f64 / started.elapsed().as_secs_f64();
    let consumer = NatsBus::connect(&messaging, &nats, "bench-consumer")
        .await
        .unwrap();
    let done = counter.done.notified();
    consumer
        .subscribe(Subscription::new(
            "bench",
            Handlers::new().on_raw("bench.message.v1", counter.clone()),
        ))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(120), done)
        .await
        .unwrap();
    let first = counter.first.lock().unwrap().unwrap();
    let consume = messages as f64 / first.elapsed().as_secs_f64();
    consumer.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
    prefix.delete_streams().await;
    (publish, consume)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn describe(what: &str, values: &[f64]) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    println!(
        "{what:32} median {:>9.0}  min–max {min:.0}–{max:.0}",
        median(values.to_vec())
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and
    // only wants to know the bench builds and runs end to end.
    let benching = std::env::args().any(|a| a == "--bench");
    let smoke = !benching || std::env::var("BENCH_SMOKE").is_ok();
    let messages = env_usize("BENCH_MESSAGES", if smoke { 500 } else { 20_000 });
    let rounds = env_usize("BENCH_ROUNDS", if smoke { 1 } else { 5 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{messages} messages x {rounds} rounds; load before: {}",
        loadavg.trim()
    );
    let (mut raw, mut chassis) = (Vec::new(), Vec::new());
    runtime.block_on(async {
        for round in 0..rounds {
            let prefix = common::Prefix::new("bench");
            let (r, c) = if round % 2 == 0 {
                let r = raw_round(&prefix.name, messages).await;
                (r, chassis_round(&prefix, messages).await)
            } else {
                let c = chassis_round(&prefix, messages).await;
                (raw_round(&prefix.name, messages).await, c)
            };
            println!(
                "round {round}: raw {:.0}/{:.0} msg/s, chassis {:.0}/{:.0} msg/s (publish/consume)",
                r.0, r.1, c.0, c.1
            );
            raw.push(r);
            chassis.push(c);
        }
    });
    let pick = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).collect::<Vec<_>>();
    describe("raw publish (msg/s)", &pick(&raw, |r| r.0));
    describe("chassis publish (msg/s)", &pick(&chassis, |r| r.0));
    describe("raw consume (msg/s)", &pick(&raw, |r| r.1));
    describe("chassis consume (msg/s)", &pick(&chassis, |r| r.1));
    let ratios = |f: fn(&(f64, f64)) -> f64| {
        raw.iter()
            .zip(&chassis)
            .map(|(r, c)| f(c) / f(r))
            .collect::<Vec<_>>()
    };
    describe(
        "publish ratio chassis/raw (x1000)",
        &ratios(|r| r.0)
            .iter()
            .map(|x| x * 1000.0)
            .collect::<Vec<_>>(),
    );
    describe(
        "consume ratio chassis/raw (x1000)",
        &ratios(|r| r.1)
            .iter()
            .map(|x| x * 1000.0)
            .collect::<Vec<_>>(),
    );
    println!(
        "load after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}

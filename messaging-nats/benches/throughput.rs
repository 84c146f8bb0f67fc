//! Publish with stream acks and consume with acks through the chassis
//! provider, next to raw async-nats doing the same work in the same run,
//! each measured **from outside**: the measured side is a process of its
//! own (this binary run as `throughput --role …`, see
//! `chassis_testing::bench`), the server is the local nats-server.
//!
//! Five sides: `raw` (async-nats with a bare 200-byte payload, what the
//! goal is judged against), `raw+ce` (async-nats with the very bytes the
//! chassis puts on the wire in the binary content mode: the payload and its
//! CloudEvents `ce-` headers), `chassis` (the provider, binary mode), and
//! the same two in the structured content mode: `raw+ce/structured`
//! (async-nats sending chassis events as JSON bodies with their one
//! `Content-Type` header, the bodies made before the clock starts) and
//! `chassis/structured`. `raw` → `raw+ce…` is the cost of the wire format;
//! `raw+ce…` → `chassis…` the provider's own code.
//!
//! - **publish**: the worker publishes N messages (200-byte JSON payload)
//!   to a file-storage stream with 256 PubAcks in flight and waits for the
//!   last; raw: `jetstream::Context::publish` of the bare payload; raw+ce:
//!   `publish_with_headers` of a copy of a chassis message's headers with a
//!   fresh `ce-id` each; chassis: `publish_all` of N envelopes.
//! - **consume**: a separate process pre-fills the stream with N messages
//!   (bare payloads for raw, chassis events in the side's content mode for
//!   the others);
//!   then the worker consumes and acks them all (pull batches of 500); raw
//!   and raw+ce: `messages()` and `ack()` per message; chassis: a
//!   subscription with prefetch 500 and concurrency 64, timed
//!   from `subscribe` until every handler returned and `stop_consuming`
//!   drained them (their acks sent). After the timing the worker checks the
//!   server has nothing pending or unacked.
//!
//! Each round measures every side in turn (the order reversed every other
//! round), each on fresh streams; per side the median and min–max of msg/s
//! and of the worker's CPU µs per message (utime + stime from /proc), and
//! the load average before each measurement.
//!
//! ```text
//! cargo bench -p messaging-nats --bench throughput
//! BENCH_MESSAGES=50000 BENCH_ROUNDS=7 BENCH_QUIET_WAIT=5 cargo bench -p messaging-nats --bench throughput
//! cargo test -p messaging-nats --benches     # smoke: 300 messages, 1 round, nothing timed
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use async_trait::async_trait;
use bytes::Bytes;
use chassis_testing::bench::{self, Rounds, Worker};
use chassis_testing::nats::{LOCAL_URL, StreamPrefix};
use futures::{StreamExt, TryStreamExt};
use messaging_abstractions::cloudevents::{self, ContentMode};
use messaging_abstractions::{
    Delivery, Envelope, EventBus, EventBusExt, HandlerError, Handlers, JSON_CONTENT_TYPE,
    MessageHandler, MessagingConfig, Subscription,
};
use messaging_nats::{NatsBus, NatsConfig};
use tokio::sync::Notify;

const WINDOW: usize = 256;
const BATCH: usize = 500;
const EVENT_TYPE: &str = "bench.message.v1";
const SIDES: [&str; 5] = [
    "raw",
    "raw+ce",
    "chassis",
    "raw+ce/structured",
    "chassis/structured",
];

/// The content mode a side writes (and a fill kind fills with).
fn mode(side: &str) -> ContentMode {
    if side.ends_with("/structured") {
        ContentMode::Structured
    } else {
        ContentMode::Binary
    }
}

fn payload(n: usize) -> Vec<u8> {
    let mut body = format!("{{\"seq\":{n},\"pad\":\"").into_bytes();
    body.resize(198, b'x');
    body.extend_from_slice(b"\"}");
    body
}

fn messaging() -> MessagingConfig {
    MessagingConfig {
        provider: "nats".into(),
        prefetch: BATCH as u16,
        concurrency: 64,
        ..MessagingConfig::default()
    }
}

fn nats(prefix: &str, content_mode: ContentMode) -> NatsConfig {
    NatsConfig {
        url: LOCAL_URL.into(),
        subject_prefix: prefix.to_owned(),
        content_mode,
        ..NatsConfig::default()
    }
}

/// The stream the chassis makes for namespace `bench` of `prefix`, made
/// the same way by the raw side.
fn stream_config(prefix: &str) -> stream::Config {
    stream::Config {
        name: format!("{prefix}_events_bench"),
        subjects: vec![format!("{prefix}.bench.>")],
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

fn subject(prefix: &str) -> String {
    format!("{prefix}.{EVENT_TYPE}")
}

fn envelopes(messages: usize) -> Vec<Envelope> {
    (0..messages)
        .map(|n| Envelope::new(EVENT_TYPE, JSON_CONTENT_TYPE, payload(n)))
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
    let mut rounds = Rounds::from_env(&SIDES);
    println!(
        "# messaging-nats: {messages} messages of 200 bytes per measurement; {}",
        rounds.describe()
    );
    let n = messages.to_string();
    for round in 0..rounds.count() {
        for operation in ["publish", "consume"] {
            for side in rounds.order(round) {
                let quiet = rounds.wait_for_quiet();
                let prefix = StreamPrefix::on("bench", LOCAL_URL);
                let mut worker = Worker::start(&[operation, SIDES[side], &prefix.name, &n]);
                if operation == "consume" {
                    let kind = match mode(SIDES[side]) {
                        _ if SIDES[side] == "raw" => "bare",
                        ContentMode::Binary => "chassis",
                        ContentMode::Structured => "chassis/structured",
                    };
                    bench::run(&["fill", kind, &prefix.name, &n]);
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
        ("publish", [side, prefix, n]) => publish(side, prefix, n.parse().expect("count")).await,
        ("consume", [side, prefix, n]) => consume(side, prefix, n.parse().expect("count")).await,
        ("fill", [kind, prefix, n]) => {
            let messages = n.parse().expect("count");
            if kind == "bare" {
                let js = jetstream::new(async_nats::connect(LOCAL_URL).await.expect("connect"));
                js.get_or_create_stream(stream_config(prefix))
                    .await
                    .expect("stream");
                let bodies = (0..messages).map(|n| Bytes::from(payload(n))).collect();
                publish_raw(&js, prefix, bodies, &Headers::None).await;
                return;
            }
            let bus = NatsBus::connect(&messaging(), &nats(prefix, mode(kind)), "bench-fill")
                .await
                .expect("connect");
            bus.publish_all(envelopes(messages)).await.expect("fill");
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

async fn publish(side: &str, prefix: &str, messages: usize) {
    let client = async_nats::connect(LOCAL_URL).await.expect("connect");
    let js = jetstream::new(client);
    let took = match side {
        "raw" | "raw+ce" | "raw+ce/structured" => {
            js.get_or_create_stream(stream_config(prefix))
                .await
                .expect("stream");
            let subject = subject(prefix);
            // Warm-up: the connection and the stream's first write; for
            // raw+ce…, also the headers of a message the chassis published.
            let (headers, bodies): (_, Vec<Bytes>) = match side {
                "raw" => {
                    js.publish(subject.clone(), Bytes::from(payload(0)))
                        .await
                        .expect("publish")
                        .await
                        .expect("ack");
                    let bodies = (0..messages).map(|n| Bytes::from(payload(n))).collect();
                    (Headers::None, bodies)
                }
                "raw+ce" => {
                    let headers = chassis_headers(prefix, ContentMode::Binary).await;
                    let bodies = (0..messages).map(|n| Bytes::from(payload(n))).collect();
                    (Headers::FreshId(headers), bodies)
                }
                _ => {
                    let headers = chassis_headers(prefix, ContentMode::Structured).await;
                    let bodies = envelopes(messages)
                        .iter()
                        .map(|e| Bytes::from(cloudevents::to_structured(e, "bench-publish")))
                        .collect();
                    (Headers::Same(headers), bodies)
                }
            };
            bench::ready();
            let started = Instant::now();
            publish_raw(&js, prefix, bodies, &headers).await;
            started.elapsed()
        }
        "chassis" | "chassis/structured" => {
            let bus = NatsBus::connect(&messaging(), &nats(prefix, mode(side)), "bench-publish")
                .await
                .expect("connect");
            // Warm-up: the stream made and known, the connection used.
            bus.publish(Envelope::new(
                "bench.warmup.v1",
                JSON_CONTENT_TYPE,
                payload(0),
            ))
            .await
            .expect("publish");
            let batch = envelopes(messages);
            bench::ready();
            let started = Instant::now();
            bus.publish_all(batch).await.expect("publish_all");
            let took = started.elapsed();
            bench::done(messages as u64, took);
            parent_done().await;
            bus.shutdown().await.expect("shutdown");
            check_stored(&js, prefix, messages + 1).await;
            return;
        }
        other => panic!("unknown side {other}"),
    };
    bench::done(messages as u64, took);
    parent_done().await;
    check_stored(&js, prefix, messages + 1).await;
}

/// The headers the raw side sends with each message.
enum Headers {
    /// None: a bare payload.
    None,
    /// A copy of these with a fresh `ce-id` each (what any producer of
    /// binary-mode events does per message).
    FreshId(async_nats::HeaderMap),
    /// A copy of these (structured mode: the id is in the body).
    Same(async_nats::HeaderMap),
}

/// Publishes `bodies` with raw async-nats, `WINDOW` PubAcks in
/// flight, until the last is acked.
async fn publish_raw(js: &jetstream::Context, prefix: &str, bodies: Vec<Bytes>, headers: &Headers) {
    let subject = subject(prefix);
    let mut window = std::collections::VecDeque::with_capacity(WINDOW);
    for body in bodies {
        if window.len() == WINDOW {
            let ack: jetstream::context::PublishAckFuture = window.pop_front().unwrap();
            ack.await.expect("PubAck");
        }
        let ack = match headers {
            Headers::None => js.publish(subject.clone(), body).await,
            Headers::FreshId(headers) => {
                let mut headers = headers.clone();
                headers.insert("ce-id", uuid::Uuid::now_v7().to_string().as_str());
                js.publish_with_headers(subject.clone(), headers, body)
                    .await
            }
            Headers::Same(headers) => {
                js.publish_with_headers(subject.clone(), headers.clone(), body)
                    .await
            }
        };
        window.push_back(ack.expect("publish"));
    }
    for ack in window {
        ack.await.expect("PubAck");
    }
}

/// The headers of one message published by the chassis in `mode` (it goes
/// to the stream, as the raw warm-up message does), read off a core
/// subscription.
async fn chassis_headers(prefix: &str, mode: ContentMode) -> async_nats::HeaderMap {
    let client = async_nats::connect(LOCAL_URL).await.expect("connect");
    let mut seen = client.subscribe(subject(prefix)).await.expect("subscribe");
    client.flush().await.expect("flush");
    let bus = NatsBus::connect(&messaging(), &nats(prefix, mode), "bench-publish")
        .await
        .expect("connect");
    bus.publish(Envelope::new(EVENT_TYPE, JSON_CONTENT_TYPE, payload(0)))
        .await
        .expect("publish");
    bus.shutdown().await.expect("shutdown");
    let message = tokio::time::timeout(Duration::from_secs(10), seen.next())
        .await
        .expect("the chassis message arrives")
        .expect("subscription open");
    message.headers.expect("a chassis message has headers")
}

/// The stream holds what was published.
async fn check_stored(js: &jetstream::Context, prefix: &str, expected: usize) {
    let mut stream = js
        .get_stream(format!("{prefix}_events_bench"))
        .await
        .expect("stream");
    let stored = stream.info().await.expect("stream info").state.messages;
    assert_eq!(stored, expected as u64, "messages stored");
}

/// Counts handled messages.
struct Counter {
    expected: usize,
    handled: AtomicUsize,
    all: Notify,
}

#[async_trait]
impl MessageHandler for Counter {
    async fn handle(&self, _delivery: &Delivery) -> Result<(), HandlerError> {
        if self.handled.fetch_add(1, Ordering::AcqRel) + 1 == self.expected {
            self.all.notify_one();
        }
        Ok(())
    }
}

async fn consume(side: &str, prefix: &str, messages: usize) {
    let client = async_nats::connect(LOCAL_URL).await.expect("connect");
    let js = jetstream::new(client);
    let took = match side {
        "raw" | "raw+ce" | "raw+ce/structured" => {
            let stream = js
                .get_or_create_stream(stream_config(prefix))
                .await
                .expect("stream");
            let consumer: jetstream::consumer::PullConsumer = stream
                .get_or_create_consumer(
                    "raw",
                    pull::Config {
                        durable_name: Some("raw".into()),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        filter_subject: subject(prefix),
                        max_ack_pending: 1000,
                        ..Default::default()
                    },
                )
                .await
                .expect("consumer");
            bench::ready();
            let started = Instant::now();
            let mut pulled = consumer
                .stream()
                .max_messages_per_batch(BATCH)
                .messages()
                .await
                .expect("pull");
            for _ in 0..messages {
                let message = pulled.next().await.expect("a message").expect("pulled");
                message.ack().await.expect("ack");
            }
            started.elapsed()
        }
        "chassis" | "chassis/structured" => {
            let counter = Arc::new(Counter {
                expected: messages,
                handled: AtomicUsize::new(0),
                all: Notify::new(),
            });
            let subscription =
                || Subscription::new("bench", Handlers::new().on_raw(EVENT_TYPE, counter.clone()));
            // The group's consumer exists before the fill (a new group
            // starts with what comes after it); this bus then stops.
            let setup = NatsBus::connect(&messaging(), &nats(prefix, mode(side)), "bench-consume")
                .await
                .expect("connect");
            setup.subscribe(subscription()).await.expect("subscribe");
            setup.shutdown().await.expect("shutdown");
            let bus = NatsBus::connect(&messaging(), &nats(prefix, mode(side)), "bench-consume")
                .await
                .expect("connect");
            bench::ready();
            let started = Instant::now();
            let all = counter.all.notified();
            bus.subscribe(subscription()).await.expect("subscribe");
            tokio::time::timeout(Duration::from_secs(300), all)
                .await
                .expect("every message handled");
            bus.stop_consuming(Duration::from_secs(30))
                .await
                .expect("drained");
            let took = started.elapsed();
            bench::done(messages as u64, took);
            parent_done().await;
            bus.shutdown().await.expect("shutdown");
            check_settled(&js, prefix).await;
            return;
        }
        other => panic!("unknown side {other}"),
    };
    bench::done(messages as u64, took);
    parent_done().await;
    check_settled(&js, prefix).await;
}

/// Every consumer of the stream has delivered and had acked everything.
async fn check_settled(js: &jetstream::Context, prefix: &str) {
    let stream = js
        .get_stream(format!("{prefix}_events_bench"))
        .await
        .expect("stream");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let infos: Vec<_> = stream
            .consumers()
            .try_collect()
            .await
            .expect("consumer infos");
        let open: Vec<_> = infos
            .iter()
            .filter(|c| c.num_pending > 0 || c.num_ack_pending > 0)
            .map(|c| (c.name.clone(), c.num_pending, c.num_ack_pending))
            .collect();
        if !infos.is_empty() && open.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "consumers with messages pending or unacked: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

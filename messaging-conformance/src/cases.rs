//! The cases of the suite. Each returns `Err(what was expected)` on a broken
//! promise; the runner shuts the case's buses down, cleans up and panics.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use messaging_abstractions::request::{
    DEADLINE_HEADER, IN_REPLY_TO_HEADER, REPLY_TO_HEADER, decode_response, set_deadline,
};
use messaging_abstractions::{
    DeadLetter, DeadLetterStore, Delivery, Envelope, EventBus, EventBusExt, FailureKind,
    HandlerError, Handlers, IntegrationEvent, MessageContext, MessagingConfig, PublishError,
    Request, RequestError, Responders, Subscription,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::probe::{Probe, Recorder};
use crate::{BusFactory, Report, SuiteOptions};

type CaseResult = Result<(), String>;

const CASES: [&str; 18] = [
    "publish_subscribe",
    "fan_out",
    "competing_consumers",
    "envelope_fields",
    "retry_then_dead_letter",
    "permanent_failure",
    "malformed_payload",
    "no_loss",
    "shutdown_drains",
    "stop_consuming_keeps_publishing",
    "per_key_order",
    "request_response",
    "request_no_responder",
    "request_timeout",
    "request_failure",
    "request_expired",
    "request_duplicate",
    "request_concurrent",
];

pub(crate) async fn run_all<F: BusFactory>(
    factory: &F,
    config: &MessagingConfig,
    options: &SuiteOptions,
) -> Report {
    // Short and unique: keeps broker object names readable and runs apart.
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut report = Report::default();
    for case in CASES {
        let mut cx = Ctx {
            factory,
            config,
            opts: options,
            run: run.clone(),
            case,
            buses: Vec::new(),
            groups: Vec::new(),
            event_types: Vec::new(),
        };
        let started = Instant::now();
        let result = match case {
            "publish_subscribe" => publish_subscribe(&mut cx).await,
            "fan_out" => fan_out(&mut cx).await,
            "competing_consumers" => competing_consumers(&mut cx).await,
            "envelope_fields" => envelope_fields(&mut cx).await,
            "retry_then_dead_letter" => retry_then_dead_letter(&mut cx).await,
            "permanent_failure" => permanent_failure(&mut cx).await,
            "malformed_payload" => malformed_payload(&mut cx).await,
            "no_loss" => no_loss(&mut cx).await,
            "shutdown_drains" => shutdown_drains(&mut cx).await,
            "stop_consuming_keeps_publishing" => stop_consuming_keeps_publishing(&mut cx).await,
            "per_key_order" => per_key_order(&mut cx).await,
            "request_response" => request_response(&mut cx).await,
            "request_no_responder" => request_no_responder(&mut cx).await,
            "request_timeout" => request_timeout(&mut cx).await,
            "request_failure" => request_failure(&mut cx).await,
            "request_expired" => request_expired(&mut cx).await,
            "request_duplicate" => request_duplicate(&mut cx).await,
            "request_concurrent" => request_concurrent(&mut cx).await,
            other => Err(format!("unknown case `{other}`")),
        };
        let closed = cx.close().await;
        if let Err(why) = result.and(closed) {
            panic!("messaging conformance case `{case}` (run {run}) failed: {why}");
        }
        report.passed.push((case, started.elapsed()));
    }
    report
}

struct Ctx<'a, F> {
    factory: &'a F,
    config: &'a MessagingConfig,
    opts: &'a SuiteOptions,
    run: String,
    case: &'static str,
    buses: Vec<Arc<dyn EventBus>>,
    groups: Vec<String>,
    event_types: Vec<String>,
}

impl<F: BusFactory> Ctx<'_, F> {
    async fn bus(&mut self) -> Result<Arc<dyn EventBus>, String> {
        let bus = self
            .factory
            .connect()
            .await
            .map_err(|e| format!("factory could not connect a bus instance: {e}"))?;
        self.buses.push(bus.clone());
        Ok(bus)
    }

    fn group(&mut self, name: &str) -> String {
        let group = format!("conf-{}-{}-{name}", self.run, self.case);
        self.groups.push(group.clone());
        group
    }

    fn event_type(&mut self, name: &str) -> String {
        let event_type = format!("conformance.{}.{}.{name}.v1", self.run, self.case);
        self.event_types.push(event_type.clone());
        event_type
    }

    fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    /// The timeout plus every backoff of a full retry cycle.
    fn retry_timeout(&self) -> Duration {
        let backoffs: Duration = (1..self.config.retry.max_attempts)
            .filter_map(|n| self.config.retry.backoff(n))
            .sum();
        self.opts.timeout + backoffs
    }

    fn store(&self, bus: &Arc<dyn EventBus>) -> Result<Arc<dyn DeadLetterStore>, String> {
        self.factory.dead_letters(bus).ok_or_else(|| {
            format!(
                "provider `{}` exposes no dead letters: `EventBus::dead_letters` returned None \
                 and the factory does not override `BusFactory::dead_letters`",
                bus.provider()
            )
        })
    }

    /// Polls the dead-letter store until the letter of `message_id` in
    /// `group` shows up.
    async fn dead_letter(
        &self,
        store: &Arc<dyn DeadLetterStore>,
        group: &str,
        message_id: Uuid,
        timeout: Duration,
    ) -> Result<DeadLetter, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let letters = store.list(Some(group)).await;
            if let Some(letter) = letters
                .into_iter()
                .find(|d| d.envelope.message_id == message_id)
            {
                return Ok(letter);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "message {message_id} was not dead-lettered in group `{group}` within {timeout:?}"
                ));
            }
            tokio::time::sleep(self.opts.poll_interval).await;
        }
    }

    /// Shuts every bus of the case down and lets the factory clean up.
    async fn close(&mut self) -> CaseResult {
        let mut failure = Ok(());
        for bus in self.buses.drain(..) {
            match tokio::time::timeout(self.opts.timeout, bus.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failure = Err(format!("shutdown at the end of the case failed: {e}")),
                Err(_) => {
                    failure = Err(format!(
                        "shutdown at the end of the case did not return within {:?}",
                        self.opts.timeout
                    ))
                }
            }
        }
        self.factory.cleanup(&self.groups, &self.event_types).await;
        failure
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ProbeEvent {
    seq: u64,
    note: String,
}

fn envelope(event_type: &str, seq: u64) -> Envelope {
    let payload = serde_json::to_vec(&ProbeEvent {
        seq,
        note: format!("conformance message {seq}"),
    })
    .expect("a struct of a number and a string always encodes");
    Envelope::new(
        event_type,
        messaging_abstractions::JSON_CONTENT_TYPE,
        payload,
    )
}

/// Decodes the probe payload the way a typed handler does: a payload that
/// does not fit is an undecodable failure.
fn decode(delivery: &Delivery) -> Result<ProbeEvent, HandlerError> {
    serde_json::from_slice(&delivery.envelope.payload).map_err(HandlerError::undecodable)
}

async fn subscribe<H>(
    bus: &Arc<dyn EventBus>,
    group: &str,
    event_type: &str,
    handler: H,
) -> CaseResult
where
    H: messaging_abstractions::MessageHandler,
{
    let handlers = Handlers::new().on_raw(event_type, Arc::new(handler));
    bus.subscribe(Subscription::new(group, handlers))
        .await
        .map_err(|e| format!("subscribing group `{group}` to `{event_type}` failed: {e}"))
}

async fn publish(bus: &Arc<dyn EventBus>, envelope: Envelope) -> CaseResult {
    let id = envelope.message_id;
    bus.publish(envelope)
        .await
        .map_err(|e| format!("publishing message {id} failed: {e}"))
}

fn ok_probe(
    consumer: usize,
    recorder: &Arc<Recorder>,
) -> Probe<impl Fn(Delivery) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static>
{
    Probe {
        consumer,
        recorder: recorder.clone(),
        f: |d: Delivery| std::future::ready(decode(&d).map(drop)),
    }
}

async fn publish_subscribe<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let bus = cx.bus().await?;
    let group = cx.group("g");
    let event_type = cx.event_type("probe");
    let recorder = Arc::new(Recorder::default());
    subscribe(&bus, &group, &event_type, ok_probe(0, &recorder)).await?;
    let sent: Vec<Envelope> = (0..5).map(|n| envelope(&event_type, n)).collect();
    for e in &sent {
        publish(&bus, e.clone()).await?;
    }
    recorder
        .wait("all 5 messages handled", cx.timeout(), |log| {
            sent.iter().all(|e| log.handled(e.message_id) > 0)
        })
        .await?;
    let log = recorder.log();
    for e in &sent {
        let record = log.deliveries(e.message_id)[0];
        let d = &record.delivery;
        if d.envelope.payload != e.payload || d.envelope.event_type != e.event_type {
            return Err(format!(
                "message {} arrived changed: payload {:?}, type `{}`",
                e.message_id,
                String::from_utf8_lossy(&d.envelope.payload),
                d.envelope.event_type
            ));
        }
        if d.group != group || d.attempt != 1 {
            return Err(format!(
                "first delivery of {} should name group `{group}` and attempt 1, got `{}` / {}",
                e.message_id, d.group, d.attempt
            ));
        }
    }
    Ok(())
}

async fn fan_out<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let (bus_a, bus_b) = (cx.bus().await?, cx.bus().await?);
    let (group_a, group_b) = (cx.group("a"), cx.group("b"));
    let event_type = cx.event_type("probe");
    let recorder = Arc::new(Recorder::default());
    subscribe(&bus_a, &group_a, &event_type, ok_probe(0, &recorder)).await?;
    subscribe(&bus_b, &group_b, &event_type, ok_probe(1, &recorder)).await?;
    let sent: Vec<Envelope> = (0..3).map(|n| envelope(&event_type, n)).collect();
    for e in &sent {
        publish(&bus_a, e.clone()).await?;
    }
    let groups = [group_a.as_str(), group_b.as_str()];
    recorder
        .wait(
            "every message handled by both groups",
            cx.timeout(),
            |log| {
                sent.iter().all(|e| {
                    groups.iter().all(|g| {
                        log.deliveries(e.message_id)
                            .iter()
                            .any(|r| r.delivery.group == *g && r.result.is_ok())
                    })
                })
            },
        )
        .await
}

async fn competing_consumers<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let (bus_a, bus_b) = (cx.bus().await?, cx.bus().await?);
    let group = cx.group("shared");
    let event_type = cx.event_type("probe");
    let recorder = Arc::new(Recorder::default());
    let timeout = cx.timeout();
    // Each instance holds every message it gets until the other instance has
    // started one. An instance holds at most `prefetch` messages, so with
    // `prefetch + 1` messages a provider that sends everything to one
    // instance still leaves the other one work, and a provider that never
    // feeds the second instance is caught as starvation.
    let starved = Arc::new(AtomicBool::new(false));
    for (consumer, bus) in [&bus_a, &bus_b].into_iter().enumerate() {
        let other = 1 - consumer;
        let probe = Probe {
            consumer,
            recorder: recorder.clone(),
            f: {
                let recorder = recorder.clone();
                let starved = starved.clone();
                move |d: Delivery| {
                    let recorder = recorder.clone();
                    let starved = starved.clone();
                    async move {
                        let waited = recorder
                            .wait("the other instance started one", timeout, |log| {
                                log.started.iter().any(|(c, _)| *c == other)
                            })
                            .await;
                        if waited.is_err() {
                            starved.store(true, Ordering::Release);
                        }
                        decode(&d).map(drop)
                    }
                }
            },
        };
        subscribe(bus, &group, &event_type, probe).await?;
    }
    let count = u64::from(cx.config.prefetch) + 1;
    let sent: Vec<Envelope> = (0..count).map(|n| envelope(&event_type, n)).collect();
    for e in &sent {
        publish(&bus_a, e.clone()).await?;
    }
    recorder
        .wait(
            &format!("all {count} messages handled by the group"),
            timeout * 2,
            |log| sent.iter().all(|e| log.handled(e.message_id) > 0),
        )
        .await?;
    if starved.load(Ordering::Acquire) {
        return Err(format!(
            "one instance of group `{group}` received nothing while the other was busy with \
             {count} messages (prefetch {}): a group's instances must share its messages",
            cx.config.prefetch
        ));
    }
    let log = recorder.log();
    let (a, b) = (log.by_consumer(0), log.by_consumer(1));
    if a == 0 || b == 0 {
        return Err(format!(
            "both instances should handle messages of group `{group}`, got A={a} B={b}"
        ));
    }
    let twice: Vec<Uuid> = sent
        .iter()
        .map(|e| e.message_id)
        .filter(|id| log.deliveries(*id).len() > 1)
        .collect();
    if !twice.is_empty() {
        return Err(format!(
            "with no failure, each message must be delivered once in a group; delivered more \
             than once: {twice:?}"
        ));
    }
    Ok(())
}

fn truncate_to_millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

async fn envelope_fields<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let bus = cx.bus().await?;
    let group = cx.group("g");
    let event_type = cx.event_type("probe");
    let recorder = Arc::new(Recorder::default());
    subscribe(&bus, &group, &event_type, ok_probe(0, &recorder)).await?;

    let mut full = envelope(&event_type, 1)
        .with_correlation_id(format!("corr-{}", Uuid::new_v4()))
        .with_header("x-tenant", "tenant-42")
        .with_header("x-unicode", "größe ✓")
        .with_header("x-empty", "")
        .with_header("x-number-like", "00042");
    full.causation_id = Some(Uuid::new_v4().to_string());
    full.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    full.tracestate = Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".into());
    full.partition_key = Some("order-7".into());
    full.content_type = "application/json; charset=utf-8".into();
    // A timestamp with sub-millisecond digits, away from "now".
    full.timestamp = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    let bare = envelope(&event_type, 2);

    for e in [&full, &bare] {
        publish(&bus, e.clone()).await?;
    }
    recorder
        .wait("both messages handled", cx.timeout(), |log| {
            log.handled(full.message_id) > 0 && log.handled(bare.message_id) > 0
        })
        .await?;
    let log = recorder.log();
    for sent in [&full, &bare] {
        let got = &log.deliveries(sent.message_id)[0].delivery.envelope;
        let mut diffs = Vec::new();
        macro_rules! same {
            ($field:ident) => {
                if got.$field != sent.$field {
                    diffs.push(format!(
                        "{}: sent {:?}, received {:?}",
                        stringify!($field),
                        sent.$field,
                        got.$field
                    ));
                }
            };
        }
        same!(message_id);
        same!(event_type);
        same!(correlation_id);
        same!(causation_id);
        same!(traceparent);
        same!(tracestate);
        same!(content_type);
        same!(partition_key);
        same!(payload);
        if truncate_to_millis(got.timestamp) != truncate_to_millis(sent.timestamp) {
            diffs.push(format!(
                "timestamp: sent {:?}, received {:?} (must match to the millisecond)",
                sent.timestamp, got.timestamp
            ));
        }
        for (name, value) in &sent.headers {
            if got.headers.get(name) != Some(value) {
                diffs.push(format!(
                    "header `{name}`: sent {value:?}, received {:?}",
                    got.headers.get(name)
                ));
            }
        }
        if !diffs.is_empty() {
            return Err(format!(
                "envelope of message {} not preserved: {}",
                sent.message_id,
                diffs.join("; ")
            ));
        }
    }
    Ok(())
}

async fn retry_then_dead_letter<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let bus = cx.bus().await?;
    let store = cx.store(&bus)?;
    let group = cx.group("g");
    let event_type = cx.event_type("probe");
    let recorder = Arc::new(Recorder::default());
    let healed = Arc::new(AtomicBool::new(false));
    let probe = Probe {
        consumer: 0,
        recorder: recorder.clone(),
        f: {
            let healed = healed.clone();
            move |d: Delivery| {
                let result = if healed.load(Ordering::Acquire) {
                    Ok(())
                } else {
                    Err(HandlerError::retryable(format!(
                        "conformance failure on attempt {}",
                        d.attempt
                    )))
                };
                std::future::ready(result)
            }
        },
    };
    subscribe(&bus, &group, &event_type, probe).await?;
    let sent = envelope(&event_type, 1);
    publish(&bus, sent.clone()).await?;
    let max = cx.config.retry.max_attempts;
    let letter = cx
        .dead_letter(&store, &group, sent.message_id, cx.retry_timeout())
        .await?;

    let mut deliveries: Vec<(u32, Instant)> = recorder
        .log()
        .deliveries(sent.message_id)
        .iter()
        .map(|r| (r.delivery.attempt, r.at))
        .collect();
    deliveries.sort_by_key(|(_, at)| *at);
    let attempts: Vec<u32> = deliveries.iter().map(|(n, _)| *n).collect();
    let expected: Vec<u32> = (1..=max).collect();
    if attempts != expected {
        return Err(format!(
            "a message failing retryably should be delivered with attempts {expected:?} \
             (retry.max_attempts = {max}), got {attempts:?}"
        ));
    }
    for pair in deliveries.windows(2) {
        let (attempt, first) = pair[0];
        let gap = pair[1].1 - first;
        let backoff = cx.config.retry.backoff(attempt).unwrap_or_default();
        // Timer granularity may shave a little off; a missing backoff does not pass.
        if gap * 10 < backoff * 9 {
            return Err(format!(
                "retry after attempt {attempt} came after {gap:?}, expected a backoff of {backoff:?}"
            ));
        }
    }
    let expected_reason = format!("conformance failure on attempt {max}");
    if letter.kind != FailureKind::Retryable
        || letter.attempts != max
        || !letter.reason.contains(&expected_reason)
        || letter.group != group
        || letter.envelope.payload != sent.payload
        || letter.envelope.event_type != sent.event_type
    {
        return Err(format!(
            "dead letter should record group `{group}`, kind retryable, {max} attempts, a reason \
             containing {expected_reason:?} and the original message; got group `{}`, kind {}, \
             {} attempts, reason {:?}",
            letter.group,
            letter.kind.as_str(),
            letter.attempts,
            letter.reason
        ));
    }

    // Replay: the letter leaves the store and is delivered again.
    healed.store(true, Ordering::Release);
    match store.replay(letter.id).await {
        Ok(true) => {}
        other => {
            return Err(format!(
                "replay of dead letter {} returned {other:?}",
                letter.id
            ));
        }
    }
    recorder
        .wait("the replayed message handled", cx.timeout(), |log| {
            log.handled(sent.message_id) > 0
        })
        .await?;
    if store
        .list(Some(&group))
        .await
        .iter()
        .any(|d| d.id == letter.id)
    {
        return Err(format!(
            "dead letter {} still listed after replay",
            letter.id
        ));
    }
    match store.replay(letter.id).await {
        Ok(false) => Ok(()),
        other => Err(format!(
            "a second replay of dead letter {} should return Ok(false), got {other:?}",
            letter.id
        )),
    }
}

/// Publishes one message (with `payload` instead of the probe's when given)
/// to a handler that fails it for good, and checks it is dead-lettered with
/// `expected` after a single delivery.
async fn dead_lettered_at_once<F: BusFactory>(
    cx: &mut Ctx<'_, F>,
    payload: Option<&[u8]>,
    expected: FailureKind,
) -> CaseResult {
    let bus = cx.bus().await?;
    let store = cx.store(&bus)?;
    let group = cx.group("g");
    let event_type = cx.event_type("probe");
    let recorder = Arc::new(Recorder::default());
    let probe = Probe {
        consumer: 0,
        recorder: recorder.clone(),
        f: |d: Delivery| {
            let result = decode(&d).and(Err(HandlerError::permanent(
                "conformance: this order can never be shipped",
            )));
            std::future::ready(result)
        },
    };
    subscribe(&bus, &group, &event_type, probe).await?;
    let mut sent = envelope(&event_type, 1);
    if let Some(payload) = payload {
        sent.payload = payload.to_vec();
    }
    publish(&bus, sent.clone()).await?;
    let letter = cx
        .dead_letter(&store, &group, sent.message_id, cx.timeout())
        .await?;
    let deliveries = recorder.log().deliveries(sent.message_id).len();
    if deliveries != 1 || letter.attempts != 1 {
        return Err(format!(
            "a {} failure must be dead-lettered without retries: {deliveries} deliveries, \
             dead letter says {} attempt(s)",
            expected.as_str(),
            letter.attempts
        ));
    }
    if letter.kind != expected || letter.reason.is_empty() {
        return Err(format!(
            "dead letter should have kind {} and a reason, got kind {} and reason {:?}",
            expected.as_str(),
            letter.kind.as_str(),
            letter.reason
        ));
    }
    if letter.envelope.payload != sent.payload {
        return Err("the dead letter must keep the original payload bytes".into());
    }
    Ok(())
}

async fn permanent_failure<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    dead_lettered_at_once(cx, None, FailureKind::Permanent).await
}

async fn malformed_payload<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    dead_lettered_at_once(
        cx,
        Some(b"{\"seq\": \"not a number\"".as_slice()),
        FailureKind::Undecodable,
    )
    .await
}

async fn no_loss<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let (bus_a, bus_b) = (cx.bus().await?, cx.bus().await?);
    let store = cx.store(&bus_a)?;
    let group = cx.group("g");
    let event_type = cx.event_type("probe");
    let recorder = Arc::new(Recorder::default());
    // seq % 4: 0 succeeds, 1 fails once then succeeds, 2 fails for good,
    // 3 keeps failing retryably.
    let behaviour = |d: Delivery| {
        let result = decode(&d).and_then(|e| match e.seq % 4 {
            0 => Ok(()),
            1 if d.attempt > 1 => Ok(()),
            1 | 3 => Err(HandlerError::retryable("conformance: dependency down")),
            _ => Err(HandlerError::permanent("conformance: invalid order")),
        });
        std::future::ready(result)
    };
    for (consumer, bus) in [&bus_a, &bus_b].into_iter().enumerate() {
        let probe = Probe {
            consumer,
            recorder: recorder.clone(),
            f: behaviour,
        };
        subscribe(bus, &group, &event_type, probe).await?;
    }
    let sent: Vec<Envelope> = (0..16).map(|n| envelope(&event_type, n)).collect();
    for e in &sent {
        publish(&bus_a, e.clone()).await?;
    }
    let handled: BTreeSet<Uuid> = sent
        .iter()
        .filter(|e| seq_of(e) % 4 < 2)
        .map(|e| e.message_id)
        .collect();
    let dead: BTreeSet<Uuid> = sent
        .iter()
        .filter(|e| seq_of(e) % 4 >= 2)
        .map(|e| e.message_id)
        .collect();
    recorder
        .wait(
            "every succeeding message handled",
            cx.retry_timeout(),
            |log| handled.iter().all(|id| log.handled(*id) > 0),
        )
        .await?;
    let deadline = Instant::now() + cx.retry_timeout();
    loop {
        let letters: BTreeMap<Uuid, DeadLetter> = store
            .list(Some(&group))
            .await
            .into_iter()
            .map(|d| (d.envelope.message_id, d))
            .collect();
        let missing: Vec<&Uuid> = dead.iter().filter(|id| !letters.contains_key(id)).collect();
        if missing.is_empty() {
            let wrong: Vec<&Uuid> = handled
                .iter()
                .filter(|id| letters.contains_key(id))
                .collect();
            if !wrong.is_empty() {
                return Err(format!(
                    "messages handled successfully were dead-lettered: {wrong:?}"
                ));
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "messages neither handled nor dead-lettered (lost) after {:?}: {missing:?}",
                cx.retry_timeout()
            ));
        }
        tokio::time::sleep(cx.opts.poll_interval).await;
    }
}

fn seq_of(e: &Envelope) -> u64 {
    serde_json::from_slice::<ProbeEvent>(&e.payload)
        .map(|p| p.seq)
        .unwrap_or(u64::MAX)
}

/// Subscribes `group` with a handler that holds each message until
/// released, publishes one message and waits until its handler started.
/// Returns that message and the release.
async fn hold_one_in_flight<F: BusFactory>(
    cx: &Ctx<'_, F>,
    bus: &Arc<dyn EventBus>,
    group: &str,
    event_type: &str,
    recorder: &Arc<Recorder>,
) -> Result<(Envelope, Arc<Notify>), String> {
    let release = Arc::new(Notify::new());
    let probe = Probe {
        consumer: 0,
        recorder: recorder.clone(),
        f: {
            let release = release.clone();
            move |d: Delivery| {
                let release = release.clone();
                async move {
                    release.notified().await;
                    decode(&d).map(drop)
                }
            }
        },
    };
    subscribe(bus, group, event_type, probe).await?;
    let held = envelope(event_type, 1);
    publish(bus, held.clone()).await?;
    recorder
        .wait("the handler started", cx.timeout(), |log| {
            log.started.iter().any(|(_, id)| *id == held.message_id)
        })
        .await?;
    Ok((held, release))
}

/// `stop` (`shutdown` or `stop_consuming`, spawned while a handler is held)
/// must wait for the handler: not return before `release`, return `Ok`
/// soon after, with the held message handled.
async fn waits_for_the_held_handler<F: BusFactory>(
    cx: &Ctx<'_, F>,
    what: &str,
    mut stop: tokio::task::JoinHandle<Result<(), messaging_abstractions::ShutdownError>>,
    release: &Notify,
    recorder: &Recorder,
    held: &Envelope,
) -> CaseResult {
    if tokio::time::timeout(cx.opts.quiet_period, &mut stop)
        .await
        .is_ok()
    {
        return Err(format!(
            "{what} returned while a handler was still running (no drain)"
        ));
    }
    release.notify_one();
    match tokio::time::timeout(cx.timeout(), &mut stop).await {
        Err(_) => {
            return Err(format!(
                "{what} did not return within {:?} after the in-flight handler finished",
                cx.timeout()
            ));
        }
        Ok(Err(join)) => return Err(format!("{what} panicked: {join}")),
        Ok(Ok(Err(e))) => return Err(format!("{what} failed: {e}")),
        Ok(Ok(Ok(()))) => {}
    }
    if recorder.log().handled(held.message_id) != 1 {
        return Err(format!(
            "{what} returned before the in-flight handler finished"
        ));
    }
    Ok(())
}

async fn shutdown_drains<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let bus = cx.bus().await?;
    let group = cx.group("g");
    let event_type = cx.event_type("probe");
    let recorder = Arc::new(Recorder::default());
    let (slow, release) = hold_one_in_flight(cx, &bus, &group, &event_type, &recorder).await?;
    let shutdown = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.shutdown().await })
    };
    waits_for_the_held_handler(cx, "shutdown", shutdown, &release, &recorder, &slow).await?;
    if bus.publish(envelope(&event_type, 2)).await.is_ok() {
        return Err("publish after shutdown should fail, it succeeded".into());
    }
    let again = Handlers::new().on_raw(event_type.as_str(), Arc::new(ok_probe(0, &recorder)));
    if bus
        .subscribe(Subscription::new(group.as_str(), again))
        .await
        .is_ok()
    {
        return Err("subscribe after shutdown should fail, it succeeded".into());
    }
    if let Err(e) = bus.shutdown().await {
        return Err(format!(
            "a second shutdown should succeed (idempotent), got: {e}"
        ));
    }

    // The drained message was acknowledged: a new instance of the group gets
    // a later message but not the drained one again.
    let next = cx.bus().await?;
    subscribe(&next, &group, &event_type, ok_probe(1, &recorder)).await?;
    let marker = envelope(&event_type, 3);
    publish(&next, marker.clone()).await?;
    recorder
        .wait(
            "a message published after the restart handled",
            cx.timeout(),
            |log| log.handled(marker.message_id) > 0,
        )
        .await?;
    let redelivered = recorder.log().deliveries(slow.message_id).len();
    if redelivered != 1 {
        return Err(format!(
            "the message drained at shutdown was delivered {redelivered} times: it must be \
             acknowledged when its handler finishes"
        ));
    }
    Ok(())
}

/// The host's shutdown order: consumers stop and drain first, then the
/// outbox relay publishes what their handlers wrote, then the bus closes.
async fn stop_consuming_keeps_publishing<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let bus = cx.bus().await?;
    let group = cx.group("g");
    let event_type = cx.event_type("probe");
    let recorder = Arc::new(Recorder::default());
    let (slow, release) = hold_one_in_flight(cx, &bus, &group, &event_type, &recorder).await?;
    let grace = cx.timeout();
    let stopping = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.stop_consuming(grace).await })
    };
    waits_for_the_held_handler(cx, "stop_consuming", stopping, &release, &recorder, &slow).await?;
    // Publishing still works: another instance of the group gets it.
    let after = envelope(&event_type, 2);
    bus.publish(after.clone())
        .await
        .map_err(|e| format!("publish after stop_consuming must still work, got: {e}"))?;
    let again = Handlers::new().on_raw(event_type.as_str(), Arc::new(ok_probe(0, &recorder)));
    if bus
        .subscribe(Subscription::new(group.as_str(), again))
        .await
        .is_ok()
    {
        return Err("subscribe after stop_consuming should fail, it succeeded".into());
    }
    let taken = recorder
        .wait("", cx.opts.quiet_period, |log| {
            log.handled(after.message_id) > 0
        })
        .await;
    if taken.is_ok() {
        return Err("a consumer stopped by stop_consuming still took a message".into());
    }
    if let Err(e) = bus.stop_consuming(grace).await {
        return Err(format!(
            "a second stop_consuming should succeed (idempotent), got: {e}"
        ));
    }
    let started = Instant::now();
    bus.shutdown()
        .await
        .map_err(|e| format!("shutdown after stop_consuming failed: {e}"))?;
    if started.elapsed() > cx.timeout() / 2 {
        return Err(format!(
            "shutdown after stop_consuming took {:?}: it must not wait for a drain again",
            started.elapsed()
        ));
    }
    let next = cx.bus().await?;
    subscribe(&next, &group, &event_type, ok_probe(1, &recorder)).await?;
    recorder
        .wait(
            "the message published after stop_consuming handled by a new instance",
            cx.timeout(),
            |log| log.handled(after.message_id) > 0,
        )
        .await?;
    Ok(())
}

/// Per key of `per_key_order`: whether one of its messages runs, and the
/// number of the last one finished.
type KeyLines = std::sync::Mutex<BTreeMap<u64, (bool, Option<u64>)>>;

/// Messages of one partition key are handled one after the other, in the
/// order they were published, whatever `concurrency` is; other keys are not
/// held up. Each handler takes a few milliseconds so that a provider running
/// two messages of one key side by side is caught.
async fn per_key_order<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    const KEYS: u64 = 4;
    const PER_KEY: u64 = 12;
    let bus = cx.bus().await?;
    let group = cx.group("g");
    let event_type = cx.event_type("probe");
    let recorder = Arc::new(Recorder::default());
    let lines: Arc<KeyLines> = Arc::default();
    let broken: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let probe =
        Probe {
            consumer: 0,
            recorder: recorder.clone(),
            f: {
                let lines = lines.clone();
                let broken = broken.clone();
                move |d: Delivery| {
                    let lines = lines.clone();
                    let broken = broken.clone();
                    async move {
                        let event = decode(&d)?;
                        let (key, n) = (event.seq % KEYS, event.seq / KEYS);
                        {
                            let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                            let line = lines.entry(key).or_default();
                            if line.0 {
                                broken.lock().unwrap_or_else(|p| p.into_inner()).push(format!(
                                "message {n} of key {key} started while another of its key ran"
                            ));
                            }
                            if line.1.map_or(0, |last| last + 1) != n {
                                broken
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(format!(
                                        "message {n} of key {key} started after message {:?}",
                                        line.1
                                    ));
                            }
                            line.0 = true;
                        }
                        tokio::time::sleep(Duration::from_millis(2 + event.seq % 3)).await;
                        let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                        let line = lines.entry(key).or_default();
                        line.0 = false;
                        line.1 = Some(n);
                        Ok(())
                    }
                }
            },
        };
    subscribe(&bus, &group, &event_type, probe).await?;
    // Interleaved: key 0, 1, 2, 3, 0, 1, ... so that every batch a consumer
    // takes holds several keys.
    let sent: Vec<Envelope> = (0..KEYS * PER_KEY)
        .map(|seq| {
            let mut e = envelope(&event_type, seq);
            e.partition_key = Some(format!("{}-key-{}", cx.run, seq % KEYS));
            e
        })
        .collect();
    bus.publish_all(sent.clone())
        .await
        .map_err(|e| format!("publishing the keyed messages failed: {e}"))?;
    recorder
        .wait(
            &format!("all {} keyed messages handled", sent.len()),
            cx.timeout() * 2,
            |log| sent.iter().all(|e| log.handled(e.message_id) > 0),
        )
        .await?;
    let broken = broken.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if !broken.is_empty() {
        return Err(format!(
            "messages of one partition key must be handled one after the other in publish \
             order (concurrency {}); {} violations, the first: {}",
            cx.config.concurrency,
            broken.len(),
            broken
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok(())
}

// --- Request/response ---
//
// The responders are the real `Responders` of `messaging-abstractions`, and
// the requests are built exactly as `RequestClient::send_in` builds them,
// but under the run's own request type (typed requests have a fixed
// `EVENT_TYPE`): `serve` registers the typed responder under the run's type
// and hands it the delivery under the typed name; `ask` sends the typed
// request under the run's type and decodes the typed answer.

/// The typed request of the request cases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Ask {
    n: u64,
    note: String,
}

impl IntegrationEvent for Ask {
    const EVENT_TYPE: &'static str = "conformance.ask.v1";
}

/// The typed answer: a pure function of the request, so duplicates answer
/// the same.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Answer {
    n: u64,
    doubled: u64,
    note: String,
}

impl IntegrationEvent for Answer {
    const EVENT_TYPE: &'static str = "conformance.answer.v1";
}

impl Request for Ask {
    type Response = Answer;
}

fn ask_of(n: u64) -> Ask {
    Ask {
        n,
        note: format!("question {n} ✓"),
    }
}

fn answer_to(ask: &Ask) -> Answer {
    Answer {
        n: ask.n,
        doubled: ask.n * 2,
        note: format!("answer to {}", ask.note),
    }
}

/// Subscribes the typed responder `respond` as `group` on `bus` for the
/// run's request type `event_type`, recorded by `recorder` as `consumer`.
async fn serve<R, Fut>(
    bus: &Arc<dyn EventBus>,
    group: &str,
    event_type: &str,
    recorder: &Arc<Recorder>,
    consumer: usize,
    respond: R,
) -> CaseResult
where
    R: Fn(Ask, Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Answer, HandlerError>> + Send + 'static,
{
    let handlers = Responders::new()
        .on_fn(respond)
        .into_handlers(bus, Handlers::new());
    let responder = handlers
        .get(Ask::EVENT_TYPE)
        .cloned()
        .ok_or("Responders::into_handlers registered no handler for the request type")?;
    let probe = Probe {
        consumer,
        recorder: recorder.clone(),
        f: move |mut d: Delivery| {
            let responder = responder.clone();
            async move {
                d.envelope.event_type = Ask::EVENT_TYPE.to_owned();
                responder.handle(&d).await
            }
        },
    };
    subscribe(bus, group, event_type, probe).await
}

/// A responder answering every request at once, counting its calls.
fn answering(
    calls: &Arc<AtomicUsize>,
) -> impl Fn(Ask, Delivery) -> std::future::Ready<Result<Answer, HandlerError>> + Send + Sync + 'static
{
    let calls = calls.clone();
    move |ask: Ask, _d: Delivery| {
        calls.fetch_add(1, Ordering::AcqRel);
        std::future::ready(Ok(answer_to(&ask)))
    }
}

/// A requester bus and a responder bus whose group `responder` answers
/// every `Ask` of a fresh event type (counting its calls): the set-up of the
/// request cases that look at one answered exchange.
struct Exchange {
    client: Arc<dyn EventBus>,
    server: Arc<dyn EventBus>,
    /// The responder's dead letters.
    store: Arc<dyn DeadLetterStore>,
    group: String,
    event_type: String,
    recorder: Arc<Recorder>,
    calls: Arc<AtomicUsize>,
}

impl Exchange {
    async fn start<F: BusFactory>(cx: &mut Ctx<'_, F>) -> Result<Self, String> {
        let (client, server) = (cx.bus().await?, cx.bus().await?);
        let store = cx.store(&server)?;
        let group = cx.group("responder");
        let event_type = cx.event_type("ask");
        let recorder = Arc::new(Recorder::default());
        let calls = Arc::new(AtomicUsize::new(0));
        serve(
            &server,
            &group,
            &event_type,
            &recorder,
            0,
            answering(&calls),
        )
        .await?;
        Ok(Self {
            client,
            server,
            store,
            group,
            event_type,
            recorder,
            calls,
        })
    }
}

/// What one request came back with.
struct Asked {
    /// The request as sent (its `message_id` is the one to match).
    sent: Envelope,
    result: Result<(Answer, Envelope), RequestError>,
    took: Duration,
}

/// Sends `ask` on `bus` under `event_type` as `RequestClient::send_in`
/// does. `Err` only when the request does not return within `timeout` plus
/// the suite's timeout: a hang.
async fn ask<F: BusFactory>(
    cx: &Ctx<'_, F>,
    bus: &Arc<dyn EventBus>,
    event_type: &str,
    ask: &Ask,
    context: &MessageContext,
    timeout: Duration,
) -> Result<Asked, String> {
    let mut sent = Envelope::for_event(ask)
        .map_err(|e| format!("encoding the request failed: {e}"))?
        .with_context(context);
    sent.event_type = event_type.to_owned();
    set_deadline(&mut sent, timeout);
    let started = Instant::now();
    let limit = timeout + cx.timeout();
    let reply = tokio::time::timeout(limit, bus.request(sent.clone(), timeout))
        .await
        .map_err(|_| {
            format!(
                "request {} with a timeout of {timeout:?} had not returned after {limit:?}: \
                 a request must never hang",
                sent.message_id
            )
        })?;
    let result = reply.and_then(|reply| {
        let answer = decode_response::<Answer>(event_type, &reply)?;
        Ok((answer, reply))
    });
    Ok(Asked {
        sent,
        result,
        took: started.elapsed(),
    })
}

/// The answer of a request that must succeed.
fn answered(asked: Asked, ask: &Ask) -> Result<(Answer, Envelope), String> {
    match asked.result {
        Ok((answer, reply)) if answer == answer_to(ask) => Ok((answer, reply)),
        Ok((answer, _)) => Err(format!(
            "request {} for {ask:?} was answered with {answer:?}, expected {:?}: answers must \
             be matched to their own request",
            asked.sent.message_id,
            answer_to(ask)
        )),
        Err(e) => Err(format!(
            "request {} for {ask:?} failed after {:?}: {e}",
            asked.sent.message_id, asked.took
        )),
    }
}

async fn request_response<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let ex = Exchange::start(cx).await?;

    let context = MessageContext {
        correlation_id: Some(format!("corr-{}", Uuid::new_v4())),
        causation_id: Some("cause-of-the-request".into()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        tracestate: Some("congo=t61rcWkgMzE".into()),
    };
    let question = ask_of(21);
    let asked = ask(
        cx,
        &ex.client,
        &ex.event_type,
        &question,
        &context,
        cx.timeout(),
    )
    .await?;
    let sent = asked.sent.clone();
    let (_, reply) = answered(asked, &question)?;

    // The handled request is acknowledged: answered once, never redelivered.
    // (Its record is written after the answer went out: wait for it.)
    ex.recorder
        .wait("the request acknowledged", cx.timeout(), |log| {
            log.handled(sent.message_id) == 1
        })
        .await?;
    let mut diffs = Vec::new();
    // The responder saw the request with its context and addressing.
    {
        let log = ex.recorder.log();
        let records = log.deliveries(sent.message_id);
        let Some(record) = records.first() else {
            return Err(format!(
                "the responder never saw request {}",
                sent.message_id
            ));
        };
        let got = &record.delivery.envelope;
        if got.correlation_id != context.correlation_id || got.traceparent != context.traceparent {
            diffs.push(format!(
                "request: correlation {:?} / traceparent {:?} arrived as {:?} / {:?}",
                context.correlation_id, context.traceparent, got.correlation_id, got.traceparent
            ));
        }
        for header in [REPLY_TO_HEADER, DEADLINE_HEADER] {
            if got.headers.get(header).is_none_or(String::is_empty) {
                diffs.push(format!(
                    "request: header `{header}` missing at the responder"
                ));
            }
        }
        if record.delivery.group != ex.group || record.delivery.attempt != 1 {
            diffs.push(format!(
                "request: delivered to `{}` attempt {}, expected `{}` attempt 1",
                record.delivery.group, record.delivery.attempt, ex.group
            ));
        }
    }
    // The answer continues the request's correlation and trace.
    if reply.headers.get(IN_REPLY_TO_HEADER) != Some(&sent.message_id.to_string()) {
        diffs.push(format!(
            "reply: `{IN_REPLY_TO_HEADER}` is {:?}, expected the request id {}",
            reply.headers.get(IN_REPLY_TO_HEADER),
            sent.message_id
        ));
    }
    if reply.correlation_id != context.correlation_id {
        diffs.push(format!(
            "reply: correlation {:?}, expected {:?}",
            reply.correlation_id, context.correlation_id
        ));
    }
    if reply.causation_id != Some(sent.message_id.to_string()) {
        diffs.push(format!(
            "reply: causation {:?}, expected the request id {}",
            reply.causation_id, sent.message_id
        ));
    }
    if reply.traceparent != context.traceparent || reply.tracestate != context.tracestate {
        diffs.push(format!(
            "reply: trace {:?} / {:?}, expected {:?} / {:?}",
            reply.traceparent, reply.tracestate, context.traceparent, context.tracestate
        ));
    }
    if reply.event_type != Answer::EVENT_TYPE {
        diffs.push(format!(
            "reply: event type `{}`, expected `{}`",
            reply.event_type,
            Answer::EVENT_TYPE
        ));
    }
    if !diffs.is_empty() {
        return Err(diffs.join("; "));
    }
    let calls = ex.calls.load(Ordering::Acquire);
    if calls != 1 {
        return Err(format!(
            "the responder was called {calls} times for one request"
        ));
    }
    Ok(())
}

async fn request_no_responder<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let client = cx.bus().await?;
    let event_type = cx.event_type("nobody");
    // A generous timeout: the answer must come long before it.
    let timeout = cx.timeout();
    let asked = ask(
        cx,
        &client,
        &event_type,
        &ask_of(1),
        &MessageContext::default(),
        timeout,
    )
    .await?;
    match asked.result {
        Err(RequestError::NoResponder { request_type }) if request_type == event_type => {
            if asked.took * 2 > timeout {
                return Err(format!(
                    "NoResponder came after {:?} (timeout {timeout:?}): it must come at once",
                    asked.took
                ));
            }
            Ok(())
        }
        other => Err(format!(
            "a request nobody subscribed to must fail with NoResponder for `{event_type}` at \
             once, got {:?} after {:?}",
            other.map(|(a, _)| a),
            asked.took
        )),
    }
}

async fn request_timeout<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let (client, server) = (cx.bus().await?, cx.bus().await?);
    let group = cx.group("slow");
    let event_type = cx.event_type("ask");
    let recorder = Arc::new(Recorder::default());
    let release = Arc::new(Notify::new());
    let hold = Arc::new(AtomicBool::new(true));
    serve(&server, &group, &event_type, &recorder, 0, {
        let (release, hold) = (release.clone(), hold.clone());
        move |ask: Ask, _d: Delivery| {
            let (release, hold) = (release.clone(), hold.clone());
            async move {
                let mut released = pin!(release.notified());
                released.as_mut().enable();
                if hold.load(Ordering::Acquire) {
                    released.await;
                }
                Ok(answer_to(&ask))
            }
        }
    })
    .await?;

    let timeout = Duration::from_millis(300);
    let slow = ask_of(1);
    let asked = ask(
        cx,
        &client,
        &event_type,
        &slow,
        &MessageContext::default(),
        timeout,
    )
    .await?;
    let late_id = asked.sent.message_id;
    match asked.result {
        Err(RequestError::Timeout { waited, .. }) if waited == timeout => {}
        other => {
            return Err(format!(
                "a request the responder holds must fail with Timeout after {timeout:?}, got \
                 {:?} after {:?}",
                other.map(|(a, _)| a),
                asked.took
            ));
        }
    }
    if asked.took < timeout {
        return Err(format!(
            "Timeout came after {:?}, before the timeout of {timeout:?}",
            asked.took
        ));
    }
    // The late answer is dropped, and the responder's work still counts as
    // done (acknowledged, not failed).
    hold.store(false, Ordering::Release);
    release.notify_waiters();
    recorder
        .wait("the held request handled", cx.timeout(), |log| {
            log.deliveries(late_id).iter().any(|r| r.result.is_ok())
        })
        .await?;
    // The next request gets its own answer, not the late one.
    let next = ask_of(2);
    let asked = ask(
        cx,
        &client,
        &event_type,
        &next,
        &MessageContext::default(),
        cx.timeout(),
    )
    .await?;
    answered(asked, &next)?;
    if let Some(failed) = recorder
        .log()
        .deliveries(late_id)
        .iter()
        .find_map(|r| r.result.clone().err())
    {
        return Err(format!(
            "answering a requester that gave up must not fail the responder: {}",
            failed.reason
        ));
    }
    Ok(())
}

async fn request_failure<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let (client, server) = (cx.bus().await?, cx.bus().await?);
    let store = cx.store(&server)?;
    let group = cx.group("refusing");
    let event_type = cx.event_type("ask");
    let recorder = Arc::new(Recorder::default());
    serve(
        &server,
        &group,
        &event_type,
        &recorder,
        0,
        |_ask: Ask, _d: Delivery| {
            std::future::ready(Err::<Answer, _>(HandlerError::permanent(
                "conformance: this destination is not served",
            )))
        },
    )
    .await?;
    let asked = ask(
        cx,
        &client,
        &event_type,
        &ask_of(1),
        &MessageContext::default(),
        cx.timeout(),
    )
    .await?;
    let id = asked.sent.message_id;
    match asked.result {
        Err(RequestError::Failed { kind, reason, .. })
            if kind == "permanent" && reason.contains("this destination is not served") => {}
        other => {
            return Err(format!(
                "a responder failing permanently must answer Failed (permanent, with its \
                 reason), got {:?}",
                other.map(|(a, _)| a)
            ));
        }
    }
    let letter = cx.dead_letter(&store, &group, id, cx.timeout()).await?;
    if letter.kind != FailureKind::Permanent
        || !letter.reason.contains("this destination is not served")
        || letter.attempts != 1
    {
        return Err(format!(
            "the failed request must be dead-lettered at once with the reason; got kind {}, \
             {} attempt(s), reason {:?}",
            letter.kind.as_str(),
            letter.attempts,
            letter.reason
        ));
    }
    Ok(())
}

async fn request_expired<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let ex = Exchange::start(cx).await?;
    // A request whose deadline has already passed when the responder gets it
    // (as one that waited in a backlog): its requester has given up.
    let mut sent =
        Envelope::for_event(&ask_of(1)).map_err(|e| format!("encoding the request failed: {e}"))?;
    sent.event_type = ex.event_type.clone();
    let past = SystemTime::now() - Duration::from_secs(5);
    sent.headers.insert(
        DEADLINE_HEADER.to_owned(),
        truncate_to_millis(past).to_string(),
    );
    let id = sent.message_id;
    let timeout = Duration::from_millis(500);
    let result = tokio::time::timeout(timeout + cx.timeout(), ex.client.request(sent, timeout))
        .await
        .map_err(|_| format!("request {id} hung past its timeout of {timeout:?}"))?;
    if !matches!(result, Err(RequestError::Timeout { .. })) {
        return Err(format!(
            "an expired request must not be answered (requester times out), got {:?}",
            result.map(|r| r.event_type)
        ));
    }
    // If it was delivered, it was acknowledged without calling the responder.
    let calls = ex.calls.load(Ordering::Acquire);
    if calls != 0 {
        return Err(format!(
            "the responder was called {calls} time(s) for an expired request"
        ));
    }
    if let Some(failed) = ex
        .recorder
        .log()
        .deliveries(id)
        .iter()
        .find_map(|r| r.result.clone().err())
    {
        return Err(format!(
            "an expired request must be acknowledged, not failed: {}",
            failed.reason
        ));
    }
    if ex
        .store
        .list(Some(&ex.group))
        .await
        .iter()
        .any(|d| d.envelope.message_id == id)
    {
        return Err("an expired request must not be dead-lettered".into());
    }
    Ok(())
}

async fn request_duplicate<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let ex = Exchange::start(cx).await?;
    let first = ask_of(7);
    let asked = ask(
        cx,
        &ex.client,
        &ex.event_type,
        &first,
        &MessageContext::default(),
        cx.timeout(),
    )
    .await?;
    let id = asked.sent.message_id;
    answered(asked, &first)?;

    // The broker delivers the same request again (as after a lost
    // acknowledgement): the copy the responder received, reply address and
    // all.
    ex.recorder
        .wait("the request acknowledged", cx.timeout(), |log| {
            log.handled(id) == 1
        })
        .await?;
    let copy = ex.recorder.log().deliveries(id)[0]
        .delivery
        .envelope
        .clone();
    publish(&ex.client, copy).await?;
    ex.recorder
        .wait("the duplicate handled", cx.timeout(), |log| {
            log.deliveries(id).len() == 2
        })
        .await?;
    {
        let log = ex.recorder.log();
        if let Some(failed) = log
            .deliveries(id)
            .iter()
            .find_map(|r| r.result.clone().err())
        {
            return Err(format!(
                "a duplicate request must be answered like the first (its reply dropped by \
                 the requester), but the responder failed: {}",
                failed.reason
            ));
        }
    }
    // The requester dropped the second answer: its next request is matched
    // to its own answer.
    let second = ask_of(8);
    let asked = ask(
        cx,
        &ex.client,
        &ex.event_type,
        &second,
        &MessageContext::default(),
        cx.timeout(),
    )
    .await?;
    answered(asked, &second)?;
    if ex
        .store
        .list(Some(&ex.group))
        .await
        .iter()
        .any(|d| d.envelope.message_id == id)
    {
        return Err("a duplicate request must not be dead-lettered".into());
    }
    // A reply sent twice by hand: the second is dropped, never an error that
    // would fail the responder's handling.
    let third = ask_of(9);
    let asked = ask(
        cx,
        &ex.client,
        &ex.event_type,
        &third,
        &MessageContext::default(),
        cx.timeout(),
    )
    .await?;
    let third_id = asked.sent.message_id;
    let (_, reply) = answered(asked, &third)?;
    ex.recorder
        .wait("the third request acknowledged", cx.timeout(), |log| {
            log.handled(third_id) == 1
        })
        .await?;
    let delivered = ex.recorder.log().deliveries(third_id)[0]
        .delivery
        .envelope
        .clone();
    match ex.server.reply(&delivered, reply).await {
        Ok(()) | Err(PublishError::Unroutable { .. }) => Ok(()),
        Err(e) => Err(format!(
            "a second reply to a request already answered must be accepted (and dropped), \
             got: {e}"
        )),
    }
}

async fn request_concurrent<F: BusFactory>(cx: &mut Ctx<'_, F>) -> CaseResult {
    let clients = [cx.bus().await?, cx.bus().await?];
    let servers = [cx.bus().await?, cx.bus().await?];
    let group = cx.group("responders");
    let event_type = cx.event_type("ask");
    let recorder = Arc::new(Recorder::default());
    let calls = Arc::new(AtomicUsize::new(0));
    for (consumer, server) in servers.iter().enumerate() {
        // Answers take a moment, in varying order, so requests overlap.
        let calls = calls.clone();
        serve(
            server,
            &group,
            &event_type,
            &recorder,
            consumer,
            move |ask: Ask, _d| {
                calls.fetch_add(1, Ordering::AcqRel);
                async move {
                    tokio::time::sleep(Duration::from_millis(ask.n % 5 * 3)).await;
                    Ok(answer_to(&ask))
                }
            },
        )
        .await?;
    }
    let count = 24u64;
    let mut requests = JoinSet::new();
    for n in 0..count {
        let bus = clients[(n % 2) as usize].clone();
        let event_type = event_type.clone();
        let timeout = cx.timeout();
        requests.spawn(async move {
            let question = ask_of(n);
            let mut sent = Envelope::for_event(&question)
                .map_err(|e| format!("encoding the request failed: {e}"))?
                .with_correlation_id(format!("corr-{n}"));
            sent.event_type = event_type.clone();
            set_deadline(&mut sent, timeout);
            let reply = tokio::time::timeout(timeout * 2, bus.request(sent, timeout))
                .await
                .map_err(|_| format!("request {n} hung"))?
                .map_err(|e| format!("request {n} failed: {e}"))?;
            let answer = decode_response::<Answer>(&event_type, &reply)
                .map_err(|e| format!("request {n}: {e}"))?;
            if answer != answer_to(&question)
                || reply.correlation_id.as_deref() != Some(&format!("corr-{n}"))
            {
                return Err(format!(
                    "request {n} got {answer:?} with correlation {:?}: answers must be matched \
                     to their own request",
                    reply.correlation_id
                ));
            }
            Ok::<(), String>(())
        });
    }
    while let Some(result) = requests.join_next().await {
        result.map_err(|e| format!("a request task panicked: {e}"))??;
    }
    let calls = calls.load(Ordering::Acquire);
    if calls as u64 != count {
        return Err(format!(
            "{count} requests made the responders run {calls} times"
        ));
    }
    Ok(())
}

//! Behaviour of the in-memory provider beyond the shared conformance suite:
//! backpressure, unroutable messages, connections, flow control, health.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chassis_core::HealthStatus;
use messaging_abstractions::request::REPLY_TO_HEADER;
use messaging_abstractions::{
    Envelope, EventBus, EventBusExt, FailureKind, HandlerError, Handlers, IntegrationEvent,
    MessagingConfig, PublishError, Request, RequestClient, RequestError, Responders, ShutdownError,
    Subscription,
};
use messaging_inmemory::{InMemoryBus, InMemoryConfig, Outcome};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
struct Ping {
    n: u32,
}

impl IntegrationEvent for Ping {
    const EVENT_TYPE: &'static str = "test.ping.v1";
}

#[derive(Debug, Serialize, Deserialize)]
struct Pong {
    n: u32,
}

impl IntegrationEvent for Pong {
    const EVENT_TYPE: &'static str = "test.pong.v1";
}

fn ok_handlers() -> Handlers {
    Handlers::new()
        .on_fn(|_: Ping, _| async { Ok(()) })
        .on_fn(|_: Pong, _| async { Ok(()) })
}

fn config(edit: impl FnOnce(&mut MessagingConfig)) -> MessagingConfig {
    let mut config = MessagingConfig::default();
    config.retry.initial_backoff = Duration::from_millis(5);
    config.retry.max_backoff = Duration::from_millis(20);
    edit(&mut config);
    config.validate().expect("valid test config");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_makes_publishers_wait_then_fail() {
    let bus = InMemoryBus::with_settings(
        &config(|_| {}),
        &InMemoryConfig {
            queue_capacity: 2,
            publish_timeout: Duration::from_millis(50),
            ..InMemoryConfig::default()
        },
    );
    // Bind the group, then stop its only consumer: the queue stays bound.
    let consumer = bus.clone();
    consumer
        .subscribe(Subscription::new("slow", ok_handlers()))
        .await
        .unwrap();
    consumer.shutdown().await.unwrap();

    bus.publish_event(&Ping { n: 1 }).await.unwrap();
    bus.publish_event(&Ping { n: 2 }).await.unwrap();
    let err = bus.publish_event(&Ping { n: 3 }).await.unwrap_err();
    assert!(matches!(err, PublishError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("`slow`"), "{err}");
    assert_eq!(bus.group_stats("slow").unwrap().queued, 2);
    match bus.health_checks()[0].check().await {
        HealthStatus::Degraded(why) => assert!(why.contains("`slow` (2/2)"), "{why}"),
        other => panic!("a full queue should degrade health, got {other:?}"),
    }

    // A publisher waiting for room resumes as soon as a consumer takes one.
    let patient = InMemoryBus::with_settings(
        &config(|_| {}),
        &InMemoryConfig {
            queue_capacity: 1,
            publish_timeout: WAIT,
            ..InMemoryConfig::default()
        },
    );
    let first = patient.clone();
    first
        .subscribe(Subscription::new("late", ok_handlers()))
        .await
        .unwrap();
    first.shutdown().await.unwrap();
    patient.publish_event(&Ping { n: 1 }).await.unwrap();
    let waiting = {
        let p = patient.clone();
        tokio::spawn(async move { p.publish_event(&Ping { n: 2 }).await })
    };
    patient
        .subscribe(Subscription::new("late", ok_handlers()))
        .await
        .unwrap();
    waiting.await.unwrap().unwrap();
    patient
        .wait_until("both handled", WAIT, |s| s.groups["late"].handled == 2)
        .await
        .unwrap();
}

#[tokio::test]
async fn unroutable_messages_are_accepted_and_counted() {
    let bus = InMemoryBus::new(&MessagingConfig::default());
    bus.publish_event(&Ping { n: 1 }).await.unwrap();
    assert_eq!(bus.stats().unroutable, 1);
    assert!(bus.stats().groups.is_empty());
}

#[tokio::test]
async fn disabled_dead_lettering_discards_loudly() {
    let bus = InMemoryBus::new(&config(|c| c.dead_letter.enabled = false));
    let handlers = Handlers::new().on_fn(|_: Ping, _| async { Err(HandlerError::permanent("no")) });
    bus.subscribe(Subscription::new("g", handlers))
        .await
        .unwrap();
    let mut outcomes = bus.outcomes();
    let sent = bus.publish_event(&Ping { n: 1 }).await.unwrap();
    let o = outcomes.settled("g", sent.message_id, WAIT).await.unwrap();
    assert_eq!(
        o.outcome,
        Outcome::Discarded {
            kind: FailureKind::Permanent,
            reason: "no".into()
        }
    );
    assert!(bus.dead_letters().unwrap().list(None).await.is_empty());
    assert_eq!(bus.group_stats("g").unwrap().discarded, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried_not_lost() {
    let bus = InMemoryBus::new(&config(|_| {}));
    let panicked = Arc::new(AtomicBool::new(false));
    let handlers = Handlers::new().on_fn({
        let panicked = panicked.clone();
        move |_: Ping, _| {
            let first = !panicked.swap(true, Ordering::AcqRel);
            async move {
                assert!(!first, "handler bug on first delivery");
                Ok(())
            }
        }
    });
    bus.subscribe(Subscription::new("g", handlers))
        .await
        .unwrap();
    let mut outcomes = bus.outcomes();
    let sent = bus.publish_event(&Ping { n: 1 }).await.unwrap();
    let first = outcomes.next().await.unwrap();
    match first.outcome {
        Outcome::Retrying { reason, .. } => {
            assert!(reason.contains("handler bug on first delivery"), "{reason}")
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    let done = outcomes.settled("g", sent.message_id, WAIT).await.unwrap();
    assert_eq!((done.outcome, done.attempt), (Outcome::Handled, 2));
    assert_eq!(bus.group_stats("g").unwrap().consumers, 8, "no worker died");
}

#[tokio::test]
async fn typed_handler_dead_letters_an_undecodable_payload_at_once() {
    let bus = InMemoryBus::new(&MessagingConfig::default());
    bus.subscribe(Subscription::new("g", ok_handlers()))
        .await
        .unwrap();
    let mut outcomes = bus.outcomes();
    let mut bad = Envelope::for_event(&Ping { n: 1 }).unwrap();
    bad.payload = br#"{"n":"one"}"#.to_vec();
    bus.publish(bad.clone()).await.unwrap();
    let o = outcomes.settled("g", bad.message_id, WAIT).await.unwrap();
    assert_eq!(o.attempt, 1);
    assert!(matches!(
        o.outcome,
        Outcome::DeadLettered {
            kind: FailureKind::Undecodable,
            ..
        }
    ));
    let letters = bus.dead_letters().unwrap().list(Some("g")).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].envelope, bad);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_share_the_broker_and_shut_down_alone() {
    let broker = InMemoryBus::new(&MessagingConfig::default());
    let (orders, shipping, billing) = (broker.clone(), broker.clone(), broker.clone());
    shipping
        .subscribe(Subscription::new("shipping", ok_handlers()))
        .await
        .unwrap();
    billing
        .subscribe(Subscription::new("billing", ok_handlers()))
        .await
        .unwrap();
    billing.shutdown().await.unwrap();
    assert!(matches!(
        billing.publish_event(&Ping { n: 0 }).await,
        Err(PublishError::ShutDown)
    ));
    assert!(!billing.health_checks()[0].check().await.is_ready());
    assert_eq!(
        shipping.health_checks()[0].check().await,
        HealthStatus::Healthy
    );

    orders.publish_event(&Ping { n: 1 }).await.unwrap();
    broker
        .wait_until("shipping handled", WAIT, |s| {
            s.groups["shipping"].handled == 1 && s.groups["billing"].queued == 1
        })
        .await
        .unwrap();
    // Billing's message waited in its queue; a restarted billing gets it.
    let billing_again = broker.clone();
    billing_again
        .subscribe(Subscription::new("billing", ok_handlers()))
        .await
        .unwrap();
    let stats = broker.wait_idle(WAIT).await.unwrap();
    assert_eq!(stats.groups["billing"].handled, 1);
    for bus in [orders, shipping, billing_again, broker] {
        bus.shutdown().await.unwrap();
    }
}

/// Holds handlers until opened.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    opened: Notify,
}

impl Gate {
    async fn pass(&self) {
        let mut opened = pin!(self.opened.notified());
        opened.as_mut().enable();
        if !self.open.load(Ordering::Acquire) {
            opened.await;
        }
    }

    fn open(&self) {
        self.open.store(true, Ordering::Release);
        self.opened.notify_waiters();
    }
}

/// Runs 10 blocking handlers and returns the most that ran at once.
async fn max_parallel_handlers(concurrency: usize, prefetch: u16) -> usize {
    let bus = InMemoryBus::new(&config(|c| {
        c.concurrency = concurrency;
        c.prefetch = prefetch;
    }));
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Gate::default());
    let started = Arc::new(Notify::new());
    let handlers = Handlers::new().on_fn({
        let (running, most, gate, started) =
            (running.clone(), most.clone(), gate.clone(), started.clone());
        move |_: Ping, _| {
            let (running, most, gate, started) =
                (running.clone(), most.clone(), gate.clone(), started.clone());
            async move {
                let now = running.fetch_add(1, Ordering::AcqRel) + 1;
                most.fetch_max(now, Ordering::AcqRel);
                started.notify_one();
                gate.pass().await;
                running.fetch_sub(1, Ordering::AcqRel);
                Ok(())
            }
        }
    });
    bus.subscribe(Subscription::new("g", handlers))
        .await
        .unwrap();
    for n in 0..10 {
        bus.publish_event(&Ping { n }).await.unwrap();
    }
    let limit = concurrency.min(usize::from(prefetch));
    while running.load(Ordering::Acquire) < limit {
        tokio::time::timeout(WAIT, started.notified())
            .await
            .expect("handlers start");
    }
    gate.open();
    bus.wait_until("all handled", WAIT, |s| s.groups["g"].handled == 10)
        .await
        .unwrap();
    bus.shutdown().await.unwrap();
    most.load(Ordering::Acquire)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_and_prefetch_bound_the_running_handlers() {
    assert_eq!(max_parallel_handlers(3, 64).await, 3);
    assert_eq!(max_parallel_handlers(8, 2).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_after_the_drain_timeout_without_losing_the_message() {
    let bus = InMemoryBus::with_settings(
        &config(|_| {}),
        &InMemoryConfig {
            drain_timeout: Duration::from_millis(50),
            ..InMemoryConfig::default()
        },
    );
    let release = Arc::new(Notify::new());
    let handlers = Handlers::new().on_fn({
        let release = release.clone();
        move |_: Ping, _| {
            let release = release.clone();
            async move {
                release.notified().await;
                Ok(())
            }
        }
    });
    bus.subscribe(Subscription::new("g", handlers))
        .await
        .unwrap();
    bus.publish_event(&Ping { n: 1 }).await.unwrap();
    bus.wait_until("handler running", WAIT, |s| s.groups["g"].in_flight == 1)
        .await
        .unwrap();
    match bus.shutdown().await {
        Err(ShutdownError::Timeout { in_flight, waited }) => {
            assert_eq!((in_flight, waited), (1, Duration::from_millis(50)));
        }
        other => panic!("expected a drain timeout, got {other:?}"),
    }
    release.notify_one();
    let stats = bus.wait_idle(WAIT).await.unwrap();
    assert_eq!(stats.groups["g"].handled, 1);
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscriptions_are_validated() {
    let bus = InMemoryBus::new(&MessagingConfig::default());
    let err = bus
        .subscribe(Subscription::new("bad group", ok_handlers()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad group"), "{err}");
    assert!(bus.stats().groups.is_empty());
}

#[tokio::test]
async fn waits_fail_clearly_with_the_last_state() {
    let bus = InMemoryBus::new(&MessagingConfig::default());
    let consumer = bus.clone();
    consumer
        .subscribe(Subscription::new("idle", ok_handlers()))
        .await
        .unwrap();
    consumer.shutdown().await.unwrap();
    let sent = bus.publish_event(&Ping { n: 1 }).await.unwrap();

    // Nobody consumes "idle": the message stays queued, so neither wait ends.
    let err = bus.wait_idle(Duration::from_millis(20)).await.unwrap_err();
    assert_eq!(err.last.groups["idle"].queued, 1);
    assert!(
        err.to_string()
            .starts_with("every queue idle not reached within 20ms"),
        "{err}"
    );
    let mut outcomes = bus.outcomes();
    let err = outcomes
        .settled("idle", sent.message_id, Duration::from_millis(20))
        .await
        .unwrap_err();
    assert_eq!(err.message_id, sent.message_id);
    assert!(err.to_string().contains("group `idle`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_connection_stops_its_consumers_without_losing_work() {
    let broker = InMemoryBus::new(&MessagingConfig::default());
    let gate = Arc::new(Gate::default());
    let consumer = broker.clone();
    let handlers = Handlers::new().on_fn({
        let gate = gate.clone();
        move |_: Ping, _| {
            let gate = gate.clone();
            async move {
                gate.pass().await;
                Ok(())
            }
        }
    });
    consumer
        .subscribe(Subscription::new("g", handlers))
        .await
        .unwrap();
    broker.publish_event(&Ping { n: 1 }).await.unwrap();
    broker
        .wait_until("handler running", WAIT, |s| s.groups["g"].in_flight == 1)
        .await
        .unwrap();
    drop(consumer);
    // The running handler is not aborted: once released it completes, and
    // every worker of the dropped connection exits.
    gate.open();
    let stats = broker
        .wait_until("handled and consumers gone", WAIT, |s| {
            s.groups["g"].handled == 1 && s.groups["g"].consumers == 0
        })
        .await
        .unwrap();
    assert!(stats.is_idle());
}

// --- Request/response specifics of this provider (the shared cases are in
// the conformance suite). ---

impl Request for Ping {
    type Response = Pong;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_the_requester_fails_its_pending_requests_at_once() {
    let broker = InMemoryBus::new(&config(|_| {}));
    let (requester, responder) = (Arc::new(broker.clone()), broker.clone());
    let gate = Arc::new(Gate::default());
    // Binds the group; the responder holds every request until the gate opens.
    let responder_bus: Arc<dyn EventBus> = Arc::new(responder);
    Responders::new()
        .on_fn({
            let gate = gate.clone();
            move |ping: Ping, _| {
                let gate = gate.clone();
                async move {
                    gate.pass().await;
                    Ok(Pong { n: ping.n })
                }
            }
        })
        .subscribe(&responder_bus, "pong")
        .await
        .unwrap();
    let client = RequestClient::<Ping>::new(requester.clone(), Duration::from_secs(30));
    let waiting = tokio::spawn(async move { client.send(&Ping { n: 1 }).await });
    broker
        .wait_until("the request is being handled", WAIT, |s| {
            s.groups["pong"].in_flight == 1
        })
        .await
        .unwrap();
    requester.shutdown().await.unwrap();
    let err = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("a pending request must not wait for its timeout after shutdown")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, RequestError::ShutDown), "{err:?}");
    // The responder's answer then finds no requester: the request is still
    // handled (not retried, not dead-lettered).
    gate.open();
    let stats = broker.wait_idle(WAIT).await.unwrap();
    assert_eq!(
        (
            stats.groups["pong"].handled,
            stats.groups["pong"].dead_lettered
        ),
        (1, 0)
    );
    assert!(matches!(
        RequestClient::<Ping>::new(requester, WAIT)
            .send(&Ping { n: 2 })
            .await,
        Err(RequestError::ShutDown)
    ));
    responder_bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_a_dropped_connection_are_unroutable() {
    let broker = InMemoryBus::new(&config(|_| {}));
    let gone = broker.clone();
    // A request as `gone` would have sent it: its reply address is gone's inbox.
    let mut request = Envelope::for_event(&Ping { n: 1 }).unwrap();
    let address = {
        let spy: Arc<dyn EventBus> = Arc::new(broker.clone());
        let captured = Arc::new(parking_lot::Mutex::new(None));
        Responders::new()
            .on_fn({
                let captured = captured.clone();
                move |_: Ping, d: messaging_abstractions::Delivery| {
                    *captured.lock() = d.envelope.headers.get(REPLY_TO_HEADER).cloned();
                    async { Ok(Pong { n: 0 }) }
                }
            })
            .subscribe(&spy, "spy")
            .await
            .unwrap();
        gone.request(request.clone(), WAIT).await.unwrap();
        spy.shutdown().await.unwrap();
        let address = captured.lock().clone();
        address.expect("the request carried a reply address")
    };
    drop(gone);
    request.headers.insert(REPLY_TO_HEADER.into(), address);
    let reply = Envelope::for_event(&Pong { n: 1 }).unwrap();
    assert!(matches!(
        broker.reply(&request, reply).await,
        Err(PublishError::Unroutable { .. })
    ));
    // A message without a reply address cannot be answered either.
    let plain = Envelope::for_event(&Ping { n: 2 }).unwrap();
    let reply = Envelope::for_event(&Pong { n: 2 }).unwrap();
    assert!(matches!(
        broker.reply(&plain, reply).await,
        Err(PublishError::Unroutable { .. })
    ));
    broker.shutdown().await.unwrap();
}

//! Request/response on RabbitMQ beyond the shared suite: a lost connection
//! while a request waits, a responder that is down, a requester that is gone.
//! (The broker restart is in `broker_restart.rs`.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chassis_core::HealthStatus;
use common::{Vhost, eventually};
use messaging_abstractions::request::REPLY_TO_HEADER;
use messaging_abstractions::{
    Delivery, Envelope, EventBus, HandlerError, IntegrationEvent, PublishError, Request,
    RequestClient, RequestError, Responders,
};
use messaging_rabbitmq::QueueType;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct Quote {
    n: u32,
}

impl IntegrationEvent for Quote {
    const EVENT_TYPE: &'static str = "test.quote.v1";
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Quoted {
    n: u32,
    packages: u32,
}

impl IntegrationEvent for Quoted {
    const EVENT_TYPE: &'static str = "test.quoted.v1";
}

impl Request for Quote {
    type Response = Quoted;
}

/// A responder that holds requests while `held` is set, until notified.
#[derive(Default)]
struct Gate {
    held: AtomicBool,
    open: Notify,
    /// Requests that reached the responder function.
    started: AtomicUsize,
    /// Request number and reply address of each request seen, in arrival
    /// order (a redelivered request may arrive after a newer one).
    reply_to: Mutex<Vec<(u32, String)>>,
}

impl Gate {
    fn holding() -> Arc<Self> {
        let gate = Arc::new(Self::default());
        gate.held.store(true, Ordering::Release);
        gate
    }

    fn release(&self) {
        self.held.store(false, Ordering::Release);
        self.open.notify_waiters();
    }
}

async fn serve(bus: &Arc<dyn EventBus>, gate: &Arc<Gate>) {
    let gate = gate.clone();
    Responders::new()
        .on_fn(move |quote: Quote, d: Delivery| {
            let gate = gate.clone();
            async move {
                let mut open = std::pin::pin!(gate.open.notified());
                open.as_mut().enable();
                gate.started.fetch_add(1, Ordering::AcqRel);
                if let Some(to) = d.envelope.headers.get(REPLY_TO_HEADER) {
                    gate.reply_to.lock().push((quote.n, to.clone()));
                }
                if gate.held.load(Ordering::Acquire) {
                    open.await;
                }
                Ok::<_, HandlerError>(Quoted {
                    n: quote.n,
                    packages: quote.n.div_ceil(3),
                })
            }
        })
        .subscribe(bus, "quotes")
        .await
        .unwrap();
}

async fn connect(vhost: &Vhost, service: &str) -> Arc<dyn EventBus> {
    Arc::new(
        vhost
            .config(QueueType::Quorum)
            .connect(service)
            .await
            .unwrap(),
    )
}

async fn healthy(bus: &Arc<dyn EventBus>) {
    let health = bus.health_checks().pop().unwrap();
    eventually("bus healthy", WAIT, || {
        let health = health.clone();
        async move { health.check().await == HealthStatus::Healthy }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_fails_the_waiting_request_at_once_and_the_next_one_works() {
    let vhost = Vhost::new();
    let (orders, shipping) = (
        connect(&vhost, "orders").await,
        connect(&vhost, "shipping").await,
    );
    let gate = Gate::holding();
    serve(&shipping, &gate).await;
    let quotes = RequestClient::<Quote>::new(orders.clone(), Duration::from_secs(60));

    let waiting = {
        let quotes = quotes.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            (quotes.send(&Quote { n: 7 }).await, started.elapsed())
        })
    };
    eventually("the responder holds the request", WAIT, || {
        let n = gate.started.load(Ordering::Acquire);
        async move { n >= 1 }
    })
    .await;
    vhost.close_connections();
    let (result, took) = waiting.await.unwrap();
    match result {
        Err(RequestError::Interrupted {
            request_type,
            reason,
        }) => {
            assert_eq!(request_type, Quote::EVENT_TYPE);
            assert!(reason.contains("lost"), "{reason}");
        }
        other => panic!("expected Interrupted, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(10),
        "Interrupted must come when the connection drops, not at the 60 s timeout: {took:?}"
    );
    assert!(
        RequestError::Interrupted {
            request_type: String::new(),
            reason: String::new()
        }
        .is_transient()
    );

    // Both buses reconnect; the requester declares a new reply queue.
    healthy(&orders).await;
    healthy(&shipping).await;
    gate.release();
    let answer = quotes.send(&Quote { n: 8 }).await.unwrap();
    assert_eq!(answer, Quoted { n: 8, packages: 3 });
    let addresses = gate.reply_to.lock().clone();
    let of = |n: u32| {
        addresses
            .iter()
            .find(|(seen, _)| *seen == n)
            .map(|(_, to)| to.clone())
            .unwrap_or_else(|| panic!("request {n} never reached the responder: {addresses:?}"))
    };
    assert_ne!(
        of(7),
        of(8),
        "the reply queue is re-declared on the new connection"
    );
    // The interrupted request, redelivered after the cut, was answered into
    // the old (deleted) reply queue: unroutable, so just acknowledged.
    let store = shipping.dead_letters().unwrap();
    eventually("the queue drained", WAIT, || {
        let n = gate.started.load(Ordering::Acquire);
        async move { n >= 3 }
    })
    .await;
    assert!(store.list(Some("quotes")).await.is_empty());
    orders.shutdown().await.unwrap();
    shipping.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_that_is_down_means_timeout_then_its_backlog_is_skipped() {
    let vhost = Vhost::new();
    let orders = connect(&vhost, "orders").await;
    let quotes = RequestClient::<Quote>::new(orders.clone(), Duration::from_millis(500));
    // Nobody ever subscribed: no queue is bound, the broker returns it at once.
    let started = tokio::time::Instant::now();
    assert!(matches!(
        quotes.send(&Quote { n: 1 }).await,
        Err(RequestError::NoResponder { .. })
    ));
    assert!(started.elapsed() < Duration::from_millis(500));

    // The shipping service subscribed once and is now down: its durable
    // queue still takes requests, so the requester times out.
    let gate = Arc::new(Gate::default());
    let shipping = connect(&vhost, "shipping").await;
    serve(&shipping, &gate).await;
    shipping.shutdown().await.unwrap();
    let started = tokio::time::Instant::now();
    match quotes.send(&Quote { n: 2 }).await {
        Err(RequestError::Timeout { waited, .. }) => {
            assert_eq!(waited, Duration::from_millis(500));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // When it comes back, the expired request is acknowledged unanswered
    // (its responder function is not even called), then it serves again.
    let shipping = connect(&vhost, "shipping").await;
    serve(&shipping, &gate).await;
    let answer = RequestClient::<Quote>::new(orders.clone(), WAIT)
        .send(&Quote { n: 4 })
        .await
        .unwrap();
    assert_eq!(answer, Quoted { n: 4, packages: 2 });
    assert_eq!(gate.started.load(Ordering::Acquire), 1);
    assert!(
        shipping
            .dead_letters()
            .unwrap()
            .list(Some("quotes"))
            .await
            .is_empty()
    );
    orders.shutdown().await.unwrap();
    shipping.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_requester_that_is_gone_is_unroutable_and_the_request_still_done() {
    let vhost = Vhost::new();
    let (orders, shipping) = (
        connect(&vhost, "orders").await,
        connect(&vhost, "shipping").await,
    );
    let gate = Gate::holding();
    serve(&shipping, &gate).await;
    let waiting = {
        let quotes = RequestClient::<Quote>::new(orders.clone(), WAIT);
        tokio::spawn(async move { quotes.send(&Quote { n: 5 }).await })
    };
    eventually("the responder holds the request", WAIT, || {
        let n = gate.started.load(Ordering::Acquire);
        async move { n >= 1 }
    })
    .await;
    // The requester shuts down: its waiting request fails, its reply queue goes.
    orders.shutdown().await.unwrap();
    match waiting.await.unwrap() {
        Err(RequestError::ShutDown) => {}
        other => panic!("expected ShutDown, got {other:?}"),
    }
    let address = gate.reply_to.lock()[0].1.clone();
    let request = Envelope::for_event(&Quote { n: 5 })
        .unwrap()
        .with_header(REPLY_TO_HEADER, address);
    let reply = Envelope::for_event(&Quoted { n: 5, packages: 2 }).unwrap();
    assert!(matches!(
        shipping.reply(&request, reply).await,
        Err(PublishError::Unroutable { .. })
    ));
    // The held responder answers into the void and acknowledges: nothing is
    // retried or dead-lettered (shutdown waits for that handler to settle).
    gate.release();
    shipping.shutdown().await.unwrap();
    let (orders, shipping) = (
        connect(&vhost, "orders").await,
        connect(&vhost, "shipping").await,
    );
    serve(&shipping, &gate).await;
    let answer = RequestClient::<Quote>::new(orders.clone(), WAIT)
        .send(&Quote { n: 6 })
        .await
        .unwrap();
    assert_eq!(answer, Quoted { n: 6, packages: 2 });
    assert_eq!(
        gate.started.load(Ordering::Acquire),
        2,
        "the first request was acknowledged, not delivered again"
    );
    assert!(
        shipping
            .dead_letters()
            .unwrap()
            .list(Some("quotes"))
            .await
            .is_empty()
    );
    orders.shutdown().await.unwrap();
    shipping.shutdown().await.unwrap();
}

/// `name → (durable, type)` of every queue of `vhost`, from `rabbitmqctl`.
fn queues(vhost: &Vhost) -> std::collections::BTreeMap<String, (String, String)> {
    chassis_testing::rabbitmq::rabbitmqctl(&[
        "list_queues",
        "-p",
        &vhost.name,
        "--quiet",
        "--no-table-headers",
        "name",
        "durable",
        "type",
    ])
    .lines()
    .filter_map(|line| {
        let mut fields = line.split_whitespace();
        Some((
            fields.next()?.to_owned(),
            (fields.next()?.to_owned(), fields.next()?.to_owned()),
        ))
    })
    .collect()
}

/// Requests are worth nothing after their requester's timeout: a responder
/// group's queues are classic and not durable even where events get quorum
/// queues (no replicated, disk-backed log for them), and they still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responders_consume_from_a_classic_queue_that_is_not_durable() {
    let vhost = Vhost::new();
    let shipping = connect(&vhost, "shipping").await;
    let orders = connect(&vhost, "orders").await;
    serve(&shipping, &Arc::new(Gate::default())).await;
    shipping
        .subscribe(messaging_abstractions::Subscription::new(
            "events",
            common::on("test.placed.v1", |_| async { Ok(()) }),
        ))
        .await
        .unwrap();

    let answer = RequestClient::<Quote>::new(orders.clone(), WAIT)
        .send(&Quote { n: 3 })
        .await
        .unwrap();
    assert_eq!(answer, Quoted { n: 3, packages: 1 });

    let queues = queues(&vhost);
    let kind = |name: &str| {
        queues
            .get(name)
            .map(|(durable, kind)| (durable.as_str(), kind.as_str()))
            .unwrap_or_else(|| panic!("no queue {name} in {queues:?}"))
    };
    assert_eq!(kind("test.events.quotes"), ("false", "classic"));
    assert_eq!(kind("test.events.events"), ("true", "quorum"));
    // Dead letters of either kind are kept for inspection.
    assert_eq!(kind("test.events.quotes.dlq"), ("true", "classic"));
    assert_eq!(kind("test.events.events.dlq"), ("true", "quorum"));
    shipping.shutdown().await.unwrap();
    orders.shutdown().await.unwrap();
}

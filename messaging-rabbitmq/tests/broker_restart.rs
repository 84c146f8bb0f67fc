//! The broker application is stopped and started (`rabbitmqctl stop_app` /
//! `start_app`) while messages flow: no confirmed message is lost, and with
//! the inbox of `chassis-storage` no message has its effect twice.
//!
//! This stops the whole broker for a few seconds, so it lives in a test
//! binary of its own and takes the crate's broker lock exclusively: no other
//! test of this crate runs meanwhile (they take it shared). CI runs this
//! binary on its own as well (`cargo test -p messaging-rabbitmq --test
//! broker_restart`), since tests of other crates do not take the lock. A
//! drop guard starts the broker application again whatever happens, so the
//! broker is always left running.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chassis_core::HealthStatus;
use chassis_storage::{Inbox, InboxOutcome};
use chassis_testing::rabbitmq::BrokerStopped;
use common::{BrokerLock, Vhost, envelope, eventually, on};
use messaging_abstractions::{EventBus, HandlerError, PublishError, Subscription};
use messaging_rabbitmq::QueueType;
use parking_lot::Mutex;
use storage_inmemory::InMemoryStore;
use uuid::Uuid;

async fn restart_while_flowing(queue_type: QueueType) {
    let vhost = Vhost::with_lock(BrokerLock::exclusive());
    let mut config = vhost.config(queue_type);
    config.rabbitmq.publish_wait = Duration::from_secs(2);
    config.rabbitmq.reconnect_initial_backoff = Duration::from_millis(100);
    config.rabbitmq.reconnect_max_backoff = Duration::from_millis(500);
    let publisher = config.connect("orders").await.unwrap();
    let consumer = config.connect("shipping").await.unwrap();

    // The handler's effect goes through the inbox: an effect per message id.
    let store = Arc::new(InMemoryStore::new());
    let inbox = Inbox::new(store, "shipping");
    let effects: Arc<Mutex<BTreeMap<Uuid, usize>>> = Arc::default();
    let duplicates = Arc::new(Mutex::new(0usize));
    let (log, dup) = (effects.clone(), duplicates.clone());
    consumer
        .subscribe(Subscription::new(
            "shipping",
            on("order.placed.v1", move |d| {
                let (inbox, log, dup) = (inbox.clone(), log.clone(), dup.clone());
                async move {
                    let outcome = inbox
                        .process(&d.envelope, |_uow| Box::pin(async { Ok(()) }))
                        .await
                        .map_err(HandlerError::from)?;
                    match outcome {
                        InboxOutcome::Processed(()) => {
                            *log.lock().entry(d.envelope.message_id).or_default() += 1;
                        }
                        InboxOutcome::Duplicate => *dup.lock() += 1,
                    }
                    Ok(())
                }
            }),
        ))
        .await
        .unwrap();

    // A publisher that behaves like the outbox relay: a message is retried
    // until the bus confirms it; only confirmed messages must arrive.
    let stop = Arc::new(AtomicBool::new(false));
    let confirmed: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let unavailable = Arc::new(Mutex::new(0usize));
    let flow = {
        let (bus, stop, confirmed, unavailable) = (
            publisher.clone(),
            stop.clone(),
            confirmed.clone(),
            unavailable.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                let e = envelope("order.placed.v1", n);
                loop {
                    match bus.publish(e.clone()).await {
                        Ok(()) => break,
                        Err(PublishError::Unavailable(_) | PublishError::Timeout(_)) => {
                            *unavailable.lock() += 1;
                        }
                        Err(other) => panic!("publish failed for another reason: {other}"),
                    }
                }
                confirmed.lock().push(e.message_id);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    eventually("traffic flowing", Duration::from_secs(20), || {
        let n = effects.lock().len();
        async move { n >= 100 }
    })
    .await;
    let health = consumer.health_checks().pop().unwrap();
    let before_stop = confirmed.lock().len();
    {
        let broker = BrokerStopped::stop_app();
        eventually(
            "health reports the broker down",
            Duration::from_secs(20),
            || {
                let health = health.clone();
                async move { matches!(health.check().await, HealthStatus::Unhealthy(_)) }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        broker.start_again();
    }
    eventually(
        "health reports the broker back",
        Duration::from_secs(60),
        || {
            let health = health.clone();
            async move { health.check().await == HealthStatus::Healthy }
        },
    )
    .await;
    let after_restart = confirmed.lock().len();
    eventually(
        "traffic flowing after the restart",
        Duration::from_secs(60),
        || {
            let n = confirmed.lock().len();
            async move { n >= after_restart + 100 }
        },
    )
    .await;
    stop.store(true, Ordering::Release);
    flow.await.unwrap();

    let sent: Vec<Uuid> = confirmed.lock().clone();
    eventually(
        "every confirmed message handled",
        Duration::from_secs(60),
        || {
            let effects = effects.lock();
            let done = sent.iter().all(|id| effects.contains_key(id));
            async move { done }
        },
    )
    .await;
    let effects = effects.lock().clone();
    let lost: Vec<&Uuid> = sent.iter().filter(|id| !effects.contains_key(id)).collect();
    let twice: BTreeSet<&Uuid> = effects
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    println!(
        "{queue_type:?}: {} confirmed ({before_stop} before the stop), {} handled, {} lost, \
         {} effects twice, {} duplicate deliveries absorbed by the inbox, {} publishes refused \
         while the broker was down",
        sent.len(),
        effects.len(),
        lost.len(),
        twice.len(),
        *duplicates.lock(),
        *unavailable.lock()
    );
    assert!(lost.is_empty(), "confirmed messages lost: {lost:?}");
    assert!(twice.is_empty(), "effects applied twice: {twice:?}");
    assert!(
        *unavailable.lock() > 0,
        "publishes during the outage fail with Unavailable after publish_wait"
    );
    publisher.shutdown().await.unwrap();
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_lost_across_a_broker_restart_quorum() {
    restart_while_flowing(QueueType::Quorum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_lost_across_a_broker_restart_classic() {
    restart_while_flowing(QueueType::Classic).await;
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Quote {
    n: u32,
}

impl messaging_abstractions::IntegrationEvent for Quote {
    const EVENT_TYPE: &'static str = "test.quote.v1";
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Quoted {
    n: u32,
}

impl messaging_abstractions::IntegrationEvent for Quoted {
    const EVENT_TYPE: &'static str = "test.quoted.v1";
}

impl messaging_abstractions::Request for Quote {
    type Response = Quoted;
}

/// The documented behaviour across a restart: a request waiting when the
/// broker goes away fails at once with `Interrupted`; requests while it is
/// away fail after `publish_wait` (never a hang); once the bus has
/// reconnected, requests work again on a new reply queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_requests_fail_at_once_across_a_broker_restart_and_new_ones_work() {
    use messaging_abstractions::{RequestClient, RequestError, Responders};

    let vhost = Vhost::with_lock(BrokerLock::exclusive());
    let mut config = vhost.config(QueueType::Quorum);
    config.rabbitmq.publish_wait = Duration::from_secs(2);
    config.rabbitmq.reconnect_initial_backoff = Duration::from_millis(100);
    config.rabbitmq.reconnect_max_backoff = Duration::from_millis(500);
    let orders: Arc<dyn EventBus> = Arc::new(config.connect("orders").await.unwrap());
    let shipping: Arc<dyn EventBus> = Arc::new(config.connect("shipping").await.unwrap());
    let held = Arc::new(AtomicBool::new(true));
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(Mutex::new(0usize));
    Responders::new()
        .on_fn({
            let (held, release, started) = (held.clone(), release.clone(), started.clone());
            move |quote: Quote, _d| {
                let (held, release, started) = (held.clone(), release.clone(), started.clone());
                async move {
                    let mut released = std::pin::pin!(release.notified());
                    released.as_mut().enable();
                    *started.lock() += 1;
                    if held.load(Ordering::Acquire) {
                        released.await;
                    }
                    Ok::<_, HandlerError>(Quoted { n: quote.n })
                }
            }
        })
        .subscribe(&shipping, "quotes")
        .await
        .unwrap();
    let quotes = RequestClient::<Quote>::new(orders.clone(), Duration::from_secs(60));
    let waiting = {
        let quotes = quotes.clone();
        tokio::spawn(async move {
            let at = tokio::time::Instant::now();
            (quotes.send(&Quote { n: 1 }).await, at)
        })
    };
    eventually(
        "the responder holds the request",
        Duration::from_secs(20),
        || {
            let n = *started.lock();
            async move { n >= 1 }
        },
    )
    .await;
    {
        let broker = BrokerStopped::stop_app();
        let stopped = tokio::time::Instant::now();
        let (result, _) = waiting.await.unwrap();
        let noticed = stopped.elapsed();
        println!("pending request failed {noticed:?} after stop_app: {result:?}");
        assert!(
            matches!(result, Err(RequestError::Interrupted { .. })),
            "a pending request must fail with Interrupted, got {result:?}"
        );
        assert!(
            noticed < Duration::from_secs(15),
            "Interrupted must come when the connection drops, not at the 60 s timeout"
        );
        // While the broker is away: a clear error after `publish_wait`.
        let at = tokio::time::Instant::now();
        let during = quotes.send(&Quote { n: 2 }).await;
        println!(
            "request during the outage: {during:?} after {:?}",
            at.elapsed()
        );
        assert!(
            matches!(
                during,
                Err(RequestError::Publish(PublishError::Unavailable(_))
                    | RequestError::Interrupted { .. })
            ),
            "{during:?}"
        );
        assert!(during.unwrap_err().is_transient());
        assert!(at.elapsed() < Duration::from_secs(10));
        broker.start_again();
    }
    for bus in [&orders, &shipping] {
        let health = bus.health_checks().pop().unwrap();
        eventually("the bus reconnected", Duration::from_secs(60), || {
            let health = health.clone();
            async move { health.check().await == HealthStatus::Healthy }
        })
        .await;
    }
    held.store(false, Ordering::Release);
    release.notify_waiters();
    let answer = RequestClient::<Quote>::new(orders.clone(), Duration::from_secs(30))
        .send(&Quote { n: 3 })
        .await
        .unwrap();
    assert_eq!(answer, Quoted { n: 3 });
    let letters = shipping.dead_letters().unwrap().list(Some("quotes")).await;
    assert!(letters.is_empty(), "nothing dead-lettered: {letters:?}");
    orders.shutdown().await.unwrap();
    shipping.shutdown().await.unwrap();
}

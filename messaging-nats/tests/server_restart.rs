//! The NATS server is stopped and started while events flow from a real
//! outbox (`chassis-storage`'s relay over an in-memory store) to a consumer
//! whose effects go through the inbox: the outbox keeps the events while
//! the server is away, nothing committed is lost and nothing has its effect
//! twice, and neither bus is restarted.
//!
//! The server is one of this test's own (`chassis_testing::nats`), on its
//! own port and store, so stopping it disturbs no other test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chassis_core::HealthStatus;
use chassis_domain::UnitOfWork;
use chassis_storage::{Inbox, InboxOutcome, OutboxRelay};
use chassis_testing::nats::NatsServer;
use common::{Prefix, envelope, eventually, on};
use messaging_abstractions::{EventBus, HandlerError, MessageContext, Subscription};
use messaging_nats::NatsBus;
use parking_lot::Mutex;
use storage_abstractions::{OutboxConfig, Store};
use storage_inmemory::InMemoryStore;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_and_no_effect_twice_across_a_server_restart() {
    let mut server = NatsServer::start();
    let prefix = Prefix::on("restart", &server.url());
    let messaging = prefix.messaging();
    let mut nats = prefix.nats();
    nats.publish_wait = Duration::from_secs(1);
    nats.ack_wait = Duration::from_secs(2);
    let publisher: Arc<dyn EventBus> =
        Arc::new(NatsBus::connect(&messaging, &nats, "orders").await.unwrap());
    let consumer = NatsBus::connect(&messaging, &nats, "shipping")
        .await
        .unwrap();

    // The consumer's effect goes through the inbox: one effect per message id.
    let consumer_store = Arc::new(InMemoryStore::new());
    let inbox = Inbox::new(consumer_store, "shipping");
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

    // The order service commits events to its outbox; the relay publishes.
    let orders_store = Arc::new(InMemoryStore::new());
    let relay = OutboxRelay::new(
        orders_store.outbox(),
        publisher.clone(),
        OutboxConfig {
            poll_interval: Duration::from_millis(20),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            ..OutboxConfig::default()
        },
    )
    .start();
    let stop = Arc::new(AtomicBool::new(false));
    let committed: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let flow = {
        let (store, stop, committed) = (orders_store.clone(), stop.clone(), committed.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                let e = envelope("order.placed.v1", n);
                let id = e.message_id;
                let mut uow = chassis_storage::StoreUnitOfWork::begin(
                    store.as_ref(),
                    MessageContext::default(),
                )
                .await
                .unwrap();
                uow.enqueue(&format!("order-{}", n % 7), vec![e])
                    .await
                    .unwrap();
                uow.commit().await.unwrap();
                committed.lock().push(id);
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
    let before_stop = committed.lock().len();
    server.stop();
    eventually(
        "health reports the server down",
        Duration::from_secs(20),
        || {
            let health = health.clone();
            async move { matches!(health.check().await, HealthStatus::Unhealthy(_)) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let committed_while_down = committed.lock().len() - before_stop;
    let handled_while_down = effects.lock().len();
    server.start_again();
    eventually(
        "health reports the server back",
        Duration::from_secs(30),
        || {
            let health = health.clone();
            async move { health.check().await == HealthStatus::Healthy }
        },
    )
    .await;
    let after_restart = committed.lock().len();
    eventually(
        "events committed after the restart handled",
        Duration::from_secs(60),
        || {
            let n = effects.lock().len();
            async move { n >= after_restart + 50 }
        },
    )
    .await;
    stop.store(true, Ordering::Release);
    flow.await.unwrap();

    let sent: Vec<Uuid> = committed.lock().clone();
    // Bounded wait; what is missing then is reported below as lost.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline
        && !sent.iter().all(|id| effects.lock().contains_key(id))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = relay.shutdown().await.unwrap();
    let effects = effects.lock().clone();
    let lost: Vec<&Uuid> = sent.iter().filter(|id| !effects.contains_key(id)).collect();
    let twice: BTreeSet<&Uuid> = effects
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    println!(
        "{} committed ({before_stop} before the stop, {committed_while_down} while the server \
         was down, {handled_while_down} handled by then), {} handled, {} lost, {} effects twice, \
         {} duplicate deliveries absorbed by the inbox; relay: {stats:?}",
        sent.len(),
        effects.len(),
        lost.len(),
        twice.len(),
        *duplicates.lock(),
    );
    let positions: Vec<usize> = lost
        .iter()
        .filter_map(|id| sent.iter().position(|s| s == *id))
        .collect();
    assert!(
        lost.is_empty(),
        "committed events lost at positions {positions:?}"
    );
    assert!(twice.is_empty(), "effects applied twice: {twice:?}");
    assert!(
        committed_while_down > 0,
        "events were committed while the server was away"
    );
    assert!(
        stats.bus_unavailable > 0,
        "the relay saw the bus unavailable and kept the events: {stats:?}"
    );
    assert_eq!(stats.quarantined, 0, "nothing quarantined: {stats:?}");
    publisher.shutdown().await.unwrap();
    consumer.shutdown().await.unwrap();
    drop(prefix);
}

//! Outbox, inbox and repository scenarios run on every storage provider.
//! Each scenario gets a fresh, empty store.

#![allow(dead_code, unreachable_pub)]

pub mod doubles;
pub mod model;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chassis_core::{HealthCheck, HealthStatus};
use chassis_domain::{CommandPipeline, DomainError, MessageContext};
use chassis_storage::{
    InboxOutcome, OutboxBacklogCheck, OutboxRelay, Persistence, Repository, decode_outbox_body,
};
use messaging_abstractions::{Envelope, EventBus, Handlers, MessagingConfig, Subscription};
use messaging_inmemory::{InMemoryBus, Outcome};
use storage_abstractions::{OutboxConfig, OutboxMessage, StorageConfig, Store};
use uuid::Uuid;

use doubles::{BusEvent, FlakyOutbox, TestBus};
use model::{Counter, Increment, IncrementHandler, Incremented, Tally, TallyHandler, bump_tally};

/// Overall bound of every wait: generous, so a loaded machine does not flake.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh store and how to dispose of it.
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub cleanup: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Runs `scenario` on the fixture's store, then cleans up — also when the
/// scenario panics (the panic is re-raised afterwards).
pub async fn run<F, Fut>(fixture: Fixture, scenario: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let result = tokio::spawn(scenario(fixture.store.clone())).await;
    fixture.store.shutdown().await;
    fixture.cleanup.await;
    if let Err(error) = result {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Generates one `#[tokio::test]` per scenario for a provider; `$fixture` is
/// an async fn returning a [`Fixture`].
#[macro_export]
macro_rules! outbox_suite {
    ($fixture:path) => {
        $crate::outbox_suite!($fixture;
            command_commits_aggregate_and_events_atomically,
            rollback_publishes_nothing,
            relay_publishes_in_order_per_aggregate,
            late_commit_is_not_skipped,
            relay_restarted_mid_batch_loses_nothing,
            bus_down_backs_off_then_delivers,
            drain_publishes_until_empty_or_deadline,
            poison_message_quarantined_while_others_flow,
            same_message_twice_has_one_effect,
            repository_crud_concurrency_and_paging,
            backlog_health_check,
            housekeeping_purges_sent_rows_and_inbox_marks,
        );
    };
    ($fixture:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                common::run($fixture().await, common::$name).await;
            }
        )+
    };
}

/// Waits until `condition` holds, checking every 5 ms; panics naming `what`
/// after [`TIMEOUT`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn fast_outbox() -> OutboxConfig {
    OutboxConfig {
        batch_size: 10,
        poll_interval: Duration::from_millis(200),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(80),
        ..OutboxConfig::default()
    }
}

fn storage(store: &Arc<dyn Store>, outbox: OutboxConfig) -> Persistence {
    Persistence::new(
        store.clone(),
        StorageConfig {
            outbox,
            ..StorageConfig::default()
        },
    )
}

fn bus() -> InMemoryBus {
    InMemoryBus::new(&MessagingConfig::default())
}

fn pipeline(storage: &Persistence) -> CommandPipeline {
    CommandPipeline::new().with_unit_of_work(Arc::new(storage.clone()))
}

fn ctx(correlation: &str) -> MessageContext {
    MessageContext {
        correlation_id: Some(correlation.to_owned()),
        ..MessageContext::default()
    }
}

async fn increment(pipeline: &CommandPipeline, id: &str) -> u64 {
    pipeline
        .execute(&IncrementHandler, Increment::new(id), ctx("corr"))
        .await
        .expect("increment succeeds")
}

async fn pending(store: &Arc<dyn Store>) -> u64 {
    store.outbox().backlog().await.expect("backlog").pending
}

/// Values of `counter` in order of first publication.
fn first_seen_values(events: &[Incremented], counter: &str) -> Vec<u64> {
    let mut seen = HashSet::new();
    events
        .iter()
        .filter(|e| e.counter_id == counter && seen.insert(e.value))
        .map(|e| e.value)
        .collect()
}

pub async fn command_commits_aggregate_and_events_atomically(store: Arc<dyn Store>) {
    let storage = storage(&store, fast_outbox());
    let pipeline = pipeline(&storage);
    assert_eq!(increment(&pipeline, "c-1").await, 1);
    let out = pipeline
        .execute(&IncrementHandler, Increment::new("c-1"), ctx("corr-2"))
        .await
        .unwrap();
    assert_eq!(out, 2);

    // Both the aggregate and its two events are committed...
    let mut uow = storage.begin(MessageContext::default()).await.unwrap();
    let counter = Repository::<Counter>::new()
        .load(&mut uow, &"c-1".to_owned())
        .await
        .unwrap();
    assert_eq!(
        (
            counter.value,
            chassis_domain::AggregateRoot::version(&counter)
        ),
        (2, 2)
    );
    drop(uow);
    let rows = store.outbox().fetch_pending(100).await.unwrap();
    assert_eq!(rows.len(), 2);
    let envelopes: Vec<Envelope> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.message.ordering_key, "c-1");
            assert_eq!(r.message.event_type, "test.counter.incremented.v1");
            decode_outbox_body(&r.message.body).unwrap()
        })
        .collect();
    assert_eq!(envelopes[0].message_id, rows[0].message.id);
    assert_eq!(envelopes[1].correlation_id.as_deref(), Some("corr-2"));
    assert_eq!(envelopes[1].partition_key.as_deref(), Some("c-1"));

    // ...and relayed after commit, in order.
    let bus = TestBus::new(bus());
    let relay = storage.start_relay(bus.clone());
    bus.wait_for("2 publishes", TIMEOUT, |b| b.published().len() >= 2)
        .await;
    assert_eq!(first_seen_values(&bus.increments(), "c-1"), vec![1, 2]);
    assert_eq!(
        bus.published()[0],
        envelopes[0],
        "every envelope field survives the outbox"
    );
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.published, 2);
    assert_eq!(pending(&store).await, 0);
}

pub async fn rollback_publishes_nothing(store: Arc<dyn Store>) {
    let storage = storage(&store, fast_outbox());
    let pipeline = pipeline(&storage);
    let failing = Increment {
        fail_after_save: true,
        ..Increment::new("c-bad")
    };
    let err = pipeline
        .execute(&IncrementHandler, failing, ctx("corr-bad"))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Conflict { .. }), "{err}");
    let mut uow = storage.begin(MessageContext::default()).await.unwrap();
    assert!(
        Repository::<Counter>::new()
            .get(&mut uow, &"c-bad".to_owned())
            .await
            .unwrap()
            .is_none()
    );
    drop(uow);
    assert!(store.outbox().fetch_pending(100).await.unwrap().is_empty());

    // A later command's event goes out; the rolled-back one never does (the
    // relay works in outbox order, so it would have come first).
    increment(&pipeline, "c-good").await;
    let bus = TestBus::new(bus());
    let relay = storage.start_relay(bus.clone());
    bus.wait_for("c-good published", TIMEOUT, |b| !b.published().is_empty())
        .await;
    relay.shutdown().await.unwrap();
    let events = bus.increments();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].counter_id, "c-good");
}

pub async fn relay_publishes_in_order_per_aggregate(store: Arc<dyn Store>) {
    const COUNTERS: usize = 4;
    const PER_COUNTER: u64 = 24; // 8 workers x 12 increments, round robin
    let storage = storage(
        &store,
        OutboxConfig {
            batch_size: 7,
            ..fast_outbox()
        },
    );
    let bus = TestBus::new(bus());
    // The relay runs while commands commit concurrently.
    let relay = storage.start_relay(bus.clone());
    let pipeline = pipeline(&storage);
    let mut tasks = Vec::new();
    for worker in 0..8usize {
        let pipeline = pipeline.clone();
        tasks.push(tokio::spawn(async move {
            let per_worker = COUNTERS * PER_COUNTER as usize / 8;
            for turn in worker..worker + per_worker {
                let id = format!("c-{}", turn % COUNTERS);
                // Two workers may race on one counter: the conflict is retried.
                pipeline
                    .execute_with_retries(&IncrementHandler, Increment::new(&id), ctx("corr"), 100)
                    .await
                    .expect("increment succeeds");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = COUNTERS * PER_COUNTER as usize;
    bus.wait_for("every event published", TIMEOUT, |b| {
        b.published()
            .iter()
            .map(|e| e.message_id)
            .collect::<HashSet<_>>()
            .len()
            >= total
    })
    .await;
    relay.shutdown().await.unwrap();
    let events = bus.increments();
    for c in 0..COUNTERS {
        let values = first_seen_values(&events, &format!("c-{c}"));
        assert_eq!(
            values,
            (1..=PER_COUNTER).collect::<Vec<_>>(),
            "order of c-{c}"
        );
    }
}

pub async fn late_commit_is_not_skipped(store: Arc<dyn Store>) {
    let storage = storage(&store, fast_outbox());
    let bus = TestBus::new(bus());
    let relay = storage.start_relay(bus.clone());
    // A transaction writes its event first but commits last.
    let mut slow = storage.begin(ctx("slow")).await.unwrap();
    let mut a = Counter::new("a");
    a.increment(false);
    Repository::<Counter>::new()
        .add(&mut slow, &mut a)
        .await
        .unwrap();
    increment(&pipeline(&storage), "b").await;
    bus.wait_for("b published", TIMEOUT, |b| !b.published().is_empty())
        .await;
    slow.commit().await.unwrap();
    bus.wait_for("a published after its late commit", TIMEOUT, |b| {
        first_seen_values(&b.increments(), "a") == vec![1]
    })
    .await;
    relay.shutdown().await.unwrap();
    assert_eq!(pending(&store).await, 0);
}

pub async fn relay_restarted_mid_batch_loses_nothing(store: Arc<dyn Store>) {
    let storage = storage(&store, fast_outbox());
    let pipeline = pipeline(&storage);
    for round in 0..10 {
        for c in 0..6 {
            assert_eq!(increment(&pipeline, &format!("c-{c}")).await, round + 1);
        }
    }
    let all: HashSet<Uuid> = store
        .outbox()
        .fetch_pending(1000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.message.id)
        .collect();
    assert_eq!(all.len(), 60);

    // The first relay publishes a batch, then loses the database before it
    // can mark the second batch sent: it has published messages it could not
    // mark. It is stopped there.
    let bus = TestBus::new(bus());
    let flaky = FlakyOutbox::new(store.outbox(), 2);
    let first = OutboxRelay::new(flaky, bus.clone(), fast_outbox()).start();
    eventually("the first relay hits the failing mark", || async {
        first.stats().storage_errors >= 1
    })
    .await;
    let first_published = first.shutdown().await.unwrap();
    assert_eq!(
        first_published.published, 10,
        "only the first batch was marked"
    );
    let published_before_restart = bus.published().len();
    assert!(
        published_before_restart >= 20,
        "the second batch went out unmarked"
    );
    assert_eq!(pending(&store).await, 50);

    // A new relay publishes everything left, the unmarked batch again.
    let second = storage.start_relay(bus.clone());
    bus.wait_for("every message published", TIMEOUT, |b| {
        b.published()
            .iter()
            .map(|e| e.message_id)
            .collect::<HashSet<_>>()
            == all
    })
    .await;
    eventually("the outbox drains", || async { pending(&store).await == 0 }).await;
    second.shutdown().await.unwrap();
    let published = bus.published();
    assert!(
        published.len() > all.len(),
        "at least once: the unmarked batch was published twice"
    );
    let events = bus.increments();
    for c in 0..6 {
        assert_eq!(
            first_seen_values(&events, &format!("c-{c}")),
            (1..=10).collect::<Vec<_>>()
        );
    }
}

pub async fn bus_down_backs_off_then_delivers(store: Arc<dyn Store>) {
    let storage = storage(&store, fast_outbox());
    let pipeline = pipeline(&storage);
    for _ in 0..5 {
        increment(&pipeline, "c-1").await;
    }
    let bus = TestBus::new(bus());
    bus.down.store(true, Ordering::SeqCst);
    let relay = storage.start_relay(bus.clone());
    bus.wait_for("4 refused rounds", TIMEOUT, |b| {
        b.unavailable_times().len() >= 4
    })
    .await;
    let times = bus.unavailable_times();
    // Exponential backoff: 10 + 20 + 40 ms at least between the 1st and 4th try.
    assert!(
        times[3] - times[0] >= Duration::from_millis(70),
        "backoff too short: {:?}",
        times[3] - times[0]
    );
    assert!(bus.published().is_empty());
    assert_eq!(pending(&store).await, 5);
    assert!(relay.stats().bus_unavailable >= 4);
    assert_eq!(
        relay.stats().message_failures,
        0,
        "an outage is no message's fault"
    );

    bus.down.store(false, Ordering::SeqCst);
    bus.wait_for("5 publishes", TIMEOUT, |b| b.published().len() >= 5)
        .await;
    relay.shutdown().await.unwrap();
    assert_eq!(
        first_seen_values(&bus.increments(), "c-1"),
        vec![1, 2, 3, 4, 5]
    );
    assert!(store.outbox().quarantined().await.unwrap().is_empty());
}

/// `drain` (the host's last relay run at shutdown) keeps publishing until
/// the outbox is empty — through an outage — and gives up at its deadline.
pub async fn drain_publishes_until_empty_or_deadline(store: Arc<dyn Store>) {
    let storage = storage(&store, fast_outbox());
    let pipeline = pipeline(&storage);
    for _ in 0..3 {
        increment(&pipeline, "c-1").await;
    }
    let bus = TestBus::new(bus());
    bus.down.store(true, Ordering::SeqCst);
    let relay = storage.start_relay(bus.clone());
    bus.wait_for("a refused round", TIMEOUT, |b| {
        !b.unavailable_times().is_empty()
    })
    .await;
    // Deadline reached with the bus still down: returns, the rows stay.
    let started = Instant::now();
    let stats = relay.drain(Duration::from_millis(300)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drain overran its deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(stats.published, 0);
    assert_eq!(pending(&store).await, 3);

    // The bus comes back while draining: everything goes out, then it stops.
    let relay = storage.start_relay(bus.clone());
    let refused = bus.unavailable_times().len();
    let draining = tokio::spawn(relay.drain(TIMEOUT));
    bus.wait_for("a refused round while draining", TIMEOUT, |b| {
        b.unavailable_times().len() > refused
    })
    .await;
    bus.down.store(false, Ordering::SeqCst);
    let stats = draining.await.unwrap().unwrap();
    assert_eq!(stats.published, 3);
    assert_eq!(pending(&store).await, 0);
    assert_eq!(first_seen_values(&bus.increments(), "c-1"), vec![1, 2, 3]);
    // An empty outbox: drain returns at once.
    let started = Instant::now();
    storage
        .start_relay(bus.clone())
        .drain(TIMEOUT)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

pub async fn poison_message_quarantined_while_others_flow(store: Arc<dyn Store>) {
    let storage = storage(&store, fast_outbox());
    let pipeline = pipeline(&storage);
    let poison = Increment {
        poison: true,
        ..Increment::new("p")
    };
    pipeline
        .execute(&IncrementHandler, poison, ctx("corr"))
        .await
        .unwrap();
    increment(&pipeline, "p").await;
    for _ in 0..3 {
        increment(&pipeline, "q").await;
    }
    // A row nobody can decode.
    let mut tx = store.begin().await.unwrap();
    tx.append_outbox(vec![OutboxMessage {
        id: Uuid::now_v7(),
        ordering_key: "raw".into(),
        event_type: "test.garbage.v1".into(),
        body: b"\x00not an envelope".to_vec(),
    }])
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let bus = TestBus::new(bus());
    let relay = storage.start_relay(bus.clone());
    bus.wait_for("p#2 and q#1..3 published", TIMEOUT, |b| {
        let events = b.increments();
        first_seen_values(&events, "q") == vec![1, 2, 3]
            && first_seen_values(&events, "p") == vec![2]
    })
    .await;
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.quarantined, 2, "{stats:?}");

    let mut quarantined = store.outbox().quarantined().await.unwrap();
    quarantined.sort_by_key(|r| r.sequence);
    assert_eq!(quarantined.len(), 2);
    assert_eq!(quarantined[0].message.ordering_key, "p");
    assert_eq!(quarantined[0].attempts, 3);
    assert!(
        quarantined[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("poison")
    );
    assert_eq!(quarantined[1].message.ordering_key, "raw");
    assert!(
        quarantined[1]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("not a stored envelope")
    );

    // q flowed while p#1 was being retried; p#2 waited until p#1 was quarantined.
    let log = bus.log();
    let refusals: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, BusEvent::Refused(_)))
        .map(|(i, _)| i)
        .collect();
    // Each round tries p#1 twice (pipelined batch, then one by one), and
    // counts one attempt.
    assert!(refusals.len() >= 3, "{refusals:?}");
    let last_refusal = *refusals.last().unwrap();
    let position = |counter: &str, value: u64| {
        log.iter()
            .position(|e| match e {
                BusEvent::Published(env) => {
                    let ev = env.decode::<Incremented>().unwrap();
                    ev.counter_id == counter && ev.value == value
                }
                _ => false,
            })
            .unwrap()
    };
    assert!(position("q", 3) < last_refusal, "q was held up by p");
    assert!(position("p", 2) > last_refusal, "p#2 overtook p#1");
    let backlog = store.outbox().backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.quarantined), (0, 2));

    // An operator puts the poison back; it is pending again.
    assert!(
        store
            .outbox()
            .release(quarantined[0].sequence)
            .await
            .unwrap()
    );
    assert_eq!(pending(&store).await, 1);
}

pub async fn same_message_twice_has_one_effect(store: Arc<dyn Store>) {
    let storage = storage(&store, fast_outbox());
    let mut messaging = MessagingConfig::default();
    messaging.retry.initial_backoff = Duration::from_millis(5);
    let bus = InMemoryBus::new(&messaging);
    let fail_next = Arc::new(AtomicU32::new(1));
    let runs = Arc::new(AtomicU32::new(0));
    let inbox = storage.inbox("tally");
    let handler = inbox.handler(TallyHandler {
        fail_next: fail_next.clone(),
        runs: runs.clone(),
    });
    bus.subscribe(Subscription::new("tally", Handlers::new().on(handler)))
        .await
        .unwrap();

    // The same envelope delivered twice; the first delivery fails after its
    // write and is retried.
    let mut outcomes = bus.outcomes();
    let envelope = Envelope::for_event(&Incremented {
        counter_id: "c-1".into(),
        value: 1,
        poison: false,
    })
    .unwrap();
    bus.publish(envelope.clone()).await.unwrap();
    bus.publish(envelope.clone()).await.unwrap();
    let mut handled = 0;
    let deadline = Instant::now() + TIMEOUT;
    while handled < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let done = outcomes
            .settled("tally", envelope.message_id, left)
            .await
            .expect("both deliveries settle");
        assert_eq!(done.outcome, Outcome::Handled, "{done:?}");
        handled += 1;
    }
    bus.shutdown().await.unwrap();
    assert_eq!(fail_next.load(Ordering::SeqCst), 0, "the failure happened");
    assert!(
        runs.load(Ordering::SeqCst) >= 2,
        "the handler ran again after its failure"
    );

    let mut uow = storage.begin(MessageContext::default()).await.unwrap();
    let tally = Repository::<Tally>::new()
        .load(&mut uow, &"c-1".to_owned())
        .await
        .unwrap();
    drop(uow);
    assert_eq!(tally.seen, 1, "one effect for three deliveries");

    // Directly: a third delivery runs nothing.
    let outcome = inbox
        .process(&envelope, |uow| {
            Box::pin(async move { bump_tally(uow, "c-1").await })
        })
        .await
        .unwrap();
    assert_eq!(outcome, InboxOutcome::Duplicate);
    // Another group has its own inbox.
    let other = storage
        .inbox("audit")
        .process(&envelope, |uow| {
            Box::pin(async move { bump_tally(uow, "audit-c-1").await })
        })
        .await
        .unwrap();
    assert_eq!(other, InboxOutcome::Processed(1));
}

pub async fn repository_crud_concurrency_and_paging(store: Arc<dyn Store>) {
    let storage = storage(&store, fast_outbox());
    let counters = Repository::<Counter>::new();
    let mut uow = storage.begin(ctx("corr")).await.unwrap();
    for i in 0..5 {
        let mut c = Counter::new(&format!("c-{i}"));
        for _ in 0..i {
            c.increment(false);
        }
        counters.add(&mut uow, &mut c).await.unwrap();
        assert_eq!(chassis_domain::AggregateRoot::version(&c), 1);
    }
    let mut dup = Counter::new("c-0");
    let err = counters.add(&mut uow, &mut dup).await.unwrap_err();
    assert_eq!(err.code(), "concurrency", "{err}");
    uow.rollback().await.unwrap();
    // The failed insert poisoned nothing visible: nothing was committed.
    let mut uow = storage.begin(ctx("corr")).await.unwrap();
    assert!(
        counters
            .get(&mut uow, &"c-0".to_owned())
            .await
            .unwrap()
            .is_none()
    );
    for i in 0..5 {
        let mut c = Counter::new(&format!("c-{i}"));
        for _ in 0..i {
            c.increment(false);
        }
        counters.save(&mut uow, &mut c).await.unwrap();
    }
    uow.commit().await.unwrap();

    // Query by index with paging, insertion order.
    let mut uow = storage.begin(ctx("corr")).await.unwrap();
    let even = counters
        .query(
            &mut uow,
            &counters.query_all().filter("parity", "even").page(1, 1),
        )
        .await
        .unwrap();
    assert_eq!(even.total, 3);
    assert_eq!(
        even.items.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec!["c-2"]
    );
    let err = counters
        .query(&mut uow, &storage_abstractions::Query::all("tallies"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "internal");

    // Optimistic concurrency: two units of work update the same counter.
    let mut a = counters.load(&mut uow, &"c-1".to_owned()).await.unwrap();
    let mut other = storage.begin(ctx("corr")).await.unwrap();
    let mut b = counters.load(&mut other, &"c-1".to_owned()).await.unwrap();
    b.increment(false);
    counters.update(&mut other, &mut b).await.unwrap();
    other.commit().await.unwrap();
    a.increment(false);
    let conflict = match counters.update(&mut uow, &mut a).await {
        Err(e) => e,
        Ok(_) => DomainError::from(uow.commit().await.unwrap_err()),
    };
    assert_eq!(
        (conflict.status(), conflict.code()),
        (409, "concurrency"),
        "{conflict}"
    );

    // Delete with the loaded version; then it is gone.
    let mut uow = storage.begin(ctx("corr")).await.unwrap();
    let mut c4 = counters.load(&mut uow, &"c-4".to_owned()).await.unwrap();
    counters.delete(&mut uow, &mut c4).await.unwrap();
    uow.commit().await.unwrap();
    let mut uow = storage.begin(ctx("corr")).await.unwrap();
    let err = counters
        .load(&mut uow, &"c-4".to_owned())
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (404, "not_found"));
    let b = counters.load(&mut uow, &"c-1".to_owned()).await.unwrap();
    assert_eq!(
        (b.value, chassis_domain::AggregateRoot::version(&b)),
        (2, 2)
    );
}

pub async fn backlog_health_check(store: Arc<dyn Store>) {
    let storage = storage(
        &store,
        OutboxConfig {
            backlog_warn: 2,
            ..fast_outbox()
        },
    );
    let check = OutboxBacklogCheck::new(store.outbox(), &storage.config().outbox);
    assert_eq!(check.check().await, HealthStatus::Healthy);
    let pipeline = pipeline(&storage);
    for _ in 0..3 {
        increment(&pipeline, "c-1").await;
    }
    assert!(matches!(check.check().await, HealthStatus::Degraded(_)));
    let stuck = OutboxBacklogCheck::new(store.outbox(), &storage.config().outbox)
        .stuck_after(Duration::ZERO);
    // The oldest pending message must be measurably old first.
    eventually("the relay is reported stuck", || async {
        matches!(stuck.check().await, HealthStatus::Unhealthy(reason) if reason.contains("stuck"))
    })
    .await;

    let bus = TestBus::new(bus());
    let relay = storage.start_relay(bus.clone());
    let checks = storage.health_checks(Some(&relay));
    let backlog = checks
        .iter()
        .find(|c| c.name() == "outbox.backlog")
        .expect("outbox check registered")
        .clone();
    bus.wait_for("3 publishes", TIMEOUT, |b| b.published().len() >= 3)
        .await;
    eventually("healthy once the relay drained the outbox", || async {
        backlog.check().await == HealthStatus::Healthy
    })
    .await;
    relay.shutdown().await.unwrap();
    assert_eq!(
        backlog.check().await,
        HealthStatus::Unhealthy("the outbox relay has stopped".into())
    );
    for check in &checks {
        if check.name() != "outbox.backlog" {
            assert!(check.check().await.is_ready(), "{} not ready", check.name());
        }
    }
}

pub async fn housekeeping_purges_sent_rows_and_inbox_marks(store: Arc<dyn Store>) {
    let storage = storage(&store, fast_outbox());
    let pipeline = pipeline(&storage);
    for _ in 0..3 {
        increment(&pipeline, "c-1").await;
    }
    let envelope = Envelope::for_event(&Incremented {
        counter_id: "x".into(),
        value: 1,
        poison: false,
    })
    .unwrap();
    let inbox = storage.inbox("g");
    let first = inbox
        .process(&envelope, |_uow| Box::pin(async { Ok(()) }))
        .await
        .unwrap();
    assert_eq!(first, InboxOutcome::Processed(()));

    // Retention zero: everything sent and every mark is old enough.
    let bus = TestBus::new(bus());
    let relay = OutboxRelay::new(
        store.outbox(),
        bus.clone(),
        OutboxConfig {
            retention: Duration::ZERO,
            ..fast_outbox()
        },
    )
    .inbox_retention(Duration::ZERO)
    .housekeeping_interval(Duration::from_millis(20))
    .start();
    bus.wait_for("3 publishes", TIMEOUT, |b| b.published().len() >= 3)
        .await;
    eventually("sent rows and the inbox mark purged", || async {
        let stats = relay.stats();
        stats.purged_sent >= 3 && stats.purged_inbox >= 1
    })
    .await;
    relay.shutdown().await.unwrap();
    // The mark is gone: the message would be processed again.
    let again = inbox
        .process(&envelope, |_uow| Box::pin(async { Ok(()) }))
        .await
        .unwrap();
    assert_eq!(again, InboxOutcome::Processed(()));
}

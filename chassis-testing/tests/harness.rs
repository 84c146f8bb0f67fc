//! The harness against the real in-memory broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chassis_testing::TestBus;
use messaging_abstractions::{
    EventBus, FailureKind, HandlerError, Handlers, IntegrationEvent, Subscription,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Job {
    fail_first: u32,
}
impl IntegrationEvent for Job {
    const EVENT_TYPE: &'static str = "test.job.v1";
}

async fn subscribe_counting(bus: &TestBus, group: &str) -> Arc<AtomicU32> {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let handlers = Handlers::new().on_fn(move |job: Job, delivery| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            if delivery.attempt <= job.fail_first {
                Err(HandlerError::retryable(format!(
                    "attempt {}",
                    delivery.attempt
                )))
            } else {
                Ok(())
            }
        }
    });
    bus.subscribe(Subscription::new(group, handlers))
        .await
        .unwrap();
    calls
}

#[tokio::test]
async fn waits_through_retries_and_counts_redeliveries() {
    let bus = TestBus::in_memory();
    let calls = subscribe_counting(&bus, "workers").await;
    let other = subscribe_counting(&bus, "auditors").await;

    let job = bus.publish_event(&Job { fail_first: 2 }).await;
    assert_eq!(bus.wait_handled("workers", job.message_id).await, Ok(()));
    assert_eq!(calls.load(Ordering::SeqCst), 3, "two retries, then success");
    assert_eq!(bus.wait_handled("auditors", job.message_id).await, Ok(()));
    assert_eq!(other.load(Ordering::SeqCst), 3);

    // The same envelope twice: two deliveries per group.
    bus.redeliver(job.clone()).await;
    let outcomes = bus.wait_handled_times("workers", job.message_id, 2).await;
    assert_eq!(outcomes, [Ok(()), Ok(())]);
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn out_of_attempts_is_dead_lettered_and_replayable() {
    let bus = TestBus::in_memory();
    let calls = subscribe_counting(&bus, "workers").await;
    let job = bus.publish_event(&Job { fail_first: 3 }).await;
    let letter = bus.wait_dead_letter("workers", job.message_id).await;
    assert_eq!(letter.kind, FailureKind::Retryable);
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.reason, "attempt 3");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Replayed, attempts start again at 1, so 1..=3 fail again: three more
    // calls prove the replay was delivered.
    assert!(bus.replay(letter.id).await.unwrap());
    let outcomes = bus.wait_handled_times("workers", job.message_id, 2).await;
    assert!(outcomes.iter().all(Result::is_err));
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    assert!(
        !bus.replay(letter.id).await.unwrap(),
        "a replayed letter is gone"
    );
    bus.shutdown().await.unwrap();
}

#[tokio::test]
#[should_panic(expected = "waited")]
async fn a_wait_that_cannot_succeed_fails_instead_of_hanging() {
    let bus = TestBus::in_memory().with_wait_limit(std::time::Duration::from_millis(200));
    let _ = bus.wait_handled("nobody", uuid::Uuid::now_v7()).await;
}

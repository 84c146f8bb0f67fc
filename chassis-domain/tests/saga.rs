//! The saga runner on real stores: the in-memory provider for every
//! scenario, PostgreSQL (127.0.0.1:5432, database `test`, a fresh schema per
//! test, dropped at the end) for the main ones. A missing PostgreSQL fails
//! those tests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chassis_domain::saga::{
    SAGA_COLLECTION, Saga, SagaConfig, SagaContext, SagaRunner, SagaStatus, SagaStep, StepOutcome,
};
use chassis_domain::storage::{Record, StorageConfig, Store};
use chassis_domain::{DomainError, Envelope, IntegrationEvent, MessageContext, UnitOfWorkFactory};
use chassis_storage::{Persistence, decode_outbox_body};
use serde::{Deserialize, Serialize};
use storage_inmemory::InMemoryStore;

// --- a small saga: ask a remote party, wait for its answer ---------------

#[derive(Debug, Serialize, Deserialize)]
struct Ask {
    id: String,
    attempt: u32,
}
impl IntegrationEvent for Ask {
    const EVENT_TYPE: &'static str = "test.ask.v1";
}

#[derive(Debug, Serialize, Deserialize)]
struct Undo {
    id: String,
    reason: String,
}
impl IntegrationEvent for Undo {
    const EVENT_TYPE: &'static str = "test.undo.v1";
}

#[derive(Debug, Serialize, Deserialize)]
struct Answered {
    id: String,
    ok: bool,
}
impl IntegrationEvent for Answered {
    const EVENT_TYPE: &'static str = "test.answered.v1";
}

/// Writes a side effect, then fails with a business error.
#[derive(Debug, Serialize, Deserialize)]
struct Broken {
    id: String,
}
impl IntegrationEvent for Broken {
    const EVENT_TYPE: &'static str = "test.broken.v1";
}

/// Counts; used to run many steps on one instance at once.
#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    id: String,
}
impl IntegrationEvent for Tick {
    const EVENT_TYPE: &'static str = "test.tick.v1";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AskState {
    attempts: u32,
    ticks: u32,
    undone: bool,
}

struct AskSaga {
    timeout: Duration,
    max_attempts: u32,
}

#[async_trait]
impl Saga for AskSaga {
    const NAME: &'static str = "ask";
    type State = AskState;
    type Input = ();

    async fn start(&self, (): (), cx: &mut SagaContext<'_>) -> Result<AskState, DomainError> {
        let id = cx.saga_id().to_owned();
        cx.send(&Ask { id, attempt: 1 }).await?;
        cx.schedule_timeout(self.timeout);
        Ok(AskState {
            attempts: 1,
            ticks: 0,
            undone: false,
        })
    }

    async fn on_timeout(
        &self,
        state: &mut AskState,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        if state.attempts >= self.max_attempts {
            cx.compensate(format!("no answer after {} attempts", state.attempts));
            return Ok(());
        }
        state.attempts += 1;
        let id = cx.saga_id().to_owned();
        cx.send(&Ask {
            id,
            attempt: state.attempts,
        })
        .await?;
        cx.schedule_timeout(self.timeout);
        Ok(())
    }

    async fn compensate(
        &self,
        state: &mut AskState,
        reason: &str,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        state.undone = true;
        let id = cx.saga_id().to_owned();
        // A write of the compensation, committed with the saga's end.
        cx.unit_of_work()
            .transaction()
            .insert(Record::new(
                "compensations",
                &id,
                serde_json::json!({ "reason": reason }),
            ))
            .await?;
        cx.send(&Undo {
            id,
            reason: reason.to_owned(),
        })
        .await
    }
}

#[async_trait]
impl SagaStep<Answered> for AskSaga {
    fn saga_id(event: &Answered) -> String {
        event.id.clone()
    }

    async fn handle(
        &self,
        _state: &mut AskState,
        event: Answered,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        if event.ok {
            cx.complete();
        } else {
            cx.compensate("the remote party refused");
        }
        Ok(())
    }
}

#[async_trait]
impl SagaStep<Broken> for AskSaga {
    fn saga_id(event: &Broken) -> String {
        event.id.clone()
    }

    async fn handle(
        &self,
        _state: &mut AskState,
        event: Broken,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        cx.unit_of_work()
            .transaction()
            .insert(Record::new(
                "side_effects",
                &event.id,
                serde_json::json!({}),
            ))
            .await?;
        Err(DomainError::conflict("the step cannot go on"))
    }
}

#[async_trait]
impl SagaStep<Tick> for AskSaga {
    fn saga_id(event: &Tick) -> String {
        event.id.clone()
    }

    async fn handle(
        &self,
        state: &mut AskState,
        _event: Tick,
        _cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        state.ticks += 1;
        Ok(())
    }
}

// --- fixtures -------------------------------------------------------------

struct Fixture {
    store: Arc<dyn Store>,
    runner: SagaRunner<AskSaga>,
}

fn runner_over(store: &Arc<dyn Store>, timeout: Duration) -> SagaRunner<AskSaga> {
    let storage: Arc<dyn UnitOfWorkFactory> =
        Arc::new(Persistence::new(store.clone(), StorageConfig::default()));
    SagaRunner::new(
        AskSaga {
            timeout,
            max_attempts: 3,
        },
        storage,
    )
    .with_config(SagaConfig {
        conflict_retries: 100,
        timeout_poll_interval: Duration::from_millis(10),
        timeout_page_size: 2,
    })
}

fn in_memory(timeout: Duration) -> Fixture {
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    Fixture {
        runner: runner_over(&store, timeout),
        store,
    }
}

/// Event types and payloads in the outbox, oldest first.
async fn outbox(store: &Arc<dyn Store>) -> Vec<Envelope> {
    store
        .outbox()
        .fetch_pending(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| decode_outbox_body(&r.message.body).unwrap())
        .collect()
}

async fn exists(store: &Arc<dyn Store>, collection: &str, id: &str) -> bool {
    let mut tx = store.begin().await.unwrap();
    let found = tx.get(collection, id).await.unwrap().is_some();
    tx.rollback().await.unwrap();
    found
}

/// Waits (with the background scheduler running) until instance `id` has
/// given up after its 3 attempts; the bound only turns a hang into a failure.
async fn gives_up_after_3_attempts(runner: &SagaRunner<AskSaga>, id: &str) {
    let limit = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let instance = runner.load(id).await.unwrap().unwrap();
        if instance.status == SagaStatus::Compensated {
            assert_eq!(instance.state.attempts, 3);
            return;
        }
        assert!(tokio::time::Instant::now() < limit, "{instance:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ctx() -> MessageContext {
    MessageContext {
        correlation_id: Some("corr-1".into()),
        ..MessageContext::default()
    }
}

/// An answer; as a real answer, it carries the conversation's correlation id.
fn answer(id: &str, ok: bool) -> Envelope {
    Envelope::for_event(&Answered { id: id.into(), ok })
        .unwrap()
        .with_correlation_id("corr-1")
}

// --- scenarios, run on each store -----------------------------------------

async fn happy_path_and_duplicates(f: Fixture) {
    let state = f.runner.start("s-1", (), ctx()).await.unwrap();
    assert_eq!(state.attempts, 1);
    let sent = outbox(&f.store).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].decode::<Ask>().unwrap().id, "s-1");
    assert_eq!(sent[0].correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(sent[0].partition_key.as_deref(), Some("s-1"));

    let instance = f.runner.load("s-1").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Running);
    assert!(instance.deadline.is_some());

    // Starting it again is a conflict, and writes nothing.
    let err = f.runner.start("s-1", (), ctx()).await.unwrap_err();
    assert_eq!(err.status(), 409, "{err}");
    assert_eq!(outbox(&f.store).await.len(), 1);

    let yes = answer("s-1", true);
    assert_eq!(
        f.runner.handle::<Answered>(&yes).await.unwrap(),
        StepOutcome::Applied
    );
    // The same message again: no second effect.
    assert_eq!(
        f.runner.handle::<Answered>(&yes).await.unwrap(),
        StepOutcome::Duplicate
    );
    // Another message for the ended instance: acknowledged, no effect.
    assert_eq!(
        f.runner
            .handle::<Answered>(&answer("s-1", false))
            .await
            .unwrap(),
        StepOutcome::Finished
    );
    // A message for nobody.
    assert_eq!(
        f.runner
            .handle::<Answered>(&answer("nobody", true))
            .await
            .unwrap(),
        StepOutcome::Unknown
    );
    let instance = f.runner.load("s-1").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Completed);
    assert_eq!(instance.deadline, None, "an ended saga has no deadline");
    assert_eq!(instance.version, 2, "one start, one step");
    assert!(!instance.state.undone);
    assert!(!exists(&f.store, "compensations", "s-1").await);
    assert_eq!(f.runner.fire_due_timeouts().await.unwrap(), 0);
}

async fn refusal_compensates(f: Fixture) {
    f.runner.start("s-2", (), ctx()).await.unwrap();
    f.runner
        .handle::<Answered>(&answer("s-2", false))
        .await
        .unwrap();
    let instance = f.runner.load("s-2").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Compensated);
    assert_eq!(instance.reason.as_deref(), Some("the remote party refused"));
    assert!(instance.state.undone);
    assert!(exists(&f.store, "compensations", "s-2").await);
    let sent = outbox(&f.store).await;
    let undo = sent
        .iter()
        .find(|e| e.event_type == Undo::EVENT_TYPE)
        .unwrap();
    assert_eq!(
        undo.decode::<Undo>().unwrap().reason,
        "the remote party refused"
    );
    assert_eq!(undo.correlation_id.as_deref(), Some("corr-1"));
}

async fn failing_step_is_rolled_back_and_compensated(f: Fixture) {
    f.runner.start("s-3", (), ctx()).await.unwrap();
    let broken = Envelope::for_event(&Broken { id: "s-3".into() }).unwrap();
    assert_eq!(
        f.runner.handle::<Broken>(&broken).await.unwrap(),
        StepOutcome::Applied
    );
    assert!(
        !exists(&f.store, "side_effects", "s-3").await,
        "the failed step's write was rolled back"
    );
    let instance = f.runner.load("s-3").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Compensated);
    assert_eq!(
        instance.reason.as_deref(),
        Some("conflict: the step cannot go on")
    );
    assert!(exists(&f.store, "compensations", "s-3").await);
    // Redelivered: the compensation recorded the message; nothing again.
    assert_eq!(
        f.runner.handle::<Broken>(&broken).await.unwrap(),
        StepOutcome::Duplicate
    );
}

async fn timeouts_resend_then_compensate(
    f: Fixture,
    store_again: impl Fn() -> SagaRunner<AskSaga>,
) {
    // Deadline zero: due at once.
    for id in ["t-1", "t-2", "t-3"] {
        f.runner.start(id, (), ctx()).await.unwrap();
    }
    assert_eq!(f.runner.fire_due_timeouts().await.unwrap(), 3);
    let asks = |sent: &[Envelope], id: &str| -> Vec<u32> {
        sent.iter()
            .filter(|e| e.event_type == Ask::EVENT_TYPE)
            .map(|e| e.decode::<Ask>().unwrap())
            .filter(|a| a.id == id)
            .map(|a| a.attempt)
            .collect()
    };
    assert_eq!(asks(&outbox(&f.store).await, "t-1"), [1, 2]);
    // t-2 answers meanwhile: its deadline is gone.
    f.runner
        .handle::<Answered>(&answer("t-2", true))
        .await
        .unwrap();
    // A runner built afresh over the same store (a restarted service)
    // finds the persisted deadlines.
    let restarted = store_again();
    assert_eq!(restarted.fire_due_timeouts().await.unwrap(), 2);
    assert_eq!(
        restarted.fire_due_timeouts().await.unwrap(),
        2,
        "third timeout: give up"
    );
    assert_eq!(
        restarted.fire_due_timeouts().await.unwrap(),
        0,
        "nothing armed any more"
    );
    let sent = outbox(&f.store).await;
    assert_eq!(asks(&sent, "t-1"), [1, 2, 3]);
    assert_eq!(asks(&sent, "t-2"), [1, 2]);
    for id in ["t-1", "t-3"] {
        let instance = f.runner.load(id).await.unwrap().unwrap();
        assert_eq!(instance.status, SagaStatus::Compensated, "{id}");
        assert_eq!(
            instance.reason.as_deref(),
            Some("no answer after 3 attempts")
        );
        assert_eq!(instance.deadline, None);
        assert!(exists(&f.store, "compensations", id).await);
    }
    assert_eq!(
        f.runner.load("t-2").await.unwrap().unwrap().status,
        SagaStatus::Completed
    );
}

/// An instance armed by a version that did not index `saga_due` yet: the
/// store's due-list query does not find it, the scheduler's first poll after
/// start (a sweep of every armed instance) does, and re-arming indexes it.
async fn instances_armed_without_due_index_fire_at_the_first_sweep(f: Fixture) {
    f.runner.start("old-1", (), ctx()).await.unwrap();
    let mut tx = f.store.begin().await.unwrap();
    let key = format!("{}:old-1", AskSaga::NAME);
    let record = tx.get(SAGA_COLLECTION, &key).await.unwrap().unwrap();
    assert!(
        record.index.iter().any(|e| e.key == "saga_due"),
        "an armed instance is indexed by its deadline"
    );
    let mut old = record.next_version();
    old.index.retain(|e| e.key != "saga_due");
    tx.update(old).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(
        f.runner.fire_due_timeouts().await.unwrap(),
        0,
        "not on the due-list"
    );
    let timeouts = f.runner.start_timeouts();
    // Its deadline (zero) is due: the first sweep re-sends, later polls
    // find it on the due-list until the saga gives up.
    gives_up_after_3_attempts(&f.runner, "old-1").await;
    timeouts.shutdown().await.unwrap();
}

async fn concurrent_steps_are_all_applied(f: Fixture) {
    f.runner.start("c-1", (), ctx()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let runner = f.runner.clone();
        tasks.push(tokio::spawn(async move {
            let tick = Envelope::for_event(&Tick { id: "c-1".into() }).unwrap();
            runner.handle::<Tick>(&tick).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StepOutcome::Applied);
    }
    let instance = f.runner.load("c-1").await.unwrap().unwrap();
    assert_eq!(instance.state.ticks, 16, "no step lost to a conflict");
    assert_eq!(instance.version, 17);
}

// --- in-memory store ------------------------------------------------------

#[tokio::test]
async fn inmemory_happy_path_and_duplicates() {
    happy_path_and_duplicates(in_memory(Duration::from_secs(3600))).await;
}

#[tokio::test]
async fn inmemory_refusal_compensates() {
    refusal_compensates(in_memory(Duration::from_secs(3600))).await;
}

#[tokio::test]
async fn inmemory_failing_step_is_rolled_back_and_compensated() {
    failing_step_is_rolled_back_and_compensated(in_memory(Duration::from_secs(3600))).await;
}

#[tokio::test]
async fn inmemory_timeouts_resend_then_compensate() {
    let f = in_memory(Duration::ZERO);
    let store = f.store.clone();
    timeouts_resend_then_compensate(f, move || runner_over(&store, Duration::ZERO)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inmemory_concurrent_steps_are_all_applied() {
    concurrent_steps_are_all_applied(in_memory(Duration::from_secs(3600))).await;
}

#[tokio::test]
async fn inmemory_instances_armed_without_due_index_fire_at_the_first_sweep() {
    instances_armed_without_due_index_fire_at_the_first_sweep(in_memory(Duration::ZERO)).await;
}

#[tokio::test]
async fn inmemory_background_scheduler_fires_and_stops() {
    let f = in_memory(Duration::from_millis(20));
    f.runner.start("b-1", (), ctx()).await.unwrap();
    let timeouts = f.runner.start_timeouts();
    assert!(timeouts.is_running());
    // The saga gives up after 3 attempts, 20 ms apart.
    gives_up_after_3_attempts(&f.runner, "b-1").await;
    timeouts.shutdown().await.unwrap();
}

// --- PostgreSQL -----------------------------------------------------------

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A PostgreSQL store in a fresh schema; the schema is dropped by the guard.
struct PgSchema {
    store: Arc<dyn Store>,
    schema: String,
}

impl PgSchema {
    async fn new() -> Self {
        use storage_postgres::PostgresConfig;
        let schema = format!("chassis_saga_{}", uuid::Uuid::new_v4().simple());
        let config = PostgresConfig {
            url: POSTGRES_URL.into(),
            schema: schema.clone(),
            max_connections: 6,
            ..PostgresConfig::default()
        };
        let store = storage_postgres::PostgresStore::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {POSTGRES_URL} is required: {e}"));
        Self {
            store: Arc::new(store),
            schema,
        }
    }

    async fn drop_schema(self) {
        use sqlx::Connection;
        self.store.shutdown().await;
        let mut conn = sqlx::PgConnection::connect(POSTGRES_URL).await.unwrap();
        // The schema name is generated from a uuid: safe to inline.
        let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_happy_path_refusal_timeouts_and_concurrency() {
    let pg = PgSchema::new().await;
    let fixture = |timeout| Fixture {
        store: pg.store.clone(),
        runner: runner_over(&pg.store, timeout),
    };
    happy_path_and_duplicates(fixture(Duration::from_secs(3600))).await;
    refusal_compensates(fixture(Duration::from_secs(3600))).await;
    failing_step_is_rolled_back_and_compensated(fixture(Duration::from_secs(3600))).await;
    concurrent_steps_are_all_applied(fixture(Duration::from_secs(3600))).await;
    let store = pg.store.clone();
    // Sagas started above are armed with a one-hour deadline: not due.
    timeouts_resend_then_compensate(fixture(Duration::ZERO), move || {
        runner_over(&store, Duration::ZERO)
    })
    .await;
    instances_armed_without_due_index_fire_at_the_first_sweep(fixture(Duration::ZERO)).await;
    pg.drop_schema().await;
}

//! The saga runner: starts instances, applies step messages and timeouts,
//! compensates — each in one unit of work with a versioned write.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use messaging_abstractions::{
    Delivery, Envelope, HandlerError, Handlers, IntegrationEvent, MessageContext, MessageHandler,
};
use serde::{Deserialize, Serialize};
use storage_abstractions::{IndexEntry, Query, Record, sortable};
use uuid::Uuid;

use super::{Finish, SAGA_COLLECTION, Saga, SagaContext, SagaStatus, SagaStep};
use crate::command::{UnitOfWork, UnitOfWorkFactory};
use crate::error::DomainError;

/// Index key of the saga name.
const INDEX_SAGA: &str = "saga";
/// Index key of the status.
const INDEX_STATUS: &str = "saga_status";
/// Index key present (value: the saga name) while a running instance has a
/// deadline: the timeout scheduler's due-list.
const INDEX_TIMER: &str = "saga_timer";
/// Index key of an armed instance's deadline (milliseconds since the epoch,
/// [`sortable`]): the scheduler asks the store for the due ones only.
const INDEX_DUE: &str = "saga_due";

/// Which armed instances a timeout poll reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sweep {
    /// Those the store finds due (`saga_due` at most now): every poll.
    Due,
    /// Every armed one: the scheduler's first poll, which also fires the
    /// deadlines of instances armed before `saga_due` was indexed (they
    /// get it with their next write).
    Armed,
}

/// Tuning of a [`SagaRunner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaConfig {
    /// Times one step is tried when its write conflicts with a concurrent
    /// step of the same instance (or the store is briefly unavailable);
    /// then the message goes back to the bus as a retryable failure.
    pub conflict_retries: u32,
    /// How often the timeout scheduler looks for due instances.
    pub timeout_poll_interval: Duration,
    /// Armed instances read per query page by the scheduler.
    pub timeout_page_size: u32,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            conflict_retries: 5,
            timeout_poll_interval: Duration::from_secs(1),
            timeout_page_size: 200,
        }
    }
}

/// What a step message or a timeout did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step ran and its writes committed.
    Applied,
    /// The message had already been applied: nothing happened.
    Duplicate,
    /// The instance has already ended: nothing happened.
    Finished,
    /// No instance with this id: nothing happened.
    Unknown,
    /// (Timeouts) the deadline is not (or no longer) due: nothing happened.
    NotDue,
}

/// A stored instance, as [`SagaRunner::load`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaInstance<T> {
    /// The saga id.
    pub id: String,
    /// Where it stands.
    pub status: SagaStatus,
    /// Its state.
    pub state: T,
    /// Its deadline, while one is set.
    pub deadline: Option<SystemTime>,
    /// Why it was compensated.
    pub reason: Option<String>,
    /// The stored version (one more per step).
    pub version: u64,
}

/// The stored document of an instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Document {
    saga: String,
    id: String,
    status: SagaStatus,
    state: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deadline_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    started_ms: u64,
    updated_ms: u64,
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Document {
    fn index(&self) -> Vec<IndexEntry> {
        let entry = |key: &str, value: &str| IndexEntry {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        let mut index = vec![
            entry(INDEX_SAGA, &self.saga),
            entry(INDEX_STATUS, self.status.as_str()),
        ];
        if let (SagaStatus::Running, Some(deadline)) = (self.status, self.deadline_ms) {
            index.push(entry(INDEX_TIMER, &self.saga));
            index.push(entry(INDEX_DUE, &sortable(deadline)));
        }
        index
    }

    fn record(&self, key: &str, version: u64) -> Result<Record, DomainError> {
        let data = serde_json::to_value(self)
            .map_err(|e| DomainError::internal(format!("cannot serialize saga {key}: {e}")))?;
        Ok(Record {
            collection: SAGA_COLLECTION.to_owned(),
            id: key.to_owned(),
            version,
            data,
            index: self.index(),
        })
    }

    fn from_record(record: &Record) -> Result<Self, DomainError> {
        serde_json::from_value(record.data.clone()).map_err(|e| {
            DomainError::internal(format!(
                "stored saga {}/{} is not a saga document: {e}",
                record.collection, record.id
            ))
        })
    }
}

/// One kind of step: an event, a timeout, or a compensation after a failure.
#[async_trait]
trait Step<S: Saga>: Send + Sync {
    /// Runs the saga's code for this step.
    async fn apply(
        &self,
        saga: &S,
        state: &mut S::State,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError>;

    /// Timeouts only run when the stored deadline is due.
    fn needs_due_deadline(&self) -> bool {
        false
    }
}

struct EventStep<'e, E> {
    envelope: &'e Envelope,
    _event: PhantomData<fn() -> E>,
}

#[async_trait]
impl<S: SagaStep<E>, E: IntegrationEvent> Step<S> for EventStep<'_, E> {
    async fn apply(
        &self,
        saga: &S,
        state: &mut S::State,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        // Decoded per attempt: a retried step gets the event afresh.
        let event = self
            .envelope
            .decode::<E>()
            .map_err(|e| DomainError::internal(e.to_string()))?;
        saga.handle(state, event, cx).await
    }
}

struct TimeoutStep;

#[async_trait]
impl<S: Saga> Step<S> for TimeoutStep {
    async fn apply(
        &self,
        saga: &S,
        state: &mut S::State,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        saga.on_timeout(state, cx).await
    }

    fn needs_due_deadline(&self) -> bool {
        true
    }
}

/// Compensates after a step failed (its writes were rolled back).
struct CompensateStep(String);

#[async_trait]
impl<S: Saga> Step<S> for CompensateStep {
    async fn apply(
        &self,
        _saga: &S,
        _state: &mut S::State,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        cx.compensate(self.0.clone());
        Ok(())
    }
}

/// A business refusal that ends the saga by compensation (as opposed to a
/// retryable error, retried, or an internal one, dead-lettered).
fn is_refusal(error: &DomainError) -> bool {
    matches!(
        error,
        DomainError::Conflict { .. }
            | DomainError::Validation { .. }
            | DomainError::NotFound { .. }
            | DomainError::Forbidden { .. }
    )
}

/// Runs the instances of saga `S`: starts them, applies their step messages
/// and timeouts, compensates. Cheap to clone. See the [module](super) docs
/// for what it guarantees.
pub struct SagaRunner<S: Saga> {
    saga: Arc<S>,
    units: Arc<dyn UnitOfWorkFactory>,
    config: SagaConfig,
}

impl<S: Saga> Clone for SagaRunner<S> {
    fn clone(&self) -> Self {
        Self {
            saga: self.saga.clone(),
            units: self.units.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: Saga> std::fmt::Debug for SagaRunner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaRunner")
            .field("saga", &S::NAME)
            .field("config", &self.config)
            .finish()
    }
}

impl<S: Saga> SagaRunner<S> {
    /// A runner of `saga` over units of work from `units` (a
    /// `chassis_storage::Persistence`).
    pub fn new(saga: S, units: Arc<dyn UnitOfWorkFactory>) -> Self {
        Self {
            saga: Arc::new(saga),
            units,
            config: SagaConfig::default(),
        }
    }

    /// Uses `config`.
    pub fn with_config(mut self, config: SagaConfig) -> Self {
        self.config = config;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SagaConfig {
        &self.config
    }

    /// The saga.
    pub fn saga(&self) -> &S {
        &self.saga
    }

    /// The record id of instance `id`: `<NAME>:<id>`.
    pub fn record_id(id: &str) -> String {
        format!("{}:{id}", S::NAME)
    }

    /// The inbox consumer name of the step messages: `saga.<NAME>`.
    pub fn inbox_consumer() -> String {
        format!("saga.{}", S::NAME)
    }

    /// Starts instance `id` in its own unit of work (context: the request's
    /// or message's). [`DomainError::Conflict`] if it exists already.
    pub async fn start(
        &self,
        id: &str,
        input: S::Input,
        context: MessageContext,
    ) -> Result<S::State, DomainError> {
        let mut uow = self.units.begin(context).await?;
        match self.start_in(uow.as_mut(), id, input).await {
            Ok(state) => {
                uow.commit().await?;
                Ok(state)
            }
            Err(error) => Err(crate::command::abandon(uow, error, "saga start").await),
        }
    }

    /// Starts instance `id` inside the caller's unit of work, so that the
    /// caller's own writes (e.g. the order marked `cancelling`) commit with
    /// the new instance and its first messages. [`DomainError::Conflict`] if
    /// it exists already.
    pub async fn start_in(
        &self,
        uow: &mut dyn UnitOfWork,
        id: &str,
        input: S::Input,
    ) -> Result<S::State, DomainError> {
        let key = Self::record_id(id);
        if uow
            .transaction()
            .get(SAGA_COLLECTION, &key)
            .await?
            .is_some()
        {
            return Err(DomainError::conflict(format!(
                "saga `{}` `{id}` has already been started",
                S::NAME
            )));
        }
        let now = SystemTime::now();
        let correlation_id = uow.context().correlation_id.clone();
        let mut cx = SagaContext::new(uow, id, &key, now, None);
        let mut state = self.saga.start(input, &mut cx).await?;
        let (deadline, finish) = cx.into_parts();
        let mut document = Document {
            saga: S::NAME.to_owned(),
            id: id.to_owned(),
            status: SagaStatus::Running,
            state: serde_json::Value::Null,
            deadline_ms: deadline.map(to_ms),
            correlation_id,
            reason: None,
            started_ms: to_ms(now),
            updated_ms: to_ms(now),
        };
        self.finish(uow, id, &key, now, &mut state, finish, &mut document)
            .await?;
        document.state = encode_state::<S>(&state, &key)?;
        match uow.transaction().insert(document.record(&key, 1)?).await {
            Ok(()) => {}
            Err(storage_abstractions::StorageError::Conflict { .. }) => {
                return Err(DomainError::conflict(format!(
                    "saga `{}` `{id}` has already been started",
                    S::NAME
                )));
            }
            Err(other) => return Err(other.into()),
        }
        tracing::debug!(saga = S::NAME, saga_id = id, "saga started");
        Ok(state)
    }

    /// The stored instance `id`, if any.
    pub async fn load(&self, id: &str) -> Result<Option<SagaInstance<S::State>>, DomainError> {
        let key = Self::record_id(id);
        let mut uow = self.units.begin(MessageContext::default()).await?;
        let record = uow.transaction().get(SAGA_COLLECTION, &key).await;
        uow.rollback().await?;
        let Some(record) = record? else {
            return Ok(None);
        };
        let document = Document::from_record(&record)?;
        Ok(Some(SagaInstance {
            id: document.id.clone(),
            status: document.status,
            state: decode_state::<S>(&document, &key)?,
            deadline: document.deadline_ms.map(from_ms),
            reason: document.reason,
            version: record.version,
        }))
    }

    /// Applies the step message `envelope` (of type `E`) to its instance.
    pub async fn handle<E>(&self, envelope: &Envelope) -> Result<StepOutcome, DomainError>
    where
        S: SagaStep<E>,
        E: IntegrationEvent,
    {
        let event = envelope
            .decode::<E>()
            .map_err(|e| DomainError::internal(e.to_string()))?;
        let id = <S as SagaStep<E>>::saga_id(&event);
        let step = EventStep::<E> {
            envelope,
            _event: PhantomData,
        };
        let context = envelope.context_for_handler();
        self.run(&id, &context, Some(envelope.message_id), &step)
            .await
    }

    /// A bus handler applying `E` messages to their instances (an
    /// undecodable payload is [`messaging_abstractions::FailureKind::Undecodable`]).
    pub fn handler<E>(&self) -> Arc<dyn MessageHandler>
    where
        S: SagaStep<E>,
        E: IntegrationEvent,
    {
        Arc::new(StepHandler::<S, E> {
            runner: self.clone(),
            _event: PhantomData,
        })
    }

    /// Adds the handler of `E` to `handlers`:
    /// `runner.on::<Answer>(runner.on::<Refusal>(Handlers::new()))`.
    pub fn on<E>(&self, handlers: Handlers) -> Handlers
    where
        S: SagaStep<E>,
        E: IntegrationEvent,
    {
        handlers.on_raw(E::EVENT_TYPE, self.handler::<E>())
    }

    /// Fires every due deadline of this saga once; how many fired. What the
    /// background scheduler ([`start_timeouts`](Self::start_timeouts)) calls
    /// each poll; tests may call it directly.
    pub async fn fire_due_timeouts(&self) -> Result<usize, DomainError> {
        self.fire_timeouts(Sweep::Due).await
    }

    /// [`fire_due_timeouts`](Self::fire_due_timeouts), reading either only
    /// the due instances from the store or every armed one (see [`Sweep`]).
    pub(super) async fn fire_timeouts(&self, sweep: Sweep) -> Result<usize, DomainError> {
        let now = to_ms(SystemTime::now());
        let due = self.due_instances(now, sweep).await?;
        let mut fired = 0;
        for (id, correlation_id) in due {
            let context = MessageContext {
                correlation_id,
                ..MessageContext::default()
            };
            match self.run(&id, &context, None, &TimeoutStep).await {
                Ok(StepOutcome::Applied) => fired += 1,
                Ok(_) => {}
                // One instance failing must not hold up the others; it stays
                // due and is tried again at the next poll.
                Err(error) => tracing::warn!(
                    saga = S::NAME,
                    saga_id = %id,
                    %error,
                    "saga timeout failed; retried at the next poll"
                ),
            }
        }
        Ok(fired)
    }

    /// (saga id, correlation id) of the running instances whose deadline is
    /// at or before `now_ms`, read from the `saga_timer` index: the store
    /// selects the due ones by `saga_due`, or, with [`Sweep::Armed`], hands
    /// over every armed one and they are picked here.
    async fn due_instances(
        &self,
        now_ms: u64,
        sweep: Sweep,
    ) -> Result<Vec<(String, Option<String>)>, DomainError> {
        let mut uow = self.units.begin(MessageContext::default()).await?;
        let mut due = Vec::new();
        let mut offset = 0;
        let page_size = self.config.timeout_page_size.max(1);
        let result = loop {
            let mut query = Query::all(SAGA_COLLECTION)
                .filter(INDEX_TIMER, S::NAME)
                .page(offset, page_size);
            if sweep == Sweep::Due {
                query = query.at_most(INDEX_DUE, sortable(now_ms));
            }
            let page = match uow.transaction().query(&query).await {
                Ok(page) => page,
                Err(e) => break Err(DomainError::from(e)),
            };
            let read = page.items.len() as u64;
            for record in &page.items {
                match Document::from_record(record) {
                    Ok(d)
                        if d.status == SagaStatus::Running
                            && d.deadline_ms.is_some_and(|t| t <= now_ms) =>
                    {
                        due.push((d.id, d.correlation_id));
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!(%error, "unreadable saga record skipped"),
                }
            }
            offset += read;
            if read == 0 || offset >= page.total {
                break Ok(due);
            }
        };
        uow.rollback().await?;
        result
    }

    /// Runs `step` on instance `id` with retries on conflicts; compensates
    /// after a business refusal.
    async fn run(
        &self,
        id: &str,
        context: &MessageContext,
        message_id: Option<Uuid>,
        step: &dyn Step<S>,
    ) -> Result<StepOutcome, DomainError> {
        let outcome = self.run_with_retries(id, context, message_id, step).await;
        match outcome {
            Err(error) if is_refusal(&error) => {
                tracing::info!(
                    saga = S::NAME,
                    saga_id = id,
                    %error,
                    "saga step refused: compensating"
                );
                let compensate = CompensateStep(error.to_string());
                self.run_with_retries(id, context, message_id, &compensate)
                    .await
            }
            other => other,
        }
    }

    async fn run_with_retries(
        &self,
        id: &str,
        context: &MessageContext,
        message_id: Option<Uuid>,
        step: &dyn Step<S>,
    ) -> Result<StepOutcome, DomainError> {
        let attempts = self.config.conflict_retries.max(1);
        let mut attempt = 1;
        loop {
            match self.try_once(id, context, message_id, step).await {
                Err(error) if error.is_retryable() && attempt < attempts => {
                    tracing::debug!(saga = S::NAME, saga_id = id, attempt, %error, "saga step retried");
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn try_once(
        &self,
        id: &str,
        context: &MessageContext,
        message_id: Option<Uuid>,
        step: &dyn Step<S>,
    ) -> Result<StepOutcome, DomainError> {
        let mut uow = self.units.begin(context.clone()).await?;
        let result = self.step_in(uow.as_mut(), id, message_id, step).await;
        match result {
            Ok(StepOutcome::Applied) => {
                uow.commit().await?;
                Ok(StepOutcome::Applied)
            }
            Ok(nothing) => {
                uow.rollback().await?;
                Ok(nothing)
            }
            Err(error) => Err(crate::command::abandon(uow, error, "saga step").await),
        }
    }

    async fn step_in(
        &self,
        uow: &mut dyn UnitOfWork,
        id: &str,
        message_id: Option<Uuid>,
        step: &dyn Step<S>,
    ) -> Result<StepOutcome, DomainError> {
        let key = Self::record_id(id);
        if let Some(message_id) = message_id
            && !uow
                .transaction()
                .mark_inbox(&Self::inbox_consumer(), message_id)
                .await?
        {
            tracing::debug!(saga = S::NAME, saga_id = id, %message_id, "saga step message already applied");
            return Ok(StepOutcome::Duplicate);
        }
        let Some(record) = uow.transaction().get(SAGA_COLLECTION, &key).await? else {
            tracing::warn!(
                saga = S::NAME,
                saga_id = id,
                "message for an unknown saga instance ignored"
            );
            return Ok(StepOutcome::Unknown);
        };
        let mut document = Document::from_record(&record)?;
        if document.status != SagaStatus::Running {
            tracing::debug!(
                saga = S::NAME,
                saga_id = id,
                status = document.status.as_str(),
                "saga already ended: step ignored"
            );
            return Ok(StepOutcome::Finished);
        }
        let now = SystemTime::now();
        let mut deadline = document.deadline_ms.map(from_ms);
        if step.needs_due_deadline() {
            if deadline.is_none_or(|d| d > now) {
                return Ok(StepOutcome::NotDue);
            }
            // Firing consumes the deadline; on_timeout sets a new one if it
            // wants to wait again.
            deadline = None;
        }
        let mut state = decode_state::<S>(&document, &key)?;
        let mut cx = SagaContext::new(uow, id, &key, now, deadline);
        step.apply(&self.saga, &mut state, &mut cx).await?;
        let (deadline, finish) = cx.into_parts();
        document.deadline_ms = deadline.map(to_ms);
        self.finish(uow, id, &key, now, &mut state, finish, &mut document)
            .await?;
        document.state = encode_state::<S>(&state, &key)?;
        document.updated_ms = to_ms(now);
        uow.transaction()
            .update(document.record(&key, record.version + 1)?)
            .await?;
        Ok(StepOutcome::Applied)
    }

    /// Applies a step's end: compensation runs here, in the step's unit of
    /// work; an ended instance has no deadline.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        uow: &mut dyn UnitOfWork,
        id: &str,
        key: &str,
        now: SystemTime,
        state: &mut S::State,
        finish: Option<Finish>,
        document: &mut Document,
    ) -> Result<(), DomainError> {
        match finish {
            None => return Ok(()),
            Some(Finish::Complete) => {
                document.status = SagaStatus::Completed;
                tracing::info!(saga = S::NAME, saga_id = id, "saga completed");
            }
            Some(Finish::Compensate(reason)) => {
                let mut cx = SagaContext::new(uow, id, key, now, None);
                self.saga.compensate(state, &reason, &mut cx).await?;
                document.status = SagaStatus::Compensated;
                tracing::info!(saga = S::NAME, saga_id = id, %reason, "saga compensated");
                document.reason = Some(reason);
            }
        }
        document.deadline_ms = None;
        Ok(())
    }
}

fn encode_state<S: Saga>(state: &S::State, key: &str) -> Result<serde_json::Value, DomainError> {
    serde_json::to_value(state).map_err(|e| {
        DomainError::internal(format!("cannot serialize the state of saga {key}: {e}"))
    })
}

fn decode_state<S: Saga>(document: &Document, key: &str) -> Result<S::State, DomainError> {
    serde_json::from_value(document.state.clone()).map_err(|e| {
        DomainError::internal(format!(
            "stored state of saga {key} does not match {}: {e}",
            std::any::type_name::<S::State>()
        ))
    })
}

/// The bus handler of one step type.
struct StepHandler<S: Saga, E> {
    runner: SagaRunner<S>,
    _event: PhantomData<fn() -> E>,
}

#[async_trait]
impl<S, E> MessageHandler for StepHandler<S, E>
where
    S: SagaStep<E>,
    E: IntegrationEvent,
{
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        if let Err(error) = delivery.envelope.decode::<E>() {
            return Err(HandlerError::undecodable(error));
        }
        self.runner
            .handle::<E>(&delivery.envelope)
            .await
            .map(|_| ())
            .map_err(HandlerError::from)
    }
}

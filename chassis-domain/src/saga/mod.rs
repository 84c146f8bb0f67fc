//! Sagas (process managers): a long-running conversation between services,
//! its state persisted, its steps driven by the events that come back, with
//! deadlines, compensation and an exactly-once effect per step message.
//!
//! A saga is written as a [`Saga`] (how it starts, what happens on a
//! timeout, how it compensates) plus one [`SagaStep<E>`] per event type it
//! reacts to. The [`SagaRunner`] does the rest:
//!
//! - **State through the storage port.** Each instance is one record of
//!   collection [`SAGA_COLLECTION`] (id `<saga name>:<saga id>`) holding the
//!   serde state, the status, the deadline and the correlation id. Every step
//!   loads it, changes it and writes it back with optimistic versioning: a
//!   step running concurrently with another on the same instance fails its
//!   write and is run again on the fresh state (up to
//!   [`SagaConfig::conflict_retries`] times, then the message goes back to
//!   the bus as a retryable failure) — never lost, never applied on stale
//!   state.
//! - **Outbox in the same unit of work.** What a step sends
//!   ([`SagaContext::send`]) is written to the outbox of the transaction that
//!   saves the new state, and so is whatever it changes through
//!   [`SagaContext::unit_of_work`] (e.g. an aggregate through a repository).
//!   A crash between the save and the send loses nothing: the relay
//!   publishes after commit, or after the restart.
//! - **Idempotent steps.** The id of each step message is marked in the
//!   store's inbox (consumer `saga.<name>`) in the same transaction: a
//!   duplicate delivery has no second effect.
//! - **Timeouts.** A step sets a deadline ([`SagaContext::schedule_timeout`]);
//!   it is stored in the record and indexed (`saga_timer = <name>` and
//!   `saga_due = <deadline>` while armed), so [`SagaRunner::fire_due_timeouts`]
//!   gets the due instances from the store with one query. [`SagaRunner::start_timeouts`]
//!   runs that in a background task every
//!   [`SagaConfig::timeout_poll_interval`]. Deadlines are data, so they
//!   survive restarts: a deadline that passed while the process was down
//!   fires at the first poll after start. A deadline fires once: firing
//!   clears it in the same versioned write that stores what
//!   [`Saga::on_timeout`] did, so two schedulers racing on one instance
//!   conflict and the loser finds it no longer due.
//! - **Compensation.** A step that decides the saga cannot succeed calls
//!   [`SagaContext::compensate`]; a step that *fails* with a business error
//!   (conflict, validation, not found, forbidden) has its writes rolled back
//!   and the saga compensated in a fresh unit of work. Either way
//!   [`Saga::compensate`] runs and the instance ends
//!   [`SagaStatus::Compensated`] with the reason. Internal errors (a bug, an
//!   undecodable message) are not compensated: the message is dead-lettered
//!   and the saga keeps its state and deadline.
//! - **Terminal states.** [`SagaContext::complete`] or compensation end the
//!   instance; later messages for it are acknowledged without effect, and
//!   its deadline is cleared.
//!
//! # Why the runner lives here
//!
//! `chassis-storage` depends on `chassis-domain` (its repository and unit of
//! work implement this crate's ports), so this crate cannot use
//! `chassis_storage::Repository`. It does not need to: the runner works on
//! the [`UnitOfWorkFactory`](crate::UnitOfWorkFactory) / [`UnitOfWork`] ports and the
//! `storage_abstractions` records and inbox marks that the unit of work's
//! transaction exposes — the same port the repository is written on. So the
//! building block sits next to the command pipeline, free of any provider,
//! and every store provider (in-memory, PostgreSQL) runs it unchanged.
//!
//! ```
//! use std::time::Duration;
//! use chassis_domain::saga::{Saga, SagaContext, SagaStep};
//! use chassis_domain::{DomainError, IntegrationEvent};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct ReserveStock { order_id: String }
//! impl IntegrationEvent for ReserveStock { const EVENT_TYPE: &'static str = "stock.reserve.v1"; }
//! #[derive(Serialize, Deserialize)]
//! struct StockReserved { order_id: String }
//! impl IntegrationEvent for StockReserved { const EVENT_TYPE: &'static str = "stock.reserved.v1"; }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Reservation { attempts: u32 }
//!
//! struct ReserveSaga;
//!
//! #[async_trait::async_trait]
//! impl Saga for ReserveSaga {
//!     const NAME: &'static str = "reservation";
//!     type State = Reservation;
//!     type Input = ();
//!     async fn start(&self, (): (), cx: &mut SagaContext<'_>) -> Result<Reservation, DomainError> {
//!         cx.send(&ReserveStock { order_id: cx.saga_id().to_owned() }).await?;
//!         cx.schedule_timeout(Duration::from_secs(10));
//!         Ok(Reservation { attempts: 1 })
//!     }
//!     async fn on_timeout(&self, s: &mut Reservation, cx: &mut SagaContext<'_>) -> Result<(), DomainError> {
//!         if s.attempts >= 3 {
//!             cx.compensate("stock did not answer");
//!             return Ok(());
//!         }
//!         s.attempts += 1;
//!         cx.send(&ReserveStock { order_id: cx.saga_id().to_owned() }).await?;
//!         cx.schedule_timeout(Duration::from_secs(10));
//!         Ok(())
//!     }
//!     async fn compensate(&self, _: &mut Reservation, _reason: &str, _: &mut SagaContext<'_>) -> Result<(), DomainError> {
//!         Ok(()) // undo what the saga's own steps did
//!     }
//! }
//!
//! #[async_trait::async_trait]
//! impl SagaStep<StockReserved> for ReserveSaga {
//!     fn saga_id(event: &StockReserved) -> String { event.order_id.clone() }
//!     async fn handle(&self, _: &mut Reservation, _: StockReserved, cx: &mut SagaContext<'_>) -> Result<(), DomainError> {
//!         cx.complete();
//!         Ok(())
//!     }
//! }
//! // Wiring: let runner = SagaRunner::new(ReserveSaga, Arc::new(storage));
//! // bus.subscribe(Subscription::new("orders", runner.on::<StockReserved>(Handlers::new())));
//! // let timeouts = runner.start_timeouts();
//! ```

mod runner;
mod timeouts;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use messaging_abstractions::{Envelope, IntegrationEvent};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::command::UnitOfWork;
use crate::error::DomainError;

pub use runner::{SagaConfig, SagaInstance, SagaRunner, StepOutcome};
pub use timeouts::{SagaTimeouts, SagaTimeoutsError};

/// The collection every saga instance is stored in.
pub const SAGA_COLLECTION: &str = "sagas";

/// A process manager: its state type, how it starts, what it does when a
/// deadline passes and how it undoes its work. Add one [`SagaStep`] per
/// event type it reacts to.
///
/// Every method runs inside the unit of work of the step: what it changes
/// through [`SagaContext::unit_of_work`] and sends through
/// [`SagaContext::send`] commits together with the new state, or not at all.
#[async_trait]
pub trait Saga: Send + Sync + 'static {
    /// Stable name, `[a-z0-9_]+` (stored with every instance, names the inbox
    /// consumer `saga.<NAME>` and the timer index).
    const NAME: &'static str;
    /// The instance's state, stored as JSON.
    type State: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What starting an instance needs.
    type Input: Send + 'static;

    /// Starts an instance (id: [`SagaContext::saga_id`]): usually sends the
    /// first command and schedules a timeout.
    async fn start(
        &self,
        input: Self::Input,
        cx: &mut SagaContext<'_>,
    ) -> Result<Self::State, DomainError>;

    /// The deadline passed. It is already cleared: schedule another to keep
    /// waiting (e.g. after re-sending), or end the saga.
    async fn on_timeout(
        &self,
        state: &mut Self::State,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError>;

    /// Undoes what the saga did so far, because of `reason` (a step called
    /// [`SagaContext::compensate`], or failed with a business error). The
    /// instance ends [`SagaStatus::Compensated`] afterwards; calls to
    /// `complete`/`compensate` in here are ignored.
    async fn compensate(
        &self,
        state: &mut Self::State,
        reason: &str,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError>;
}

/// How a saga reacts to event `E`.
#[async_trait]
pub trait SagaStep<E: IntegrationEvent>: Saga {
    /// The instance the event belongs to (its correlation, e.g. the order id
    /// the answer carries).
    fn saga_id(event: &E) -> String;

    /// Handles the event. A business error (conflict, validation, ...) rolls
    /// the step back and compensates the saga; a retryable one is retried.
    async fn handle(
        &self,
        state: &mut Self::State,
        event: E,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError>;
}

/// Where an instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Waiting for events or its deadline.
    Running,
    /// Ended successfully.
    Completed,
    /// Ended after its compensation ran.
    Compensated,
}

impl SagaStatus {
    /// `running`, `completed`, `compensated` (also the index value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
        }
    }
}

/// How a step ended the saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    Complete,
    Compensate(String),
}

/// What a saga method works with: the instance id, the unit of work of the
/// step, the outbox and the instance's deadline and end.
pub struct SagaContext<'a> {
    uow: &'a mut dyn UnitOfWork,
    saga_id: &'a str,
    ordering_key: &'a str,
    now: SystemTime,
    deadline: Option<SystemTime>,
    finish: Option<Finish>,
}

impl std::fmt::Debug for SagaContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaContext")
            .field("saga_id", &self.saga_id)
            .field("deadline", &self.deadline)
            .field("finish", &self.finish)
            .finish_non_exhaustive()
    }
}

impl<'a> SagaContext<'a> {
    pub(crate) fn new(
        uow: &'a mut dyn UnitOfWork,
        saga_id: &'a str,
        ordering_key: &'a str,
        now: SystemTime,
        deadline: Option<SystemTime>,
    ) -> Self {
        Self {
            uow,
            saga_id,
            ordering_key,
            now,
            deadline,
            finish: None,
        }
    }

    pub(crate) fn into_parts(self) -> (Option<SystemTime>, Option<Finish>) {
        (self.deadline, self.finish)
    }

    /// The instance's id.
    pub fn saga_id(&self) -> &str {
        self.saga_id
    }

    /// The time this step runs at (one value for the whole step).
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// The unit of work of this step: load and save aggregates through it;
    /// their writes and outbox messages commit with the saga's new state.
    pub fn unit_of_work(&mut self) -> &mut dyn UnitOfWork {
        &mut *self.uow
    }

    /// Sends `event` through the outbox of this step's unit of work: it is
    /// published after commit, with the correlation id of the instance, in
    /// order with the instance's other messages.
    pub async fn send<E: IntegrationEvent>(&mut self, event: &E) -> Result<(), DomainError> {
        self.send_envelope(Envelope::for_event(event)?).await
    }

    /// [`send`](Self::send) for a ready envelope.
    pub async fn send_envelope(&mut self, mut envelope: Envelope) -> Result<(), DomainError> {
        if envelope.partition_key.is_none() {
            envelope.partition_key = Some(self.saga_id.to_owned());
        }
        self.uow.enqueue(self.ordering_key, vec![envelope]).await
    }

    /// Calls [`Saga::on_timeout`] once `after` has passed from now (unless
    /// the saga ends or reschedules first). Replaces any earlier deadline.
    pub fn schedule_timeout(&mut self, after: Duration) {
        self.deadline = Some(self.now + after);
    }

    /// Clears the deadline.
    pub fn cancel_timeout(&mut self) {
        self.deadline = None;
    }

    /// The current deadline, if one is set.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.deadline
    }

    /// Ends the instance successfully once this step commits.
    pub fn complete(&mut self) {
        self.finish = Some(Finish::Complete);
    }

    /// Ends the instance by compensating: [`Saga::compensate`] runs with
    /// `reason` in this step's unit of work, right after this step.
    pub fn compensate(&mut self, reason: impl Into<String>) {
        self.finish = Some(Finish::Compensate(reason.into()));
    }
}

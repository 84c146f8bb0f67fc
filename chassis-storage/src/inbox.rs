//! The inbox: handlers with an exactly-once effect under at-least-once
//! delivery.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use chassis_domain::{DomainError, UnitOfWork};
use messaging_abstractions::{Delivery, Envelope, EventHandler, HandlerError, IntegrationEvent};
use storage_abstractions::Store;

use crate::unit_of_work::StoreUnitOfWork;

/// The future a unit of work closure returns.
pub type WorkFuture<'u, T> = Pin<Box<dyn Future<Output = Result<T, DomainError>> + Send + 'u>>;

/// Whether the work ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxOutcome<T> {
    /// First delivery: the work ran and committed with the inbox mark.
    Processed(T),
    /// Already processed by this group: nothing ran.
    Duplicate,
}

/// Records which messages a consumer group has processed, in the same
/// transaction as the handler's writes:
///
/// 1. open a unit of work and mark `(group, message_id)`;
/// 2. already marked → roll back and acknowledge without effect;
/// 3. else run the handler's writes in that unit of work and commit both.
///
/// A failing handler rolls back its writes *and* the mark, so a retry is a
/// real retry. Two concurrent deliveries of one message race on the mark: one
/// commits, the other fails with a (retryable) conflict and, retried, finds
/// the mark.
#[derive(Clone)]
pub struct Inbox {
    store: Arc<dyn Store>,
    group: String,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("group", &self.group).finish()
    }
}

impl Inbox {
    /// An inbox of consumer group `group` (normally the service name).
    pub fn new(store: Arc<dyn Store>, group: impl Into<String>) -> Self {
        Self {
            store,
            group: group.into(),
        }
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Runs `work` for `envelope` unless this group processed it already.
    /// The unit of work runs in the handler context of the envelope (same
    /// correlation id, the message as causation), so events it enqueues are
    /// linked to it.
    ///
    /// ```no_run
    /// use chassis_storage::{Inbox, InboxOutcome};
    /// use chassis_domain::{DomainError, Envelope, UnitOfWork};
    ///
    /// async fn on_message(inbox: &Inbox, envelope: &Envelope) -> Result<(), DomainError> {
    ///     let outcome = inbox
    ///         .process(envelope, |uow| Box::pin(async move {
    ///             // load, change and save aggregates through `uow` here
    ///             let _ = uow.context();
    ///             Ok(())
    ///         }))
    ///         .await?;
    ///     if outcome == InboxOutcome::Duplicate {
    ///         tracing::debug!("already handled");
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn process<T, F>(
        &self,
        envelope: &Envelope,
        work: F,
    ) -> Result<InboxOutcome<T>, DomainError>
    where
        F: for<'u> FnOnce(&'u mut StoreUnitOfWork) -> WorkFuture<'u, T>,
    {
        let mut uow =
            StoreUnitOfWork::begin(self.store.as_ref(), envelope.context_for_handler()).await?;
        if !uow.mark_inbox(&self.group, envelope.message_id).await? {
            tracing::debug!(
                group = %self.group,
                message_id = %envelope.message_id,
                event_type = %envelope.event_type,
                "message already processed: acknowledged without effect"
            );
            uow.rollback().await?;
            return Ok(InboxOutcome::Duplicate);
        }
        match work(&mut uow).await {
            Ok(value) => {
                uow.commit().await?;
                Ok(InboxOutcome::Processed(value))
            }
            Err(error) => {
                if let Err(rollback) = uow.rollback().await {
                    tracing::warn!(error = %rollback, "rollback after a failed handler failed");
                }
                Err(error)
            }
        }
    }

    /// Wraps a transactional handler into an idempotent bus handler:
    /// `Handlers::new().on(inbox.handler(MyHandler))`.
    pub fn handler<E, H>(&self, handler: H) -> Idempotent<E, H>
    where
        E: IntegrationEvent,
        H: InboxHandler<E>,
    {
        Idempotent {
            inbox: self.clone(),
            handler: Arc::new(handler),
            _event: PhantomData,
        }
    }
}

/// A handler whose writes go through the inbox's unit of work.
#[async_trait]
pub trait InboxHandler<E: IntegrationEvent>: Send + Sync + 'static {
    /// Handles the event; everything written through `uow` commits together
    /// with the inbox mark. Retryable domain errors are retried by the bus,
    /// others dead-lettered.
    async fn handle(
        &self,
        event: E,
        delivery: &Delivery,
        uow: &mut dyn UnitOfWork,
    ) -> Result<(), DomainError>;
}

/// An [`InboxHandler`] made idempotent by an [`Inbox`]; an
/// [`EventHandler`] for the bus.
pub struct Idempotent<E, H> {
    inbox: Inbox,
    handler: Arc<H>,
    _event: PhantomData<fn() -> E>,
}

impl<E, H> std::fmt::Debug for Idempotent<E, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotent")
            .field("inbox", &self.inbox)
            .field("event", &std::any::type_name::<E>())
            .finish()
    }
}

#[async_trait]
impl<E: IntegrationEvent, H: InboxHandler<E>> EventHandler<E> for Idempotent<E, H> {
    async fn handle(&self, event: E, delivery: &Delivery) -> Result<(), HandlerError> {
        let handler = self.handler.clone();
        let owned = delivery.clone();
        self.inbox
            .process(&delivery.envelope, move |uow| {
                Box::pin(async move { handler.handle(event, &owned, uow).await })
            })
            .await
            .map(|_| ())
            .map_err(HandlerError::from)
    }
}

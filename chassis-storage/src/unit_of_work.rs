//! The unit of work over a [`Store`] transaction, and the [`Persistence`] facade a
//! service holds.

use std::sync::Arc;

use async_trait::async_trait;
use chassis_core::HealthCheck;
use chassis_domain::{DomainError, UnitOfWork, UnitOfWorkFactory};
use messaging_abstractions::{Envelope, EventBus, MessageContext};
use storage_abstractions::{
    OutboxMessage, RecordWrite, StorageConfig, StorageError, Store, Transaction,
};
use uuid::Uuid;

use crate::codec;
use crate::health::OutboxBacklogCheck;
use crate::inbox::Inbox;
use crate::relay::{OutboxRelay, RelayHandle};

/// A [`UnitOfWork`] over one store transaction: repository calls, outbox
/// appends and inbox marks commit or roll back together. Dropping it without
/// commit rolls back.
pub struct StoreUnitOfWork {
    tx: Box<dyn Transaction>,
    context: MessageContext,
    enqueued: usize,
}

impl std::fmt::Debug for StoreUnitOfWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreUnitOfWork")
            .field("context", &self.context)
            .field("enqueued", &self.enqueued)
            .finish_non_exhaustive()
    }
}

impl StoreUnitOfWork {
    /// Opens a transaction on `store`.
    pub async fn begin(store: &dyn Store, context: MessageContext) -> Result<Self, StorageError> {
        Ok(Self {
            tx: store.begin().await?,
            context,
            enqueued: 0,
        })
    }

    /// Marks `message_id` as handled by consumer group `group`, in this
    /// transaction. `false` if it already was: the caller must then skip its
    /// effects.
    pub async fn mark_inbox(
        &mut self,
        group: &str,
        message_id: Uuid,
    ) -> Result<bool, StorageError> {
        self.tx.mark_inbox(group, message_id).await
    }

    /// Commits everything at once (the same as [`UnitOfWork::commit`],
    /// without boxing).
    pub async fn commit(self) -> Result<(), StorageError> {
        self.tx.commit().await
    }

    /// Discards everything (the same as dropping it, but reports errors).
    pub async fn rollback(self) -> Result<(), StorageError> {
        self.tx.rollback().await
    }

    /// How many outbox messages this unit of work has written.
    pub fn enqueued(&self) -> usize {
        self.enqueued
    }
}

/// Encodes envelopes (filling context fields they lack) into outbox messages
/// with one ordering key.
pub(crate) fn outbox_messages(
    ordering_key: &str,
    envelopes: Vec<Envelope>,
    context: &MessageContext,
) -> Result<Vec<OutboxMessage>, DomainError> {
    envelopes
        .into_iter()
        .map(|envelope| {
            let envelope = envelope.with_context(context);
            let id = envelope.message_id;
            let event_type = envelope.event_type.clone();
            let body = codec::encode(envelope).map_err(|e| {
                DomainError::internal(format!("cannot encode `{event_type}` for the outbox: {e}"))
            })?;
            Ok(OutboxMessage {
                id,
                ordering_key: ordering_key.to_owned(),
                event_type,
                body,
            })
        })
        .collect()
}

#[async_trait]
impl UnitOfWork for StoreUnitOfWork {
    fn context(&self) -> &MessageContext {
        &self.context
    }

    fn transaction(&mut self) -> &mut dyn Transaction {
        self.tx.as_mut()
    }

    async fn enqueue(
        &mut self,
        ordering_key: &str,
        envelopes: Vec<Envelope>,
    ) -> Result<(), DomainError> {
        if envelopes.is_empty() {
            return Ok(());
        }
        let messages = outbox_messages(ordering_key, envelopes, &self.context)?;
        let count = messages.len();
        self.tx.append_outbox(messages).await?;
        self.enqueued += count;
        Ok(())
    }

    /// The write and the messages in one call of the transaction, so a
    /// provider can send them to its server as one statement.
    async fn write_and_enqueue(
        &mut self,
        write: RecordWrite,
        ordering_key: &str,
        envelopes: Vec<Envelope>,
    ) -> Result<(), DomainError> {
        let messages = outbox_messages(ordering_key, envelopes, &self.context)?;
        let count = messages.len();
        self.tx.write_with_outbox(write, messages).await?;
        self.enqueued += count;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), DomainError> {
        Ok(self.tx.commit().await?)
    }

    async fn rollback(self: Box<Self>) -> Result<(), DomainError> {
        Ok(self.tx.rollback().await?)
    }
}

/// What a service persists through: its [`Store`] (the port a database
/// provider implements) with the `storage` config. Cheap to clone. It opens
/// units of work (and is the [`UnitOfWorkFactory`] of the command
/// pipeline), starts the outbox relay, builds inboxes and readiness checks.
#[derive(Clone)]
pub struct Persistence {
    store: Arc<dyn Store>,
    config: StorageConfig,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence")
            .field("provider", &self.store.provider())
            .field("config", &self.config)
            .finish()
    }
}

impl Persistence {
    /// Wraps a store built by `storage-init` (or a provider directly).
    pub fn new(store: Arc<dyn Store>, config: StorageConfig) -> Self {
        Self { store, config }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The `storage` configuration.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Opens a unit of work.
    pub async fn begin(&self, context: MessageContext) -> Result<StoreUnitOfWork, StorageError> {
        StoreUnitOfWork::begin(self.store.as_ref(), context).await
    }

    /// Runs read-only `work` in a unit of work of the current message
    /// context ([`MessageContext::current`]) and discards the unit of work
    /// afterwards: nothing it might have written is kept.
    ///
    /// ```ignore
    /// let item = storage.read(async |uow| Repository::<Item>::new().load(uow, &id).await).await?;
    /// ```
    pub async fn read<T>(
        &self,
        work: impl AsyncFnOnce(&mut StoreUnitOfWork) -> Result<T, DomainError>,
    ) -> Result<T, DomainError> {
        let mut uow = self.begin(MessageContext::current()).await?;
        let result = work(&mut uow).await;
        // Read-only: the outcome is the work's, whatever the rollback says
        // (a failed rollback ends the transaction all the same).
        if let Err(error) = uow.rollback().await {
            tracing::debug!(%error, "rolling back a read-only unit of work failed");
        }
        result
    }

    /// Starts the outbox relay publishing on `bus`, configured by
    /// `storage.outbox` and `storage.inbox` (inbox retention).
    pub fn start_relay(&self, bus: Arc<dyn EventBus>) -> RelayHandle {
        OutboxRelay::new(self.store.outbox(), bus, self.config.outbox.clone())
            .inbox_retention(self.config.inbox.retention)
            .start()
    }

    /// An inbox for consumer group `group` (normally the service name).
    pub fn inbox(&self, group: impl Into<String>) -> Inbox {
        Inbox::new(self.store.clone(), group)
    }

    /// Readiness checks: the store's own (database reachable, ...) and the
    /// outbox backlog (watching `relay` when this process runs it).
    pub fn health_checks(&self, relay: Option<&RelayHandle>) -> Vec<Arc<dyn HealthCheck>> {
        let mut checks = self.store.health_checks();
        let mut backlog = OutboxBacklogCheck::new(self.store.outbox(), &self.config.outbox);
        if let Some(relay) = relay {
            backlog = backlog.watching(relay);
        }
        checks.push(Arc::new(backlog));
        checks
    }
}

#[async_trait]
impl UnitOfWorkFactory for Persistence {
    async fn begin(&self, context: MessageContext) -> Result<Box<dyn UnitOfWork>, DomainError> {
        Ok(Box::new(Persistence::begin(self, context).await?))
    }
}

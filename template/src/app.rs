//! The application layer: the use cases, each in one unit of work.
//!
//! - `CreateItem` runs through the chassis command pipeline (logging span
//!   with the correlation id, one unit of work): the item's row
//!   ([`crate::tables`]) and its `ItemCreated` outbox message commit
//!   together; the outbox relay publishes the event after commit.
//! - [`CountCreatedItems`] handles `ItemCreated` through the inbox, so a
//!   redelivered event is counted once.

use std::sync::Arc;

use async_trait::async_trait;
use chassis_domain::messaging::Delivery;
use chassis_domain::{
    Command, CommandContext, CommandHandler, CommandPipeline, DomainError, UnitOfWork,
};
use chassis_storage::{InboxHandler, Repository, Persistence};
use uuid::Uuid;

use crate::domain::{CreateItem, Item, ItemStats};
use crate::events::ItemCreated;
use crate::tables::Items as ItemTable;

impl Command for CreateItem {
    const NAME: &'static str = "item.create";
    type Output = Item;
}

/// Creates and stores an item.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateItemHandler;

#[async_trait]
impl CommandHandler<CreateItem> for CreateItemHandler {
    async fn handle(
        &self,
        command: CreateItem,
        cx: &mut CommandContext,
    ) -> Result<Item, DomainError> {
        let mut item = Item::create(Uuid::now_v7(), command)?;
        ItemTable.add(cx.unit_of_work()?, &mut item).await?;
        Ok(item)
    }
}

/// Counts every created item in [`ItemStats`]. Runs in the inbox's unit of
/// work: the new count and the inbox mark commit together. A concurrent
/// update of the statistics is a retryable conflict: the bus redelivers.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountCreatedItems;

#[async_trait]
impl InboxHandler<ItemCreated> for CountCreatedItems {
    async fn handle(
        &self,
        event: ItemCreated,
        _delivery: &Delivery,
        uow: &mut dyn UnitOfWork,
    ) -> Result<(), DomainError> {
        let repository = Repository::<ItemStats>::new();
        let id = ItemStats::ID.to_owned();
        let mut stats = repository
            .get(uow, &id)
            .await?
            .unwrap_or_else(ItemStats::empty);
        stats.count_created();
        repository.save(uow, &mut stats).await?;
        tracing::info!(item_id = %event.item_id, items_created = stats.items_created(), "item counted");
        Ok(())
    }
}

/// The service's use cases over its storage. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Items {
    storage: Persistence,
    pipeline: CommandPipeline,
}

impl Items {
    /// The use cases over `storage`.
    pub fn new(storage: Persistence) -> Self {
        let pipeline = CommandPipeline::new().with_unit_of_work(Arc::new(storage.clone()));
        Self { storage, pipeline }
    }

    /// Creates an item (in the current request's or message's context).
    pub async fn create(&self, command: CreateItem) -> Result<Item, DomainError> {
        self.pipeline.run(&CreateItemHandler, command).await
    }

    /// The item with `id`; [`DomainError::NotFound`] if there is none.
    pub async fn get(&self, id: Uuid) -> Result<Item, DomainError> {
        self.storage
            .read(async |uow| ItemTable.load(uow, id).await)
            .await
    }

    /// How many items were created (counted from `ItemCreated` events, so
    /// it trails creation by the relay's and the bus's latency).
    pub async fn stats(&self) -> Result<ItemStats, DomainError> {
        let id = ItemStats::ID.to_owned();
        let stats = self
            .storage
            .read(async |uow| Ok(Repository::<ItemStats>::new().get(uow, &id).await?))
            .await?;
        Ok(stats.unwrap_or_else(ItemStats::empty))
    }
}

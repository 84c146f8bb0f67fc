//! The service's tables and the repository over them: the `items` table of
//! [`MIGRATIONS`] (applied by the chassis at start-up, before anything is
//! served), read and written with SQL in the unit of work's transaction —
//! the one that also holds the outbox, so an item and its `ItemCreated`
//! message commit together. The same SQL runs on SQLite (the default,
//! embedded) and PostgreSQL (`config/production.toml`).

use chassis_domain::storage::Migration;
use chassis_domain::{AggregateRoot, DomainError, Entity, UnitOfWork};
use chassis_storage::{Sql, publish_changes};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::Item;

/// The service's schema, in order; add a migration, never edit one.
pub static MIGRATIONS: &[Migration] = &[Migration::new(
    1,
    "items",
    include_str!("../migrations/0001_items.sql"),
)];

/// The `items` table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Items;

impl Items {
    /// Inserts a new item (version 1) and enqueues its integration events;
    /// an existing id is a [`DomainError::Concurrency`].
    pub async fn add(&self, uow: &mut dyn UnitOfWork, item: &mut Item) -> Result<(), DomainError> {
        Sql::of(uow.transaction())?
            .query("INSERT INTO items (id, name, created_at, version) VALUES ($1, $2, $3, 1)")
            .bind(*item.id())
            .bind(item.name())
            .bind(item.created_at())
            .execute()
            .await?;
        publish_changes(uow, item, 1).await?;
        Ok(())
    }

    /// The item with `id`; [`DomainError::NotFound`] if there is none.
    pub async fn load(&self, uow: &mut dyn UnitOfWork, id: Uuid) -> Result<Item, DomainError> {
        let row: Option<(Uuid, String, OffsetDateTime, i64)> = Sql::of(uow.transaction())?
            .query("SELECT id, name, created_at, version FROM items WHERE id = $1")
            .bind(id)
            .fetch_optional()
            .await?;
        let (id, name, created_at, version) =
            row.ok_or_else(|| DomainError::not_found(Item::COLLECTION, id))?;
        let version = u64::try_from(version)
            .map_err(|_| DomainError::internal(format!("item {id} has version {version}")))?;
        Ok(Item::restore(id, name, created_at, version))
    }
}

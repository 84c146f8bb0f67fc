//! The domain: aggregates and their rules. No HTTP, broker or SQL here.
//!
//! - [`Item`]: what the service manages; creating one publishes
//!   [`ItemCreated`](crate::events::ItemCreated) through the outbox.
//! - [`ItemStats`]: a read model kept up to date by handling `ItemCreated`.

use chassis_domain::{Aggregate, Changes, DomainError, FieldError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::events::ItemCreated;

/// Longest accepted item name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The `CreateItem` command, not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateItem {
    /// The item's name (at most 200 characters, not blank; stored trimmed).
    pub name: String,
}

/// What happened to an item (in-process domain events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemEvent {
    /// The item was created.
    Created,
}

/// An item, stored as a row of the `items` table ([`crate::tables`]).
#[derive(Debug, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(collection = "items", events = ItemEvent)]
pub struct Item {
    id: Uuid,
    name: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(skip)]
    changes: Changes<ItemEvent>,
}

impl Item {
    /// Creates an item from the command; a 422 naming `name` if the name is
    /// empty or too long. Publishes `ItemCreated` when saved.
    pub fn create(id: Uuid, command: CreateItem) -> Result<Self, DomainError> {
        // The rule the OpenAPI schema of `CreateItemRequest` states.
        let name = chassis_domain::text::required(&command.name, MAX_NAME_CHARS)
            .map_err(|why| invalid_name(&why.to_string()))?;
        let mut item = Self {
            id,
            name: name.to_owned(),
            created_at: OffsetDateTime::now_utc(),
            changes: Changes::default(),
        };
        item.changes.raise(ItemEvent::Created);
        item.changes.publish(ItemCreated {
            item_id: id,
            name: item.name.clone(),
        });
        Ok(item)
    }

    /// An item as stored (its row), at `version`: no rule checked again,
    /// no event raised.
    pub fn restore(id: Uuid, name: String, created_at: OffsetDateTime, version: u64) -> Self {
        let mut changes = Changes::default();
        changes.set_version(version);
        Self {
            id,
            name,
            created_at,
            changes,
        }
    }

    /// The item's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When it was created (UTC).
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
}

fn invalid_name(message: &str) -> DomainError {
    DomainError::validation([FieldError::new("name", message)])
}

/// How many items were created: one document (the chassis's zero-schema
/// store, next to the tables), updated by the `ItemCreated` handler.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Aggregate)]
#[aggregate(collection = "item_stats")]
pub struct ItemStats {
    id: String,
    items_created: u64,
    #[serde(skip)]
    changes: Changes<()>,
}

impl ItemStats {
    /// The id of the one statistics document.
    pub const ID: &'static str = "all";

    /// Statistics before any item was created.
    pub fn empty() -> Self {
        Self {
            id: Self::ID.to_owned(),
            ..Self::default()
        }
    }

    /// Counts one more created item.
    pub fn count_created(&mut self) {
        self.items_created += 1;
    }

    /// Items created so far.
    pub fn items_created(&self) -> u64 {
        self.items_created
    }
}

#[cfg(test)]
mod tests {
    use chassis_domain::{AggregateRoot, Entity};

    use super::*;

    #[test]
    fn creating_an_item_trims_its_name_and_publishes_item_created() {
        let id = Uuid::now_v7();
        let item = Item::create(
            id,
            CreateItem {
                name: "  lamp ".into(),
            },
        )
        .unwrap();
        assert_eq!(item.name(), "lamp");
        assert_eq!(item.changes().domain_events(), [ItemEvent::Created]);
        let published = item.changes().integration_events();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].event_type(), "{{crate_name}}.item_created.v1");
        let envelope = published[0].to_envelope().unwrap();
        let event: ItemCreated = envelope.decode().unwrap();
        assert_eq!(
            event,
            ItemCreated {
                item_id: id,
                name: "lamp".into()
            }
        );
    }

    #[test]
    fn an_invalid_name_is_a_422_naming_the_field() {
        for name in ["", "   ", &"x".repeat(MAX_NAME_CHARS + 1)] {
            let err = Item::create(Uuid::now_v7(), CreateItem { name: name.into() }).unwrap_err();
            assert_eq!(err.status(), 422, "{name:?}");
            assert_eq!(err.field_errors()[0].field, "name");
        }
        let longest = "é".repeat(MAX_NAME_CHARS);
        assert!(Item::create(Uuid::now_v7(), CreateItem { name: longest }).is_ok());
    }

    #[test]
    fn stats_count_created_items() {
        let mut stats = ItemStats::empty();
        assert_eq!(stats.id(), ItemStats::ID);
        stats.count_created();
        stats.count_created();
        assert_eq!(stats.items_created(), 2);
    }
}

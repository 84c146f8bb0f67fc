//! The integration events this service publishes: its contract with other
//! services. Changing a field incompatibly means a new event type version
//! (`….v2`), published next to the old one until every subscriber has moved.
//! When other services consume them, move this module into a small
//! `{{project-name}}-client` crate they can depend on.

use chassis_domain::IntegrationEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An item was created.
/// `ToSchema` gives its payload schema in the AsyncAPI document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemCreated {
    /// The new item.
    pub item_id: Uuid,
    /// Its name.
    pub name: String,
}

impl IntegrationEvent for ItemCreated {
    const EVENT_TYPE: &'static str = "{{crate_name}}.item_created.v1";

    /// Events of one item keep their order.
    fn partition_key(&self) -> Option<String> {
        Some(self.item_id.to_string())
    }
}

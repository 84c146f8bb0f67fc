//! The integration event contract between the order service (publisher) and
//! its subscribers. Changing a field incompatibly means a new event type
//! version (`order.completed.v2`), published next to this one until every
//! subscriber has moved.

use messaging_abstractions::IntegrationEvent;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// An order is complete (paid): what shipping needs to pack it. Carries no
/// prices — shipping has no business with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderCompleted {
    /// The completed order.
    pub order_id: Uuid,
    /// Where the items go.
    pub destination: Destination,
    /// What to ship.
    pub items: Vec<ItemToShip>,
    /// When the order was completed (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub completed_at: OffsetDateTime,
}

/// Where the items of an [`OrderCompleted`] go. The event's own type, not
/// the HTTP body [`crate::dto::Destination`]: HTTP input refuses unknown
/// fields, while an event is read tolerantly (unknown fields ignored), so a
/// producer that adds a field sends no consumer's messages to the
/// dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Destination {
    /// Recipient's name.
    pub name: String,
    /// Street and number.
    pub street: String,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// Country.
    pub country: String,
}

/// One line of a completed order, as shipping sees it. Weight and
/// dimensions are per unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemToShip {
    /// Stock keeping unit, unique within the order.
    pub sku: String,
    /// Units to ship (≥ 1).
    pub quantity: u32,
    /// Weight of one unit in grams.
    pub weight_grams: u32,
    /// Length of one unit in millimetres.
    pub length_mm: u32,
    /// Width of one unit in millimetres.
    pub width_mm: u32,
    /// Height of one unit in millimetres.
    pub height_mm: u32,
}

impl IntegrationEvent for OrderCompleted {
    const EVENT_TYPE: &'static str = "order.completed.v1";

    /// Events of one order keep their order.
    fn partition_key(&self) -> Option<String> {
        Some(self.order_id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_abstractions::Envelope;

    #[test]
    fn wire_format_is_stable() {
        let event = OrderCompleted {
            order_id: Uuid::nil(),
            destination: Destination {
                name: "Ada".into(),
                street: "1 Main St".into(),
                city: "London".into(),
                postal_code: "N1".into(),
                country: "GB".into(),
            },
            items: vec![ItemToShip {
                sku: "A".into(),
                quantity: 2,
                weight_grams: 500,
                length_mm: 10,
                width_mm: 20,
                height_mm: 30,
            }],
            completed_at: OffsetDateTime::from_unix_timestamp(0).unwrap(),
        };
        let envelope = Envelope::for_event(&event).unwrap();
        assert_eq!(envelope.event_type, "order.completed.v1");
        assert_eq!(
            envelope.partition_key.as_deref(),
            Some(&*Uuid::nil().to_string())
        );
        let json: serde_json::Value = serde_json::from_slice(&envelope.payload).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "order_id": "00000000-0000-0000-0000-000000000000",
                "destination": {"name": "Ada", "street": "1 Main St", "city": "London",
                                "postal_code": "N1", "country": "GB"},
                "items": [{"sku": "A", "quantity": 2, "weight_grams": 500,
                           "length_mm": 10, "width_mm": 20, "height_mm": 30}],
                "completed_at": "1970-01-01T00:00:00Z"
            })
        );
        assert_eq!(envelope.decode::<OrderCompleted>().unwrap(), event);
    }
}

//! The shipping quote, asked over the bus (request/response): which
//! transport provider and how many packages the items of an order would
//! take to a destination, by shipping's own packing rules. Shipping answers
//! [`QuoteRequest`] with [`Quote`]; a request it cannot quote at all (an
//! invalid destination) is answered with a failure naming the reason.
//!
//! ```no_run
//! use std::time::Duration;
//! use messaging_abstractions::{EventBus, RequestClient};
//! use shipping_service_client::quote::{Destination, QuoteItem, QuoteRequest};
//!
//! # async fn demo(bus: std::sync::Arc<dyn EventBus>) -> Result<(), Box<dyn std::error::Error>> {
//! let quotes = RequestClient::<QuoteRequest>::new(bus, Duration::from_secs(2));
//! let quote = quotes
//!     .send(&QuoteRequest {
//!         destination: Destination {
//!             name: "Ada".into(),
//!             street: "1 Main St".into(),
//!             city: "London".into(),
//!             postal_code: "N1".into(),
//!             country: "GB".into(),
//!         },
//!         items: vec![QuoteItem {
//!             sku: "LAMP".into(),
//!             quantity: 3,
//!             weight_grams: 12_000,
//!             length_mm: 400,
//!             width_mm: 300,
//!             height_mm: 300,
//!         }],
//!     })
//!     .await?;
//! println!("{} package(s) with {:?}", quote.package_count, quote.transport_provider);
//! # Ok(()) }
//! ```

use messaging_abstractions::{IntegrationEvent, Request};
use serde::{Deserialize, Serialize};

use crate::dto::UnshippableItem;

/// Ask shipping how it would ship these items to this destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuoteRequest {
    /// Where the items would go.
    pub destination: Destination,
    /// What would be shipped.
    pub items: Vec<QuoteItem>,
}

/// Where the items of a [`QuoteRequest`] would go. The message's own type,
/// not the HTTP body [`crate::dto::Destination`]: HTTP input refuses unknown
/// fields, while a message is read tolerantly (unknown fields ignored), so a
/// requester that adds a field is still answered.
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

impl From<Destination> for crate::dto::Destination {
    fn from(d: Destination) -> Self {
        Self {
            name: d.name,
            street: d.street,
            city: d.city,
            postal_code: d.postal_code,
            country: d.country,
        }
    }
}

/// One line to quote. Weight and dimensions are per unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuoteItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Units.
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

/// Shipping's answer: the packages the items would take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quote {
    /// The transport provider carrying every package; `None` when the
    /// packages would go with several providers (see `packages`) or when
    /// nothing can be shipped.
    pub transport_provider: Option<String>,
    /// How many packages.
    pub package_count: u32,
    /// Each package: its provider, weight and units.
    pub packages: Vec<QuotedPackage>,
    /// Lines no provider can carry, with the reason.
    pub unshippable: Vec<UnshippableItem>,
}

/// One package of a quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotedPackage {
    /// Who would carry it.
    pub transport_provider: String,
    /// Its weight in grams.
    pub weight_grams: u64,
    /// Units in it.
    pub units: u32,
}

impl IntegrationEvent for QuoteRequest {
    const EVENT_TYPE: &'static str = "shipping.quote.v1";
}

impl IntegrationEvent for Quote {
    const EVENT_TYPE: &'static str = "shipping.quote_result.v1";
}

impl Request for QuoteRequest {
    type Response = Quote;
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_abstractions::Envelope;

    #[test]
    fn wire_format_is_stable() {
        let request = QuoteRequest {
            destination: Destination {
                name: "Ada".into(),
                street: "1 Main St".into(),
                city: "London".into(),
                postal_code: "N1".into(),
                country: "GB".into(),
            },
            items: vec![QuoteItem {
                sku: "A".into(),
                quantity: 2,
                weight_grams: 500,
                length_mm: 10,
                width_mm: 20,
                height_mm: 30,
            }],
        };
        let envelope = Envelope::for_event(&request).unwrap();
        assert_eq!(envelope.event_type, "shipping.quote.v1");
        let json: serde_json::Value = serde_json::from_slice(&envelope.payload).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "destination": {"name": "Ada", "street": "1 Main St", "city": "London",
                                "postal_code": "N1", "country": "GB"},
                "items": [{"sku": "A", "quantity": 2, "weight_grams": 500,
                           "length_mm": 10, "width_mm": 20, "height_mm": 30}]
            })
        );
        let quote = Quote {
            transport_provider: Some("parcel".into()),
            package_count: 1,
            packages: vec![QuotedPackage {
                transport_provider: "parcel".into(),
                weight_grams: 1000,
                units: 2,
            }],
            unshippable: vec![],
        };
        let reply = Envelope::for_event(&quote).unwrap();
        assert_eq!(reply.decode::<Quote>().unwrap(), quote);
    }
}

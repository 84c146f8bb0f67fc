//! The example **order service**: customers place orders of items for a
//! destination; a completed order raises the `OrderCompleted` integration
//! event (contract in `order-service-client`) that the shipping service
//! packs from.
//!
//! - [`domain`]: the order aggregate and its rules — no HTTP, broker or SQL;
//! - [`integration`]: translation between the domain and the published
//!   contracts (HTTP DTOs, integration event).
//!
//! ```
//! use order_service::domain::{DestinationInput, ItemInput, Order, PlaceOrder};
//! use time::OffsetDateTime;
//! use uuid::Uuid;
//!
//! let command = PlaceOrder {
//!     customer_id: "customer-1".into(),
//!     destination: DestinationInput {
//!         name: "Ada Lovelace".into(),
//!         street: "12 St James's Square".into(),
//!         city: "London".into(),
//!         postal_code: "SW1Y 4JH".into(),
//!         country: "GB".into(),
//!     },
//!     items: vec![ItemInput {
//!         sku: "LAMP".into(),
//!         name: "Desk lamp".into(),
//!         unit_price_cents: 4999,
//!         quantity: 0, // invalid: at least one
//!         weight_grams: 1200,
//!         length_mm: 300,
//!         width_mm: 200,
//!         height_mm: 150,
//!     }],
//! };
//! let err = Order::place(Uuid::now_v7(), command, OffsetDateTime::now_utc()).unwrap_err();
//! assert_eq!(err.to_string(), "items[0].quantity: must be between 1 and 10000");
//! ```

pub mod domain;
pub mod integration;

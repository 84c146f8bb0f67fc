//! The example **shipping service**: packs the items of completed orders
//! (the `OrderCompleted` event) into packages per destination, up to the
//! transport provider's maximum weight; packages change destination until
//! sent, then are tracked.
//!
//! - [`domain`]: packages, shipments, transport providers and the packing
//!   rules — no HTTP, broker or SQL;
//! - [`integration`]: translation between the domain and the contracts
//!   (the consumed event, the HTTP DTOs).
//!
//! ```
//! use shipping_service::domain::{
//!     Address, Dimensions, ItemToPack, OrderToPack, Packing, ShippingConfig,
//!     TransportProviders, pack,
//! };
//! use time::OffsetDateTime;
//! use uuid::Uuid;
//!
//! let providers = TransportProviders::from_config(&ShippingConfig::default()).unwrap();
//! let order = OrderToPack {
//!     order_id: Uuid::now_v7(),
//!     destination: Address::new("Ada", "1 Main St", "London", "N1", "GB").unwrap(),
//!     items: vec![ItemToPack {
//!         sku: "LAMP".into(),
//!         quantity: 3,
//!         weight_grams: 12_000,
//!         dimensions: Dimensions::new(400, 300, 300),
//!     }],
//! };
//! let Packing::Packed(packed) = pack(&order, None, vec![], &providers, OffsetDateTime::now_utc())
//! else { unreachable!("a new order is packed") };
//! // 31.5 kg per parcel: two lamps in the first package, one in the second.
//! assert_eq!(packed.opened.len(), 2);
//! assert_eq!(packed.opened[0].total_weight_grams(), 24_000);
//! ```

pub mod domain;
pub mod integration;

//! Service access crate of the example **shipping service**: its HTTP
//! request and response types, the events answering an order cancellation
//! ([`cancellation`]), the shipping quote asked over the bus ([`quote`]) and
//! a typed client. Nothing of its domain.
//!
//! ```no_run
//! use shipping_service_client::{ClientConfig, ShippingServiceClient};
//! use uuid::Uuid;
//!
//! # async fn demo(order_id: Uuid) -> Result<(), Box<dyn std::error::Error>> {
//! let shipping = ShippingServiceClient::new(&ClientConfig::new("http://127.0.0.1:8082"))?;
//! for package in shipping.packages_for_order(order_id).await? {
//!     println!("{} {:?} {} g with {}", package.id, package.status,
//!              package.total_weight_grams, package.transport_provider);
//!     if package.status == shipping_service_client::dto::PackageStatus::Open {
//!         let receipt = shipping.send_package(package.id).await?;
//!         println!("sent: tracking id {}", receipt.tracking_id);
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod cancellation;
mod client;
pub mod dto;
pub mod quote;

pub use chassis_client::{CallContext, ClientBuildError, ClientConfig, ClientError, Problem};
pub use client::ShippingServiceClient;

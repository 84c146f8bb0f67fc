//! Service access crate of the example **order service**: everything another
//! service, a tool or a test needs to talk to it, and nothing of its domain.
//!
//! - [`dto`]: the HTTP request and response bodies (`POST /orders`,
//!   `GET /orders/{id}`);
//! - [`events`]: the integration event contract [`OrderCompleted`]
//!   (`order.completed.v1`) — the only thing the order and shipping services
//!   share;
//! - [`cancellation`]: the cancellation request and its withdrawal, sent by
//!   the order's cancellation saga to the shipping service;
//! - [`OrderServiceClient`]: a typed HTTP client (base URL and timeouts from
//!   config, correlation id and trace context propagated, problem+json
//!   mapped to [`ClientError`]).
//!
//! ```no_run
//! use order_service_client::{ClientConfig, OrderServiceClient};
//! use order_service_client::dto::{Destination, OrderItem, PlaceOrderRequest};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let orders = OrderServiceClient::new(&ClientConfig::new("http://127.0.0.1:8081"))?;
//! let placed = orders
//!     .place_order(&PlaceOrderRequest {
//!         customer_id: "customer-1".into(),
//!         destination: Destination {
//!             name: "Ada Lovelace".into(),
//!             street: "12 St James's Square".into(),
//!             city: "London".into(),
//!             postal_code: "SW1Y 4JH".into(),
//!             country: "GB".into(),
//!         },
//!         items: vec![OrderItem {
//!             sku: "BOOK-1".into(),
//!             name: "Notes on the Analytical Engine".into(),
//!             unit_price_cents: 2500,
//!             quantity: 1,
//!             weight_grams: 800,
//!             length_mm: 240,
//!             width_mm: 170,
//!             height_mm: 30,
//!         }],
//!     })
//!     .await?;
//! println!("order {} is {:?}", placed.id, placed.status);
//! # Ok(()) }
//! ```

pub mod cancellation;
mod client;
pub mod dto;
pub mod events;
pub mod quote;

pub use chassis_client::{CallContext, ClientBuildError, ClientConfig, ClientError, Problem};
pub use client::OrderServiceClient;
pub use events::OrderCompleted;

//! The example **order service**: customers place orders of items for a
//! destination; a completed order raises the `OrderCompleted` integration
//! event (contract in `order-service-client`) that the shipping service
//! packs from. A completed order can be cancelled (`POST /orders/{id}/cancel`,
//! the saga of [`cancellation`]).
//!
//! - [`domain`]: the order aggregate and its rules — no HTTP, broker or SQL;
//! - [`integration`]: translation between the domain and the published
//!   contracts (HTTP DTOs, integration event);
//! - [`quote`]: shipping quotes asked over the bus (`POST /orders/quote`,
//!   and at order placement with a documented fallback).
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
//! assert_eq!(err.status(), 422);
//! assert_eq!(err.field_errors()[0].field, "items[0].quantity");
//! ```

pub mod api;
pub mod app;
pub mod cancellation;
pub mod domain;
pub mod integration;
pub mod quote;

use chassis_web::{ServiceHost, ServiceHostBuilder};

/// The service's name: consumer group, `service.name` default.
pub const SERVICE_NAME: &str = "order-service";

/// The order service on the chassis host: the whole of `main` is
/// `order_service::host().run().await`. Tests and the demo add
/// `.event_bus(..)`, `.store(..)` or `.config("http.port", 0)` and `start()`.
pub fn host() -> ServiceHostBuilder {
    ServiceHost::builder(SERVICE_NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .declare_section::<cancellation::CancellationConfig>("cancellation")
        .declare_section::<quote::QuoteConfig>("order")
        // The AsyncAPI document (`/asyncapi.json`, `--print-asyncapi`): what
        // the outbox publishes, what the saga receives, what quotes ask.
        .publishes::<order_service_client::OrderCompleted>()
        .publishes::<order_service_client::cancellation::OrderCancellationRequested>()
        .publishes::<order_service_client::cancellation::OrderCancellationWithdrawn>()
        .subscribes::<shipping_service_client::cancellation::ShipmentCancelled>()
        .subscribes::<shipping_service_client::cancellation::ShipmentCancellationRefused>()
        .requests::<shipping_service_client::quote::QuoteRequest>()
        .on_start(|ctx| async move {
            // Publishes what orders and the cancellation saga write to the outbox.
            ctx.start_outbox_relay();
            Ok(())
        })
        .routes_with_state(
            |ctx| async move {
                let runner = cancellation::start(ctx.clone()).await?;
                let quotes = quote::QuoteConfig::from_context(&ctx)?;
                Ok((runner, quotes))
            },
            |ctx, (runner, quotes)| {
                api::router(
                    app::Orders::new(ctx.persistence())
                        .with_cancellation(runner)
                        .with_quotes(quote::Quotes::new(ctx.bus().clone(), &quotes)),
                    ctx.chassis(),
                )
            },
        )
}

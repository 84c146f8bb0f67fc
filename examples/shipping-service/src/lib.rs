//! The example **shipping service**: packs the items of completed orders
//! (the `OrderCompleted` event) into packages per destination, up to the
//! transport provider's maximum weight; packages change destination until
//! sent, then are tracked. A cancelled order's units leave the packages not
//! yet sent ([`cancellation`]).
//!
//! - [`domain`]: packages, shipments, transport providers and the packing
//!   rules — no HTTP, broker or SQL;
//! - [`integration`]: translation between the domain and the contracts
//!   (the consumed event, the HTTP DTOs);
//! - [`quote`]: answers shipping quotes asked over the bus
//!   (`shipping.quote.v1`);
//! - [`tables`]: packages, package lines, tracking events and shipments in
//!   the service's own tables (its migrations), queried with SQL in the
//!   unit of work's transaction.
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

pub mod api;
pub mod app;
pub mod cancellation;
pub mod domain;
pub mod integration;
pub mod quote;
pub mod tables;

use std::sync::Arc;

use chassis_domain::messaging::{Handlers, Subscription};
use chassis_web::{BoxError, ServiceContext, ServiceHost, ServiceHostBuilder};
use order_service_client::OrderCompleted;

use crate::domain::{ShippingConfig, TransportProviders};

/// The service's name: its consumer group and `service.name` default.
pub const SERVICE_NAME: &str = "shipping-service";

/// The shipping service on the chassis host: the whole of `main` is
/// `shipping_service::host().run().await`. Tests and the demo add
/// `.event_bus(..)`, `.store(..)` or `.config("http.port", 0)` and `start()`.
pub fn host() -> ServiceHostBuilder {
    ServiceHost::builder(SERVICE_NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .migrations(tables::MIGRATIONS)
        .declare_section::<ShippingConfig>("shipping")
        // The AsyncAPI document (`/asyncapi.json`, `--print-asyncapi`): what
        // `subscribe` and `quote::serve` register, what the outbox publishes.
        .subscribes::<OrderCompleted>()
        .subscribes::<order_service_client::cancellation::OrderCancellationRequested>()
        .subscribes::<order_service_client::cancellation::OrderCancellationWithdrawn>()
        .answers::<shipping_service_client::quote::QuoteRequest>()
        .publishes::<shipping_service_client::cancellation::ShipmentCancelled>()
        .publishes::<shipping_service_client::cancellation::ShipmentCancellationRefused>()
        .on_start(subscribe)
        .on_start(quote::serve)
        .on_start(|ctx| async move {
            // Publishes shipping's answers to order cancellations.
            ctx.start_outbox_relay();
            Ok(())
        })
        .routes(|ctx| api::router(app::Shipping::new(ctx.persistence()), ctx.chassis()))
}

/// Reads the `[shipping]` section and packs every `order.completed.v1`
/// through the inbox of the service's consumer group.
async fn subscribe(ctx: ServiceContext) -> Result<(), BoxError> {
    let config: ShippingConfig = ctx.section("shipping")?;
    let providers = Arc::new(TransportProviders::from_config(&config)?);
    let group = ctx.name().to_owned();
    let inbox = ctx.persistence().inbox(group.clone());
    let handlers = Handlers::new().on::<OrderCompleted>(app::PackOrderConsumer::new(
        inbox.clone(),
        app::PackOrder::new(providers.clone()),
    ));
    let handlers = cancellation::handlers(&inbox, providers, handlers);
    ctx.bus()
        .subscribe(Subscription::new(group, handlers))
        .await?;
    Ok(())
}

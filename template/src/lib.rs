//! **{{project-name}}**, a service on the Rust service chassis.
//!
//! - [`domain`]: the `Item` aggregate and its rules, the `ItemStats` read model;
//! - [`events`]: the integration events the service publishes (its contract);
//! - [`app`]: the use cases — the `CreateItem` command, the `ItemCreated` handler;
//! - [`tables`]: the `items` table (its migration) and the SQL over it;
//! - [`api`]: the HTTP routes.
//!
//! ```
//! use {{crate_name}}::domain::{CreateItem, Item};
//! use uuid::Uuid;
//!
//! let err = Item::create(Uuid::now_v7(), CreateItem { name: " ".into() }).unwrap_err();
//! assert_eq!(err.status(), 422);
//! assert_eq!(err.field_errors()[0].field, "name");
//! ```

pub mod api;
pub mod app;
pub mod domain;
pub mod events;
pub mod tables;

use chassis_domain::messaging::{Handlers, Subscription};
use chassis_web::{BoxError, ServiceContext, ServiceHost, ServiceHostBuilder};

use crate::events::ItemCreated;

/// The service's name: its consumer group and the `service.name` default.
pub const SERVICE_NAME: &str = "{{project-name}}";

/// The service on the chassis host: `main` is `host().run().await`. Tests
/// add `.config("http.port", 0)` (or `.event_bus(..)`, `.store(..)`) and
/// `start()`.
pub fn host() -> ServiceHostBuilder {
    ServiceHost::builder(SERVICE_NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .migrations(tables::MIGRATIONS)
        // The AsyncAPI document (`/asyncapi.json`, `--print-asyncapi`): what
        // the outbox publishes and what `start` subscribes.
        .publishes::<ItemCreated>()
        .subscribes::<ItemCreated>()
        .on_start(start)
        .routes(|ctx| api::router(app::Items::new(ctx.persistence()), ctx.chassis()))
}

/// Starts the outbox relay (readiness watches its backlog) and subscribes
/// the `ItemCreated` handler through the inbox of the service's group.
async fn start(ctx: ServiceContext) -> Result<(), BoxError> {
    ctx.start_outbox_relay();

    let group = ctx.name().to_owned();
    let inbox = ctx.persistence().inbox(group.clone());
    let handlers = Handlers::new().on::<ItemCreated>(inbox.handler(app::CountCreatedItems));
    ctx.bus()
        .subscribe(Subscription::new(group, handlers))
        .await?;
    Ok(())
}

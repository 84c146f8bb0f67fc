//! Domain building blocks of the service chassis.
//!
//! - [`Entity`] and [`AggregateRoot`]: an aggregate is a serde document with a
//!   stable collection name and an id; the chassis keeps its version and the
//!   events it raised in [`Changes`]. State changes only through methods that
//!   check invariants and raise events.
//! - Domain events (in-process, the aggregate's `DomainEvent` type) versus
//!   integration events ([`IntegrationEvent`], the contract with other
//!   services): the latter become outbox messages when the aggregate is saved
//!   and are published after commit.
//! - [`Command`], [`CommandHandler`] and the [`CommandPipeline`]: a logging
//!   span with the correlation id, a [`UnitOfWork`] around the handler, events
//!   handed on only after commit.
//! - [`saga`]: process managers — state persisted through the storage port,
//!   steps driven by events, timeouts, compensation, idempotent steps.
//! - [`DomainError`]: typed errors (validation 422 with field paths, not found
//!   404, conflict 409, ...) that the host maps to problem+json.
//!
//! The ports the domain needs are re-exported: the storage ports
//! ([`storage`]) that repositories are built on, and the event bus
//! ([`messaging`]). `chassis-storage` implements [`UnitOfWorkFactory`] and
//! the generic repository.
//!
//! ```
//! use chassis_domain::{
//!     AggregateRoot, Changes, Command, CommandContext, CommandHandler, CommandPipeline,
//!     DomainError, Entity, IntegrationEvent, MessageContext,
//! };
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct OrderPlaced { order_id: String }
//! impl IntegrationEvent for OrderPlaced {
//!     const EVENT_TYPE: &'static str = "order.placed.v1";
//! }
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Order {
//!     id: String,
//!     items: u32,
//!     #[serde(skip)]
//!     changes: Changes<()>,
//! }
//! impl Entity for Order {
//!     type Id = String;
//!     fn id(&self) -> &String { &self.id }
//! }
//! impl AggregateRoot for Order {
//!     const COLLECTION: &'static str = "orders";
//!     type DomainEvent = ();
//!     fn changes(&self) -> &Changes<()> { &self.changes }
//!     fn changes_mut(&mut self) -> &mut Changes<()> { &mut self.changes }
//! }
//! impl Order {
//!     fn place(id: String, items: u32) -> Result<Self, DomainError> {
//!         if items == 0 {
//!             return Err(DomainError::invalid_field("items", "must not be empty"));
//!         }
//!         let mut order = Order { id, items, changes: Changes::default() };
//!         order.changes.publish(OrderPlaced { order_id: order.id.clone() });
//!         Ok(order)
//!     }
//! }
//!
//! struct PlaceOrder { id: String, items: u32 }
//! impl Command for PlaceOrder {
//!     const NAME: &'static str = "order.place";
//!     type Output = String;
//! }
//! struct PlaceOrderHandler;
//! #[async_trait::async_trait]
//! impl CommandHandler<PlaceOrder> for PlaceOrderHandler {
//!     async fn handle(&self, c: PlaceOrder, _cx: &mut CommandContext) -> Result<String, DomainError> {
//!         let order = Order::place(c.id, c.items)?;
//!         // With chassis-storage: Repository::<Order>::new().add(cx.unit_of_work()?, &mut order).await?;
//!         Ok(order.id().clone())
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = CommandPipeline::new();
//! let err = pipeline
//!     .execute(&PlaceOrderHandler, PlaceOrder { id: "o-1".into(), items: 0 }, MessageContext::default())
//!     .await
//!     .unwrap_err();
//! assert_eq!((err.status(), err.field_errors()[0].field.as_str()), (422, "items"));
//! # });
//! ```

// `#[derive(Aggregate)]` names `::chassis_domain`, also in this crate's own code.
extern crate self as chassis_domain;

mod aggregate;
mod command;
mod error;
pub mod saga;
pub mod text;

pub use aggregate::{AggregateRoot, Changes, Entity, PendingEvent};
/// `#[derive(Aggregate)]`: writes [`Entity`] and [`AggregateRoot`] from the
/// struct's fields (see the `chassis-macros` README for the attributes).
pub use chassis_macros::Aggregate;
pub use command::{
    Command, CommandContext, CommandHandler, CommandPipeline, UnitOfWork, UnitOfWorkFactory,
};
pub use error::{DomainError, FieldError};

/// The event bus port (re-exported from `messaging-abstractions`).
pub use messaging_abstractions as messaging;
pub use messaging_abstractions::{
    Envelope, EventBus, EventBusExt, IntegrationEvent, MessageContext,
};
/// The storage ports repositories are built on (re-exported from
/// `storage-abstractions`).
pub use storage_abstractions as storage;
pub use storage_abstractions::{IndexEntry, Page, PageRequest, Query, StorageError};

//! Ports of the chassis event bus.
//!
//! Services talk through **integration events**: small, versioned, serde
//! types whose [`IntegrationEvent::EVENT_TYPE`] is the stable name on the wire
//! (`"order.completed.v1"`). An event travels inside an [`Envelope`] that
//! carries ids, correlation, trace context and free headers next to the
//! encoded payload.
//!
//! Providers (`messaging-inmemory`, `messaging-rabbitmq`) implement the
//! object-safe [`EventBus`] port; a service only ever holds an
//! `Arc<dyn EventBus>` and the typed helpers of [`EventBusExt`].
//!
//! A consumer group (normally the service name) owns one queue: two groups
//! subscribed to the same event each get a copy, two subscriptions in the same
//! group compete for the messages. A handler answers with a [`HandlerError`]
//! that says whether the failure is worth a retry.
//!
//! Services can also ask each other questions over the bus: a
//! [`RequestClient`] sends a typed [`Request`] and awaits its typed response
//! within a timeout, [`Responders`] answer them (see [`request`]).
//!
//! [`asyncapi`] describes what a service sends and receives as an AsyncAPI
//! 3.0 document; providers add their broker's side through
//! [`asyncapi::BrokerBinding`].
//!
//! ```
//! use std::sync::Arc;
//! use messaging_abstractions::{
//!     Envelope, EventBus, EventBusExt, Handlers, HandlerError, IntegrationEvent, Subscription,
//! };
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct OrderCompleted {
//!     order_id: String,
//! }
//!
//! impl IntegrationEvent for OrderCompleted {
//!     const EVENT_TYPE: &'static str = "order.completed.v1";
//! }
//!
//! async fn wire(bus: Arc<dyn EventBus>) -> Result<(), Box<dyn std::error::Error>> {
//!     // The shipping service subscribes under its own group...
//!     let handlers = Handlers::new().on_fn(|event: OrderCompleted, _delivery| async move {
//!         if event.order_id.is_empty() {
//!             return Err(HandlerError::permanent("order id missing"));
//!         }
//!         Ok(())
//!     });
//!     bus.subscribe(Subscription::new("shipping", handlers)).await?;
//!     // ...and the order service publishes.
//!     bus.publish_event(&OrderCompleted { order_id: "o-1".into() }).await?;
//!     Ok(())
//! }
//! ```

pub mod asyncapi;
mod bus;
pub mod cloudevents;
mod config;
mod envelope;
pub mod epoch_text;
mod error;
mod handler;
mod ordering;
pub mod request;

pub use bus::{DeadLetter, DeadLetterStore, EventBus, EventBusExt, EventBusHooks};
pub use config::{DeadLetterConfig, MessagingConfig, RetryPolicy};
pub use envelope::{Envelope, IntegrationEvent, JSON_CONTENT_TYPE, MessageContext};
pub use error::{DecodeError, EncodeError, PublishError, ShutdownError, SubscribeError};
pub use handler::{
    Delivery, Durability, EventHandler, FailureKind, HandlerError, Handlers, MessageHandler,
    Subscription,
};
pub use ordering::{KeyOrder, Turn};
pub use request::{Request, RequestClient, RequestError, Responders};

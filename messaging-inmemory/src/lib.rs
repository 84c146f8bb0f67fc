//! In-process event bus provider of the service chassis: a real embedded
//! broker with consumer groups, retries and dead letters.
//!
//! [`InMemoryBus`] keeps the promises of a broker, so a service tested on it
//! behaves the same on RabbitMQ:
//!
//! - **Consumer groups.** Each group (normally the service name) has one
//!   bounded queue, bound to the event types its subscriptions handle. Two
//!   groups subscribed to an event both get it; several subscriptions of one
//!   group (several instances of a service) compete for its messages. As on
//!   a broker, the subscriptions of a group should handle the same event
//!   types: a message goes to any of them, and one without a handler for its
//!   type dead-letters it as a permanent failure.
//! - **Bytes on the wire.** Every message is encoded to bytes on publish and
//!   decoded on delivery; handlers decode the payload themselves.
//! - **At-least-once.** A message leaves its queue only when handled,
//!   dead-lettered, or put back for a retry. A retryable failure (or a
//!   panicking handler) is retried after [`RetryPolicy::backoff`]
//!   without holding up the queue; once `retry.max_attempts` deliveries
//!   failed it is dead-lettered with the reason and attempt count. A
//!   permanent failure or an undecodable payload is dead-lettered at once.
//! - **Dead letters** can be listed per group and replayed through
//!   [`EventBus::dead_letters`].
//! - **Flow control.** A consumer holds at most `messaging.prefetch` messages
//!   and runs at most `messaging.concurrency` handlers. A publish waits while
//!   a queue is full (`messaging.inmemory.queue_capacity`), at most
//!   `messaging.inmemory.publish_timeout`, then fails with
//!   [`PublishError::Unavailable`].
//! - **Unroutable messages.** A message whose event type no group is bound
//!   to is accepted and dropped, as by a broker exchange without bindings
//!   (counted in [`BrokerStats::unroutable`], logged at DEBUG). Groups and
//!   bindings outlive their consumers, like durable queues, so a service
//!   that restarts its consumers misses nothing.
//! - **Shutdown** of a connection stops its consumers taking messages, lets
//!   in-flight handlers finish (within `messaging.inmemory.drain_timeout`)
//!   and refuses later publishes; it is idempotent. Messages its consumers
//!   had taken but not started go back to the head of their queue; queued
//!   messages stay for the group's other consumers. Dropping a connection
//!   without `shutdown` stops its consumers the same way, without waiting.
//!   Nothing is persisted: messages queued when the process ends are gone.
//! - **Request/response** ([`EventBus::request`] / [`EventBus::reply`]):
//!   each connection has an inbox, its reply address, with a table of its
//!   pending requests keyed by the request's `message_id`. A request is
//!   queued like an event to the groups bound to its type (none →
//!   `RequestError::NoResponder` at once); the reply goes through the wire
//!   format straight to the requester's inbox. No answer within the timeout
//!   → `RequestError::Timeout` (the timeout also bounds waiting for room in
//!   a full queue); a late or duplicate reply is dropped (logged at DEBUG).
//!   `shutdown` of the requester's connection fails its pending requests at
//!   once with `RequestError::ShutDown`; a reply to a connection shut down or
//!   dropped is `PublishError::Unroutable`. Replies are accepted while the
//!   responder's connection drains (answering ends an in-flight request).
//! - **Per-key order.** Messages with the same partition key are handled one
//!   after the other in queue order, whatever `concurrency` is and whichever
//!   worker takes them, as on RabbitMQ and NATS (a retried message comes back
//!   later than its successors); messages of other keys run side by side.
//! - **Stopping consumers** ([`EventBus::stop_consuming`](messaging_abstractions::EventBus::stop_consuming)) is shutdown's first
//!   half: consumers stop and in-flight handlers finish within the grace
//!   given, but the connection still publishes (the host's outbox relay
//!   flushes after it).
//!
//! Tests await deliveries without sleeping through [`InMemoryBus::outcomes`]
//! (a lossless stream of delivery outcomes) or [`InMemoryBus::wait_until`] /
//! [`InMemoryBus::wait_idle`] (conditions on per-group counters).
//!
//! ```
//! use std::time::Duration;
//! use messaging_abstractions::{
//!     EventBus, EventBusExt, Handlers, HandlerError, IntegrationEvent, MessagingConfig,
//!     Subscription,
//! };
//! use messaging_inmemory::{InMemoryBus, Outcome};
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
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = InMemoryBus::new(&MessagingConfig::default());
//! // Two services in one process: each takes its own connection.
//! let (orders, shipping) = (broker.clone(), broker.clone());
//!
//! // The shipping service subscribes a handler under its group...
//! let handlers = Handlers::new().on_fn(|event: OrderCompleted, _delivery| async move {
//!     if event.order_id.is_empty() {
//!         return Err(HandlerError::permanent("order id missing"));
//!     }
//!     Ok(())
//! });
//! shipping.subscribe(Subscription::new("shipping", handlers)).await?;
//!
//! // ...the order service publishes...
//! let mut outcomes = broker.outcomes();
//! let sent = orders.publish_event(&OrderCompleted { order_id: "o-1".into() }).await?;
//!
//! // ...and a test awaits the delivery instead of sleeping.
//! let done = outcomes.settled("shipping", sent.message_id, Duration::from_secs(5)).await?;
//! assert_eq!(done.outcome, Outcome::Handled);
//!
//! shipping.shutdown().await?;
//! orders.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! [`RetryPolicy::backoff`]: messaging_abstractions::RetryPolicy::backoff
//! [`EventBus::dead_letters`]: messaging_abstractions::EventBus::dead_letters
//! [`EventBus::request`]: messaging_abstractions::EventBus::request
//! [`EventBus::reply`]: messaging_abstractions::EventBus::reply
//! [`PublishError::Unavailable`]: messaging_abstractions::PublishError::Unavailable

mod asyncapi;
mod broker;
mod bus;
mod config;
mod observe;
mod queue;
mod replies;
mod wire;

pub use bus::InMemoryBus;
pub use config::InMemoryConfig;
pub use observe::{
    BrokerStats, DeliveryOutcome, GroupStats, Outcome, OutcomeTimeout, Outcomes, WaitTimeout,
};

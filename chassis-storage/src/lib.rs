//! What every service's storage module shares: the generic repository, the
//! unit of work, the transactional outbox relay, the inbox and readiness
//! checks, over any `storage_abstractions::Store` (in-memory, PostgreSQL).
//!
//! - [`Persistence`] wraps the store and the `storage` config: it opens
//!   [`StoreUnitOfWork`]s (and is the `UnitOfWorkFactory` of the command
//!   pipeline), starts the [`OutboxRelay`], builds [`Inbox`]es and readiness
//!   checks.
//! - [`Repository<A>`] loads and saves any `chassis_domain::AggregateRoot` as a
//!   JSON record with optimistic concurrency; saving appends the aggregate's
//!   integration events to the outbox in the same transaction.
//! - The relay publishes committed outbox messages in order per aggregate,
//!   backs off while the bus is down and quarantines what cannot be sent.
//! - [`Inbox`] gives handlers an exactly-once effect.
//! - With feature `postgres` or `sqlite`, `Sql` (from `storage-sql`) runs
//!   the service's own SQL on the unit of work's transaction: its rows
//!   commit with the records, the outbox and the inbox.
//!
//! ```no_run
//! use std::sync::Arc;
//! use chassis_domain::{CommandPipeline, EventBus, MessageContext};
//! use chassis_storage::Persistence;
//! use storage_abstractions::{StorageConfig, Store};
//!
//! async fn wire(store: Arc<dyn Store>, bus: Arc<dyn EventBus>) {
//!     let storage = Persistence::new(store, StorageConfig::default());
//!     let relay = storage.start_relay(bus.clone());
//!     let pipeline = CommandPipeline::new()
//!         .with_unit_of_work(Arc::new(storage.clone()))
//!         .with_event_bus(bus);
//!     let _checks = storage.health_checks(Some(&relay));
//!     // ... serve; pipeline.execute(&handler, command, context) per request ...
//!     relay.shutdown().await.expect("relay stopped cleanly");
//! }
//! ```

mod codec;
mod health;
mod inbox;
mod relay;
mod repository;
mod unit_of_work;

pub use codec::{OutboxDecodeError, decode as decode_outbox_body};
pub use health::OutboxBacklogCheck;
pub use inbox::{Idempotent, Inbox, InboxHandler, InboxOutcome, WorkFuture};
pub use relay::{OutboxRelay, RelayError, RelayHandle, RelayStats};
pub use repository::{Repository, publish_changes};
pub use unit_of_work::{Persistence, StoreUnitOfWork};

/// Relational access (features `postgres` / `sqlite`): the service's own
/// SQL on a unit of work's transaction, `Sql::of(uow.transaction())`.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use storage_sql::{self as sql, FromSqlRow, Sql, SqlScalar};

//! The generic repository: any [`AggregateRoot`] stored as a record.

use std::marker::PhantomData;

use chassis_domain::{AggregateRoot, DomainError, UnitOfWork};
use messaging_abstractions::Envelope;
use storage_abstractions::{Page, Query, Record, RecordWrite};

/// Loads and saves aggregates of type `A` inside a [`UnitOfWork`].
///
/// The aggregate is stored as a JSON record in `A::COLLECTION` with id
/// `A::id().to_string()`, the index entries of `A::index_entries()` and the
/// version kept in its [`chassis_domain::Changes`]. Saving writes the record
/// and appends the aggregate's pending integration events to the outbox in the
/// same transaction (ordering key = aggregate id), so both commit together.
///
/// ```no_run
/// # use chassis_domain::{AggregateRoot, Changes, DomainError, Entity, UnitOfWork};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct Order { id: String, #[serde(skip)] changes: Changes<()> }
/// # impl Entity for Order { type Id = String; fn id(&self) -> &String { &self.id } }
/// # impl AggregateRoot for Order {
/// #     const COLLECTION: &'static str = "orders";
/// #     type DomainEvent = ();
/// #     fn changes(&self) -> &Changes<()> { &self.changes }
/// #     fn changes_mut(&mut self) -> &mut Changes<()> { &mut self.changes }
/// # }
/// # impl Order { fn complete(&mut self) -> Result<(), DomainError> { Ok(()) } }
/// use chassis_storage::Repository;
///
/// async fn complete(uow: &mut dyn UnitOfWork, id: &String) -> Result<(), DomainError> {
///     let orders = Repository::<Order>::new();
///     let mut order = orders.load(uow, id).await?;  // NotFound -> 404
///     order.complete()?;                            // raises OrderCompleted
///     orders.save(uow, &mut order).await?;          // Concurrency -> 409
///     Ok(())
/// }
/// ```
pub struct Repository<A> {
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> std::fmt::Debug for Repository<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &std::any::type_name::<A>())
            .finish()
    }
}

impl<A> Clone for Repository<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for Repository<A> {}

impl<A> Default for Repository<A> {
    fn default() -> Self {
        Self {
            _aggregate: PhantomData,
        }
    }
}

impl<A: AggregateRoot> Repository<A> {
    /// A repository for `A`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A query over `A`'s collection (first page); add filters on index keys.
    pub fn query_all(&self) -> Query {
        Query::all(A::COLLECTION)
    }

    /// Loads the aggregate with `id`, if it exists.
    pub async fn get(
        &self,
        uow: &mut dyn UnitOfWork,
        id: &A::Id,
    ) -> Result<Option<A>, DomainError> {
        let id = id.to_string();
        match uow.transaction().get(A::COLLECTION, &id).await? {
            Some(record) => Ok(Some(from_record(record)?)),
            None => Ok(None),
        }
    }

    /// Loads the aggregate with `id`; [`DomainError::NotFound`] if absent.
    pub async fn load(&self, uow: &mut dyn UnitOfWork, id: &A::Id) -> Result<A, DomainError> {
        self.get(uow, id)
            .await?
            .ok_or_else(|| DomainError::not_found(A::COLLECTION, id))
    }

    /// Inserts a new aggregate (version 0 → 1) and enqueues its integration
    /// events. [`DomainError::Concurrency`] if the id exists. Returns the
    /// domain events raised since it was created, for in-process reactions
    /// in the same unit of work.
    pub async fn add(
        &self,
        uow: &mut dyn UnitOfWork,
        aggregate: &mut A,
    ) -> Result<Vec<A::DomainEvent>, DomainError> {
        if aggregate.version() != 0 {
            return Err(DomainError::internal(format!(
                "{}/{}: add expects a new aggregate (version 0), got version {}; use update",
                A::COLLECTION,
                aggregate.id(),
                aggregate.version()
            )));
        }
        self.write(uow, aggregate, Write::Insert).await
    }

    /// Stores the changed aggregate (version + 1) if nobody changed it since
    /// it was loaded ([`DomainError::Concurrency`] otherwise) and enqueues its
    /// integration events. Returns its domain events.
    pub async fn update(
        &self,
        uow: &mut dyn UnitOfWork,
        aggregate: &mut A,
    ) -> Result<Vec<A::DomainEvent>, DomainError> {
        if aggregate.version() == 0 {
            return Err(DomainError::internal(format!(
                "{}/{}: update expects a loaded aggregate, got a new one; use add",
                A::COLLECTION,
                aggregate.id()
            )));
        }
        self.write(uow, aggregate, Write::Update).await
    }

    /// [`add`](Self::add) for a new aggregate, [`update`](Self::update) for a
    /// loaded one.
    pub async fn save(
        &self,
        uow: &mut dyn UnitOfWork,
        aggregate: &mut A,
    ) -> Result<Vec<A::DomainEvent>, DomainError> {
        let write = if aggregate.version() == 0 {
            Write::Insert
        } else {
            Write::Update
        };
        self.write(uow, aggregate, write).await
    }

    /// Deletes a loaded aggregate if unchanged since it was loaded, and
    /// enqueues its pending integration events (e.g. `order.cancelled.v1`).
    pub async fn delete(
        &self,
        uow: &mut dyn UnitOfWork,
        aggregate: &mut A,
    ) -> Result<Vec<A::DomainEvent>, DomainError> {
        self.write(uow, aggregate, Write::Delete).await
    }

    /// Runs a simple query over `A`'s collection (see
    /// [`query_all`](Self::query_all)); results in insertion order.
    pub async fn query(
        &self,
        uow: &mut dyn UnitOfWork,
        query: &Query,
    ) -> Result<Page<A>, DomainError> {
        if query.collection != A::COLLECTION {
            return Err(DomainError::internal(format!(
                "a repository of `{}` cannot query collection `{}`",
                A::COLLECTION,
                query.collection
            )));
        }
        let page = uow.transaction().query(query).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for record in page.items {
            items.push(from_record(record)?);
        }
        Ok(Page {
            items,
            total: page.total,
            page: page.page,
        })
    }

    async fn write(
        &self,
        uow: &mut dyn UnitOfWork,
        aggregate: &mut A,
        write: Write,
    ) -> Result<Vec<A::DomainEvent>, DomainError> {
        let id = aggregate.id().to_string();
        let current = aggregate.version();
        let (write, new_version) = match write {
            Write::Insert => (RecordWrite::Insert(to_record(aggregate, &id, 1)?), 1),
            Write::Update => (
                RecordWrite::Update(to_record(aggregate, &id, current + 1)?),
                current + 1,
            ),
            Write::Delete => (
                RecordWrite::Delete {
                    collection: A::COLLECTION.to_owned(),
                    id: id.clone(),
                    expected_version: current,
                },
                0,
            ),
        };
        let envelopes = integration_envelopes(aggregate, &id)?;
        uow.write_and_enqueue(write, &id, envelopes).await?;
        Ok(written(aggregate, new_version))
    }
}

/// What a repository does once it has written an aggregate: enqueues the
/// aggregate's pending integration events in `uow`'s outbox (ordering key =
/// its id), sets its version to `new_version` and hands back its domain
/// events. A repository over the service's own tables calls it after its
/// SQL, so the rows and the events commit together ([`Repository`] does the
/// same for a document, handing the write and the events over in one
/// call). If it fails the aggregate keeps its events (the unit of work is
/// rolled back anyway).
///
/// ```no_run
/// # use chassis_domain::{AggregateRoot, DomainError, UnitOfWork};
/// # #[cfg(feature = "sqlite")]
/// async fn add_item<A: AggregateRoot>(uow: &mut dyn UnitOfWork, item: &mut A, name: &str) -> Result<(), DomainError> {
///     chassis_storage::Sql::of(uow.transaction())?
///         .query("INSERT INTO items (id, name, version) VALUES ($1, $2, 1)")
///         .bind(item.id().to_string())
///         .bind(name)
///         .execute()
///         .await?;
///     chassis_storage::publish_changes(uow, item, 1).await?;
///     Ok(())
/// }
/// ```
pub async fn publish_changes<A: AggregateRoot>(
    uow: &mut dyn UnitOfWork,
    aggregate: &mut A,
    new_version: u64,
) -> Result<Vec<A::DomainEvent>, DomainError> {
    let id = aggregate.id().to_string();
    let envelopes = integration_envelopes(aggregate, &id)?;
    uow.enqueue(&id, envelopes).await?;
    Ok(written(aggregate, new_version))
}

/// The envelopes of `aggregate`'s pending integration events, partitioned by
/// its `id` unless an event says otherwise.
fn integration_envelopes<A: AggregateRoot>(
    aggregate: &A,
    id: &str,
) -> Result<Vec<Envelope>, DomainError> {
    aggregate
        .changes()
        .integration_events()
        .iter()
        .map(|event| {
            let mut envelope: Envelope = event.to_envelope()?;
            if envelope.partition_key.is_none() {
                envelope.partition_key = Some(id.to_owned());
            }
            Ok(envelope)
        })
        .collect()
}

/// `aggregate` once stored at `new_version` with its events enqueued: its
/// integration events are gone, its domain events handed back.
fn written<A: AggregateRoot>(aggregate: &mut A, new_version: u64) -> Vec<A::DomainEvent> {
    let changes = aggregate.changes_mut();
    changes.set_version(new_version);
    changes.take_integration_events();
    changes.take_domain_events()
}

#[derive(Clone, Copy)]
enum Write {
    Insert,
    Update,
    Delete,
}

fn to_record<A: AggregateRoot>(
    aggregate: &A,
    id: &str,
    version: u64,
) -> Result<Record, DomainError> {
    let data = serde_json::to_value(aggregate).map_err(|e| {
        DomainError::internal(format!("cannot serialize {}/{id}: {e}", A::COLLECTION))
    })?;
    Ok(Record {
        collection: A::COLLECTION.to_owned(),
        id: id.to_owned(),
        version,
        data,
        index: aggregate.index_entries(),
    })
}

fn from_record<A: AggregateRoot>(record: Record) -> Result<A, DomainError> {
    let mut aggregate: A = serde_json::from_value(record.data).map_err(|e| {
        DomainError::internal(format!(
            "stored {}/{} does not match the aggregate type {}: {e}",
            record.collection,
            record.id,
            std::any::type_name::<A>()
        ))
    })?;
    aggregate.changes_mut().set_version(record.version);
    Ok(aggregate)
}

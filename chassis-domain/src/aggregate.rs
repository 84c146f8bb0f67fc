//! Entities, aggregate roots and the events they raise.

use std::fmt;
use std::sync::Arc;

use messaging_abstractions::{EncodeError, Envelope, IntegrationEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use storage_abstractions::IndexEntry;

/// Something with an identity that stays the same while its state changes.
pub trait Entity {
    /// The identity type. Its `Display` text is the stored id.
    type Id: fmt::Display + fmt::Debug + Clone + PartialEq + Send + Sync + 'static;

    /// The identity.
    fn id(&self) -> &Self::Id;
}

/// The root of an aggregate: the unit of consistency that a repository loads
/// and saves as a whole, and the only entry point to the objects inside it.
///
/// An aggregate is a serde document (its state) plus [`Changes`], which the
/// chassis handles: the stored version (optimistic concurrency) and the events
/// raised since the aggregate was loaded. Keep `Changes` in a
/// `#[serde(skip)]` field and change state only through methods that check
/// the invariants and raise events.
///
/// - A **domain event** (`Self::DomainEvent`) is in-process: it tells code in
///   the same service (in the same unit of work) that something happened.
///   The repository hands them back on save.
/// - An **integration event** ([`IntegrationEvent`]) is the contract with
///   other services: recorded with [`Changes::publish`], it becomes an outbox
///   message when the aggregate is saved, in the same transaction, and is
///   published by the outbox relay after commit, in order per aggregate.
///
/// ```
/// use chassis_domain::{Aggregate, AggregateRoot, Changes, DomainError, Entity, IntegrationEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct PackageSent { pub package_id: String }
/// impl IntegrationEvent for PackageSent {
///     const EVENT_TYPE: &'static str = "shipping.package_sent.v1";
/// }
///
/// #[derive(Debug, Clone, PartialEq)]
/// pub enum PackageEvent { DestinationChanged { to: String }, Sent }
///
/// // `Aggregate` writes `Entity` (the `id` field) and `AggregateRoot` (the
/// // collection, the event type, the `Changes` field).
/// #[derive(Debug, Serialize, Deserialize, Aggregate)]
/// #[aggregate(collection = "packages", events = PackageEvent)]
/// pub struct Package {
///     id: String,
///     destination: String,
///     sent: bool,
///     #[serde(skip)]
///     changes: Changes<PackageEvent>,
/// }
///
/// impl Package {
///     pub fn new(id: String, destination: String) -> Self {
///         Self { id, destination, sent: false, changes: Changes::default() }
///     }
///     /// The destination may change until the package is sent.
///     pub fn change_destination(&mut self, to: &str) -> Result<(), DomainError> {
///         if self.sent {
///             return Err(DomainError::conflict("the package was already sent"));
///         }
///         self.destination = to.to_owned();
///         self.changes.raise(PackageEvent::DestinationChanged { to: to.to_owned() });
///         Ok(())
///     }
///     pub fn send(&mut self) -> Result<(), DomainError> {
///         if self.sent {
///             return Err(DomainError::conflict("the package was already sent"));
///         }
///         self.sent = true;
///         self.changes.raise(PackageEvent::Sent);
///         self.changes.publish(PackageSent { package_id: self.id.clone() });
///         Ok(())
///     }
/// }
///
/// let mut p = Package::new("p-1".into(), "Berlin".into());
/// p.change_destination("Paris").unwrap();
/// p.send().unwrap();
/// assert!(p.change_destination("Rome").is_err());
/// assert_eq!(p.changes().domain_events().len(), 2);
/// assert_eq!(p.changes().integration_events()[0].event_type(), "shipping.package_sent.v1");
/// assert_eq!(Package::COLLECTION, "packages");
/// assert_eq!(p.id(), "p-1");
/// assert_eq!(p.version(), 0); // never saved
/// ```
pub trait AggregateRoot: Entity + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable collection (table-like) name, `[a-z0-9_]+`, e.g. `orders`.
    const COLLECTION: &'static str;

    /// The aggregate's in-process domain events (usually an enum).
    type DomainEvent: fmt::Debug + Send + Sync + 'static;

    /// The chassis-managed part: version and pending events.
    fn changes(&self) -> &Changes<Self::DomainEvent>;

    /// Mutable access to the chassis-managed part.
    fn changes_mut(&mut self) -> &mut Changes<Self::DomainEvent>;

    /// Index entries that simple repository queries filter on (e.g.
    /// `("status", "open")`). None by default.
    fn index_entries(&self) -> Vec<IndexEntry> {
        Vec::new()
    }

    /// The stored version: 0 for an aggregate never saved, 1 after the first
    /// save, +1 per update.
    fn version(&self) -> u64 {
        self.changes().version()
    }
}

/// The chassis-managed part of an aggregate: the stored version and the
/// events raised since it was loaded or last saved.
///
/// Keep it in a `#[serde(skip)]` field: it is not part of the document.
pub struct Changes<D> {
    version: u64,
    domain_events: Vec<D>,
    integration_events: Vec<PendingEvent>,
}

impl<D> Default for Changes<D> {
    fn default() -> Self {
        Self {
            version: 0,
            domain_events: Vec::new(),
            integration_events: Vec::new(),
        }
    }
}

impl<D: Clone> Clone for Changes<D> {
    fn clone(&self) -> Self {
        Self {
            version: self.version,
            domain_events: self.domain_events.clone(),
            integration_events: self.integration_events.clone(),
        }
    }
}

impl<D: fmt::Debug> fmt::Debug for Changes<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("version", &self.version)
            .field("domain_events", &self.domain_events)
            .field("integration_events", &self.integration_events)
            .finish()
    }
}

impl<D> Changes<D> {
    /// The stored version (0 = never saved).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sets the stored version. Called by repositories after a load or a
    /// save; domain code never calls it.
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// Records a domain event (in-process).
    pub fn raise(&mut self, event: D) {
        self.domain_events.push(event);
    }

    /// Records an integration event, published after the unit of work that
    /// saves this aggregate commits.
    pub fn publish<E: IntegrationEvent>(&mut self, event: E) {
        self.integration_events.push(PendingEvent::new(event));
    }

    /// The domain events raised so far.
    pub fn domain_events(&self) -> &[D] {
        &self.domain_events
    }

    /// The integration events recorded so far.
    pub fn integration_events(&self) -> &[PendingEvent] {
        &self.integration_events
    }

    /// Takes the domain events out.
    pub fn take_domain_events(&mut self) -> Vec<D> {
        std::mem::take(&mut self.domain_events)
    }

    /// Takes the integration events out.
    pub fn take_integration_events(&mut self) -> Vec<PendingEvent> {
        std::mem::take(&mut self.integration_events)
    }
}

/// An integration event waiting to be encoded into an [`Envelope`], with its
/// type erased so one aggregate can record events of several types.
#[derive(Clone)]
pub struct PendingEvent {
    event_type: &'static str,
    event: Arc<dyn ErasedEvent>,
}

trait ErasedEvent: Send + Sync {
    fn to_envelope(&self) -> Result<Envelope, EncodeError>;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

struct Typed<E>(E);

impl<E: IntegrationEvent> ErasedEvent for Typed<E> {
    fn to_envelope(&self) -> Result<Envelope, EncodeError> {
        Envelope::for_event(&self.0)
    }

    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // IntegrationEvent does not require Debug; its JSON is just as useful.
        match serde_json::to_string(&self.0) {
            Ok(json) => f.write_str(&json),
            Err(_) => f.write_str("<unencodable>"),
        }
    }
}

impl PendingEvent {
    /// Wraps a typed event.
    pub fn new<E: IntegrationEvent>(event: E) -> Self {
        Self {
            event_type: E::EVENT_TYPE,
            event: Arc::new(Typed(event)),
        }
    }

    /// The event type name, e.g. `order.completed.v1`.
    pub fn event_type(&self) -> &'static str {
        self.event_type
    }

    /// Encodes the event into a new envelope (fresh message id, no context).
    pub fn to_envelope(&self) -> Result<Envelope, EncodeError> {
        self.event.to_envelope()
    }
}

impl fmt::Debug for PendingEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.event_type)?;
        self.event.debug(f)?;
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize)]
    struct Shipped {
        id: u32,
    }
    impl IntegrationEvent for Shipped {
        const EVENT_TYPE: &'static str = "test.shipped.v1";
    }

    #[test]
    fn changes_collect_and_drain() {
        let mut c: Changes<&'static str> = Changes::default();
        c.raise("a");
        c.publish(Shipped { id: 3 });
        assert_eq!(c.domain_events(), &["a"]);
        let pending = c.take_integration_events();
        assert_eq!(pending.len(), 1);
        assert!(c.integration_events().is_empty());
        let env = pending[0].to_envelope().unwrap();
        assert_eq!(env.event_type, "test.shipped.v1");
        assert_eq!(env.decode::<Shipped>().unwrap().id, 3);
        assert_eq!(format!("{:?}", pending[0]), r#"test.shipped.v1({"id":3})"#);
        c.set_version(4);
        assert_eq!(c.clone().version(), 4);
    }
}

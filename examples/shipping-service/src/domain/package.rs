//! The package aggregate: items packed together for one destination, sent
//! with one transport provider and tracked afterwards.

use std::collections::BTreeSet;

use chassis_domain::{Aggregate, Changes, DomainError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::address::Address;
use super::transport::{Dimensions, TransportProvider};

/// Units of one order line in a package. Weight and size are per unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedItem {
    /// The order the units belong to.
    pub order_id: Uuid,
    /// Stock keeping unit.
    pub sku: String,
    /// Units in this package.
    pub quantity: u32,
    /// Weight of one unit in grams.
    pub weight_grams: u32,
    /// Size of one unit.
    pub dimensions: Dimensions,
}

impl PackedItem {
    /// Weight of all its units.
    pub fn total_weight_grams(&self) -> u64 {
        u64::from(self.weight_grams) * u64::from(self.quantity)
    }
}

/// Where a package stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageStatus {
    /// Still taking items; destination may change.
    Open,
    /// Handed to the transport provider: closed, tracked.
    Sent,
}

impl PackageStatus {
    /// The name used in the API and the `packages.status` column (`open`, `sent`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Sent => "sent",
        }
    }

    /// The status named `name` ([`as_str`](Self::as_str)).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Open, Self::Sent]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// A step of a sent package's journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingStatus {
    /// Handed over to the transport provider.
    HandedOver,
    /// On its way.
    InTransit,
    /// With the courier for the last mile.
    OutForDelivery,
    /// Delivered; the journey is over.
    Delivered,
    /// A delivery attempt failed.
    DeliveryFailed,
}

impl TrackingStatus {
    /// The name used in the API and the `tracking_events.status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HandedOver => "handed_over",
            Self::InTransit => "in_transit",
            Self::OutForDelivery => "out_for_delivery",
            Self::Delivered => "delivered",
            Self::DeliveryFailed => "delivery_failed",
        }
    }

    /// The status named `name` ([`as_str`](Self::as_str)).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::HandedOver,
            Self::InTransit,
            Self::OutForDelivery,
            Self::Delivered,
            Self::DeliveryFailed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// One tracking event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingEvent {
    /// What happened.
    pub status: TrackingStatus,
    /// Human-readable detail.
    pub description: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Why a package refuses a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    /// The package left with its provider: nothing about it can change.
    #[error("package {package_id} was already sent (tracking id {tracking_id})")]
    AlreadySent {
        /// The package.
        package_id: Uuid,
        /// Its tracking id.
        tracking_id: String,
    },
    /// Tracking starts when the package is sent.
    #[error("package {package_id} has not been sent yet; it has no tracking")]
    NotSent {
        /// The package.
        package_id: Uuid,
    },
    /// Nothing happens to a package after its delivery.
    #[error("package {package_id} was already delivered")]
    AlreadyDelivered {
        /// The package.
        package_id: Uuid,
    },
    /// The units would exceed the provider's maximum weight.
    #[error("package {package_id} holds {free_grams} g more at most; {needed_grams} g do not fit")]
    TooHeavy {
        /// The package.
        package_id: Uuid,
        /// What is left of its capacity.
        free_grams: u64,
        /// What the units weigh.
        needed_grams: u64,
    },
    /// The unit is larger than the provider takes.
    #[error("package {package_id} goes with {provider}, which does not take items of {dimensions}")]
    TooLarge {
        /// The package.
        package_id: Uuid,
        /// Its provider.
        provider: String,
        /// Size of the unit.
        dimensions: Dimensions,
    },
    /// A package holds at least one unit.
    #[error("a package holds at least one unit")]
    NoUnits,
}

/// What happened to a package (in-process domain events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageEvent {
    /// Units were added.
    Filled {
        /// The order they belong to.
        order_id: Uuid,
        /// How many.
        quantity: u32,
    },
    /// It goes somewhere else now.
    DestinationChanged,
    /// The units of a cancelled order were taken out.
    Released {
        /// The order.
        order_id: Uuid,
        /// How many units.
        quantity: u64,
    },
    /// It was handed to its provider.
    Sent {
        /// The provider's tracking id.
        tracking_id: String,
    },
}

impl From<PackageError> for DomainError {
    /// Refusals because of the package's state are conflicts (409); a
    /// package asked to take what it cannot is a bug of the caller (500).
    fn from(error: PackageError) -> Self {
        match error {
            PackageError::AlreadySent { .. }
            | PackageError::NotSent { .. }
            | PackageError::AlreadyDelivered { .. } => DomainError::conflict(error.to_string()),
            PackageError::TooHeavy { .. }
            | PackageError::TooLarge { .. }
            | PackageError::NoUnits => DomainError::internal(error.to_string()),
        }
    }
}

/// The package aggregate. It holds at least one unit and never more than
/// its provider's maximum weight; once sent it is closed for changes.
#[derive(Debug, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(collection = "packages", events = PackageEvent)]
pub struct Package {
    id: Uuid,
    destination: Address,
    transport_provider: TransportProvider,
    status: PackageStatus,
    items: Vec<PackedItem>,
    tracking_id: Option<String>,
    tracking: Vec<TrackingEvent>,
    #[serde(with = "time::serde::rfc3339")]
    opened_at: OffsetDateTime,
    #[serde(skip)]
    changes: Changes<PackageEvent>,
}

impl Package {
    /// Opens a package for `destination` with `provider`, holding `first`.
    /// The provider's limits are copied: a later configuration change does
    /// not invalidate packages already packed.
    pub fn open(
        id: Uuid,
        destination: Address,
        provider: &TransportProvider,
        first: PackedItem,
        now: OffsetDateTime,
    ) -> Result<Self, PackageError> {
        let mut package = Self {
            id,
            destination,
            transport_provider: provider.clone(),
            status: PackageStatus::Open,
            items: Vec::new(),
            tracking_id: None,
            tracking: Vec::new(),
            opened_at: now,
            changes: Changes::default(),
        };
        package.add(first)?;
        Ok(package)
    }

    /// A package as stored (its rows), at `version`: no rule is checked
    /// again and no event raised.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn restore(
        id: Uuid,
        destination: Address,
        transport_provider: TransportProvider,
        status: PackageStatus,
        items: Vec<PackedItem>,
        tracking_id: Option<String>,
        tracking: Vec<TrackingEvent>,
        opened_at: OffsetDateTime,
        version: u64,
    ) -> Self {
        let mut changes = Changes::default();
        changes.set_version(version);
        Self {
            id,
            destination,
            transport_provider,
            status,
            items,
            tracking_id,
            tracking,
            opened_at,
            changes,
        }
    }

    /// Where it goes.
    pub fn destination(&self) -> &Address {
        &self.destination
    }
    /// Who carries it.
    pub fn transport_provider(&self) -> &TransportProvider {
        &self.transport_provider
    }
    /// Where it stands.
    pub fn status(&self) -> PackageStatus {
        self.status
    }
    /// Whether it still takes items.
    pub fn is_open(&self) -> bool {
        self.status == PackageStatus::Open
    }
    /// What it holds.
    pub fn items(&self) -> &[PackedItem] {
        &self.items
    }
    /// The tracking id, once sent.
    pub fn tracking_id(&self) -> Option<&str> {
        self.tracking_id.as_deref()
    }
    /// The journey so far, oldest first.
    pub fn tracking(&self) -> &[TrackingEvent] {
        &self.tracking
    }
    /// When it was opened.
    pub fn opened_at(&self) -> OffsetDateTime {
        self.opened_at
    }

    /// Weight of everything in it.
    pub fn total_weight_grams(&self) -> u64 {
        self.items.iter().map(PackedItem::total_weight_grams).sum()
    }

    /// What it can take before reaching the provider's maximum weight.
    pub fn free_weight_grams(&self) -> u64 {
        self.transport_provider
            .max_weight_grams()
            .saturating_sub(self.total_weight_grams())
    }

    /// The orders with units in it.
    pub fn order_ids(&self) -> BTreeSet<Uuid> {
        self.items.iter().map(|i| i.order_id).collect()
    }

    /// How many units of this weight and size it can still take (0 when
    /// sent, or when the provider does not take the size).
    pub fn units_that_fit(&self, weight_grams: u32, dimensions: Dimensions) -> u32 {
        if !self.is_open() || weight_grams == 0 || !self.transport_provider.takes_size(dimensions) {
            return 0;
        }
        u32::try_from(self.free_weight_grams() / u64::from(weight_grams)).unwrap_or(u32::MAX)
    }

    /// Adds units; units of the same order and SKU are kept as one entry.
    pub fn add(&mut self, item: PackedItem) -> Result<(), PackageError> {
        self.ensure_open()?;
        if item.quantity == 0 || item.weight_grams == 0 {
            return Err(PackageError::NoUnits);
        }
        if !self.transport_provider.takes_size(item.dimensions) {
            return Err(PackageError::TooLarge {
                package_id: self.id,
                provider: self.transport_provider.name().to_owned(),
                dimensions: item.dimensions,
            });
        }
        let needed_grams = item.total_weight_grams();
        let free_grams = self.free_weight_grams();
        if needed_grams > free_grams {
            return Err(PackageError::TooHeavy {
                package_id: self.id,
                free_grams,
                needed_grams,
            });
        }
        self.changes.raise(PackageEvent::Filled {
            order_id: item.order_id,
            quantity: item.quantity,
        });
        match self
            .items
            .iter_mut()
            .find(|i| i.order_id == item.order_id && i.sku == item.sku)
        {
            Some(existing) => existing.quantity += item.quantity,
            None => self.items.push(item),
        }
        Ok(())
    }

    /// Takes every unit of `order_id` out (its cancellation); refused once
    /// sent. A package left empty must be discarded by the caller: a package
    /// holds at least one unit.
    pub fn release_order(&mut self, order_id: Uuid) -> Result<Vec<PackedItem>, PackageError> {
        self.ensure_open()?;
        let (released, kept): (Vec<PackedItem>, Vec<PackedItem>) = std::mem::take(&mut self.items)
            .into_iter()
            .partition(|i| i.order_id == order_id);
        self.items = kept;
        if !released.is_empty() {
            self.changes.raise(PackageEvent::Released {
                order_id,
                quantity: released.iter().map(|i| u64::from(i.quantity)).sum(),
            });
        }
        Ok(released)
    }

    /// Whether it holds nothing (after [`release_order`](Self::release_order)).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends the package somewhere else; refused once it was sent.
    pub fn change_destination(&mut self, destination: Address) -> Result<(), PackageError> {
        self.ensure_open()?;
        self.destination = destination;
        self.changes.raise(PackageEvent::DestinationChanged);
        Ok(())
    }

    /// Hands the package to its provider under `tracking_id` (see
    /// [`new_tracking_id`]); records the first tracking event.
    pub fn send(&mut self, tracking_id: String, now: OffsetDateTime) -> Result<(), PackageError> {
        self.ensure_open()?;
        self.status = PackageStatus::Sent;
        self.tracking.push(TrackingEvent {
            status: TrackingStatus::HandedOver,
            description: format!(
                "handed over to {} with tracking id {tracking_id}",
                self.transport_provider.name()
            ),
            at: now,
        });
        self.changes.raise(PackageEvent::Sent {
            tracking_id: tracking_id.clone(),
        });
        self.tracking_id = Some(tracking_id);
        Ok(())
    }

    /// Records a step of the journey reported by the provider.
    pub fn record_tracking(
        &mut self,
        status: TrackingStatus,
        description: String,
        now: OffsetDateTime,
    ) -> Result<(), PackageError> {
        if self.is_open() {
            return Err(PackageError::NotSent {
                package_id: self.id,
            });
        }
        if self
            .tracking
            .iter()
            .any(|e| e.status == TrackingStatus::Delivered)
        {
            return Err(PackageError::AlreadyDelivered {
                package_id: self.id,
            });
        }
        self.tracking.push(TrackingEvent {
            status,
            description,
            at: now,
        });
        Ok(())
    }

    fn ensure_open(&self) -> Result<(), PackageError> {
        if self.is_open() {
            return Ok(());
        }
        Err(PackageError::AlreadySent {
            package_id: self.id,
            tracking_id: self.tracking_id.clone().unwrap_or_default(),
        })
    }
}

/// A fresh tracking id: the provider's name in capitals and 12 random hex
/// digits, e.g. `PARCEL-POST-3F09A1C2B7E4`.
pub fn new_tracking_id(provider: &TransportProvider) -> String {
    let random = Uuid::new_v4().simple().to_string();
    format!(
        "{}-{}",
        provider.name().to_uppercase().replace('_', "-"),
        random[..12].to_uppercase()
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::transport::{ShippingConfig, TransportProviderConfig, TransportProviders};
    use chassis_domain::{AggregateRoot, Entity};

    pub(crate) fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    pub(crate) fn address(street: &str) -> Address {
        Address::new("Ada", street, "London", "N1", "GB").unwrap()
    }

    pub(crate) fn providers(max_weight_grams: u64) -> TransportProviders {
        TransportProviders::from_config(&ShippingConfig {
            transport_providers: vec![TransportProviderConfig {
                name: "parcel".into(),
                max_weight_grams,
                max_dimensions_mm: Some([1000, 500, 500]),
            }],
        })
        .unwrap()
    }

    pub(crate) fn units(order_id: Uuid, sku: &str, quantity: u32, weight_grams: u32) -> PackedItem {
        PackedItem {
            order_id,
            sku: sku.into(),
            quantity,
            weight_grams,
            dimensions: Dimensions::new(100, 100, 100),
        }
    }

    fn package(max: u64, first: PackedItem) -> Package {
        let p = providers(max);
        let provider = p.iter().next().unwrap();
        Package::open(Uuid::now_v7(), address("1 Main St"), provider, first, now()).unwrap()
    }

    #[test]
    fn weight_exactly_at_the_limit_fits_one_gram_over_does_not() {
        let order = Uuid::now_v7();
        let mut p = package(10_000, units(order, "A", 2, 3_000));
        assert_eq!(p.free_weight_grams(), 4_000);
        assert_eq!(p.units_that_fit(2_000, Dimensions::new(1, 1, 1)), 2);
        p.add(units(order, "B", 1, 4_000)).unwrap();
        assert_eq!(p.total_weight_grams(), 10_000);
        assert_eq!(p.free_weight_grams(), 0);
        assert_eq!(
            p.add(units(order, "C", 1, 1)),
            Err(PackageError::TooHeavy {
                package_id: *p.id(),
                free_grams: 0,
                needed_grams: 1
            })
        );
        let q = package(10_000, units(order, "A", 1, 9_999));
        assert_eq!(q.units_that_fit(1, Dimensions::new(1, 1, 1)), 1);
        assert_eq!(q.units_that_fit(2, Dimensions::new(1, 1, 1)), 0);
    }

    #[test]
    fn same_order_and_sku_merge_into_one_entry() {
        let order = Uuid::now_v7();
        let mut p = package(10_000, units(order, "A", 1, 100));
        p.add(units(order, "A", 2, 100)).unwrap();
        p.add(units(Uuid::now_v7(), "A", 1, 100)).unwrap();
        assert_eq!(p.items().len(), 2);
        assert_eq!(p.items()[0].quantity, 3);
        assert_eq!(p.order_ids().len(), 2);
    }

    #[test]
    fn a_package_never_holds_what_its_provider_cannot_take() {
        let mut p = package(10_000, units(Uuid::now_v7(), "A", 1, 100));
        let mut long = units(Uuid::now_v7(), "L", 1, 100);
        long.dimensions = Dimensions::new(1100, 10, 10);
        assert!(matches!(p.add(long), Err(PackageError::TooLarge { .. })));
        assert_eq!(
            p.units_that_fit(100, Dimensions::new(1100, 10, 10)),
            0,
            "size is checked before weight"
        );
        assert_eq!(
            p.add(units(Uuid::now_v7(), "Z", 0, 100)),
            Err(PackageError::NoUnits)
        );
        let provider = providers(100);
        let err = Package::open(
            Uuid::now_v7(),
            address("x"),
            provider.iter().next().unwrap(),
            units(Uuid::now_v7(), "H", 1, 101),
            now(),
        )
        .unwrap_err();
        assert!(matches!(err, PackageError::TooHeavy { .. }));
    }

    #[test]
    fn destination_changes_until_sent_then_409_conflict() {
        let mut p = package(10_000, units(Uuid::now_v7(), "A", 1, 100));
        p.change_destination(address("2 Other Rd")).unwrap();
        assert_eq!(p.destination().street(), "2 Other Rd");
        p.send("PARCEL-1".into(), now()).unwrap();
        let err = p.change_destination(address("3 Late Ln")).unwrap_err();
        assert_eq!(DomainError::from(err.clone()).status(), 409);
        assert_eq!(
            err,
            PackageError::AlreadySent {
                package_id: *p.id(),
                tracking_id: "PARCEL-1".into()
            }
        );
        assert_eq!(p.destination().street(), "2 Other Rd");
        assert!(matches!(
            p.add(units(Uuid::now_v7(), "B", 1, 1)),
            Err(PackageError::AlreadySent { .. })
        ));
        assert_eq!(p.units_that_fit(1, Dimensions::new(1, 1, 1)), 0);
    }

    #[test]
    fn sending_gives_a_tracking_id_and_events() {
        let mut p = package(10_000, units(Uuid::now_v7(), "A", 1, 100));
        assert_eq!(
            p.record_tracking(TrackingStatus::InTransit, "hub".into(), now()),
            Err(PackageError::NotSent {
                package_id: *p.id()
            })
        );
        let tracking_id = new_tracking_id(p.transport_provider());
        assert!(tracking_id.starts_with("PARCEL-"), "{tracking_id}");
        assert_eq!(tracking_id.len(), "PARCEL-".len() + 12);
        p.send(tracking_id.clone(), now()).unwrap();
        assert_eq!(p.status(), PackageStatus::Sent);
        assert_eq!(p.tracking_id(), Some(tracking_id.as_str()));
        assert_eq!(p.tracking()[0].status, TrackingStatus::HandedOver);
        assert!(matches!(
            p.send("again".into(), now()),
            Err(PackageError::AlreadySent { .. })
        ));
        p.record_tracking(TrackingStatus::InTransit, "hub".into(), now())
            .unwrap();
        p.record_tracking(TrackingStatus::Delivered, "front door".into(), now())
            .unwrap();
        assert_eq!(
            p.record_tracking(TrackingStatus::InTransit, "?".into(), now()),
            Err(PackageError::AlreadyDelivered {
                package_id: *p.id()
            })
        );
        assert_eq!(p.tracking().len(), 3);
    }

    #[test]
    fn releasing_an_order_takes_only_its_units_until_sent() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut p = package(10_000, units(a, "A", 2, 100));
        p.add(units(b, "B", 1, 100)).unwrap();
        p.add(units(a, "C", 3, 100)).unwrap();
        let released = p.release_order(a).unwrap();
        assert_eq!(released.iter().map(|i| i.quantity).sum::<u32>(), 5);
        assert_eq!(p.order_ids(), BTreeSet::from([b]));
        assert!(!p.is_empty());
        assert!(p.release_order(a).unwrap().is_empty(), "nothing left of it");
        p.release_order(b).unwrap();
        assert!(p.is_empty());
        let mut sent = package(10_000, units(a, "A", 1, 100));
        sent.send("T".into(), now()).unwrap();
        assert!(matches!(
            sent.release_order(a),
            Err(PackageError::AlreadySent { .. })
        ));
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut p = package(10_000, units(Uuid::now_v7(), "A", 1, 100));
        p.send("T-1".into(), now()).unwrap();
        let json = serde_json::to_value(&p).unwrap();
        let back: Package = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
        assert!(
            back.index_entries().is_empty(),
            "packages are found by SQL (crate::tables), not by index entries"
        );
    }

    #[test]
    fn status_names_round_trip() {
        for status in [PackageStatus::Open, PackageStatus::Sent] {
            assert_eq!(PackageStatus::parse(status.as_str()), Some(status));
        }
        for status in [
            TrackingStatus::HandedOver,
            TrackingStatus::InTransit,
            TrackingStatus::OutForDelivery,
            TrackingStatus::Delivered,
            TrackingStatus::DeliveryFailed,
        ] {
            assert_eq!(TrackingStatus::parse(status.as_str()), Some(status));
            // The column holds the API's (serde's) name.
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(PackageStatus::parse("lost"), None);
    }
}

//! The shipment of one order: the record that the order was received and
//! packed (so it is never packed twice) and of the items nothing can carry.

use chassis_domain::{Aggregate, Changes};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::address::Address;
use super::cancellation::ShipmentCancellation;
use super::transport::UnshippableReason;

/// Units of an order line that no transport provider can carry, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnshippableItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Units concerned.
    pub quantity: u32,
    /// Why no provider can carry them.
    pub reason: UnshippableReason,
}

/// The shipment aggregate, one per order (its id is the order's id, so a
/// second one for the same order cannot be stored).
#[derive(Debug, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(collection = "shipments")]
pub struct Shipment {
    #[aggregate(id)]
    order_id: Uuid,
    destination: Address,
    packages: Vec<Uuid>,
    unshippable: Vec<UnshippableItem>,
    #[serde(with = "time::serde::rfc3339")]
    packed_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cancellation: Option<ShipmentCancellation>,
    #[serde(skip)]
    changes: Changes<()>,
}

impl Shipment {
    pub(crate) fn new(
        order_id: Uuid,
        destination: Address,
        packages: Vec<Uuid>,
        unshippable: Vec<UnshippableItem>,
        packed_at: OffsetDateTime,
    ) -> Self {
        Self {
            order_id,
            destination,
            packages,
            unshippable,
            packed_at,
            cancellation: None,
            changes: Changes::default(),
        }
    }

    /// A shipment as stored (its row), at `version`.
    pub(crate) fn restore(
        order_id: Uuid,
        destination: Address,
        packages: Vec<Uuid>,
        unshippable: Vec<UnshippableItem>,
        packed_at: OffsetDateTime,
        cancellation: Option<ShipmentCancellation>,
        version: u64,
    ) -> Self {
        let mut changes = Changes::default();
        changes.set_version(version);
        Self {
            order_id,
            destination,
            packages,
            unshippable,
            packed_at,
            cancellation,
            changes,
        }
    }

    /// The order.
    pub fn order_id(&self) -> Uuid {
        self.order_id
    }
    /// Where the order was to go when it was packed.
    pub fn destination(&self) -> &Address {
        &self.destination
    }
    /// The packages holding its units.
    pub fn packages(&self) -> &[Uuid] {
        &self.packages
    }
    /// Its items nothing can carry.
    pub fn unshippable(&self) -> &[UnshippableItem] {
        &self.unshippable
    }
    /// When it was packed.
    pub fn packed_at(&self) -> OffsetDateTime {
        self.packed_at
    }
    /// What became of a cancellation of the order, if one was asked.
    pub fn cancellation(&self) -> Option<&ShipmentCancellation> {
        self.cancellation.as_ref()
    }

    /// Records the cancellation's outcome and the packages the order's
    /// units left (`discarded`) or went to (`added`).
    pub(crate) fn record_cancellation(
        &mut self,
        outcome: ShipmentCancellation,
        discarded: &[Uuid],
        added: &[Uuid],
    ) {
        self.packages.retain(|p| !discarded.contains(p));
        for p in added {
            if !self.packages.contains(p) {
                self.packages.push(*p);
            }
        }
        self.cancellation = Some(outcome);
    }
}

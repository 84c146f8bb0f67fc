//! Cancelling the shipment of an order: its units leave the packages not yet
//! sent, or — when one of its packages was sent — the cancellation is
//! refused and nothing changes. A withdrawn cancellation puts the released
//! units back. Every decision is recorded on the [`Shipment`], so the same
//! request always gets the same answer.

use std::collections::BTreeMap;

use chassis_domain::Entity;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::package::{Package, PackageStatus, PackedItem};
use super::packing::{ItemToPack, OrderToPack};
use super::shipment::Shipment;
use super::transport::Dimensions;

/// Units of one SKU taken out of the packages by a cancellation, kept to
/// put them back if the cancellation is withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Units released.
    pub quantity: u32,
    /// Weight of one unit in grams.
    pub weight_grams: u32,
    /// Size of one unit.
    pub dimensions: Dimensions,
}

/// What became of a cancellation of an order's shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ShipmentCancellation {
    /// The units were taken out of the open packages.
    Cancelled {
        /// What was taken out.
        released: Vec<ReleasedItem>,
        /// Packages discarded because they were left empty.
        discarded_packages: Vec<Uuid>,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// Refused: packages of the order had been sent.
    Refused {
        /// Why.
        reason: String,
        /// The order's packages already sent.
        sent_packages: Vec<Uuid>,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// The order service withdrew the cancellation; released units were put
    /// back, later requests are refused.
    Withdrawn {
        /// Units put back into packages.
        restored_units: u64,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

impl ShipmentCancellation {
    /// Units released (0 unless `Cancelled`).
    pub fn released_units(&self) -> u64 {
        match self {
            Self::Cancelled { released, .. } => {
                released.iter().map(|r| u64::from(r.quantity)).sum()
            }
            _ => 0,
        }
    }
}

/// What cancelling changes; saved in one unit of work.
#[derive(Debug, Clone)]
pub struct Cancelled {
    /// The outcome to record on the shipment.
    pub outcome: ShipmentCancellation,
    /// Packages still holding units of other orders (update).
    pub changed: Vec<Package>,
    /// Packages left empty (delete).
    pub emptied: Vec<Package>,
}

/// Decides the cancellation of `order_id` over its packages (those holding
/// its units): refused if one was sent, else every unit of the order taken
/// out of them.
pub fn cancel(order_id: Uuid, packages: Vec<Package>, now: OffsetDateTime) -> Cancelled {
    let sent: Vec<Uuid> = packages
        .iter()
        .filter(|p| p.status() == PackageStatus::Sent)
        .map(|p| *p.id())
        .collect();
    if !sent.is_empty() {
        let list = sent
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return Cancelled {
            outcome: ShipmentCancellation::Refused {
                reason: format!("package(s) {list} of the order were already sent"),
                sent_packages: sent,
                at: now,
            },
            changed: Vec::new(),
            emptied: Vec::new(),
        };
    }
    let mut released: BTreeMap<String, ReleasedItem> = BTreeMap::new();
    let (mut changed, mut emptied) = (Vec::new(), Vec::new());
    for mut package in packages {
        // Open (checked above): release cannot fail.
        let Ok(items) = package.release_order(order_id) else {
            continue;
        };
        if items.is_empty() {
            continue;
        }
        for PackedItem {
            sku,
            quantity,
            weight_grams,
            dimensions,
            ..
        } in items
        {
            released
                .entry(sku.clone())
                .and_modify(|r| r.quantity += quantity)
                .or_insert(ReleasedItem {
                    sku,
                    quantity,
                    weight_grams,
                    dimensions,
                });
        }
        if package.is_empty() {
            emptied.push(package);
        } else {
            changed.push(package);
        }
    }
    Cancelled {
        outcome: ShipmentCancellation::Cancelled {
            released: released.into_values().collect(),
            discarded_packages: emptied.iter().map(|p| *p.id()).collect(),
            at: now,
        },
        changed,
        emptied,
    }
}

/// The released units of a cancelled shipment as an order to pack again
/// (when the cancellation is withdrawn); `None` when nothing was released.
pub fn to_restore(shipment: &Shipment) -> Option<OrderToPack> {
    let Some(ShipmentCancellation::Cancelled { released, .. }) = shipment.cancellation() else {
        return None;
    };
    if released.is_empty() {
        return None;
    }
    Some(OrderToPack {
        order_id: shipment.order_id(),
        destination: shipment.destination().clone(),
        items: released
            .iter()
            .map(|r| ItemToPack {
                sku: r.sku.clone(),
                quantity: r.quantity,
                weight_grams: r.weight_grams,
                dimensions: r.dimensions,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::package::tests::{address, now, providers, units};

    fn package(first: PackedItem) -> Package {
        let p = providers(10_000);
        Package::open(
            Uuid::now_v7(),
            address("1 Main St"),
            p.iter().next().unwrap(),
            first,
            now(),
        )
        .unwrap()
    }

    #[test]
    fn open_packages_release_the_order_and_empty_ones_are_discarded() {
        let (order, other) = (Uuid::now_v7(), Uuid::now_v7());
        let only = package(units(order, "A", 2, 100));
        let mut shared = package(units(order, "A", 1, 100));
        shared.add(units(other, "B", 1, 100)).unwrap();
        let (only_id, shared_id) = (*only.id(), *shared.id());
        let c = cancel(order, vec![only, shared], now());
        assert_eq!(
            c.emptied.iter().map(|p| *p.id()).collect::<Vec<_>>(),
            [only_id]
        );
        assert_eq!(c.changed.len(), 1);
        assert_eq!(*c.changed[0].id(), shared_id);
        assert_eq!(c.changed[0].order_ids().len(), 1);
        assert_eq!(c.outcome.released_units(), 3);
        let ShipmentCancellation::Cancelled {
            released,
            discarded_packages,
            ..
        } = &c.outcome
        else {
            panic!("{:?}", c.outcome)
        };
        assert_eq!(released.len(), 1, "one entry per SKU");
        assert_eq!(discarded_packages, &[only_id]);
    }

    #[test]
    fn a_sent_package_refuses_and_changes_nothing() {
        let order = Uuid::now_v7();
        let open = package(units(order, "A", 1, 100));
        let mut sent = package(units(order, "B", 1, 100));
        sent.send("T-1".into(), now()).unwrap();
        let sent_id = *sent.id();
        let c = cancel(order, vec![open, sent], now());
        assert!(c.changed.is_empty() && c.emptied.is_empty());
        match c.outcome {
            ShipmentCancellation::Refused {
                reason,
                sent_packages,
                ..
            } => {
                assert_eq!(sent_packages, [sent_id]);
                assert!(reason.contains("already sent"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_outcome_round_trips_through_json() {
        let outcome = ShipmentCancellation::Withdrawn {
            restored_units: 2,
            at: now(),
        };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json["outcome"], "withdrawn");
        assert_eq!(
            serde_json::from_value::<ShipmentCancellation>(json).unwrap(),
            outcome
        );
    }
}

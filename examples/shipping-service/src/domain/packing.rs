//! Packing: the domain service that puts the items of a completed order
//! into packages.
//!
//! Rules, in order:
//! 1. An order is packed once. If a [`Shipment`] for it exists, nothing
//!    happens ([`Packing::AlreadyPacked`]) — a redelivered `OrderCompleted`
//!    is harmless even without the chassis inbox.
//! 2. Units go first into the **open packages to the same place** (see
//!    [`Address::same_place`]), oldest first, as many as each package's
//!    provider takes by size and by remaining weight — items of different
//!    orders share packages.
//! 3. What is left goes into new packages. A new package goes with the
//!    provider chosen by [`TransportProviders::choose`]: the largest maximum
//!    weight among those that can carry the unit, so that the package can
//!    take the most further items.
//! 4. Units no provider can carry are recorded as unshippable, with the
//!    reason, on the shipment.
//!
//! A line may be split over several packages; its units stay together where
//! they fit.

use chassis_domain::Entity;
use time::OffsetDateTime;
use uuid::Uuid;

use super::address::Address;
use super::package::{Package, PackedItem};
use super::shipment::{Shipment, UnshippableItem};
use super::transport::{Dimensions, TransportProviders, UnshippableReason};

/// One line of a completed order, as shipping sees it. Weight and size are
/// per unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemToPack {
    /// Stock keeping unit.
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// Weight of one unit in grams.
    pub weight_grams: u32,
    /// Size of one unit.
    pub dimensions: Dimensions,
}

/// A completed order to pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderToPack {
    /// The order.
    pub order_id: Uuid,
    /// Where it goes.
    pub destination: Address,
    /// What to pack.
    pub items: Vec<ItemToPack>,
}

impl OrderToPack {
    /// The weight of one unit of its lightest packable item: an open package
    /// with less room than this can take nothing of the order. `None` when
    /// no item can be packed at all.
    pub fn lightest_unit_grams(&self) -> Option<u32> {
        self.items
            .iter()
            .filter(|item| invalid(item).is_none())
            .map(|item| item.weight_grams)
            .min()
    }
}

/// The outcome of packing one order.
#[derive(Debug, Clone)]
pub enum Packing {
    /// The order had been packed before: nothing changed.
    AlreadyPacked,
    /// The order is packed.
    Packed(Box<Packed>),
}

/// What packing an order changed; saved in one unit of work.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The new record of the order (insert).
    pub shipment: Shipment,
    /// Packages opened for it (insert).
    pub opened: Vec<Package>,
    /// Existing open packages that took some of its units (update).
    pub filled: Vec<Package>,
}

/// Packs `order` into `open_packages` (the open packages to its place; any
/// other package given is left alone) and new packages.
pub fn pack(
    order: &OrderToPack,
    existing: Option<&Shipment>,
    open_packages: Vec<Package>,
    providers: &TransportProviders,
    now: OffsetDateTime,
) -> Packing {
    if existing.is_some_and(|s| s.order_id() == order.order_id) {
        return Packing::AlreadyPacked;
    }
    let mut candidates: Vec<Package> = open_packages
        .into_iter()
        .filter(|p| p.is_open() && p.destination().same_place(&order.destination))
        .collect();
    candidates.sort_by_key(|p| (p.opened_at(), *p.id()));
    let existing_count = candidates.len();
    let mut touched = vec![false; existing_count];
    let mut unshippable = Vec::new();

    for item in &order.items {
        if let Some(problem) = invalid(item) {
            unshippable.push(UnshippableItem {
                sku: item.sku.clone(),
                quantity: item.quantity,
                reason: UnshippableReason::InvalidItem { problem },
            });
            continue;
        }
        let provider = match providers.choose(item.weight_grams, item.dimensions) {
            Ok(provider) => provider,
            Err(reason) => {
                unshippable.push(UnshippableItem {
                    sku: item.sku.clone(),
                    quantity: item.quantity,
                    reason,
                });
                continue;
            }
        };
        let units = |quantity| PackedItem {
            order_id: order.order_id,
            sku: item.sku.clone(),
            quantity,
            weight_grams: item.weight_grams,
            dimensions: item.dimensions,
        };
        let mut remaining = item.quantity;
        for (index, package) in candidates.iter_mut().enumerate() {
            let fit = package
                .units_that_fit(item.weight_grams, item.dimensions)
                .min(remaining);
            if fit > 0 && package.add(units(fit)).is_ok() {
                remaining -= fit;
                if let Some(flag) = touched.get_mut(index) {
                    *flag = true;
                }
            }
            if remaining == 0 {
                break;
            }
        }
        // The chosen provider carries one unit, so each new package takes
        // at least one and the loop ends.
        let per_package = u64::from(item.weight_grams).max(1);
        let capacity = u32::try_from(provider.max_weight_grams() / per_package)
            .unwrap_or(u32::MAX)
            .max(1);
        while remaining > 0 {
            let fit = capacity.min(remaining);
            match Package::open(
                Uuid::now_v7(),
                order.destination.clone(),
                provider,
                units(fit),
                now,
            ) {
                Ok(package) => candidates.push(package),
                Err(e) => {
                    // Unreachable while `choose` and `open` agree; recorded
                    // rather than lost if they ever do not.
                    unshippable.push(UnshippableItem {
                        sku: item.sku.clone(),
                        quantity: remaining,
                        reason: UnshippableReason::InvalidItem {
                            problem: e.to_string(),
                        },
                    });
                    break;
                }
            }
            remaining -= fit;
        }
    }

    let opened = candidates.split_off(existing_count);
    let filled: Vec<Package> = candidates
        .into_iter()
        .zip(touched)
        .filter_map(|(p, t)| t.then_some(p))
        .collect();
    let packages = filled.iter().chain(&opened).map(|p| *p.id()).collect();
    Packing::Packed(Box::new(Packed {
        shipment: Shipment::new(
            order.order_id,
            order.destination.clone(),
            packages,
            unshippable,
            now,
        ),
        opened,
        filled,
    }))
}

fn invalid(item: &ItemToPack) -> Option<String> {
    let d = item.dimensions;
    if item.quantity == 0 {
        Some("quantity must be at least 1".into())
    } else if item.weight_grams == 0 {
        Some("weight_grams must be greater than 0".into())
    } else if d.length_mm == 0 || d.width_mm == 0 || d.height_mm == 0 {
        Some(format!("dimensions must be greater than 0 (got {d})"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::package::tests::{address, now, providers};
    use crate::domain::transport::{ShippingConfig, TransportProviderConfig};

    fn item(sku: &str, quantity: u32, weight_grams: u32) -> ItemToPack {
        ItemToPack {
            sku: sku.into(),
            quantity,
            weight_grams,
            dimensions: Dimensions::new(300, 200, 100),
        }
    }

    fn order(street: &str, items: Vec<ItemToPack>) -> OrderToPack {
        OrderToPack {
            order_id: Uuid::now_v7(),
            destination: address(street),
            items,
        }
    }

    #[test]
    fn lightest_unit_ignores_items_that_cannot_be_packed() {
        let mut o = order("1 Main St", vec![item("A", 2, 900), item("B", 1, 300)]);
        assert_eq!(o.lightest_unit_grams(), Some(300));
        o.items[1].quantity = 0;
        assert_eq!(o.lightest_unit_grams(), Some(900));
        o.items[0].weight_grams = 0;
        assert_eq!(o.lightest_unit_grams(), None);
    }

    fn packed(outcome: Packing) -> Packed {
        match outcome {
            Packing::Packed(p) => *p,
            Packing::AlreadyPacked => panic!("expected the order to be packed"),
        }
    }

    /// Packs a new order into `open`.
    fn pack_new(p: &TransportProviders, order: OrderToPack, open: Vec<Package>) -> Packed {
        packed(pack(&order, None, open, p, now()))
    }

    /// Units of `order` per SKU over `packages`.
    fn units_of(order: &OrderToPack, packages: &[Package], sku: &str) -> u32 {
        packages
            .iter()
            .flat_map(|p| p.items())
            .filter(|i| i.order_id == order.order_id && i.sku == sku)
            .map(|i| i.quantity)
            .sum()
    }

    #[test]
    fn items_of_different_orders_to_the_same_place_share_a_package() {
        let p = providers(10_000);
        let first = order("1 Main St", vec![item("A", 2, 1_000)]);
        let a = packed(pack(&first, None, vec![], &p, now()));
        assert_eq!(a.opened.len(), 1);
        assert!(a.filled.is_empty());
        assert_eq!(a.shipment.packages(), [*a.opened[0].id()]);

        // Same place, written differently.
        let mut second = order("1  MAIN st", vec![item("B", 3, 2_000)]);
        second.destination = Address::new("ada", "1 main st", "london", "n1", "gb").unwrap();
        let b = packed(pack(&second, None, a.opened.clone(), &p, now()));
        assert!(b.opened.is_empty());
        assert_eq!(b.filled.len(), 1);
        let package = &b.filled[0];
        assert_eq!(*package.id(), *a.opened[0].id());
        assert_eq!(package.order_ids().len(), 2);
        assert_eq!(package.total_weight_grams(), 8_000);
    }

    #[test]
    fn another_place_gets_its_own_package() {
        let p = providers(10_000);
        let first = pack_new(&p, order("1 Main St", vec![item("A", 1, 1_000)]), vec![]);
        let other = pack_new(
            &p,
            order("9 Far Away", vec![item("B", 1, 1_000)]),
            first.opened.clone(),
        );
        assert_eq!(other.opened.len(), 1);
        assert!(other.filled.is_empty());
        assert_ne!(*other.opened[0].id(), *first.opened[0].id());
    }

    #[test]
    fn exactly_at_the_limit_stays_one_package_one_gram_over_opens_another() {
        let p = providers(10_000);
        let at_limit = order("1 Main St", vec![item("A", 4, 2_000), item("B", 1, 2_000)]);
        let one = packed(pack(&at_limit, None, vec![], &p, now()));
        assert_eq!(one.opened.len(), 1);
        assert_eq!(one.opened[0].total_weight_grams(), 10_000);

        let over = order("1 Main St", vec![item("A", 4, 2_000), item("B", 1, 2_001)]);
        let two = packed(pack(&over, None, vec![], &p, now()));
        assert_eq!(two.opened.len(), 2);
        assert_eq!(two.opened[0].total_weight_grams(), 8_000);
        assert_eq!(two.opened[1].total_weight_grams(), 2_001);

        // A full package takes nothing more, not even one gram.
        let next = order("1 Main St", vec![item("C", 1, 1)]);
        let three = packed(pack(&next, None, one.opened.clone(), &p, now()));
        assert!(three.filled.is_empty());
        assert_eq!(three.opened.len(), 1);
    }

    #[test]
    fn a_line_is_split_when_it_does_not_fit_whole() {
        let p = providers(10_000);
        let big = order("1 Main St", vec![item("A", 7, 3_000)]);
        let out = packed(pack(&big, None, vec![], &p, now()));
        let per_package: Vec<u32> = out.opened.iter().map(|p| p.items()[0].quantity).collect();
        assert_eq!(per_package, [3, 3, 1]);
        assert_eq!(units_of(&big, &out.opened, "A"), 7);
        assert!(out.opened.iter().all(|p| p.total_weight_grams() <= 10_000));
    }

    #[test]
    fn remaining_capacity_of_open_packages_is_used_first_oldest_first() {
        let p = providers(10_000);
        let a = pack_new(&p, order("1 Main St", vec![item("A", 1, 8_000)]), vec![]);
        let b = pack_new(
            &p,
            order("1 Main St", vec![item("B", 1, 7_000)]),
            a.opened.clone(),
        );
        assert_eq!(b.opened.len(), 1, "8 kg + 7 kg exceed 10 kg");
        let open = [a.opened.clone(), b.opened.clone()].concat();
        // 2 kg fit the first (8 kg) package, 3 kg the second (7 kg).
        let c_order = order("1 Main St", vec![item("C", 5, 1_000)]);
        let c = packed(pack(&c_order, None, open, &p, now()));
        assert!(c.opened.is_empty());
        assert_eq!(c.filled.len(), 2);
        assert_eq!(*c.filled[0].id(), *a.opened[0].id());
        assert_eq!(units_of(&c_order, &c.filled[..1], "C"), 2);
        assert_eq!(units_of(&c_order, &c.filled[1..], "C"), 3);
    }

    #[test]
    fn items_no_provider_can_carry_are_recorded_with_the_reason() {
        let p = providers(10_000);
        let mut huge = item("HUGE", 1, 100);
        huge.dimensions = Dimensions::new(5_000, 10, 10);
        let o = order(
            "1 Main St",
            vec![
                item("OK", 1, 500),
                item("HEAVY", 2, 10_001),
                huge,
                item("ZERO", 1, 0),
            ],
        );
        let out = packed(pack(&o, None, vec![], &p, now()));
        assert_eq!(units_of(&o, &out.opened, "OK"), 1);
        let reasons: Vec<(&str, u32, String)> = out
            .shipment
            .unshippable()
            .iter()
            .map(|u| (u.sku.as_str(), u.quantity, u.reason.to_string()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "HEAVY",
                    2,
                    "one unit weighs 10001 g; no transport provider takes more than 10000 g".into()
                ),
                (
                    "HUGE",
                    1,
                    "one unit measures 5000×10×10 mm; no transport provider takes an item that large"
                        .into()
                ),
                ("ZERO", 1, "invalid item: weight_grams must be greater than 0".into()),
            ]
        );
    }

    #[test]
    fn an_order_already_packed_is_not_packed_again() {
        let p = providers(10_000);
        let o = order("1 Main St", vec![item("A", 2, 1_000)]);
        let first = packed(pack(&o, None, vec![], &p, now()));
        let again = pack(&o, Some(&first.shipment), first.opened.clone(), &p, now());
        assert!(matches!(again, Packing::AlreadyPacked));
        assert_eq!(units_of(&o, &first.opened, "A"), 2);
    }

    #[test]
    fn sent_packages_and_items_the_provider_cannot_size_are_skipped() {
        let p = providers(10_000);
        let first = pack_new(&p, order("1 Main St", vec![item("A", 1, 1_000)]), vec![]);
        let mut sent = first.opened[0].clone();
        sent.send("T-1".into(), now()).unwrap();
        let next = pack_new(
            &p,
            order("1 Main St", vec![item("B", 1, 1_000)]),
            vec![sent],
        );
        assert!(next.filled.is_empty());
        assert_eq!(next.opened.len(), 1);
    }

    #[test]
    fn a_new_package_goes_with_the_largest_provider_that_can_carry() {
        let p = TransportProviders::from_config(&ShippingConfig {
            transport_providers: vec![
                TransportProviderConfig {
                    name: "parcel".into(),
                    max_weight_grams: 30_000,
                    max_dimensions_mm: Some([1200, 600, 600]),
                },
                TransportProviderConfig {
                    name: "long".into(),
                    max_weight_grams: 20_000,
                    max_dimensions_mm: Some([3000, 500, 500]),
                },
            ],
        })
        .unwrap();
        let mut skis = item("SKIS", 1, 4_000);
        skis.dimensions = Dimensions::new(1800, 200, 100);
        let o = order("1 Main St", vec![item("BOOT", 1, 2_000), skis]);
        let out = packed(pack(&o, None, vec![], &p, now()));
        let providers: Vec<&str> = out
            .opened
            .iter()
            .map(|p| p.transport_provider().name())
            .collect();
        // Boots go with the larger parcel provider; skis only fit `long`,
        // and the parcel package cannot take them.
        assert_eq!(providers, ["parcel", "long"]);
    }
}

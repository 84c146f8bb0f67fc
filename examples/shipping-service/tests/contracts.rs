//! Every event the shipping service publishes keeps its contract with the
//! consumers already running: each type against the payload recorded under
//! `tests/contracts/` — read backward, read tolerantly (unknown fields
//! ignored at every depth), and still carrying every recorded field
//! (forward). See `docs/event-contracts.md` for how to evolve one.

use std::path::PathBuf;

use chassis_testing::contracts::check_event_contract;
use shipping_service_client::cancellation::{ShipmentCancellationRefused, ShipmentCancelled};
use shipping_service_client::dto::UnshippableItem;
use shipping_service_client::quote::{Quote, QuotedPackage};
use uuid::Uuid;

fn recorded() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/contracts")
}

fn order_id() -> Uuid {
    Uuid::from_u128(0x0199_a1b2_0000_7000_8000_0000_0000_0002)
}

#[test]
fn shipment_cancelled() {
    check_event_contract(
        recorded(),
        &ShipmentCancelled {
            order_id: order_id(),
            released_units: 1,
            discarded_packages: vec![Uuid::from_u128(0xb1)],
        },
    );
}

#[test]
fn shipment_cancellation_refused() {
    check_event_contract(
        recorded(),
        &ShipmentCancellationRefused {
            order_id: order_id(),
            reason: "sent".into(),
            sent_packages: vec![Uuid::from_u128(0xb2)],
        },
    );
}

#[test]
fn quote_result() {
    check_event_contract(
        recorded(),
        &Quote {
            transport_provider: Some("freight-co".into()),
            package_count: 1,
            packages: vec![QuotedPackage {
                transport_provider: "freight-co".into(),
                weight_grams: 25_000,
                units: 1,
            }],
            unshippable: vec![UnshippableItem {
                sku: "ROCKET".into(),
                quantity: 1,
                reason: "too long".into(),
            }],
        },
    );
}

//! Every event the order service publishes keeps its contract with the
//! consumers already running: each type against the payload recorded under
//! `tests/contracts/` — read backward, read tolerantly (unknown fields
//! ignored at every depth), and still carrying every recorded field
//! (forward). See `docs/event-contracts.md` for how to evolve one.

use std::path::PathBuf;

use chassis_testing::contracts::check_event_contract;
use order_service_client::cancellation::{OrderCancellationRequested, OrderCancellationWithdrawn};
use order_service_client::events::{Destination, ItemToShip, OrderCompleted};
use shipping_service_client::quote::{self, QuoteItem, QuoteRequest};
use time::macros::datetime;
use uuid::Uuid;

fn recorded() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/contracts")
}

fn order_id() -> Uuid {
    Uuid::from_u128(0x0199_a1b2_0000_7000_8000_0000_0000_0002)
}

#[test]
fn order_completed() {
    check_event_contract(
        recorded(),
        &OrderCompleted {
            order_id: order_id(),
            destination: Destination {
                name: "Grace Hopper".into(),
                street: "1 Navy Way".into(),
                city: "Arlington".into(),
                postal_code: "22202".into(),
                country: "US".into(),
            },
            items: vec![ItemToShip {
                sku: "DESK-02".into(),
                quantity: 1,
                weight_grams: 25_000,
                length_mm: 1200,
                width_mm: 600,
                height_mm: 80,
            }],
            completed_at: datetime!(2026-12-06 09:00:00 UTC),
        },
    );
}

#[test]
fn order_cancellation_requested() {
    check_event_contract(
        recorded(),
        &OrderCancellationRequested {
            order_id: order_id(),
            attempt: 2,
            requested_at: datetime!(2026-12-06 09:05:00 UTC),
        },
    );
}

#[test]
fn order_cancellation_withdrawn() {
    check_event_contract(
        recorded(),
        &OrderCancellationWithdrawn {
            order_id: order_id(),
            reason: "shipping did not answer".into(),
        },
    );
}

#[test]
fn shipping_quote_request() {
    check_event_contract(
        recorded(),
        &QuoteRequest {
            destination: quote::Destination {
                name: "Grace Hopper".into(),
                street: "1 Navy Way".into(),
                city: "Arlington".into(),
                postal_code: "22202".into(),
                country: "US".into(),
            },
            items: vec![QuoteItem {
                sku: "DESK-02".into(),
                quantity: 1,
                weight_grams: 25_000,
                length_mm: 1200,
                width_mm: 600,
                height_mm: 80,
            }],
        },
    );
}

//! Helpers shared by the shop-demo tests.

// Each test binary uses a part of these.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::process::Command;

pub mod processes;

use uuid::Uuid;

/// The broker helpers every broker test of the workspace shares: a vhost per
/// test holding the broker lock (shared, or exclusive for a test that stops
/// the broker) and the guard that always starts a stopped broker again.
pub use chassis_testing::rabbitmq::{BrokerStopped, Vhost};

/// The local PostgreSQL the tests use (trust authentication).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL schemas of one test (order service first, shipping
/// second), dropped on drop, pass or fail.
pub struct Schemas(pub [String; 2]);

impl Schemas {
    /// Two fresh schema names starting with `prefix`.
    pub fn new(prefix: &str) -> Self {
        let id = &Uuid::new_v4().simple().to_string()[..12];
        Self([
            format!("orders_{prefix}_{id}"),
            format!("shipping_{prefix}_{id}"),
        ])
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        for schema in &self.0 {
            let _ = Command::new("psql")
                .args([
                    POSTGRES_URL,
                    "-c",
                    &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                ])
                .output();
        }
    }
}

/// A destination in `city` (the same customer for every test order).
pub fn destination_in(city: &str) -> order_service_client::dto::Destination {
    order_service_client::dto::Destination {
        name: "Ada".into(),
        street: "1 Main St".into(),
        city: city.into(),
        postal_code: "N1".into(),
        country: "GB".into(),
    }
}

/// The destination of the quote tests.
pub fn destination() -> order_service_client::dto::Destination {
    destination_in("London")
}

/// `quantity` 12 kg lamps to [`destination`]: three make two packages by
/// shipping's rules (see its crate docs).
pub fn lamps(quantity: i64) -> order_service_client::quote::QuoteOrderRequest {
    order_service_client::quote::QuoteOrderRequest {
        destination: destination(),
        items: vec![order_service_client::quote::QuoteLine {
            sku: "LAMP".into(),
            quantity,
            weight_grams: 12_000,
            length_mm: 400,
            width_mm: 300,
            height_mm: 300,
        }],
    }
}

/// An order of the three lamps of [`lamps`].
pub fn lamp_order() -> order_service_client::dto::PlaceOrderRequest {
    order_service_client::dto::PlaceOrderRequest {
        customer_id: "c-1".into(),
        destination: destination(),
        items: vec![order_service_client::dto::OrderItem {
            sku: "LAMP".into(),
            name: "Lamp".into(),
            unit_price_cents: 4_999,
            quantity: 3,
            weight_grams: 12_000,
            length_mm: 400,
            width_mm: 300,
            height_mm: 300,
        }],
    }
}

/// An order of `quantity` 1 kg boxes to `city`.
pub fn box_order(city: &str, quantity: i64) -> order_service_client::dto::PlaceOrderRequest {
    order_service_client::dto::PlaceOrderRequest {
        customer_id: "c-1".into(),
        destination: destination_in(city),
        items: vec![order_service_client::dto::OrderItem {
            sku: "BOX".into(),
            name: "Box".into(),
            unit_price_cents: 100,
            quantity,
            weight_grams: 1_000,
            length_mm: 100,
            width_mm: 100,
            height_mm: 100,
        }],
    }
}

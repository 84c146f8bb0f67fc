//! Helpers shared by the shop-demo tests.

// Each test binary uses a part of these.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::process::Command;

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

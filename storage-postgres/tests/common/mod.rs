//! Helpers shared by the PostgreSQL integration tests: every test works in a
//! schema of its own, created fresh and dropped at the end, so tests run in
//! parallel against the one local server.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use storage_abstractions::Store;
use storage_conformance::StoreFactory;
use storage_postgres::{PostgresConfig, PostgresStore};

/// The local test server (trust authentication).
pub const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A new, unused schema name.
pub fn unique_schema() -> String {
    format!("t_{}", uuid::Uuid::new_v4().simple())
}

/// Config for a store in `schema` with a small pool.
pub fn config(schema: &str) -> PostgresConfig {
    PostgresConfig {
        url: URL.into(),
        schema: schema.into(),
        max_connections: 3,
        acquire_timeout: Duration::from_secs(10),
        ..PostgresConfig::default()
    }
}

/// Connects to `schema` (migrating it); a missing server fails the test.
pub async fn connect(schema: &str) -> PostgresStore {
    PostgresStore::connect(&config(schema))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {URL} is required for this test: {e}"))
}

/// Drops `schema` and everything in it.
pub async fn drop_schema(schema: &str) {
    let mut conn = PgConnection::connect(URL)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {URL}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&mut conn)
    .await
    .expect("drop schema");
    conn.close().await.ok();
}

/// Each store in a fresh schema; `dispose` shuts it down and drops it.
#[derive(Default)]
pub struct FreshSchemas {
    schemas: parking_lot::Mutex<HashMap<usize, String>>,
}

fn key(store: &Arc<dyn Store>) -> usize {
    Arc::as_ptr(store).cast::<()>() as usize
}

#[async_trait::async_trait]
impl StoreFactory for FreshSchemas {
    async fn create(&self) -> Arc<dyn Store> {
        let schema = unique_schema();
        let store: Arc<dyn Store> = Arc::new(connect(&schema).await);
        self.schemas.lock().insert(key(&store), schema);
        store
    }

    async fn dispose(&self, store: Arc<dyn Store>) {
        store.shutdown().await;
        let schema = self.schemas.lock().remove(&key(&store));
        if let Some(schema) = schema {
            drop_schema(&schema).await;
        }
    }
}

/// A fresh schema name that is dropped (with everything in it) when the
/// guard goes out of scope, also when the test panics.
pub struct TestSchema(String);

impl TestSchema {
    pub fn new() -> Self {
        Self(unique_schema())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for TestSchema {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TestSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop cannot await: run the cleanup on a runtime of its own.
        let schema = self.0.clone();
        let cleanup = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime")
                .block_on(drop_schema(&schema));
        });
        if cleanup.join().is_err() && !std::thread::panicking() {
            panic!("dropping test schema {} failed", self.0);
        }
    }
}

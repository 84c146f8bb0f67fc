//! `storage.provider = "postgres"` against the local server (needs feature
//! `postgres`: `cargo test -p storage-init --features postgres`).
#![cfg(feature = "postgres")]

use std::sync::Arc;

use chassis_core::config::{ConfigSource, InvalidValue, JsonSource};
use sqlx::{Connection, PgConnection};
use storage_abstractions::{Record, StorageConfig, Store};
use storage_init::StorageInitError;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Builds from a `[storage]` section with `provider = "postgres"` and
/// `postgres` as its `[storage.postgres]` (the test's URL unless given).
async fn build(postgres: serde_json::Value) -> Result<Arc<dyn Store>, StorageInitError> {
    let mut section = serde_json::json!({"url": URL, "max_connections": 2});
    section
        .as_object_mut()
        .unwrap()
        .extend(postgres.as_object().unwrap().clone());
    let source = JsonSource::new(
        serde_json::json!({"storage": {"provider": "postgres", "postgres": section}}),
    );
    let config: StorageConfig = source.read("storage").unwrap();
    storage_init::build(&config, &source).await
}

#[tokio::test]
async fn builds_postgres_from_config() {
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let store = build(serde_json::json!({"schema": schema}))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {URL} is required: {e}"));
    assert_eq!(store.provider(), "postgres");
    let mut tx = store.begin().await.unwrap();
    tx.insert(Record::new("orders", "o-1", serde_json::json!({"n": 1})))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.shutdown().await;

    let mut conn = PgConnection::connect(URL).await.unwrap();
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".records"
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(count, 1, "the record landed in the configured schema");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn failures_are_reported_by_kind() {
    let error = build(serde_json::json!({
        "url": "postgres://postgres@127.0.0.1:1/test",
        "retry_attempts": 1,
        "acquire_timeout": "1s",
    }))
    .await
    .err()
    .unwrap();
    assert!(
        matches!(
            error,
            StorageInitError::ProviderFailed {
                provider: "postgres",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("127.0.0.1:1/test"), "{error}");

    match build(serde_json::json!({"url": "postgres://127.0.0.1:notaport/test"}))
        .await
        .err()
        .unwrap()
    {
        StorageInitError::InvalidConfig(InvalidValue { key, layer, .. }) => {
            assert_eq!(key, "storage.postgres.url");
            assert_eq!(layer.as_deref(), Some("override in code"));
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }

    match build(serde_json::json!({"schema": "Bad-Schema"}))
        .await
        .err()
        .unwrap()
    {
        StorageInitError::InvalidConfig(error) => assert_eq!(
            error.to_string(),
            "storage.postgres.schema: expected an identifier of [a-z0-9_] starting with a letter \
             or `_`, at most 63 characters, found `Bad-Schema` (from override in code)"
        ),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

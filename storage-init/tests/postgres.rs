//! `storage.provider = "postgres"` against the local server (needs feature
//! `postgres`: `cargo test -p storage-init --features postgres`).
#![cfg(feature = "postgres")]

use std::time::Duration;

use chassis_core::config::InvalidValue;
use sqlx::{Connection, PgConnection};
use storage_abstractions::{Record, StorageConfig};
use storage_init::StorageInitError;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn config(schema: &str) -> StorageConfig {
    let mut config = StorageConfig {
        provider: "postgres".into(),
        ..StorageConfig::default()
    };
    config.postgres.url = URL.into();
    config.postgres.schema = schema.into();
    config.postgres.max_connections = 2;
    config
}

#[tokio::test]
async fn builds_postgres_from_config() {
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let store = storage_init::build(&config(&schema))
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
    let mut unreachable = config("unused");
    unreachable.postgres.url = "postgres://postgres@127.0.0.1:1/test".into();
    unreachable.postgres.retry_attempts = 1;
    unreachable.postgres.acquire_timeout = Duration::from_secs(1);
    let error = storage_init::build(&unreachable).await.err().unwrap();
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

    let mut bad_url = config("unused");
    bad_url.postgres.url = "postgres://127.0.0.1:notaport/test".into();
    match storage_init::build(&bad_url).await.err().unwrap() {
        StorageInitError::InvalidConfig(InvalidValue { key, .. }) => {
            assert_eq!(key, "storage.postgres.url")
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }

    let mut bad_schema = config("Bad-Schema");
    bad_schema.postgres.schema = "Bad-Schema".into();
    match storage_init::build(&bad_schema).await.err().unwrap() {
        StorageInitError::InvalidConfig(InvalidValue { key, .. }) => {
            assert_eq!(key, "storage.postgres.schema")
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

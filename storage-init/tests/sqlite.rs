//! `storage.provider = "sqlite"` (needs feature `sqlite`:
//! `cargo test -p storage-init --features sqlite`).
#![cfg(feature = "sqlite")]

use std::sync::Arc;

use chassis_core::config::{ConfigSource, InvalidValue, JsonSource};
use storage_abstractions::{Migration, MigrationError, Record, StorageConfig, Store};
use storage_init::StorageInitError;

/// Builds from a `[storage]` section with `provider = "sqlite"` and
/// `section` as its `[storage.sqlite]`.
async fn build(section: serde_json::Value) -> Result<Arc<dyn Store>, StorageInitError> {
    let source =
        JsonSource::new(serde_json::json!({"storage": {"provider": "sqlite", "sqlite": section}}));
    let config: StorageConfig = source.read("storage").unwrap();
    storage_init::build(&config, &source).await
}

#[tokio::test]
async fn builds_a_private_database_by_default() {
    let store = build(serde_json::json!({})).await.unwrap();
    assert_eq!(store.provider(), "sqlite");
    assert!(store.has_sql());
    let mut tx = store.begin().await.unwrap();
    tx.insert(Record::new("orders", "o-1", serde_json::json!({})))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.shutdown().await;
}

#[tokio::test]
async fn a_file_keeps_the_data_across_restarts() {
    let dir = std::env::temp_dir().join(format!("chassis-init-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("service.db");
    let section = serde_json::json!({ "path": path });
    let migrations = [Migration::new(1, "notes", "CREATE TABLE notes (id bigint)")];
    let store = build(section.clone()).await.unwrap();
    assert_eq!(store.apply_migrations(&migrations).await.unwrap(), [1]);
    let mut tx = store.begin().await.unwrap();
    tx.insert(Record::new("orders", "o-1", serde_json::json!({"n": 1})))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.shutdown().await;

    let store = build(section).await.unwrap();
    assert!(
        store
            .apply_migrations(&migrations)
            .await
            .unwrap()
            .is_empty()
    );
    let mut tx = store.begin().await.unwrap();
    assert!(tx.get("orders", "o-1").await.unwrap().is_some(), "kept");
    tx.rollback().await.unwrap();
    store.shutdown().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn bad_input_fails_with_one_clear_line() {
    // A key the provider does not know, and a value out of range.
    match build(serde_json::json!({"file": "x"})).await {
        Err(StorageInitError::InvalidConfig(InvalidValue {
            key,
            expected,
            layer,
            ..
        })) => {
            assert_eq!(key, "storage.sqlite");
            assert!(expected.contains("unknown field `file`"), "{expected}");
            assert_eq!(layer.as_deref(), Some("override in code"));
        }
        other => panic!("expected InvalidConfig, got {:?}", other.err()),
    }
    match build(serde_json::json!({"max_connections": 0})).await {
        Err(StorageInitError::InvalidConfig(error)) => assert_eq!(
            error.to_string(),
            "storage.sqlite.max_connections: expected an integer >= 1 (from override in code)"
        ),
        other => panic!("expected InvalidConfig, got {:?}", other.err()),
    }
    // A file that cannot be opened: its directory does not exist.
    let error = build(serde_json::json!({
        "path": "/nonexistent-chassis-dir/service.db"
    }))
    .await
    .err()
    .unwrap();
    let message = error.to_string();
    assert!(
        message.contains("/nonexistent-chassis-dir/service.db") && !message.contains('\n'),
        "{message}"
    );
    // A file that is not a database.
    let junk = std::env::temp_dir().join(format!("chassis-junk-{}.db", uuid::Uuid::new_v4()));
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let error = build(serde_json::json!({ "path": junk }))
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("not a database"), "{error}");
    std::fs::remove_file(junk).unwrap();
}

#[cfg(feature = "inmemory")]
#[tokio::test]
async fn tables_on_the_inmemory_provider_name_the_fix() {
    let store = storage_init::build(&StorageConfig::default(), &chassis_core::config::Defaults)
        .await
        .unwrap();
    assert!(!store.has_sql());
    let error = store
        .apply_migrations(&[Migration::new(1, "notes", "CREATE TABLE notes (id bigint)")])
        .await
        .unwrap_err();
    assert_eq!(
        error,
        MigrationError::NotSupported {
            provider: "inmemory"
        }
    );
    assert!(
        error.to_string().contains("storage.provider = \"sqlite\""),
        "{error}"
    );
}

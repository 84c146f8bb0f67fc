//! The outbox, inbox and repository scenarios on the real PostgreSQL at
//! 127.0.0.1:5432 (user `postgres`, database `test`). Each test works in its
//! own fresh schema, dropped at the end. A missing server fails the tests.

mod common;

use std::sync::Arc;

use sqlx::Connection;
use storage_postgres::{PostgresConfig, PostgresStore};

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn fixture() -> common::Fixture {
    let schema = format!("chassis_storage_{}", uuid::Uuid::new_v4().simple());
    let config = PostgresConfig {
        url: URL.into(),
        schema: schema.clone(),
        max_connections: 6,
        ..PostgresConfig::default()
    };
    let store = PostgresStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {URL} is required for these tests: {e}"));
    common::Fixture {
        store: Arc::new(store),
        cleanup: Box::pin(async move {
            let mut conn = sqlx::PgConnection::connect(URL)
                .await
                .expect("connect to drop the test schema");
            // The schema name is generated above from a uuid: safe to inline.
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut conn)
                .await
                .expect("drop the test schema");
        }),
    }
}

outbox_suite!(fixture);

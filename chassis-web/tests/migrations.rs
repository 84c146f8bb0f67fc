//! A service's own migrations at start-up: applied before the service
//! serves, a failure stops start-up naming the migration and the error, a
//! provider without SQL stops it naming the fix, `--migrate-only` applies
//! them and exits.

mod common;

use chassis_web::StartupError;
use common::{TempDir, isolated};
use storage_abstractions::Migration;

static NOTES: &[Migration] = &[Migration::new(
    1,
    "notes",
    "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)",
)];

#[tokio::test]
async fn tables_on_the_inmemory_provider_fail_start_up_naming_the_fix() {
    let dir = TempDir::new();
    let error = isolated("migrations-test", &dir)
        .migrations(NOTES)
        .start()
        .await
        .expect_err("start-up must fail");
    assert!(matches!(error, StartupError::Migrations(_)), "{error:?}");
    let message = error.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        message.contains("storage.provider = `inmemory`")
            && message.contains("storage.provider = \"sqlite\""),
        "{message}"
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    fn on_file<'a>(dir: &'a TempDir, db: &'a std::path::Path) -> chassis_web::ServiceHostBuilder {
        isolated("migrations-test", dir)
            .config("storage.provider", "sqlite")
            .config("storage.sqlite.path", db.display().to_string())
    }

    #[tokio::test]
    async fn a_failed_migration_stops_start_up_naming_it_and_leaves_nothing() {
        static BROKEN: &[Migration] = &[
            Migration::new(1, "notes", "CREATE TABLE notes (id bigint PRIMARY KEY)"),
            Migration::new(
                2,
                "tags",
                "CREATE TABLE tags (id bigint); ALTER TABLE no_such_table ADD COLUMN x text;",
            ),
        ];
        let dir = TempDir::new();
        let db = dir.path().join("service.db");
        let error = on_file(&dir, &db)
            .migrations(BROKEN)
            .start()
            .await
            .expect_err("start-up must fail");
        let message = error.to_string();
        assert!(
            message.starts_with("storage: migration 2 (tags) failed:")
                && message.contains("no_such_table")
                && !message.contains('\n'),
            "{message}"
        );
        // Migration 1 stays applied, nothing of 2 does: a fixed binary goes on.
        static FIXED: &[Migration] = &[
            Migration::new(1, "notes", "CREATE TABLE notes (id bigint PRIMARY KEY)"),
            Migration::new(2, "tags", "CREATE TABLE tags (id bigint)"),
        ];
        let applied = on_file(&dir, &db).migrations(FIXED).migrate_only().await;
        assert_eq!(applied.unwrap(), [2]);
    }

    #[tokio::test]
    async fn migrate_only_applies_and_exits_then_start_finds_nothing_to_do() {
        let dir = TempDir::new();
        let db = dir.path().join("service.db");
        let code = on_file(&dir, &db)
            .migrations(NOTES)
            .args([chassis_web::MIGRATE_ONLY_FLAG])
            .run()
            .await;
        assert_eq!(code, std::process::ExitCode::SUCCESS);
        assert!(db.exists(), "the database file was created");
        let applied = on_file(&dir, &db).migrations(NOTES).migrate_only().await;
        assert_eq!(applied.unwrap(), Vec::<i64>::new(), "applied once");

        let running = on_file(&dir, &db)
            .migrations(NOTES)
            .start()
            .await
            .expect("starts on the migrated file");
        let store = running.context().store().clone();
        let mut tx = store.begin().await.unwrap();
        let inserted = chassis_storage::Sql::of(tx.as_mut())
            .unwrap()
            .query("INSERT INTO notes (id, body) VALUES ($1, $2)")
            .bind(1)
            .bind("hello")
            .execute()
            .await
            .unwrap();
        assert_eq!(inserted, 1);
        tx.commit().await.unwrap();
        running.shutdown_handle().trigger();
        running.wait().await.unwrap();
    }
}

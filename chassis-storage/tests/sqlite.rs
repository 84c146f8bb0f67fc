//! The outbox, inbox and repository scenarios on SQLite: a private
//! database (the default) and a file.
//!
//! All but `late_commit_is_not_skipped`: there a unit of work that has
//! written a record stays open while a second one writes and commits, which
//! SQLite's single writer cannot do (the second fails as a conflict until
//! the first ends). Commits are serial on SQLite, so outbox sequences follow
//! commit order; the conformance case
//! `outbox_out_of_order_commits_never_skipped` still runs on it (outbox rows
//! are written at commit).

mod common;

use std::sync::Arc;

use storage_sqlite::{SqliteConfig, SqliteStore};

/// The suite without `late_commit_is_not_skipped` (see above).
macro_rules! sqlite_suite {
    () => {
        outbox_suite!(fixture;
            command_commits_aggregate_and_events_atomically,
            rollback_publishes_nothing,
            relay_publishes_in_order_per_aggregate,
            relay_restarted_mid_batch_loses_nothing,
            bus_down_backs_off_then_delivers,
            drain_publishes_until_empty_or_deadline,
            poison_message_quarantined_while_others_flow,
            same_message_twice_has_one_effect,
            repository_crud_concurrency_and_paging,
            backlog_health_check,
            housekeeping_purges_sent_rows_and_inbox_marks,
        );
    };
}

async fn open(config: SqliteConfig) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(&config).await.expect("open SQLite"))
}

mod private {
    use super::*;

    async fn fixture() -> common::Fixture {
        common::Fixture {
            store: open(SqliteConfig::default()).await,
            cleanup: Box::pin(async {}),
        }
    }

    sqlite_suite!();
}

mod file {
    use super::*;

    async fn fixture() -> common::Fixture {
        let dir = std::env::temp_dir().join(format!("chassis-storage-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let config = SqliteConfig {
            path: Some(dir.join("service.db")),
            ..SqliteConfig::default()
        };
        common::Fixture {
            store: open(config).await,
            cleanup: Box::pin(async move {
                std::fs::remove_dir_all(dir).expect("remove the test database");
            }),
        }
    }

    sqlite_suite!();
}

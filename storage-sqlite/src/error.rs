//! Errors of opening a store, and the mapping of sqlx errors to [`StorageError`].

use storage_abstractions::StorageError;
use thiserror::Error;

/// Why [`crate::SqliteStore::open`] failed.
#[derive(Debug, Error)]
pub enum SqliteError {
    /// A configuration value is invalid.
    #[error(transparent)]
    InvalidConfig(#[from] chassis_core::config::InvalidValue),
    /// The database could not be opened (missing directory, no permission,
    /// not a database, locked by another process).
    #[error("cannot open the SQLite database {target}: {source}")]
    Open {
        /// The file, or `memory`.
        target: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Another process has the database file open (one process per file).
    #[error(
        "the SQLite database {database} is in use by {holder} (lock file {lock}): one process per \
         database file; stop the other one or set another storage.sqlite.path"
    )]
    Locked {
        /// The database file.
        database: String,
        /// Who holds it: `process <pid>`, or `another process`.
        holder: String,
        /// The lock file.
        lock: String,
    },
    /// The lock file next to the database cannot be created or locked
    /// (no permission, read-only directory).
    #[error("cannot lock the SQLite database through {path}: {source}")]
    LockFile {
        /// The lock file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An embedded migration of the chassis failed; nothing of it was applied.
    #[error("chassis migration {version} ({name}) on {target} failed: {source}")]
    Migration {
        /// Migration number.
        version: i64,
        /// Migration name.
        name: &'static str,
        /// The file, or `memory`.
        target: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

/// SQLite result codes after which the same work may succeed when retried:
/// the single write lock was held by another connection (`SQLITE_BUSY`,
/// `SQLITE_LOCKED` and their extended codes).
pub(crate) fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}

/// Maps a driver error; lock contention becomes [`StorageError::Unavailable`]
/// (writes turn it into a conflict, see `transaction.rs`).
pub(crate) fn map(error: sqlx::Error) -> StorageError {
    if is_busy(&error) {
        return StorageError::Unavailable(format!("SQLite database is busy: {error}"));
    }
    match &error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            StorageError::Unavailable(format!("SQLite: {error}"))
        }
        _ => StorageError::Backend(format!("SQLite: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_errors_are_unavailable() {
        assert!(matches!(
            map(sqlx::Error::PoolTimedOut),
            StorageError::Unavailable(_)
        ));
        assert!(matches!(
            map(sqlx::Error::RowNotFound),
            StorageError::Backend(_)
        ));
        assert!(!is_busy(&sqlx::Error::RowNotFound));
    }
}

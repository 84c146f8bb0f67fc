//! Errors of connecting, and the mapping of sqlx errors to [`StorageError`].

use storage_abstractions::StorageError;
use thiserror::Error;

/// Why [`crate::PostgresStore::connect`] failed.
#[derive(Debug, Error)]
pub enum PostgresError {
    /// A configuration value is invalid (key path and expectation).
    #[error(transparent)]
    InvalidConfig(chassis_core::config::InvalidValue),
    /// `storage.postgres.url` is not a PostgreSQL connection URL.
    #[error("storage.postgres.url: expected a URL like postgres://user@host:5432/database: {0}")]
    InvalidUrl(String),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        /// `host:port/database` (never the password).
        target: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// An embedded migration failed; nothing of it was applied.
    #[error("migration {version} ({name}) into schema `{schema}` failed: {source}")]
    Migration {
        /// Migration number.
        version: i64,
        /// Migration name.
        name: &'static str,
        /// Target schema.
        schema: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

/// SQLSTATE codes after which the same operation may succeed when retried.
fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "40001" // serialization_failure
            | "40P01" // deadlock_detected
            | "55P03" // lock_not_available
            | "57014" // query_canceled (statement timeout)
            | "57P01" // admin_shutdown
            | "57P02" // crash_shutdown
            | "57P03" // cannot_connect_now
            | "53300" // too_many_connections
    ) || code.starts_with("08") // connection exceptions
}

/// Maps a driver error; transient ones become [`StorageError::Unavailable`].
pub(crate) fn map(error: sqlx::Error) -> StorageError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if is_transient_code(&code) {
                StorageError::Unavailable(format!("PostgreSQL {code}: {}", db.message()))
            } else {
                StorageError::Backend(format!("PostgreSQL {code}: {}", db.message()))
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => {
            StorageError::Unavailable(format!("PostgreSQL unreachable: {error}"))
        }
        _ => StorageError::Backend(format!("PostgreSQL: {error}")),
    }
}

/// Whether retrying `error` (after a pause) is worthwhile: connection losses,
/// serialization failures and deadlocks. An exhausted or closed pool is not
/// retried: acquiring already waited `acquire_timeout`, and a closed pool
/// stays closed.
pub(crate) fn is_retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_transient_code(&c)),
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::BeginFailed => true,
        _ => false,
    }
}

/// Whether `error` says the connection itself is gone (the server closed it,
/// restarted or terminated its session), rather than a statement failing.
pub(crate) fn is_connection_loss(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        for code in [
            "40001", "40P01", "57014", "08006", "08001", "57P01", "53300",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02", ""] {
            assert!(!is_transient_code(code), "{code}");
        }
    }

    #[test]
    fn connection_errors_are_unavailable_and_retryable() {
        let io = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(map(io()), StorageError::Unavailable(_)));
        assert!(is_retryable(&io()));
        assert!(is_connection_loss(&io()));
        assert!(!is_connection_loss(&sqlx::Error::PoolTimedOut));
        assert!(!is_connection_loss(&sqlx::Error::RowNotFound));
        assert!(matches!(
            map(sqlx::Error::PoolTimedOut),
            StorageError::Unavailable(_)
        ));
        assert!(!is_retryable(&sqlx::Error::PoolTimedOut));
        assert!(!is_retryable(&sqlx::Error::PoolClosed));
        assert!(matches!(
            map(sqlx::Error::RowNotFound),
            StorageError::Backend(_)
        ));
    }
}

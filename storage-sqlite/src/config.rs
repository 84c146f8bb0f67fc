//! The `storage.sqlite` section: owned, defaulted and validated here.

use std::path::PathBuf;
use std::time::Duration;

use chassis_core::config::InvalidValue;
use serde::{Deserialize, Serialize};

/// SQLite settings (`[storage.sqlite]`).
///
/// ```toml
/// [storage]
/// provider = "sqlite"
/// [storage.sqlite]
/// path = "/var/lib/shipping/shipping.db"   # omit for a private database
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file (created if missing, in WAL mode). Unset: a
    /// private database of this store, gone at shutdown.
    pub path: Option<PathBuf>,
    /// Pool size: units of work open at the same time (SQLite has one
    /// writer at a time; readers never wait for it).
    pub max_connections: u32,
    /// Longest wait for a pooled connection.
    #[serde(with = "chassis_core::duration")]
    pub acquire_timeout: Duration,
    /// How long a statement waits for another connection's write lock
    /// before it fails (as a conflict the unit of work is retried on).
    #[serde(with = "chassis_core::duration")]
    pub busy_timeout: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            path: None,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SqliteConfig {
    /// Where the section sits in the configuration.
    pub const SECTION: &'static str = "storage.sqlite";

    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if self.max_connections == 0 {
            return Err(InvalidValue::new(
                "storage.sqlite.max_connections",
                "an integer >= 1",
            ));
        }
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(InvalidValue::new(
                "storage.sqlite.path",
                "a file path (leave the key out for a private database)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chassis_core::config::{ConfigSource, Defaults, JsonSource};

    use super::*;

    fn read(section: serde_json::Value) -> Result<SqliteConfig, InvalidValue> {
        JsonSource::new(serde_json::json!({"storage": {"sqlite": section}}))
            .read_valid(SqliteConfig::SECTION, SqliteConfig::validate)
    }

    #[test]
    fn defaults_are_a_private_database() {
        let config = Defaults
            .read_valid(SqliteConfig::SECTION, SqliteConfig::validate)
            .unwrap();
        assert_eq!(config, SqliteConfig::default());
        assert_eq!(config.path, None);
    }

    #[test]
    fn keys_are_read_and_checked_naming_key_and_layer() {
        let config =
            read(serde_json::json!({"path": "/tmp/x.db", "busy_timeout": "250ms"})).unwrap();
        assert_eq!(
            config.path.as_deref(),
            Some(std::path::Path::new("/tmp/x.db"))
        );
        assert_eq!(config.busy_timeout, Duration::from_millis(250));

        let error = read(serde_json::json!({"max_connections": 0})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "storage.sqlite.max_connections: expected an integer >= 1 (from override in code)"
        );
        let error = read(serde_json::json!({"path": ""})).unwrap_err();
        assert_eq!(error.key, "storage.sqlite.path");
        assert_eq!(error.layer.as_deref(), Some("override in code"));
        let error = read(serde_json::json!({"file": "x"})).unwrap_err();
        assert!(error.to_string().contains("file"), "{error}");
    }
}

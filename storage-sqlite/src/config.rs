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
    /// Reads the subsection `storage-init` hands over (the keys under
    /// `storage.sqlite`, as read), fills defaults and validates.
    pub fn from_section(
        section: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, InvalidValue> {
        let config: SqliteConfig =
            serde_json::from_value(serde_json::Value::Object(section.clone())).map_err(|e| {
                InvalidValue::new("storage.sqlite", format!("a valid SQLite section: {e}"))
            })?;
        config.validate()?;
        Ok(config)
    }

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
    use super::*;

    fn section(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_are_in_memory() {
        let config = SqliteConfig::from_section(&serde_json::Map::new()).unwrap();
        assert_eq!(config, SqliteConfig::default());
        assert_eq!(config.path, None);
    }

    #[test]
    fn keys_are_read_and_checked() {
        let config = SqliteConfig::from_section(&section(serde_json::json!({
            "path": "/tmp/x.db", "busy_timeout": "250ms"
        })))
        .unwrap();
        assert_eq!(
            config.path.as_deref(),
            Some(std::path::Path::new("/tmp/x.db"))
        );
        assert_eq!(config.busy_timeout, Duration::from_millis(250));

        let error = SqliteConfig::from_section(&section(serde_json::json!({"max_connections": 0})))
            .unwrap_err();
        assert_eq!(error.key, "storage.sqlite.max_connections");
        let error =
            SqliteConfig::from_section(&section(serde_json::json!({"path": ""}))).unwrap_err();
        assert_eq!(error.key, "storage.sqlite.path");
        let error =
            SqliteConfig::from_section(&section(serde_json::json!({"file": "x"}))).unwrap_err();
        assert_eq!(error.key, "storage.sqlite");
        assert!(error.expected.contains("file"), "{}", error.expected);
    }
}

use std::time::Duration;

use chassis_core::Secret;
use chassis_core::config::InvalidValue;
use serde::{Deserialize, Serialize};

/// The `storage` section of the chassis configuration.
///
/// ```toml
/// [storage]
/// provider = "postgres"          # or "sqlite", "inmemory"
/// [storage.postgres]
/// url = "postgres://app@db:5432/orders"
/// # password from CHASSIS__STORAGE__POSTGRES__PASSWORD or ..._PASSWORD_FILE
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Which provider to build: `inmemory`, `sqlite` or `postgres`.
    pub provider: String,
    /// PostgreSQL settings.
    pub postgres: PostgresConfig,
    /// The `storage.sqlite` subsection, as read: `storage-init` hands it to
    /// the SQLite provider, which owns its keys, defaults and validation
    /// (`storage_sqlite::SqliteConfig`).
    pub sqlite: serde_json::Map<String, serde_json::Value>,
    /// Transactional outbox relay.
    pub outbox: OutboxConfig,
    /// Inbox of processed message ids.
    pub inbox: InboxConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            provider: "inmemory".into(),
            postgres: PostgresConfig::default(),
            sqlite: serde_json::Map::new(),
            outbox: OutboxConfig::default(),
            inbox: InboxConfig::default(),
        }
    }
}

impl StorageConfig {
    /// Checks ranges; the error names the key path and what was expected.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let p = &self.postgres;
        if p.max_connections == 0 {
            return Err(InvalidValue::new(
                "storage.postgres.max_connections",
                "an integer >= 1",
            ));
        }
        if p.min_connections > p.max_connections {
            return Err(InvalidValue::new(
                "storage.postgres.min_connections",
                "an integer <= max_connections",
            ));
        }
        let schema = &p.schema;
        let schema_ok = schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !schema_ok {
            return Err(InvalidValue::new(
                "storage.postgres.schema",
                "an identifier of [a-z0-9_] starting with a letter or `_`, at most 63 characters",
            )
            .found(format!("`{schema}`")));
        }
        if self.outbox.batch_size == 0 {
            return Err(InvalidValue::new(
                "storage.outbox.batch_size",
                "an integer >= 1",
            ));
        }
        if self.outbox.max_attempts == 0 {
            return Err(InvalidValue::new(
                "storage.outbox.max_attempts",
                "an integer >= 1",
            ));
        }
        let outbox = &self.outbox;
        let longest_wait = outbox.max_backoff.max(outbox.poll_interval);
        if outbox.stuck_after <= longest_wait {
            return Err(InvalidValue::new(
                "storage.outbox.stuck_after",
                format!(
                    "a duration longer than storage.outbox.max_backoff and poll_interval ({})",
                    chassis_core::duration::format(longest_wait)
                ),
            )
            .found(chassis_core::duration::format(outbox.stuck_after)));
        }
        Ok(())
    }
}

/// PostgreSQL settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL. A secret, since URLs may carry a password; prefer
    /// `password` (or `PASSWORD_FILE`) for that.
    pub url: Secret,
    /// Password, overriding any in the URL.
    pub password: Option<Secret>,
    /// Schema the chassis tables live in (created if missing).
    pub schema: String,
    /// Pool size.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// Longest wait for a pooled connection.
    #[serde(with = "chassis_core::duration")]
    pub acquire_timeout: Duration,
    /// Statement timeout set on each connection (`0` = none).
    #[serde(with = "chassis_core::duration")]
    pub statement_timeout: Duration,
    /// Run the embedded migrations at start-up.
    pub run_migrations: bool,
    /// Attempts for an operation failing with a transient error.
    pub retry_attempts: u32,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://postgres@127.0.0.1:5432/postgres"),
            password: None,
            schema: "public".into(),
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            run_migrations: true,
            retry_attempts: 3,
        }
    }
}

/// The outbox relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Run the relay in this process.
    pub relay_enabled: bool,
    /// Messages fetched per round.
    pub batch_size: usize,
    /// Polling interval when no wake-up arrives.
    #[serde(with = "chassis_core::duration")]
    pub poll_interval: Duration,
    /// Failed sends of one message before it is quarantined.
    pub max_attempts: u32,
    /// First wait after the bus refused a publish.
    #[serde(with = "chassis_core::duration")]
    pub initial_backoff: Duration,
    /// Longest wait between relay attempts while the bus is down.
    #[serde(with = "chassis_core::duration")]
    pub max_backoff: Duration,
    /// How long sent rows are kept.
    #[serde(with = "chassis_core::duration")]
    pub retention: Duration,
    /// Pending messages above which readiness reports `degraded`.
    pub backlog_warn: u64,
    /// Age of the oldest pending message above which readiness reports
    /// `unhealthy` (the relay is stuck or runs nowhere). Longer than
    /// `max_backoff` and `poll_interval`, so a relay waiting for the bus to
    /// come back is not taken for a stuck one.
    #[serde(with = "chassis_core::duration")]
    pub stuck_after: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            relay_enabled: true,
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            retention: Duration::from_secs(24 * 3600),
            backlog_warn: 10_000,
            stuck_after: Duration::from_secs(300),
        }
    }
}

/// The inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboxConfig {
    /// How long processed message ids are remembered. Must exceed the longest
    /// time a broker may redeliver a message.
    #[serde(with = "chassis_core::duration")]
    pub retention: Duration,
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_after_outlasts_the_relays_longest_wait() {
        let mut config = StorageConfig::default();
        config.outbox.stuck_after = Duration::from_secs(30);
        let error = config.validate().unwrap_err();
        assert_eq!(
            error.to_string(),
            "storage.outbox.stuck_after: expected a duration longer than \
             storage.outbox.max_backoff and poll_interval (30s), found 30s"
        );
        config.outbox.stuck_after = Duration::from_secs(31);
        assert_eq!(config.validate(), Ok(()));
        let parsed: OutboxConfig = serde_json::from_str(r#"{"stuck_after": "10m"}"#).unwrap();
        assert_eq!(parsed.stuck_after, Duration::from_secs(600));
    }

    #[test]
    fn defaults_are_valid_and_run_without_a_server() {
        let config = StorageConfig::default();
        assert_eq!(config.provider, "inmemory");
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn invalid_values_name_the_key() {
        let mut config = StorageConfig::default();
        config.postgres.max_connections = 0;
        assert!(
            config
                .validate()
                .unwrap_err()
                .key
                .starts_with("storage.postgres.max_connections")
        );

        let mut config = StorageConfig::default();
        config.postgres.min_connections = 11;
        assert!(
            config
                .validate()
                .unwrap_err()
                .key
                .starts_with("storage.postgres.min_connections")
        );

        for bad in ["", "Orders", "1abc", "a;drop"] {
            let mut config = StorageConfig::default();
            config.postgres.schema = bad.into();
            assert!(
                config
                    .validate()
                    .unwrap_err()
                    .key
                    .starts_with("storage.postgres.schema")
            );
        }

        let mut config = StorageConfig::default();
        config.outbox.batch_size = 0;
        assert!(
            config
                .validate()
                .unwrap_err()
                .key
                .starts_with("storage.outbox.batch_size")
        );
    }

    #[test]
    fn durations_read_as_text_and_password_is_a_secret() {
        let config: StorageConfig = serde_json::from_value(serde_json::json!({
            "provider": "postgres",
            "postgres": { "acquire_timeout": "250ms", "password": "p4ss" },
            "outbox": { "poll_interval": "2s" }
        }))
        .unwrap();
        assert_eq!(config.postgres.acquire_timeout, Duration::from_millis(250));
        assert_eq!(config.outbox.poll_interval, Duration::from_secs(2));
        assert_eq!(config.postgres.password.as_ref().unwrap().expose(), "p4ss");
        assert!(!format!("{config:?}").contains("p4ss"));
    }
}

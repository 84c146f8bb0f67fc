//! The `storage.postgres` section: owned, defaulted and validated here.

use std::time::Duration;

use chassis_core::Secret;
use chassis_core::config::InvalidValue;
use serde::{Deserialize, Serialize};

/// PostgreSQL settings (`[storage.postgres]`).
///
/// ```toml
/// [storage]
/// provider = "postgres"
/// [storage.postgres]
/// url = "postgres://app@db:5432/orders"
/// schema = "orders"
/// # password from CHASSIS__STORAGE__POSTGRES__PASSWORD or ..._PASSWORD_FILE
/// ```
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

impl PostgresConfig {
    /// Where the section sits in the configuration.
    pub const SECTION: &'static str = "storage.postgres";

    /// Checks ranges and the schema name (it is spliced into SQL as an
    /// identifier); the error names the key path and what was expected.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if self.max_connections == 0 {
            return Err(InvalidValue::new(
                "storage.postgres.max_connections",
                "an integer >= 1",
            ));
        }
        if self.min_connections > self.max_connections {
            return Err(InvalidValue::new(
                "storage.postgres.min_connections",
                "an integer <= max_connections",
            ));
        }
        let schema = &self.schema;
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(PostgresConfig::default().validate(), Ok(()));
    }

    #[test]
    fn invalid_values_name_the_key() {
        let config = PostgresConfig {
            max_connections: 0,
            ..PostgresConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().key,
            "storage.postgres.max_connections"
        );
        let config = PostgresConfig {
            min_connections: 11,
            ..PostgresConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().key,
            "storage.postgres.min_connections"
        );
        for bad in ["", "Orders", "1abc", "a;drop"] {
            let config = PostgresConfig {
                schema: bad.into(),
                ..PostgresConfig::default()
            };
            let error = config.validate().unwrap_err();
            assert_eq!(error.key, "storage.postgres.schema");
            assert_eq!(error.found.as_deref(), Some(format!("`{bad}`").as_str()));
        }
    }

    #[test]
    fn durations_read_as_text_and_password_is_a_secret() {
        let config: PostgresConfig = serde_json::from_value(serde_json::json!({
            "acquire_timeout": "250ms", "password": "p4ss"
        }))
        .unwrap();
        assert_eq!(config.acquire_timeout, Duration::from_millis(250));
        assert_eq!(config.password.as_ref().unwrap().expose(), "p4ss");
        assert!(!format!("{config:?}").contains("p4ss"));
    }
}

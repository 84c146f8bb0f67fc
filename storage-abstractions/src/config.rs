use std::time::Duration;

use chassis_core::config::{InvalidValue, OtherKeys};
use serde::{Deserialize, Serialize};

/// The `storage` section of the chassis configuration: the keys every
/// provider shares. Each provider's own settings sit in a subsection named
/// after it (`[storage.postgres]`, `[storage.sqlite]`), whose type, defaults
/// and validation live in the provider crate; `storage-init` reads the one
/// it builds.
///
/// ```toml
/// [storage]
/// provider = "inmemory"          # see storage-init for the names
/// [storage.outbox]
/// batch_size = 100
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// Which provider to build (the names `storage-init` knows).
    pub provider: String,
    /// Transactional outbox relay.
    pub outbox: OutboxConfig,
    /// Inbox of processed message ids.
    pub inbox: InboxConfig,
    /// The provider subsections (and anything misspelled), checked by
    /// `storage-init` against the providers it knows.
    #[serde(flatten, skip_serializing)]
    pub other_keys: OtherKeys,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            provider: "inmemory".into(),
            outbox: OutboxConfig::default(),
            inbox: InboxConfig::default(),
            other_keys: OtherKeys::default(),
        }
    }
}

impl StorageConfig {
    /// The keys this type declares (named in the error about any other).
    pub const KEYS: &'static [&'static str] = &["provider", "outbox", "inbox"];

    /// Checks ranges; the error names the key path and what was expected.
    pub fn validate(&self) -> Result<(), InvalidValue> {
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
        config.outbox.batch_size = 0;
        assert_eq!(
            config.validate().unwrap_err().key,
            "storage.outbox.batch_size"
        );
        let mut config = StorageConfig::default();
        config.outbox.max_attempts = 0;
        assert_eq!(
            config.validate().unwrap_err().key,
            "storage.outbox.max_attempts"
        );
    }

    #[test]
    fn durations_read_as_text_and_provider_subsections_are_kept_as_names() {
        let config: StorageConfig = serde_json::from_value(serde_json::json!({
            "provider": "postgres",
            "postgres": { "acquire_timeout": "250ms", "password": "p4ss" },
            "sqlite": {},
            "outbox": { "poll_interval": "2s" }
        }))
        .unwrap();
        assert_eq!(config.outbox.poll_interval, Duration::from_secs(2));
        let names: Vec<&str> = config.other_keys.0.iter().map(String::as_str).collect();
        assert_eq!(names, ["postgres", "sqlite"]);
        // Nothing of a provider's settings is kept here (a password least of all).
        assert!(!format!("{config:?}").contains("p4ss"));
    }
}

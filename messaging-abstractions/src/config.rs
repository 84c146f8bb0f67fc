use std::time::Duration;

use chassis_core::config::{InvalidValue, OtherKeys};
use serde::{Deserialize, Serialize};

/// The `messaging` section of the chassis configuration: the keys every
/// provider shares. Each provider's own settings sit in a subsection named
/// after it (`[messaging.rabbitmq]`), whose type, defaults and validation
/// live in the provider crate; `messaging-init` reads the one it builds.
///
/// ```toml
/// [messaging]
/// provider = "inmemory"          # see messaging-init for the names
/// prefetch = 64
/// concurrency = 8
/// [messaging.retry]
/// max_attempts = 5
/// initial_backoff = "100ms"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MessagingConfig {
    /// Which provider to build (the names `messaging-init` knows).
    pub provider: String,
    /// Retries of retryable handler failures.
    pub retry: RetryPolicy,
    /// Dead-lettering of messages that cannot be handled.
    pub dead_letter: DeadLetterConfig,
    /// How many unacknowledged messages a consumer may hold.
    pub prefetch: u16,
    /// How many handlers of one subscription run at once.
    pub concurrency: usize,
    /// The provider subsections (and anything misspelled), checked by
    /// `messaging-init` against the providers it knows.
    #[serde(flatten, skip_serializing)]
    pub other_keys: OtherKeys,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            provider: "inmemory".into(),
            retry: RetryPolicy::default(),
            dead_letter: DeadLetterConfig::default(),
            prefetch: 64,
            concurrency: 8,
            other_keys: OtherKeys::default(),
        }
    }
}

impl MessagingConfig {
    /// The keys this type declares (named in the error about any other).
    pub const KEYS: &'static [&'static str] = &[
        "provider",
        "retry",
        "dead_letter",
        "prefetch",
        "concurrency",
    ];

    /// Checks ranges; the error names the key path and what was expected.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if self.prefetch == 0 {
            return Err(InvalidValue::new("messaging.prefetch", "an integer >= 1"));
        }
        if self.concurrency == 0 {
            return Err(InvalidValue::new(
                "messaging.concurrency",
                "an integer >= 1",
            ));
        }
        self.retry.validate("messaging.retry")
    }
}

/// Exponential backoff for retryable handler failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Deliveries in total, the first one included (1 = no retry).
    pub max_attempts: u32,
    /// Wait before the first retry.
    #[serde(with = "chassis_core::duration")]
    pub initial_backoff: Duration,
    /// Upper bound of any wait.
    #[serde(with = "chassis_core::duration")]
    pub max_backoff: Duration,
    /// Factor between two consecutive waits.
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// The wait after the failed delivery number `attempt` (1-based), or
    /// `None` when the attempts are used up.
    pub fn backoff(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let factor = self
            .multiplier
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let wait = self.initial_backoff.as_secs_f64() * factor;
        Some(Duration::from_secs_f64(
            wait.min(self.max_backoff.as_secs_f64()),
        ))
    }

    /// Checks ranges; `path` is the key path of this section.
    pub fn validate(&self, path: &str) -> Result<(), InvalidValue> {
        let invalid = |key: &str, expected: &str| InvalidValue::new(key, expected).under(path);
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "an integer >= 1"));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(invalid("multiplier", "a number >= 1.0"));
        }
        if self.max_backoff < self.initial_backoff {
            return Err(invalid("max_backoff", "a duration >= initial_backoff"));
        }
        Ok(())
    }
}

/// Dead-lettering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Keep failed messages in a dead-letter store / queue. When off, a failed
    /// message is logged at ERROR and dropped (never silently).
    pub enabled: bool,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            multiplier: 2.0,
        };
        assert_eq!(p.backoff(1), Some(Duration::from_millis(100)));
        assert_eq!(p.backoff(2), Some(Duration::from_millis(200)));
        assert_eq!(p.backoff(3), Some(Duration::from_millis(300)));
        assert_eq!(p.backoff(5), None);
    }

    #[test]
    fn validation_names_key_path() {
        let mut c = MessagingConfig::default();
        assert!(c.validate().is_ok());
        c.retry.multiplier = 0.5;
        assert_eq!(c.validate().unwrap_err().key, "messaging.retry.multiplier");
    }

    #[test]
    fn provider_subsections_are_kept_as_names() {
        let c: MessagingConfig = serde_json::from_str(
            r#"{"provider": "rabbitmq", "prefetch": 5, "rabbitmq": {"url": "amqp://x"}, "prefech": 1}"#,
        )
        .unwrap();
        assert_eq!(c.prefetch, 5);
        let names: Vec<&str> = c.other_keys.0.iter().map(String::as_str).collect();
        assert_eq!(names, ["prefech", "rabbitmq"]);
    }
}

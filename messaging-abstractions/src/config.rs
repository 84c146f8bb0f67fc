use std::time::Duration;

use chassis_core::Secret;
use serde::{Deserialize, Serialize};

/// The `messaging` section of the chassis configuration.
///
/// ```toml
/// [messaging]
/// provider = "inmemory"          # or "rabbitmq"
/// prefetch = 64
/// concurrency = 8
/// [messaging.retry]
/// max_attempts = 5
/// initial_backoff = "100ms"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingConfig {
    /// Which provider to build: `inmemory` or `rabbitmq`.
    pub provider: String,
    /// Retries of retryable handler failures.
    pub retry: RetryPolicy,
    /// Dead-lettering of messages that cannot be handled.
    pub dead_letter: DeadLetterConfig,
    /// How many unacknowledged messages a consumer may hold.
    pub prefetch: u16,
    /// How many handlers of one subscription run at once.
    pub concurrency: usize,
    /// Settings of the in-memory provider.
    pub inmemory: InMemoryConfig,
    /// Settings of the RabbitMQ provider.
    pub rabbitmq: RabbitMqConfig,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            provider: "inmemory".into(),
            retry: RetryPolicy::default(),
            dead_letter: DeadLetterConfig::default(),
            prefetch: 64,
            concurrency: 8,
            inmemory: InMemoryConfig::default(),
            rabbitmq: RabbitMqConfig::default(),
        }
    }
}

impl MessagingConfig {
    /// Checks ranges; the error names the key path and what was expected.
    pub fn validate(&self) -> Result<(), String> {
        if self.prefetch == 0 {
            return Err("messaging.prefetch: expected an integer >= 1".into());
        }
        if self.concurrency == 0 {
            return Err("messaging.concurrency: expected an integer >= 1".into());
        }
        if self.inmemory.queue_capacity == 0 {
            return Err("messaging.inmemory.queue_capacity: expected an integer >= 1".into());
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
    pub fn validate(&self, path: &str) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err(format!("{path}.max_attempts: expected an integer >= 1"));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(format!("{path}.multiplier: expected a number >= 1.0"));
        }
        if self.max_backoff < self.initial_backoff {
            return Err(format!(
                "{path}.max_backoff: expected a duration >= initial_backoff"
            ));
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

/// Settings of the in-memory provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InMemoryConfig {
    /// Capacity of each group's queue; publishers wait when it is full.
    pub queue_capacity: usize,
    /// How long a publish waits for room in a full queue before it fails
    /// with `PublishError::Timeout` (bounded backpressure).
    #[serde(with = "chassis_core::duration")]
    pub publish_timeout: Duration,
    /// How long `shutdown` waits for in-flight handlers to finish.
    #[serde(with = "chassis_core::duration")]
    pub drain_timeout: Duration,
}

impl Default for InMemoryConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            publish_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Queue type of the per-service queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Replicated, with a native delivery limit. The default.
    Quorum,
    /// Classic queues.
    Classic,
}

/// Settings of the RabbitMQ provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RabbitMqConfig {
    /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`. A secret:
    /// it usually holds a password.
    pub url: Secret,
    /// Name of the topic exchange for integration events.
    pub exchange: String,
    /// Quorum (default) or classic queues.
    pub queue_type: QueueType,
    /// Safety net against crash loops: deliveries after which the broker
    /// dead-letters a message whatever the handler says.
    pub delivery_limit: u32,
    /// How long a publish waits for a lost connection to come back before it
    /// fails with `Unavailable`.
    #[serde(with = "chassis_core::duration")]
    pub publish_wait: Duration,
    /// How long a publish waits for its confirm.
    #[serde(with = "chassis_core::duration")]
    pub confirm_timeout: Duration,
    /// First wait between reconnection attempts.
    #[serde(with = "chassis_core::duration")]
    pub reconnect_initial_backoff: Duration,
    /// Longest wait between reconnection attempts.
    #[serde(with = "chassis_core::duration")]
    pub reconnect_max_backoff: Duration,
}

impl Default for RabbitMqConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
            exchange: "chassis.events".into(),
            queue_type: QueueType::Quorum,
            delivery_limit: 20,
            publish_wait: Duration::from_secs(5),
            confirm_timeout: Duration::from_secs(10),
            reconnect_initial_backoff: Duration::from_millis(200),
            reconnect_max_backoff: Duration::from_secs(10),
        }
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
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("messaging.retry.multiplier")
        );
    }

    #[test]
    fn inmemory_timeouts_parse_as_durations() {
        let c: InMemoryConfig = serde_json::from_str(
            r#"{"queue_capacity": 5, "publish_timeout": "250ms", "drain_timeout": "2s"}"#,
        )
        .unwrap();
        assert_eq!(c.queue_capacity, 5);
        assert_eq!(c.publish_timeout, Duration::from_millis(250));
        assert_eq!(c.drain_timeout, Duration::from_secs(2));
        let defaults: InMemoryConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(defaults, InMemoryConfig::default());
    }

    #[test]
    fn url_is_redacted_when_serialized() {
        let json = serde_json::to_string(&MessagingConfig::default()).unwrap();
        assert!(!json.contains("guest:guest"));
    }
}

use std::time::Duration;

use chassis_core::config::InvalidValue;
use serde::{Deserialize, Serialize};

/// Settings of the in-memory provider: the `[messaging.inmemory]` section.
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

impl InMemoryConfig {
    /// Where the section sits in the chassis configuration.
    pub const SECTION: &'static str = "messaging.inmemory";

    /// Checks ranges; the error names the key path and what was expected.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if self.queue_capacity == 0 {
            return Err(InvalidValue::new("queue_capacity", "an integer >= 1").under(Self::SECTION));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_durations() {
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
    fn zero_capacity_is_refused() {
        let c = InMemoryConfig {
            queue_capacity: 0,
            ..InMemoryConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().key,
            "messaging.inmemory.queue_capacity"
        );
    }
}

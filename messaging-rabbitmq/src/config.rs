use std::time::Duration;

use chassis_core::Secret;
use chassis_core::config::InvalidValue;
use lapin::uri::AMQPUri;
use serde::{Deserialize, Serialize};

/// Queue type of the per-service queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Replicated, with a native delivery limit. The default.
    Quorum,
    /// Classic queues.
    Classic,
}

/// Settings of the RabbitMQ provider: the `[messaging.rabbitmq]` section.
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

impl RabbitMqConfig {
    /// Where the section sits in the chassis configuration.
    pub const SECTION: &'static str = "messaging.rabbitmq";

    /// Checks the section; the error names the key path and what was
    /// expected. Returns the parsed URL.
    pub fn validate(&self) -> Result<AMQPUri, InvalidValue> {
        let invalid =
            |key: &str, expected: String| InvalidValue::new(key, expected).under(Self::SECTION);
        let uri: AMQPUri = self.url.expose().parse().map_err(|e| {
            invalid(
                "url",
                format!("`amqp://user:password@host:port/vhost` ({e})"),
            )
        })?;
        if uri.scheme == lapin::uri::AMQPScheme::AMQPS {
            // lapin is built without a TLS stack (one TLS stack per build is
            // the workspace's rule; none is needed on a private network).
            return Err(invalid(
                "url",
                "an `amqp://` URL; `amqps://` (TLS) is not compiled into this build".into(),
            ));
        }
        let exchange_ok = !self.exchange.is_empty()
            && self.exchange.len() + ".dlx".len() <= crate::topology::MAX_NAME_LEN
            && !self.exchange.starts_with("amq.");
        if !exchange_ok {
            return Err(invalid(
                "exchange",
                format!(
                    "a name of 1 to {} bytes not starting with `amq.`",
                    crate::topology::MAX_NAME_LEN - ".dlx".len()
                ),
            )
            .found(format!("`{}`", self.exchange)));
        }
        if self.delivery_limit == 0 {
            return Err(invalid("delivery_limit", "an integer >= 1".into()));
        }
        if self.reconnect_initial_backoff.is_zero()
            || self.reconnect_max_backoff < self.reconnect_initial_backoff
        {
            return Err(invalid(
                "reconnect_max_backoff",
                "a duration >= reconnect_initial_backoff > 0".into(),
            ));
        }
        Ok(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_is_redacted_when_serialized() {
        let json = serde_json::to_string(&RabbitMqConfig::default()).unwrap();
        assert!(!json.contains("guest:guest"));
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = RabbitMqConfig::default();
        assert!(c.validate().is_ok());
        c.exchange = "amq.topic".into();
        assert_eq!(c.validate().unwrap_err().key, "messaging.rabbitmq.exchange");
        c = RabbitMqConfig {
            url: "amqps://h".into(),
            ..RabbitMqConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "messaging.rabbitmq.url");
    }
}

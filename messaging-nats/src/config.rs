//! The provider's own section, `messaging.nats`.

use std::time::Duration;

use chassis_core::Secret;
use chassis_core::config::InvalidValue;
use messaging_abstractions::cloudevents::ContentMode;
use serde::{Deserialize, Serialize};

use crate::topology;

/// Where the streams keep their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamStorage {
    /// On disk: messages survive a server restart. The default.
    File,
    /// In memory: faster, lost when the server stops.
    Memory,
}

/// Settings of the NATS JetStream provider (`messaging.nats`).
///
/// ```toml
/// [messaging.nats]
/// url = "nats://127.0.0.1:4222"      # a secret: it may hold credentials
/// user = "orders"                    # optional; or a token
/// # password from the environment or a mounted file:
/// # CHASSIS__MESSAGING__NATS__PASSWORD_FILE=/run/secrets/nats
/// subject_prefix = "chassis"
/// storage = "file"
/// replicas = 1
/// max_age = "168h"
/// content_mode = "binary"            # or "structured"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, `nats://host:port` (several separated by commas). A
    /// secret: it may carry `user:password@`.
    pub url: Secret,
    /// User name, with [`password`](Self::password).
    pub user: Option<String>,
    /// Password of [`user`](Self::user); prefer `..._FILE` or the environment.
    pub password: Option<Secret>,
    /// Authentication token (instead of user and password).
    pub token: Option<Secret>,
    /// First token of every subject and of every stream name the provider
    /// makes: events of `order.placed.v1` go to `<prefix>.order.placed.v1`
    /// in stream `<prefix>_events_order`.
    pub subject_prefix: String,
    /// File (default) or memory storage of the streams.
    pub storage: StreamStorage,
    /// Replicas of each stream (1 on a single server; 3 or 5 in a cluster).
    pub replicas: usize,
    /// How long an event stream keeps a message (`0s` = for ever): a group
    /// that falls further behind than this loses what is older. Dead
    /// letters are kept until replayed.
    #[serde(with = "chassis_core::duration")]
    pub max_age: Duration,
    /// How long the server waits for an acknowledgement before it delivers a
    /// message again. Running handlers extend it (`+WPI`), so this bounds
    /// how long a crashed consumer's messages wait.
    #[serde(with = "chassis_core::duration")]
    pub ack_wait: Duration,
    /// Unacknowledged messages a group may have in total, over all its
    /// instances (each instance is bounded by `messaging.prefetch`).
    pub max_ack_pending: u32,
    /// Safety net against crash loops: deliveries after which a message is
    /// dead-lettered whatever the handler says (a handler that kills the
    /// process never settles its message).
    pub delivery_limit: u32,
    /// How long a publish waits for the stream's acknowledgement, the wait
    /// for a lost connection to come back included, before it fails.
    #[serde(with = "chassis_core::duration")]
    pub publish_wait: Duration,
    /// How long the first connection may take at start-up.
    #[serde(with = "chassis_core::duration")]
    pub connect_timeout: Duration,
    /// How long `shutdown` waits for in-flight handlers.
    #[serde(with = "chassis_core::duration")]
    pub drain_timeout: Duration,
    /// How events are written (both are always read): `binary`, the
    /// attributes as `ce-` headers, or `structured`, the whole event as a
    /// JSON body with one `Content-Type` header (cheaper for client and
    /// server; see `docs/messaging-nats.md`).
    pub content_mode: ContentMode,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("nats://127.0.0.1:4222"),
            user: None,
            password: None,
            token: None,
            subject_prefix: "chassis".into(),
            storage: StreamStorage::File,
            replicas: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            delivery_limit: 20,
            publish_wait: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            content_mode: ContentMode::Binary,
        }
    }
}

impl NatsConfig {
    /// Where the section sits in the chassis configuration.
    pub const SECTION: &'static str = "messaging.nats";

    /// Checks values and ranges; the error names the key path
    /// (`messaging.nats.<key>`) and what was expected.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let invalid =
            |key: &str, expected: &str| Err(InvalidValue::new(key, expected).under(Self::SECTION));
        let url = self.url.expose().trim();
        if url.is_empty()
            || url
                .split(',')
                .any(|u| !u.trim().starts_with("nats://") && u.contains("://"))
        {
            return invalid(
                "url",
                "`nats://host:port` (several separated by commas); TLS and websocket \
                 URLs are not compiled into this build",
            );
        }
        if self.password.is_some() && self.user.is_none() {
            return invalid("user", "a user name when a password is set");
        }
        if self.token.is_some() && self.user.is_some() {
            return invalid("token", "either a token or user and password, not both");
        }
        if !topology::is_name_token(&self.subject_prefix) {
            return invalid(
                "subject_prefix",
                "a non-empty name of letters, digits, `_` or `-`",
            );
        }
        if self.replicas == 0 || self.replicas > 5 {
            return invalid("replicas", "an integer from 1 to 5");
        }
        if self.ack_wait < Duration::from_secs(1) {
            return invalid("ack_wait", "a duration >= 1s");
        }
        if self.max_ack_pending == 0 {
            return invalid("max_ack_pending", "an integer >= 1");
        }
        if self.delivery_limit == 0 {
            return invalid("delivery_limit", "an integer >= 1");
        }
        for (key, value) in [
            ("publish_wait", self.publish_wait),
            ("connect_timeout", self.connect_timeout),
        ] {
            if value.is_zero() {
                return invalid(key, "a duration > 0");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_parse_from_nothing() {
        NatsConfig::default().validate().unwrap();
        let parsed: NatsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, NatsConfig::default());
        let parsed: NatsConfig = serde_json::from_str(
            r#"{"url": "nats://a:4222,nats://b:4222", "storage": "memory", "max_age": "1h",
                "user": "u", "password": "p", "content_mode": "structured"}"#,
        )
        .unwrap();
        assert_eq!(parsed.storage, StreamStorage::Memory);
        assert_eq!(parsed.content_mode, ContentMode::Structured);
        assert_eq!(parsed.max_age, Duration::from_secs(3600));
        parsed.validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        type Spoil = fn(&mut NatsConfig);
        let cases: [(Spoil, &str); 6] = [
            (|c| c.url = "amqp://x".into(), "messaging.nats.url"),
            (|c| c.password = Some("p".into()), "messaging.nats.user"),
            (
                |c| c.subject_prefix = "a.b".into(),
                "messaging.nats.subject_prefix",
            ),
            (|c| c.replicas = 0, "messaging.nats.replicas"),
            (|c| c.ack_wait = Duration::ZERO, "messaging.nats.ack_wait"),
            (|c| c.delivery_limit = 0, "messaging.nats.delivery_limit"),
        ];
        for (spoil, key) in cases {
            let mut config = NatsConfig::default();
            spoil(&mut config);
            assert_eq!(config.validate().unwrap_err().key, key);
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let config = NatsConfig {
            url: "nats://u:hunter2@h:4222".into(),
            ..NatsConfig::default()
        };
        assert!(!serde_json::to_string(&config).unwrap().contains("hunter2"));
    }
}

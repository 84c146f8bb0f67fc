//! What the bus, its consumers, its dead-letter store and its replies share:
//! the connection, the JetStream context, the streams known to exist, and
//! publishing with the stream's acknowledgement.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::{
    PublishAckFuture, PublishError as JsPublishError, PublishErrorKind,
};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy, StorageType};
use async_nats::{Client, ConnectOptions, Event, HeaderMap, ServerAddr};
use async_trait::async_trait;
use bytes::Bytes;
use chassis_core::config::InvalidValue;
use chassis_core::{HealthCheck, HealthStatus};
use messaging_abstractions::{MessagingConfig, PublishError};
use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::{NatsConfig, StreamStorage};
use crate::error::NatsError;
use crate::topology::Names;

/// How often the client pings the server: a silently dead peer is noticed
/// within two intervals.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// Longest wait between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// The connection as the event callback last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    Up,
    /// Lost; the client reconnects on its own.
    Down,
}

pub(crate) struct Shared {
    pub(crate) messaging: MessagingConfig,
    pub(crate) nats: NatsConfig,
    pub(crate) names: Names,
    pub(crate) service: String,
    pub(crate) endpoint: String,
    pub(crate) client: Client,
    pub(crate) js: async_nats::jetstream::Context,
    /// Set when consumers must stop taking messages (shutdown has begun).
    pub(crate) stop: watch::Sender<bool>,
    /// Set once publishing is refused (shutdown done).
    closed: AtomicBool,
    pub(crate) link: watch::Receiver<Link>,
    /// Streams known to exist: publishes skip creating them.
    streams: Mutex<HashSet<String>>,
}

/// Splits `nats://a:4222,nats://b:4222` into server addresses.
fn server_addrs(url: &str) -> Result<Vec<ServerAddr>, InvalidValue> {
    url.split(',')
        .map(|u| {
            u.trim().parse::<ServerAddr>().map_err(|e| {
                InvalidValue::new("url", format!("`nats://host:port` ({e})"))
                    .under(NatsConfig::SECTION)
            })
        })
        .collect()
}

impl Shared {
    pub(crate) async fn connect(
        messaging: &MessagingConfig,
        nats: &NatsConfig,
        service: &str,
    ) -> Result<Arc<Self>, NatsError> {
        nats.validate()?;
        let addrs = server_addrs(nats.url.expose())?;
        // Never the credentials: host and port only.
        let endpoint = addrs
            .iter()
            .map(|a| format!("{}:{}", a.host(), a.port()))
            .collect::<Vec<_>>()
            .join(",");
        let (link_tx, link) = watch::channel(Link::Up);
        let events_endpoint = endpoint.clone();
        let mut options = ConnectOptions::new()
            .name(service)
            .connection_timeout(nats.connect_timeout)
            .ping_interval(PING_INTERVAL)
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                let ms = 50u64.saturating_mul(1 << attempts.min(8));
                Duration::from_millis(ms).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let (link_tx, endpoint) = (link_tx.clone(), events_endpoint.clone());
                async move {
                    match event {
                        Event::Connected => {
                            info!(%endpoint, "NATS connection restored");
                            link_tx.send_replace(Link::Up);
                        }
                        Event::Disconnected => {
                            warn!(%endpoint, "NATS connection lost; reconnecting");
                            link_tx.send_replace(Link::Down);
                        }
                        other => warn!(%endpoint, event = %other, "NATS client event"),
                    }
                }
            });
        if let Some(user) = &nats.user {
            let password = nats.password.as_ref().map(|p| p.expose().to_owned());
            options = options.user_and_password(user.clone(), password.unwrap_or_default());
        }
        if let Some(token) = &nats.token {
            options = options.token(token.expose().to_owned());
        }
        let client = match tokio::time::timeout(nats.connect_timeout, options.connect(addrs)).await
        {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(NatsError::Connect {
                    endpoint,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(NatsError::ConnectTimeout {
                    endpoint,
                    waited: nats.connect_timeout,
                });
            }
        };
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(nats.publish_wait)
            .build(client.clone());
        // The account info request answers only where JetStream is on (read
        // raw: the client's typed account info expects newer servers' fields).
        let answer = client
            .request("$JS.API.INFO", Bytes::new())
            .await
            .map_err(|e| e.to_string())
            .and_then(|m| {
                let v: serde_json::Value =
                    serde_json::from_slice(&m.payload).map_err(|e| e.to_string())?;
                match v.get("error") {
                    Some(error) => Err(error.to_string()),
                    None => Ok(()),
                }
            });
        if let Err(reason) = answer {
            return Err(NatsError::NoJetStream { endpoint, reason });
        }
        Ok(Arc::new(Self {
            messaging: messaging.clone(),
            nats: nats.clone(),
            names: Names::new(&nats.subject_prefix),
            service: service.to_owned(),
            endpoint,
            client,
            js,
            stop: watch::channel(false).0,
            closed: AtomicBool::new(false),
            link,
            streams: Mutex::new(HashSet::new()),
        }))
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn set_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn storage(&self) -> StorageType {
        match self.nats.storage {
            StreamStorage::File => StorageType::File,
            StreamStorage::Memory => StorageType::Memory,
        }
    }

    /// Makes sure the stream of `namespace` exists (once per bus, unless a
    /// publish finds it gone).
    pub(crate) async fn ensure_events_stream(&self, namespace: &str) -> Result<(), String> {
        let name = self.names.stream(namespace);
        let config = StreamConfig {
            name: name.clone(),
            subjects: vec![self.names.stream_subjects(namespace)],
            // Limits, not interest: under interest retention a message
            // published while the server restores its consumers after a
            // restart finds no interest and is dropped (PubAck and all).
            // Each group's consumer keeps its own position; `max_age` bounds
            // what the stream keeps.
            retention: RetentionPolicy::Limits,
            max_age: self.nats.max_age,
            ..self.stream_defaults()
        };
        self.ensure_stream(config).await
    }

    /// Makes sure the dead-letter stream exists.
    pub(crate) async fn ensure_dead_letter_stream(&self) -> Result<(), String> {
        let config = StreamConfig {
            name: self.names.dead_letter_stream(),
            subjects: vec![self.names.dead_letter_subjects()],
            // Kept until replayed or removed by an operator.
            retention: RetentionPolicy::Limits,
            ..self.stream_defaults()
        };
        self.ensure_stream(config).await
    }

    fn stream_defaults(&self) -> StreamConfig {
        StreamConfig {
            storage: self.storage(),
            num_replicas: self.nats.replicas,
            description: Some(format!(
                "chassis event bus (subject prefix `{}`)",
                self.nats.subject_prefix
            )),
            ..StreamConfig::default()
        }
    }

    async fn ensure_stream(&self, config: StreamConfig) -> Result<(), String> {
        if self.streams.lock().contains(&config.name) {
            return Ok(());
        }
        let name = config.name.clone();
        self.js
            .get_or_create_stream(config)
            .await
            .map_err(|e| format!("cannot create or find stream `{name}`: {e}"))?;
        self.streams.lock().insert(name);
        Ok(())
    }

    /// Forgets that a stream exists (it was deleted under us).
    pub(crate) fn forget_stream(&self, name: &str) {
        self.streams.lock().remove(name);
    }

    /// Sends one message to a stream; the future resolves with its
    /// acknowledgement.
    pub(crate) async fn send(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PublishAckFuture, JsPublishError> {
        self.js
            .send_publish(
                subject,
                PublishMessage::build().headers(headers).payload(payload),
            )
            .await
    }

    /// Maps the client's publish error: unreachable server → `Unavailable`,
    /// no answer while connected → `Timeout`, a refusal → `Rejected`.
    pub(crate) fn publish_error(&self, e: JsPublishError, message_id: Uuid) -> PublishError {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        match e.kind() {
            PublishErrorKind::TimedOut if connected => {
                PublishError::Timeout(self.nats.publish_wait)
            }
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                PublishError::Unavailable(format!(
                    "no acknowledgement from NATS at {} within {:?} (not connected)",
                    self.endpoint, self.nats.publish_wait
                ))
            }
            PublishErrorKind::StreamNotFound => PublishError::Unavailable(format!(
                "no stream takes this subject on NATS at {}",
                self.endpoint
            )),
            _ => PublishError::Rejected {
                message_id,
                reason: e.to_string(),
            },
        }
    }

    /// Sends one message and waits for the stream's acknowledgement.
    pub(crate) async fn send_acked(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), JsPublishError> {
        self.send(subject, headers, payload).await?.await.map(drop)
    }

    pub(crate) fn health(&self) -> HealthStatus {
        if self.is_closed() {
            return HealthStatus::Unhealthy("event bus is shut down".into());
        }
        match self.client.connection_state() {
            async_nats::connection::State::Connected => HealthStatus::Healthy,
            state => HealthStatus::Unhealthy(format!(
                "not connected to NATS at {} ({state:?}); reconnecting",
                self.endpoint
            )),
        }
    }
}

/// The readiness check of the provider (`messaging.nats`).
pub(crate) struct NatsHealth(pub(crate) Arc<Shared>);

#[async_trait]
impl HealthCheck for NatsHealth {
    fn name(&self) -> &str {
        "messaging.nats"
    }

    async fn check(&self) -> HealthStatus {
        self.0.health()
    }
}

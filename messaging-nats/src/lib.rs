//! NATS JetStream event bus provider of the service chassis: publishes
//! acknowledged by the stream, durable pull consumers with explicit acks,
//! retries with backoff, dead letters with replay, request/response, and a
//! connection that comes back by itself.
//!
//! [`NatsBus`] implements the [`EventBus`] port; a service gets it through
//! `messaging-init` (feature `nats`) by setting `messaging.provider = "nats"`,
//! never by naming this crate. Its settings are [`NatsConfig`], the section
//! `messaging.nats`:
//!
//! ```
//! use messaging_nats::{NatsConfig, StreamStorage};
//!
//! let mut config = NatsConfig::default(); // nats://127.0.0.1:4222, file storage
//! assert_eq!(config.storage, StreamStorage::File);
//! config.user = Some("orders".into());
//! config.password = Some("from CHASSIS__MESSAGING__NATS__PASSWORD_FILE".into());
//! config.validate().unwrap();
//! config.subject_prefix = "has.dots".into();
//! assert_eq!(config.validate().unwrap_err().key, "messaging.nats.subject_prefix");
//! ```
//!
//! Directly (tests, tools):
//!
//! ```no_run
//! use messaging_abstractions::{EventBus, Handlers, MessagingConfig, Subscription};
//! use messaging_nats::{NatsBus, NatsConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = NatsBus::connect(&MessagingConfig::default(), &NatsConfig::default(), "shipping").await?;
//! # let handlers = Handlers::new();
//! bus.subscribe(Subscription::new("shipping", handlers)).await?;
//! // ... serve ...
//! bus.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Topology
//!
//! With `P` = `messaging.nats.subject_prefix` (default `chassis`), `T` an
//! event type such as `order.placed.v1`, `N` its namespace (first token,
//! `order`) and `G` a consumer group:
//!
//! | what | name | settings |
//! |---|---|---|
//! | subject of `T` | `P.T` | |
//! | stream of `N` | `P_events_N`, subjects `P.N.>` | limits retention (each group's consumer keeps its own position; messages go after `max_age`), `storage`, `replicas` |
//! | consumer of `G` for `T` | durable `G__T__<hash>` (dots as `_`), filter `P.T` | pull, explicit ack, `ack_wait`, `max_ack_pending`, deliver new |
//! | dead letters | stream `P_dead_letters`, subject `P_dlq.G` | limits retention: kept until replayed |
//!
//! Streams and consumers are made on first use (publish or subscribe).
//! One consumer per (group, event type) because nats-server 2.9 filters a
//! consumer on one subject only; the consumers of a subscription share its
//! handler slots and its per-key ordering.
//!
//! # Publishing
//!
//! [`EventBus::publish`] returns once the stream has stored the message
//! (its PubAck), the JetStream counterpart of a publisher confirm. A stream
//! the server no longer knows is made again and the publish retried once.
//! While the connection is down the client buffers the publish; no PubAck
//! within `publish_wait` → [`PublishError::Unavailable`] (not connected) or
//! [`PublishError::Timeout`] (connected, no answer): the outbox tries again
//! later. A message may then arrive twice (its PubAck was lost), never
//! silently not at all. [`EventBusHooks::publish_all`] keeps up to 256 PubAcks in
//! flight. A message no group takes is kept until `max_age` and never
//! delivered (a group made later starts with what is published after it).
//! Not interest retention: it would drop, PubAck and all, a message
//! published while a restarted server has restored the stream but not yet
//! its consumers (seen in the restart test).
//!
//! The envelope travels as a CloudEvent after the NATS binding, in the
//! content mode of `messaging.nats.content_mode`: binary (the default: every
//! attribute of [`messaging_abstractions::cloudevents`] a `ce-` header,
//! percent-encoded, the payload as body) or structured (the whole event as a
//! JSON body with one `Content-Type: application/cloudevents+json` header;
//! cheaper for client and server). Every field round-trips exactly in both.
//! Consumers read binary and structured CloudEvents from any producer and,
//! for one release, the previous `Chassis-Envelope` format.
//!
//! # Consuming
//!
//! Each event type of a subscription is pulled in batches of
//! `messaging.prefetch`; up to `messaging.concurrency` handlers of the
//! subscription run at once; a message is taken from the batch only when a
//! handler slot is free. Messages with the same partition key are handled
//! one after the other in arrival order (a retried message comes back later
//! than its successors). While a handler runs, the consumer tells the server
//! every third of `ack_wait` that it is still at work. Outcomes:
//!
//! - **Ok**: ack.
//! - **Retryable** with attempts left: NAK with delay
//!   `retry.backoff(attempt)`; the server delivers it again after the delay
//!   and counts the delivery (`attempt` is the server's delivery count).
//! - **Retryable** with no attempt left, **Permanent**, **Undecodable**
//!   (also a message without a chassis envelope, at once): copied to the
//!   dead-letter stream with `Chassis-Failure` (kind, reason, attempts,
//!   when, dead-letter id, group, event type), then acked. With
//!   `dead_letter.enabled = false` it is logged at ERROR and acked.
//! - **Crash loops**: a message delivered more than
//!   `max(delivery_limit, retry.max_attempts)` times (its handler never
//!   settles it) is dead-lettered before a handler sees it again.
//!
//! [`EventBus::dead_letters`] lists the dead-letter stream (by group) and
//! replays a letter: published again to its event subject for its group
//! only, then removed.
//!
//! # Request/response
//!
//! A request goes through JetStream to the responder group's consumer, with
//! the bus' inbox subject in `chassis-reply-to`; the answer comes back over
//! core NATS (see `replies`). No durable consumer of any group takes the
//! request type → `RequestError::NoResponder` at once (groups found are
//! remembered for 5 s). A requester that is gone is not reported to the
//! responder (NATS drops a message nobody subscribes to): `reply` succeeds
//! and the answer is lost, as it would be when the requester gave up.
//!
//! # Connection
//!
//! The client reconnects by itself (forever, backoff up to 2 s); consumers
//! whose pull fails (missed heartbeats, server restart) attach again, and
//! messages unacknowledged at the loss are delivered again after `ack_wait`
//! (at-least-once; the inbox removes duplicates). [`EventBus::health_checks`]
//! reports `messaging.nats`: healthy when connected.
//!
//! # Shutdown
//!
//! [`EventBus::stop_consuming`] stops every consumer taking messages (those
//! pulled but not started are NAKed back at once) and waits up to the grace
//! it is given for running handlers (their acks, retries and dead letters
//! included; they may still publish and answer, and so may the outbox relay
//! afterwards). [`EventBus::shutdown`] does the same with `drain_timeout`
//! unless that ran already, then refuses publishes, fails waiting requests,
//! and drains and closes the connection. Both are idempotent.

mod asyncapi;
mod codec;
mod config;
mod consumer;
mod dead_letters;
mod error;
mod replies;
mod shared;
mod topology;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind, PublishErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use chassis_core::HealthCheck;
use messaging_abstractions::request::{IN_REPLY_TO_HEADER, REPLY_TO_HEADER, set_deadline};
use messaging_abstractions::{
    DeadLetterStore, EncodeError, Envelope, EventBus, EventBusHooks, MessagingConfig, PublishError,
    RequestError, ShutdownError, SubscribeError, Subscription,
};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::{NatsConfig, StreamStorage};
pub use error::NatsError;

use crate::consumer::GroupConsumer;
use crate::dead_letters::NatsDeadLetters;
use crate::replies::Replies;
use crate::shared::{NatsHealth, Shared};
use crate::topology::Names;

/// PubAcks kept in flight by [`EventBusHooks::publish_all`].
const PUBLISH_WINDOW: usize = 256;

pub(crate) fn is_stream_not_found(e: &GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// The NATS JetStream event bus. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    dead_letters: Arc<NatsDeadLetters>,
    replies: Replies,
    groups: Mutex<Vec<Arc<GroupConsumer>>>,
    consumers: Mutex<Vec<JoinHandle<()>>>,
    /// Serializes shutdown; `true` once done.
    shut_down: tokio::sync::Mutex<bool>,
}

impl Drop for Inner {
    /// A bus dropped without `shutdown` still stops its consumers.
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
        self.shared.set_closed();
    }
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("service", &self.inner.shared.service)
            .field("endpoint", &self.inner.shared.endpoint)
            .finish_non_exhaustive()
    }
}

/// The envelope cannot be a NATS message (its type is not a subject).
fn encode_error(envelope: &Envelope, reason: String) -> PublishError {
    PublishError::Encode(EncodeError {
        event_type: envelope.event_type.clone(),
        source: <serde_json::Error as serde::ser::Error>::custom(reason),
    })
}

impl NatsBus {
    /// Checks both sections, connects to `config.url` and checks the server
    /// has JetStream. `shared` gives the keys every provider reads (retry,
    /// dead letters, prefetch, concurrency); `service_name` names the
    /// connection (visible in the server's monitoring).
    ///
    /// Fails at once when the server cannot be reached: a service does not
    /// start half-connected. After that, losses are handled inside the bus.
    pub async fn connect(
        shared: &MessagingConfig,
        config: &NatsConfig,
        service_name: &str,
    ) -> Result<Self, NatsError> {
        shared.validate()?;
        let shared = Shared::connect(shared, config, service_name).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                dead_letters: Arc::new(NatsDeadLetters::new(shared.clone())),
                replies: Replies::new(shared.clone()),
                shared,
                groups: Mutex::new(Vec::new()),
                consumers: Mutex::new(Vec::new()),
                shut_down: tokio::sync::Mutex::new(false),
            }),
        })
    }

    /// The provider's settings this bus runs with.
    pub fn config(&self) -> &NatsConfig {
        &self.shared().nats
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The subject of `envelope`, its headers and body; makes its stream
    /// exist unless `stream_known` (a batch's earlier envelope of the same
    /// namespace made sure of it).
    async fn prepare(
        &self,
        envelope: &Envelope,
        stream_known: bool,
    ) -> Result<(String, async_nats::HeaderMap, Bytes), PublishError> {
        if self.shared().is_closed() {
            return Err(PublishError::ShutDown);
        }
        Names::check_event_type(&envelope.event_type).map_err(|e| encode_error(envelope, e))?;
        let (headers, body) = self.encode(envelope)?;
        if !stream_known {
            self.shared()
                .ensure_events_stream(Names::namespace(&envelope.event_type))
                .await
                .map_err(PublishError::Unavailable)?;
        }
        Ok((
            self.shared().names.subject(&envelope.event_type),
            headers,
            body,
        ))
    }

    fn encode(&self, envelope: &Envelope) -> Result<(async_nats::HeaderMap, Bytes), EncodeError> {
        let shared = self.shared();
        codec::encode(envelope, &shared.service, shared.nats.content_mode)
    }

    /// Publishes one message and waits for its PubAck; a stream gone from
    /// the server is made again once.
    async fn publish_one(&self, envelope: &Envelope) -> Result<(), PublishError> {
        let mut again = true;
        loop {
            let (subject, headers, body) = self.prepare(envelope, false).await?;
            match self.shared().send_acked(subject, headers, body).await {
                Ok(()) => return Ok(()),
                Err(e) if again && e.kind() == PublishErrorKind::StreamNotFound => {
                    again = false;
                    self.shared().forget_stream(
                        &self
                            .shared()
                            .names
                            .stream(Names::namespace(&envelope.event_type)),
                    );
                }
                Err(e) => return Err(self.shared().publish_error(e, envelope.message_id)),
            }
        }
    }

    /// Publishes in order with up to [`PUBLISH_WINDOW`] PubAcks in flight.
    async fn publish_pipelined(&self, envelopes: &[Envelope]) -> Result<(), PublishError> {
        let mut window = VecDeque::with_capacity(PUBLISH_WINDOW.min(envelopes.len()));
        let mut next = 0;
        // The namespace whose stream this batch made sure of last.
        let mut known: Option<&str> = None;
        while next < envelopes.len() || !window.is_empty() {
            if next < envelopes.len() && window.len() < PUBLISH_WINDOW {
                let envelope = &envelopes[next];
                let namespace = Names::namespace(&envelope.event_type);
                let (subject, headers, body) =
                    self.prepare(envelope, known == Some(namespace)).await?;
                known = Some(namespace);
                let ack = self
                    .shared()
                    .send(subject, headers, body)
                    .await
                    .map_err(|e| self.shared().publish_error(e, envelope.message_id))?;
                window.push_back((next, ack));
                next += 1;
                continue;
            }
            let Some((index, ack)) = window.pop_front() else {
                break;
            };
            let envelope = &envelopes[index];
            match ack.await {
                Ok(_) => {}
                Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                    // Rare (a stream deleted under us): the rest one by one.
                    drop(window);
                    for envelope in &envelopes[index..] {
                        self.publish_one(envelope).await?;
                    }
                    return Ok(());
                }
                Err(e) => return Err(self.shared().publish_error(e, envelope.message_id)),
            }
        }
        Ok(())
    }

    /// Sends a request and waits for its answer (see [`EventBus::request`]
    /// on this type); the caller bounds it by the timeout.
    async fn send_request(
        &self,
        mut request: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, RequestError> {
        let request_type = request.event_type.clone();
        if self.shared().is_closed() {
            return Err(RequestError::ShutDown);
        }
        let unavailable = |e: String| RequestError::Publish(PublishError::Unavailable(e));
        Names::check_event_type(&request_type)
            .map_err(|e| RequestError::from_publish(&request_type, encode_error(&request, e)))?;
        if !self
            .inner
            .replies
            .has_responder(&request_type)
            .await
            .map_err(unavailable)?
        {
            return Err(RequestError::NoResponder { request_type });
        }
        let inbox = self.inner.replies.inbox().await.map_err(unavailable)?;
        let Some((answer, _pending)) = inbox.pending().wait_for(request.message_id)? else {
            return Err(RequestError::ShutDown);
        };
        request
            .headers
            .insert(REPLY_TO_HEADER.to_owned(), inbox.address.clone());
        set_deadline(&mut request, timeout);
        self.publish_one(&request)
            .await
            .map_err(|e| RequestError::from_publish(&request_type, e))?;
        match answer.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(RequestError::Interrupted { reason, .. })) => Err(RequestError::Interrupted {
                request_type,
                reason,
            }),
            Ok(Err(other)) => Err(other),
            Err(_) => Err(RequestError::Interrupted {
                request_type,
                reason: "reply inbox gone".into(),
            }),
        }
    }
}

#[async_trait]
impl EventBusHooks for NatsBus {
    async fn publish_ref(&self, envelope: &Envelope) -> Result<(), PublishError> {
        self.publish_one(envelope).await
    }

    /// Pipelined: up to 256 PubAcks in flight. An envelope that cannot be
    /// encoded stops the batch there (the ones before it may have been
    /// published).
    async fn publish_all(&self, envelopes: Vec<Envelope>) -> Result<(), PublishError> {
        self.publish_pipelined(&envelopes).await
    }
}

#[async_trait]
impl EventBus for NatsBus {
    fn provider(&self) -> &'static str {
        "nats"
    }

    fn hooks(&self) -> Option<&dyn EventBusHooks> {
        Some(self)
    }

    async fn publish(&self, envelope: Envelope) -> Result<(), PublishError> {
        self.publish_one(&envelope).await
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), SubscribeError> {
        subscription.validate()?;
        if self.shared().is_stopping() {
            return Err(SubscribeError::ShutDown);
        }
        let group = Arc::new(GroupConsumer::new(
            self.inner.shared.clone(),
            subscription.group,
            subscription.handlers,
        )?);
        let attached = group.attach_all().await?;
        let mut consumers = self.inner.consumers.lock();
        if self.shared().is_stopping() {
            return Err(SubscribeError::ShutDown);
        }
        for first in attached {
            consumers.push(tokio::spawn(group.clone().run(first)));
        }
        self.inner.groups.lock().push(group);
        Ok(())
    }

    /// Published through JetStream to the group consuming the request type,
    /// with this bus' inbox in `chassis-reply-to`: no group consumes it →
    /// `NoResponder` at once. A connection lost while waiting →
    /// `Interrupted` at once. The timeout bounds everything.
    async fn request(
        &self,
        request: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, RequestError> {
        let request_type = request.event_type.clone();
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.send_request(request, timeout)).await {
            Ok(result) => result,
            Err(_) => Err(RequestError::Timeout {
                request_type,
                waited: timeout,
            }),
        }
    }

    /// Published over core NATS to the requester's inbox and flushed to the
    /// server. A requester that is gone is not detected (see the crate docs).
    async fn reply(&self, request: &Envelope, mut reply: Envelope) -> Result<(), PublishError> {
        let Some(address) = request.headers.get(REPLY_TO_HEADER).cloned() else {
            return Err(PublishError::Unroutable {
                message_id: reply.message_id,
                event_type: reply.event_type.clone(),
            });
        };
        reply
            .headers
            .entry(IN_REPLY_TO_HEADER.to_owned())
            .or_insert_with(|| request.message_id.to_string());
        let (headers, body) = self.encode(&reply)?;
        let client = &self.shared().client;
        let wait = self.shared().nats.publish_wait;
        let sent = tokio::time::timeout(wait, async {
            client
                .publish_with_headers(address, headers, body)
                .await
                .map_err(|e| e.to_string())?;
            client.flush().await.map_err(|e| e.to_string())
        })
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PublishError::Unavailable(format!("reply not sent: {e}"))),
            Err(_) => Err(PublishError::Unavailable(format!(
                "reply not flushed to NATS within {wait:?}"
            ))),
        }
    }

    fn health_checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        vec![Arc::new(NatsHealth(self.inner.shared.clone()))]
    }

    fn dead_letters(&self) -> Option<Arc<dyn DeadLetterStore>> {
        Some(self.inner.dead_letters.clone())
    }

    async fn stop_consuming(&self, grace: Duration) -> Result<(), ShutdownError> {
        let started = std::time::Instant::now();
        self.shared().stop.send_replace(true);
        let consumers: Vec<_> = std::mem::take(&mut *self.inner.consumers.lock());
        for consumer in consumers {
            let _ = consumer.await;
        }
        // Taken: a later call (shutdown's) has nothing left to wait for.
        let groups: Vec<_> = std::mem::take(&mut *self.inner.groups.lock());
        let mut in_flight = 0;
        for group in groups {
            let left = grace.saturating_sub(started.elapsed());
            in_flight += group.drain(left).await;
        }
        ShutdownError::drained(in_flight, started.elapsed())
    }

    async fn shutdown(&self) -> Result<(), ShutdownError> {
        let mut done = self.inner.shut_down.lock().await;
        if *done {
            return Ok(());
        }
        let drained = self.stop_consuming(self.shared().nats.drain_timeout).await;
        self.shared().set_closed();
        self.inner.replies.close().await;
        *done = true;
        // Drain flushes what is buffered (the last acks) and closes.
        let closed = match tokio::time::timeout(
            self.shared().nats.publish_wait,
            self.shared().client.drain(),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ShutdownError::Close(e.to_string())),
            Err(_) => Err(ShutdownError::Close(format!(
                "the connection did not drain within {:?}",
                self.shared().nats.publish_wait
            ))),
        };
        drained.and(closed)
    }
}

//! Reading and replaying a group's dead-letter queue.
//!
//! AMQP 0-9-1 has no "browse": the store takes every message of the DLQ with
//! `basic.get` (unacknowledged) on a channel of its own, reads them, then
//! closes the channel, which puts them all back. A replay acks the one message
//! it re-sent. One listing or replay runs at a time per bus.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use lapin::Channel;
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::ShortString;
use messaging_abstractions::{DeadLetter, DeadLetterStore, FailureKind, PublishError};
use parking_lot::Mutex;
use tracing::warn;
use uuid::Uuid;

use crate::codec::{self, Headers};
use crate::link::{Link, NoLink, SendError, Shared};

/// Upper bound of the messages one listing reads from one DLQ.
const MAX_LISTED: usize = 100_000;

/// The [`DeadLetterStore`] of the RabbitMQ provider.
pub(crate) struct RabbitMqDeadLetters {
    shared: Arc<Shared>,
    /// Groups this bus subscribed or listed: `list(None)` and `replay` look there.
    groups: Mutex<BTreeSet<String>>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl RabbitMqDeadLetters {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            groups: Mutex::new(BTreeSet::new()),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn remember(&self, group: &str) {
        self.groups.lock().insert(group.to_owned());
    }

    async fn link(&self) -> Result<Arc<Link>, PublishError> {
        let deadline = tokio::time::Instant::now() + self.shared.rabbit.publish_wait;
        self.shared
            .wait_link(Some(deadline), 0)
            .await
            .map_err(|e| match e {
                NoLink::Closed => PublishError::ShutDown,
                NoLink::Unavailable(reason) => PublishError::Unavailable(reason),
            })
    }

    /// Takes up to [`MAX_LISTED`] messages of the group's DLQ, unacked.
    async fn take_all(
        &self,
        channel: &Channel,
        group: &str,
    ) -> Result<Vec<BasicGetMessage>, lapin::Error> {
        let queue = ShortString::from(self.shared.names.dead_letter_queue(group).as_str());
        let mut taken = Vec::new();
        while taken.len() < MAX_LISTED {
            match channel
                .basic_get(queue.clone(), BasicGetOptions { no_ack: false })
                .await?
            {
                Some(message) => taken.push(message),
                None => break,
            }
        }
        Ok(taken)
    }

    fn to_dead_letter(&self, group: &str, message: &BasicGetMessage) -> DeadLetter {
        let delivery = &message.delivery;
        let props = &delivery.properties;
        let headers = Headers::of(props);
        let envelope = codec::decode(props, delivery.routing_key.as_str(), &delivery.data)
            .unwrap_or_else(|_| {
                codec::best_effort(props, delivery.routing_key.as_str(), &delivery.data)
            });
        let id = headers
            .text(codec::H_DEAD_LETTER_ID)
            .and_then(|id| Uuid::parse_str(&id).ok())
            .unwrap_or(envelope.message_id);
        let chassis_kind = headers
            .text(codec::H_FAILURE_KIND)
            .and_then(|k| codec::failure_kind(&k));
        let (kind, reason, attempts) = match chassis_kind {
            Some(kind) => (
                kind,
                headers.text(codec::H_FAILURE_REASON).unwrap_or_default(),
                headers.count(codec::H_ATTEMPTS).max(1),
            ),
            // Dead-lettered by the broker itself: the quorum delivery limit.
            None => (
                FailureKind::Retryable,
                format!(
                    "dead-lettered by the broker ({}): delivered more than {} times without \
                     being settled",
                    headers
                        .death_reason()
                        .unwrap_or_else(|| "no reason given".into()),
                    self.shared.rabbit.delivery_limit
                ),
                headers.count(codec::H_ATTEMPTS)
                    + headers
                        .count(codec::H_DELIVERY_COUNT)
                        .max(self.shared.rabbit.delivery_limit)
                    + 1,
            ),
        };
        DeadLetter {
            id,
            group: headers
                .text(codec::H_GROUP)
                .unwrap_or_else(|| group.to_owned()),
            envelope,
            kind,
            reason,
            attempts,
            failed_at: codec::failed_at(&headers).unwrap_or_else(SystemTime::now),
        }
    }

    async fn list_group(&self, link: &Link, group: &str) -> Result<Vec<DeadLetter>, lapin::Error> {
        let channel = link.connection.create_channel().await?;
        let taken = self.take_all(&channel, group).await;
        let letters = taken.map(|t| t.iter().map(|m| self.to_dead_letter(group, m)).collect());
        // Closing the channel puts every taken message back.
        let _ = channel.close(200, "dead letters listed".into()).await;
        letters
    }

    /// Looks for `id` in `group`'s DLQ; when found, re-sends it to the group's
    /// queue and acks it.
    async fn replay_in(&self, link: &Link, group: &str, id: Uuid) -> Result<bool, PublishError> {
        let unavailable = |e: lapin::Error| PublishError::Unavailable(e.to_string());
        let channel = link
            .connection
            .create_channel()
            .await
            .map_err(unavailable)?;
        let taken = match self.take_all(&channel, group).await {
            Ok(taken) => taken,
            // No DLQ for this group (never declared): nothing to replay.
            Err(_) => return Ok(false),
        };
        let found = taken
            .iter()
            .find(|m| self.to_dead_letter(group, m).id == id);
        let result = match found {
            None => Ok(false),
            Some(message) => {
                let delivery = &message.delivery;
                let queue = self.shared.names.group_queue(group);
                let sent = link
                    .send_confirmed(
                        "",
                        ShortString::from(queue.as_str()),
                        &delivery.data,
                        codec::for_replay(&delivery.properties),
                        self.shared.rabbit.confirm_timeout,
                    )
                    .await;
                match sent {
                    Ok(()) => delivery
                        .ack(BasicAckOptions::default())
                        .await
                        .map(|_| true)
                        .map_err(unavailable),
                    Err(e) => Err(send_error(e, delivery.properties.message_id(), &queue)),
                }
            }
        };
        let _ = channel.close(200, "dead letter replayed".into()).await;
        result
    }
}

fn send_error(e: SendError, message_id: &Option<ShortString>, queue: &str) -> PublishError {
    let message_id = message_id
        .as_ref()
        .and_then(|id| Uuid::parse_str(id.as_str()).ok())
        .unwrap_or_default();
    match e {
        SendError::Link(reason) => PublishError::Unavailable(reason),
        SendError::Unroutable => PublishError::Unroutable {
            message_id,
            event_type: format!("(replay to queue `{queue}`)"),
        },
        SendError::Nacked => PublishError::Rejected {
            message_id,
            reason: "basic.nack".into(),
        },
        SendError::Timeout(t) => PublishError::Timeout(t),
    }
}

#[async_trait]
impl DeadLetterStore for RabbitMqDeadLetters {
    async fn list(&self, group: Option<&str>) -> Vec<DeadLetter> {
        let groups: Vec<String> = match group {
            Some(g) => {
                self.remember(g);
                vec![g.to_owned()]
            }
            None => self.groups.lock().iter().cloned().collect(),
        };
        let _one = self.one_at_a_time.lock().await;
        let link = match self.link().await {
            Ok(link) => link,
            Err(e) => {
                warn!(error = %e, "cannot list dead letters");
                return Vec::new();
            }
        };
        let mut letters = Vec::new();
        for group in groups {
            match self.list_group(&link, &group).await {
                Ok(mut l) => letters.append(&mut l),
                Err(e) => warn!(%group, error = %e, "cannot list dead letters"),
            }
        }
        letters.sort_by_key(|l| l.failed_at);
        letters
    }

    async fn replay(&self, id: Uuid) -> Result<bool, PublishError> {
        let groups: Vec<String> = self.groups.lock().iter().cloned().collect();
        let _one = self.one_at_a_time.lock().await;
        let link = self.link().await?;
        for group in groups {
            if self.replay_in(&link, &group, id).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

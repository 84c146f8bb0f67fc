//! Reading and replaying the dead-letter stream.
//!
//! Dead letters are messages of the stream `<prefix>_dead_letters`, subject
//! `<prefix>_dlq.<group>`, kept until replayed. Listing reads them one by
//! one by sequence (`STREAM.MSG.GET` with `next_by_subj`), without a
//! consumer. A replay publishes the original message again to its event
//! subject, marked for its group only (other groups of that subject
//! acknowledge it unhandled), waits for the stream's acknowledgement, then
//! deletes the dead letter.

use std::sync::Arc;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::message::StreamMessage;
use async_trait::async_trait;
use bytes::Bytes;
use messaging_abstractions::{DeadLetter, DeadLetterStore, PublishError};
use tracing::warn;
use uuid::Uuid;

use crate::codec;
use crate::shared::Shared;
use crate::topology::Names;

/// Upper bound of the dead letters one listing reads.
const MAX_LISTED: usize = 100_000;

/// The [`DeadLetterStore`] of the NATS provider.
pub(crate) struct NatsDeadLetters {
    shared: Arc<Shared>,
}

impl NatsDeadLetters {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The dead letters under `subject` (a group's, or all with the
    /// wildcard), oldest first, with their stream sequence.
    async fn read(&self, subject: &str) -> Result<Vec<(u64, DeadLetter)>, String> {
        let shared = &self.shared;
        let name = shared.names.dead_letter_stream();
        let stream = match shared.js.get_stream(&name).await {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    GetStreamErrorKind::JetStream(js)
                        if js.error_code() == ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                // Nothing was ever dead-lettered.
                return Ok(Vec::new());
            }
            Err(e) => return Err(format!("cannot open stream `{name}`: {e}")),
        };
        let mut letters = Vec::new();
        let mut next = 1;
        while letters.len() < MAX_LISTED {
            match stream.get_first_raw_message_by_subject(subject, next).await {
                Ok(message) => {
                    next = message.sequence + 1;
                    if let Some(letter) = to_dead_letter(&message) {
                        letters.push((message.sequence, letter));
                    }
                }
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound =>
                {
                    break;
                }
                Err(e) => return Err(format!("cannot read stream `{name}`: {e}")),
            }
        }
        Ok(letters)
    }
}

fn to_dead_letter(message: &StreamMessage) -> Option<DeadLetter> {
    let headers = Some(&message.headers);
    let failure = codec::failure(headers)?;
    let envelope = codec::decode(headers, &message.payload)
        .unwrap_or_else(|_| codec::best_effort(&failure.event_type, &message.payload));
    Some(DeadLetter {
        id: failure.id,
        group: failure.group.clone(),
        envelope,
        kind: failure.kind(),
        reason: failure.reason.clone(),
        attempts: failure.attempts,
        failed_at: failure.failed_at(),
    })
}

#[async_trait]
impl DeadLetterStore for NatsDeadLetters {
    async fn list(&self, group: Option<&str>) -> Vec<DeadLetter> {
        let names = &self.shared.names;
        let subject = match group {
            Some(group) => names.dead_letter_subject(group),
            None => names.dead_letter_subject(">"),
        };
        match self.read(&subject).await {
            Ok(letters) => letters.into_iter().map(|(_, l)| l).collect(),
            Err(e) => {
                warn!(error = %e, "cannot list dead letters");
                Vec::new()
            }
        }
    }

    async fn replay(&self, id: Uuid) -> Result<bool, PublishError> {
        let shared = &self.shared;
        let all = shared.names.dead_letter_subject(">");
        let letters = self.read(&all).await.map_err(PublishError::Unavailable)?;
        let Some((sequence, letter)) = letters.into_iter().find(|(_, l)| l.id == id) else {
            return Ok(false);
        };
        let stream_name = shared.names.dead_letter_stream();
        let stream = shared
            .js
            .get_stream_no_info(&stream_name)
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        let message = stream
            .get_raw_message(sequence)
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        let event_type = codec::failure(Some(&message.headers))
            .map(|f| f.event_type)
            .unwrap_or_else(|| letter.envelope.event_type.clone());
        shared
            .ensure_events_stream(Names::namespace(&event_type))
            .await
            .map_err(PublishError::Unavailable)?;
        shared
            .send_acked(
                shared.names.subject(&event_type),
                codec::for_replay(Some(&message.headers), &letter.group),
                Bytes::clone(&message.payload),
            )
            .await
            .map_err(|e| shared.publish_error(e, letter.envelope.message_id))?;
        stream
            .delete_message(sequence)
            .await
            .map_err(|e| PublishError::Unavailable(format!("replayed, but not removed: {e}")))?;
        Ok(true)
    }
}

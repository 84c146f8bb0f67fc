//! The envelope on the wire: one JSON header with every field but the
//! payload, and the payload as the message body.
//!
//! NATS header values may not hold line breaks and header names are
//! restricted, while envelope fields and free headers may hold anything; a
//! JSON object (which escapes control characters) carries them all exactly,
//! `None` and empty kept apart. The header is `Chassis-Envelope`:
//!
//! ```json
//! {"id":"0199…","type":"order.placed.v1","correlation_id":"c-1","causation_id":null,
//!  "traceparent":"00-…","tracestate":null,"timestamp":"1763700000.123456789",
//!  "content_type":"application/json","partition_key":"order-42","headers":{"tenant":"acme"}}
//! ```
//!
//! A dead letter carries `Chassis-Failure` next to it (kind, reason,
//! attempts, when, its id, the group); a replayed one carries
//! `Chassis-Replay-Group`, the one group that handles it again.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use messaging_abstractions::{EncodeError, Envelope, FailureKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub(crate) const H_ENVELOPE: &str = "Chassis-Envelope";
pub(crate) const H_FAILURE: &str = "Chassis-Failure";
pub(crate) const H_REPLAY_GROUP: &str = "Chassis-Replay-Group";

#[derive(Serialize)]
struct MetaOut<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    correlation_id: &'a Option<String>,
    causation_id: &'a Option<String>,
    traceparent: &'a Option<String>,
    tracestate: &'a Option<String>,
    timestamp: String,
    content_type: &'a str,
    partition_key: &'a Option<String>,
    headers: &'a BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct MetaIn {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    timestamp: String,
    content_type: String,
    partition_key: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Why and when a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Failure {
    pub(crate) kind: String,
    pub(crate) reason: String,
    pub(crate) attempts: u32,
    pub(crate) failed_at: String,
    pub(crate) id: Uuid,
    pub(crate) group: String,
    /// The event type the message was published under (its subject's).
    pub(crate) event_type: String,
}

impl Failure {
    pub(crate) fn new(
        group: &str,
        event_type: &str,
        kind: FailureKind,
        reason: &str,
        attempts: u32,
    ) -> Self {
        Self {
            event_type: event_type.to_owned(),
            kind: kind.as_str().to_owned(),
            reason: reason.to_owned(),
            attempts,
            failed_at: timestamp_text(SystemTime::now()),
            id: Uuid::now_v7(),
            group: group.to_owned(),
        }
    }

    pub(crate) fn kind(&self) -> FailureKind {
        [
            FailureKind::Retryable,
            FailureKind::Permanent,
            FailureKind::Undecodable,
        ]
        .into_iter()
        .find(|k| k.as_str() == self.kind)
        .unwrap_or(FailureKind::Permanent)
    }

    pub(crate) fn failed_at(&self) -> SystemTime {
        parse_timestamp(&self.failed_at).unwrap_or(UNIX_EPOCH)
    }
}

/// The exact text form of a timestamp: `secs.nanos` from the Unix epoch,
/// negative before it.
fn timestamp_text(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        Err(before) => {
            let d = before.duration();
            format!("-{}.{:09}", d.as_secs(), d.subsec_nanos())
        }
    }
}

fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, nanos) = rest.split_once('.')?;
    let d = Duration::new(secs.parse().ok()?, nanos.parse().ok()?);
    if negative {
        UNIX_EPOCH.checked_sub(d)
    } else {
        UNIX_EPOCH.checked_add(d)
    }
}

/// The headers carrying `envelope` (its payload is the body).
pub(crate) fn encode(envelope: &Envelope) -> Result<HeaderMap, EncodeError> {
    let meta = MetaOut {
        id: envelope.message_id,
        event_type: &envelope.event_type,
        correlation_id: &envelope.correlation_id,
        causation_id: &envelope.causation_id,
        traceparent: &envelope.traceparent,
        tracestate: &envelope.tracestate,
        timestamp: timestamp_text(envelope.timestamp),
        content_type: &envelope.content_type,
        partition_key: &envelope.partition_key,
        headers: &envelope.headers,
    };
    let json = serde_json::to_string(&meta).map_err(|source| EncodeError {
        event_type: envelope.event_type.clone(),
        source,
    })?;
    let mut headers = HeaderMap::new();
    // serde_json escapes every control character: no line break can reach
    // the header, so the conversion cannot fail.
    headers.insert(H_ENVELOPE, json.as_str());
    Ok(headers)
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str())
}

/// Rebuilds the envelope of a received message. `Err` says why it is not a
/// chassis envelope (it is then dead-lettered as undecodable).
pub(crate) fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Envelope, String> {
    let json = header(headers, H_ENVELOPE)
        .ok_or_else(|| format!("header `{H_ENVELOPE}` is missing: not a chassis envelope"))?;
    let meta: MetaIn = serde_json::from_str(json)
        .map_err(|e| format!("header `{H_ENVELOPE}` is not a chassis envelope: {e}"))?;
    let timestamp = parse_timestamp(&meta.timestamp).ok_or_else(|| {
        format!(
            "header `{H_ENVELOPE}`: timestamp `{}` is not `secs.nanos`",
            meta.timestamp
        )
    })?;
    Ok(Envelope {
        message_id: meta.id,
        event_type: meta.event_type,
        correlation_id: meta.correlation_id,
        causation_id: meta.causation_id,
        traceparent: meta.traceparent,
        tracestate: meta.tracestate,
        timestamp,
        content_type: meta.content_type,
        partition_key: meta.partition_key,
        headers: meta.headers,
        payload: payload.to_vec(),
    })
}

/// An envelope for a message [`decode`] refused, keeping what can be read
/// (the event type from the subject, the body), so its dead letter shows it.
pub(crate) fn best_effort(event_type: &str, payload: &[u8]) -> Envelope {
    Envelope::new(event_type, "", payload.to_vec())
}

/// The failure a dead letter carries.
pub(crate) fn failure(headers: Option<&HeaderMap>) -> Option<Failure> {
    header(headers, H_FAILURE).and_then(|json| serde_json::from_str(json).ok())
}

/// The group a replayed message is for, if it is one.
pub(crate) fn replay_group(headers: Option<&HeaderMap>) -> Option<&str> {
    header(headers, H_REPLAY_GROUP)
}

/// The headers of a dead letter: the message's own, and the failure.
pub(crate) fn for_dead_letter(original: Option<&HeaderMap>, failure: &Failure) -> HeaderMap {
    let mut headers = without(original, &[H_FAILURE, H_REPLAY_GROUP]);
    let json = serde_json::to_string(failure).unwrap_or_default();
    headers.insert(H_FAILURE, json.as_str());
    headers
}

/// The headers of a replayed dead letter: the original message's, for `group`.
pub(crate) fn for_replay(dead_letter: Option<&HeaderMap>, group: &str) -> HeaderMap {
    let mut headers = without(dead_letter, &[H_FAILURE, H_REPLAY_GROUP]);
    headers.insert(H_REPLAY_GROUP, group);
    headers
}

fn without(headers: Option<&HeaderMap>, drop: &[&str]) -> HeaderMap {
    let mut copy = HeaderMap::new();
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            if drop.iter().any(|d| name.as_ref() as &str == *d) {
                continue;
            }
            for value in values {
                copy.append(name.clone(), value.clone());
            }
        }
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_envelope() -> Envelope {
        let mut env = Envelope::new(
            "order.completed.v1",
            "application/json",
            b"{\"n\":1}".to_vec(),
        )
        .with_correlation_id("corr-1\r\nwith a line break")
        .with_header("tenant", "größe ✓")
        .with_header("a name: with colon", "v")
        .with_header("empty", "");
        env.causation_id = Some(String::new());
        env.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        env.partition_key = Some("order-42".into());
        env.timestamp = UNIX_EPOCH + Duration::new(1_763_700_000, 123_456_789);
        env
    }

    #[test]
    fn every_field_round_trips() {
        for env in [
            full_envelope(),
            Envelope::new("t.v1", "", Vec::new()),
            Envelope {
                timestamp: UNIX_EPOCH - Duration::new(86_400, 5),
                ..full_envelope()
            },
        ] {
            let headers = encode(&env).unwrap();
            assert_eq!(decode(Some(&headers), &env.payload).unwrap(), env);
        }
    }

    #[test]
    fn foreign_messages_are_refused_with_a_reason() {
        let err = decode(None, b"x").unwrap_err();
        assert!(err.contains(H_ENVELOPE), "{err}");
        let mut headers = HeaderMap::new();
        headers.insert(H_ENVELOPE, "{not json");
        assert!(decode(Some(&headers), b"x").is_err());
        let env = best_effort("t.v1", b"x");
        assert_eq!(
            (env.event_type.as_str(), env.payload.as_slice()),
            ("t.v1", &b"x"[..])
        );
    }

    #[test]
    fn dead_letters_carry_the_failure_and_replays_drop_it() {
        let env = full_envelope();
        let headers = encode(&env).unwrap();
        let failure = Failure::new(
            "shipping",
            "order.completed.v1",
            FailureKind::Permanent,
            "bad\norder",
            2,
        );
        let dead = for_dead_letter(Some(&headers), &failure);
        let read = super::failure(Some(&dead)).unwrap();
        assert_eq!(read, failure);
        assert_eq!(read.kind(), FailureKind::Permanent);
        assert!(read.failed_at() > UNIX_EPOCH);
        assert_eq!(decode(Some(&dead), &env.payload).unwrap(), env);
        let replayed = for_replay(Some(&dead), "shipping");
        assert!(super::failure(Some(&replayed)).is_none());
        assert_eq!(replay_group(Some(&replayed)), Some("shipping"));
        assert_eq!(decode(Some(&replayed), &env.payload).unwrap(), env);
    }
}

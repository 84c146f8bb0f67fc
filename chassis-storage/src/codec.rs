//! How an envelope is stored in an outbox row's `body`.
//!
//! JSON, with the payload kept byte for byte: as text when it is UTF-8 (JSON
//! payloads always are, and stay readable in the table), else as a byte array.

use std::collections::BTreeMap;
use std::time::SystemTime;

use messaging_abstractions::Envelope;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// Version of the stored format, so a later format can still read old rows.
const FORMAT: u32 = 1;

/// An outbox row's body could not be read back into an envelope. The relay
/// quarantines such a message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OutboxDecodeError {
    /// Not the JSON shape written by the outbox encoder.
    #[error("outbox body is not a stored envelope: {0}")]
    Malformed(String),
    /// Written by a newer chassis.
    #[error("outbox body has format {found}, expected {FORMAT}")]
    Format {
        /// The format found.
        found: u32,
    },
    /// Neither `payload_text` nor `payload_bytes` is present.
    #[error("outbox body of message {0} has no payload")]
    MissingPayload(Uuid),
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    message_id: Uuid,
    event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
    timestamp: SystemTime,
    content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition_key: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_bytes: Option<Vec<u8>>,
}

/// Encodes an envelope for an outbox row.
/// Fails only for a timestamp before 1970.
pub(crate) fn encode(envelope: Envelope) -> Result<Vec<u8>, serde_json::Error> {
    let (payload_text, payload_bytes) = match String::from_utf8(envelope.payload) {
        Ok(text) => (Some(text), None),
        Err(e) => (None, Some(e.into_bytes())),
    };
    let stored = Stored {
        format: FORMAT,
        message_id: envelope.message_id,
        event_type: envelope.event_type,
        correlation_id: envelope.correlation_id,
        causation_id: envelope.causation_id,
        traceparent: envelope.traceparent,
        tracestate: envelope.tracestate,
        timestamp: envelope.timestamp,
        content_type: envelope.content_type,
        partition_key: envelope.partition_key,
        headers: envelope.headers,
        payload_text,
        payload_bytes,
    };
    serde_json::to_vec(&stored)
}

/// Reads an envelope back from an outbox row.
pub fn decode(body: &[u8]) -> Result<Envelope, OutboxDecodeError> {
    let stored: Stored =
        serde_json::from_slice(body).map_err(|e| OutboxDecodeError::Malformed(e.to_string()))?;
    if stored.format != FORMAT {
        return Err(OutboxDecodeError::Format {
            found: stored.format,
        });
    }
    let payload = match (stored.payload_text, stored.payload_bytes) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(bytes)) => bytes,
        (None, None) => return Err(OutboxDecodeError::MissingPayload(stored.message_id)),
    };
    Ok(Envelope {
        message_id: stored.message_id,
        event_type: stored.event_type,
        correlation_id: stored.correlation_id,
        causation_id: stored.causation_id,
        traceparent: stored.traceparent,
        tracestate: stored.tracestate,
        timestamp: stored.timestamp,
        content_type: stored.content_type,
        partition_key: stored.partition_key,
        headers: stored.headers,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let mut env = Envelope::new("t.v1", "application/json", br#"{"a": 1}"#.to_vec())
            .with_correlation_id("c")
            .with_header("x-h", "v");
        env.causation_id = Some("cause".into());
        env.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        env.tracestate = Some("k=v".into());
        env.partition_key = Some("o-1".into());
        assert_eq!(decode(&encode(env.clone()).unwrap()).unwrap(), env);
        let binary = Envelope::new("b.v1", "application/octet-stream", vec![0xff, 0, 7]);
        assert_eq!(decode(&encode(binary.clone()).unwrap()).unwrap(), binary);
    }

    #[test]
    fn rejects_garbage_precisely() {
        assert!(matches!(
            decode(b"not json"),
            Err(OutboxDecodeError::Malformed(_))
        ));
        let mut v: serde_json::Value =
            serde_json::from_slice(&encode(Envelope::new("t.v1", "x", vec![1])).unwrap()).unwrap();
        v["format"] = 9.into();
        assert_eq!(
            decode(&serde_json::to_vec(&v).unwrap()),
            Err(OutboxDecodeError::Format { found: 9 })
        );
    }
}

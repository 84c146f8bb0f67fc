//! The byte format messages travel in between publish and delivery.
//!
//! Every message is encoded once on publish and decoded on every delivery, as
//! on a real broker: whatever does not survive a trip through bytes fails here
//! too. The format is a compact, versioned, length-prefixed frame (like AMQP
//! properties plus body) rather than JSON, so the payload bytes are copied,
//! not re-encoded, and the bus stays fast.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use messaging_abstractions::Envelope;
use thiserror::Error;
use uuid::Uuid;

/// First byte of every frame; bump when the layout changes.
const VERSION: u8 = 1;

/// A frame could not be decoded back into an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed message frame at `{field}`: {problem}")]
pub(crate) struct WireError {
    /// The field being read.
    pub(crate) field: &'static str,
    /// What was wrong.
    pub(crate) problem: String,
}

/// Encodes `envelope` into one frame.
pub(crate) fn encode(envelope: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(envelope));
    out.push(VERSION);
    out.extend_from_slice(envelope.message_id.as_bytes());
    let (negative, since) = match envelope.timestamp.duration_since(UNIX_EPOCH) {
        Ok(d) => (0u8, d),
        Err(e) => (1u8, e.duration()),
    };
    out.push(negative);
    out.extend_from_slice(&since.as_secs().to_le_bytes());
    out.extend_from_slice(&since.subsec_nanos().to_le_bytes());
    put_str(&mut out, &envelope.event_type);
    put_str(&mut out, &envelope.content_type);
    put_opt(&mut out, envelope.correlation_id.as_deref());
    put_opt(&mut out, envelope.causation_id.as_deref());
    put_opt(&mut out, envelope.traceparent.as_deref());
    put_opt(&mut out, envelope.tracestate.as_deref());
    put_opt(&mut out, envelope.partition_key.as_deref());
    put_len(&mut out, envelope.headers.len());
    for (name, value) in &envelope.headers {
        put_str(&mut out, name);
        put_str(&mut out, value);
    }
    put_bytes(&mut out, &envelope.payload);
    debug_assert_eq!(out.len(), out.capacity(), "encoded_len is exact");
    out
}

/// The exact size of `envelope`'s frame: one allocation, no spare room
/// (so turning the frame into `Bytes` does not copy either).
fn encoded_len(envelope: &Envelope) -> usize {
    const FIXED: usize = 1 + 16 + 1 + 8 + 4; // version, id, sign, secs, nanos
    let string = |s: &str| 4 + s.len();
    let optional = |o: &Option<String>| 1 + o.as_deref().map_or(0, string);
    FIXED
        + string(&envelope.event_type)
        + string(&envelope.content_type)
        + optional(&envelope.correlation_id)
        + optional(&envelope.causation_id)
        + optional(&envelope.traceparent)
        + optional(&envelope.tracestate)
        + optional(&envelope.partition_key)
        + 4
        + envelope
            .headers
            .iter()
            .map(|(k, v)| string(k) + string(v))
            .sum::<usize>()
        + 4
        + envelope.payload.len()
}

/// Decodes one frame.
pub(crate) fn decode(frame: &[u8]) -> Result<Envelope, WireError> {
    let mut r = Reader { rest: frame };
    let version = r.take(1, "version")?[0];
    if version != VERSION {
        return Err(WireError {
            field: "version",
            problem: format!("expected {VERSION}, got {version}"),
        });
    }
    let id: [u8; 16] = r.array("message_id")?;
    let negative = r.take(1, "timestamp")?[0];
    let secs = u64::from_le_bytes(r.array("timestamp")?);
    let nanos = u32::from_le_bytes(r.array("timestamp")?);
    if nanos >= 1_000_000_000 || negative > 1 {
        return Err(WireError {
            field: "timestamp",
            problem: "out of range".into(),
        });
    }
    let since = Duration::new(secs, nanos);
    let timestamp = if negative == 1 {
        UNIX_EPOCH.checked_sub(since)
    } else {
        UNIX_EPOCH.checked_add(since)
    }
    .ok_or(WireError {
        field: "timestamp",
        problem: "not representable on this platform".into(),
    })?;
    let event_type = r.string("event_type")?;
    let content_type = r.string("content_type")?;
    let correlation_id = r.opt("correlation_id")?;
    let causation_id = r.opt("causation_id")?;
    let traceparent = r.opt("traceparent")?;
    let tracestate = r.opt("tracestate")?;
    let partition_key = r.opt("partition_key")?;
    let count = r.len("headers")?;
    let mut headers = BTreeMap::new();
    for _ in 0..count {
        let name = r.string("header name")?;
        let value = r.string("header value")?;
        headers.insert(name, value);
    }
    let payload = r.bytes("payload")?.to_vec();
    if !r.rest.is_empty() {
        return Err(WireError {
            field: "payload",
            problem: format!("{} trailing byte(s)", r.rest.len()),
        });
    }
    Ok(Envelope {
        message_id: Uuid::from_bytes(id),
        event_type,
        correlation_id,
        causation_id,
        traceparent,
        tracestate,
        timestamp,
        content_type,
        partition_key,
        headers,
        payload,
    })
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Lengths above 4 GiB cannot occur: a Vec that large is not a message.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError {
                field,
                problem: format!("needs {n} byte(s), {} left", self.rest.len()),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn len(&mut self, field: &'static str) -> Result<usize, WireError> {
        Ok(u32::from_le_bytes(self.array(field)?) as usize)
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let n = self.len(field)?;
        self.take(n, field)
    }

    fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        let bytes = self.bytes(field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| WireError {
                field,
                problem: e.to_string(),
            })
    }

    fn opt(&mut self, field: &'static str) -> Result<Option<String>, WireError> {
        match self.take(1, field)?[0] {
            0 => Ok(None),
            1 => self.string(field).map(Some),
            other => Err(WireError {
                field,
                problem: format!("expected presence flag 0 or 1, got {other}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Envelope {
        let mut e = Envelope::new(
            "order.completed.v1",
            "application/json",
            b"{\"a\":1}".to_vec(),
        )
        .with_correlation_id("corr")
        .with_header("x-tenant", "t-1")
        .with_header("empty", "");
        e.causation_id = Some("cause".into());
        e.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        e.tracestate = Some("vendor=1".into());
        e.partition_key = Some("order-7".into());
        e
    }

    #[test]
    fn round_trip_keeps_every_field() {
        for e in [
            full(),
            Envelope::new("x.v1", "application/octet-stream", Vec::new()),
        ] {
            let frame = encode(&e);
            assert_eq!(frame.len(), encoded_len(&e));
            assert_eq!(decode(&frame).unwrap(), e);
        }
    }

    #[test]
    fn timestamps_before_epoch_survive() {
        let mut e = full();
        e.timestamp = UNIX_EPOCH - Duration::new(5, 7);
        assert_eq!(decode(&encode(&e)).unwrap().timestamp, e.timestamp);
    }

    #[test]
    fn truncated_and_corrupt_frames_are_errors() {
        let frame = encode(&full());
        for cut in [0, 1, 17, 30, frame.len() - 1] {
            assert!(decode(&frame[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = frame.clone();
        bad[0] = 9;
        assert_eq!(decode(&bad).unwrap_err().field, "version");
        let mut trailing = frame;
        trailing.push(0);
        assert_eq!(decode(&trailing).unwrap_err().field, "payload");
    }
}

//! The envelope on the wire: a CloudEvent after the CloudEvents NATS
//! protocol binding, in the content mode of `messaging.nats.content_mode`.
//!
//! Binary mode (the default): every attribute of
//! [`messaging_abstractions::cloudevents`] is a header named `ce-` + its name
//! (`datacontenttype` included), its value percent-encoded as the binding
//! prescribes (space, `"`, `%`, control and non-ASCII characters as `%XY` of
//! their UTF-8 bytes), so any value survives NATS's header rules exactly. The
//! payload is the message body.
//!
//! Structured mode: one header, `Content-Type: application/cloudevents+json`,
//! and the whole event as the body ([`cloudevents::to_structured`]).
//!
//! Read side: a `Content-Type` header starting with `application/cloudevents`
//! is the structured content mode (the JSON event format in the body); `ce-`
//! headers (any case) make a binary-mode event. For one release a message of
//! the previous format (one `Chassis-Envelope` JSON header) is read too, so a
//! rolling upgrade loses nothing. Anything else is refused with the reason.
//!
//! A dead letter carries `Chassis-Failure` next to it (kind, reason,
//! attempts, when, its id, the group); a replayed one carries
//! `Chassis-Replay-Group`, the one group that handles it again.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use messaging_abstractions::cloudevents::{self, ContentMode};
use messaging_abstractions::{EncodeError, Envelope, FailureKind, epoch_text};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The prefix of attribute headers.
pub(crate) const CE_PREFIX: &str = "ce-";
/// The previous format's one header, read for one release.
const H_ENVELOPE: &str = "Chassis-Envelope";
/// Besides controls and non-ASCII (always encoded), what the binding encodes.
const ENCODED: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');
pub(crate) const H_FAILURE: &str = "Chassis-Failure";
pub(crate) const H_REPLAY_GROUP: &str = "Chassis-Replay-Group";

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
            failed_at: epoch_text::format(SystemTime::now()),
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
        epoch_text::parse(&self.failed_at).unwrap_or(UNIX_EPOCH)
    }
}

/// The `ce-` header of each standard attribute, made once: building a
/// header name from text validates it and looks it up among the standard
/// names, per header of every message.
static CE_HEADERS: [(&str, HeaderName); 12] = {
    use cloudevents::attribute as a;
    [
        (a::SPECVERSION, HeaderName::from_static("ce-specversion")),
        (a::ID, HeaderName::from_static("ce-id")),
        (a::SOURCE, HeaderName::from_static("ce-source")),
        (a::TYPE, HeaderName::from_static("ce-type")),
        (a::TIME, HeaderName::from_static("ce-time")),
        (
            a::DATACONTENTTYPE,
            HeaderName::from_static("ce-datacontenttype"),
        ),
        (
            a::CORRELATIONID,
            HeaderName::from_static("ce-correlationid"),
        ),
        (a::CAUSATIONID, HeaderName::from_static("ce-causationid")),
        (a::TRACEPARENT, HeaderName::from_static("ce-traceparent")),
        (a::TRACESTATE, HeaderName::from_static("ce-tracestate")),
        (a::PARTITIONKEY, HeaderName::from_static("ce-partitionkey")),
        (
            a::CHASSISHEADERS,
            HeaderName::from_static("ce-chassisheaders"),
        ),
    ]
};

/// The header that marks the structured content mode.
static CONTENT_TYPE: HeaderName = HeaderName::from_static("Content-Type");

/// The headers and body carrying `envelope` published by `source`.
pub(crate) fn encode(
    envelope: &Envelope,
    source: &str,
    mode: ContentMode,
) -> Result<(HeaderMap, Bytes), EncodeError> {
    match mode {
        ContentMode::Binary => Ok((
            binary_headers(envelope, source),
            Bytes::copy_from_slice(&envelope.payload),
        )),
        ContentMode::Structured => {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE.clone(), cloudevents::STRUCTURED_JSON);
            Ok((
                headers,
                Bytes::from(cloudevents::to_structured(envelope, source)),
            ))
        }
    }
}

/// The `ce-` headers of `envelope` in binary mode.
fn binary_headers(envelope: &Envelope, source: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in cloudevents::attributes(envelope, source) {
        // Attribute names are lower-case letters and digits and the value is
        // percent-encoded to printable ASCII: both are valid NATS headers.
        let header = match CE_HEADERS.iter().find(|(n, _)| *n == name) {
            Some((_, header)) => header.clone(),
            None => HeaderName::from_str(&format!("{CE_PREFIX}{name}"))
                .expect("attribute names are letters and digits"),
        };
        // Most values need no escape: then the text itself, not a copy
        // written through the formatter.
        let encoded = match Cow::from(utf8_percent_encode(&value, ENCODED)) {
            Cow::Owned(encoded) => Some(encoded),
            Cow::Borrowed(_) => None,
        };
        headers.insert(header, encoded.unwrap_or_else(|| value.into_owned()));
    }
    headers
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str())
}

/// The value of a `ce-` header: unquoted if it is a quoted string (older
/// producers), then percent-decoded; invalid UTF-8 is refused.
fn attribute_value(name: &str, raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    // Most values are neither quoted nor escaped: then one copy (NATS
    // header values are text already).
    if !raw.starts_with('"') && !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let unquoted = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' {
                    chars.next().unwrap_or(c)
                } else {
                    c
                });
            }
            out
        }
        None => raw.to_owned(),
    };
    percent_decode_str(&unquoted)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|e| format!("header `{name}` is not percent-encoded UTF-8: {e}"))
}

/// Rebuilds the envelope of a received message: a CloudEvent (binary or
/// structured mode) or a message of the previous format. `Err` says why it is
/// neither (it is then dead-lettered as undecodable).
pub(crate) fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Envelope, String> {
    let mut attributes = Vec::new();
    let mut content_type = None;
    for (name, values) in headers.map(|h| h.iter()).into_iter().flatten() {
        let name: &str = name.as_ref();
        let Some(value) = values.first() else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.as_str());
        } else if let Some(attribute) = name
            .get(..CE_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(CE_PREFIX))
            .map(|_| &name[CE_PREFIX.len()..])
        {
            attributes.push((attribute, attribute_value(name, value.as_str())?));
        }
    }
    if content_type.is_some_and(cloudevents::is_structured) {
        return cloudevents::from_structured(payload).map_err(|e| e.to_string());
    }
    if !attributes.is_empty() {
        // Producers that follow the HTTP binding put `datacontenttype` in
        // `Content-Type`; `ce-datacontenttype`, read later, wins.
        if let Some(content_type) = content_type {
            attributes.insert(
                0,
                (
                    cloudevents::attribute::DATACONTENTTYPE,
                    content_type.to_owned(),
                ),
            );
        }
        return cloudevents::from_attributes(attributes, payload).map_err(|e| e.to_string());
    }
    if let Some(json) = header(headers, H_ENVELOPE) {
        return decode_previous(json, payload);
    }
    Err(format!(
        "neither a CloudEvent (no `{CE_PREFIX}specversion` header, and no `Content-Type: {}`) \
         nor a chassis message of the previous format (no `{H_ENVELOPE}` header)",
        cloudevents::STRUCTURED_JSON
    ))
}

/// Reads the previous format: one JSON header with every field.
fn decode_previous(json: &str, payload: &[u8]) -> Result<Envelope, String> {
    let meta: MetaIn = serde_json::from_str(json)
        .map_err(|e| format!("header `{H_ENVELOPE}` is not a chassis envelope: {e}"))?;
    let timestamp = epoch_text::parse(&meta.timestamp).ok_or_else(|| {
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
    use std::time::Duration;

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
            for mode in [ContentMode::Binary, ContentMode::Structured] {
                let (headers, body) = encode(&env, "order-service", mode).unwrap();
                assert_eq!(decode(Some(&headers), &body).unwrap(), env, "{mode:?}");
            }
        }
    }

    #[test]
    fn structured_mode_is_one_header_and_the_event_as_body() {
        let env = full_envelope();
        let (headers, body) = encode(&env, "order-service", ContentMode::Structured).unwrap();
        assert_eq!(headers.len(), 1);
        assert_eq!(
            header(Some(&headers), "Content-Type"),
            Some("application/cloudevents+json")
        );
        let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event["type"], "order.completed.v1");
        assert_eq!(event["correlationid"], "corr-1\r\nwith a line break");
        assert_eq!(event["data"], serde_json::json!({"n": 1}));
    }

    #[test]
    fn the_wire_follows_the_nats_binding() {
        let env = full_envelope();
        let (headers, body) = encode(&env, "order-service", ContentMode::Binary).unwrap();
        assert_eq!(body, env.payload);
        let get = |name: &str| header(Some(&headers), name);
        assert_eq!(get("ce-specversion"), Some("1.0"));
        assert_eq!(get("ce-source"), Some("order-service"));
        assert_eq!(get("ce-type"), Some("order.completed.v1"));
        assert_eq!(get("ce-datacontenttype"), Some("application/json"));
        assert_eq!(get("ce-time"), Some("2025-11-21T04:40:00.123456789Z"));
        assert_eq!(
            get("ce-correlationid"),
            Some("corr-1%0D%0Awith%20a%20line%20break")
        );
        // The binding's own example, read back; and a quoted value of an
        // older producer.
        let mut foreign = HeaderMap::new();
        for (k, v) in [
            ("CE-SpecVersion", "1.0"),
            ("ce-id", "1234-1234-1234"),
            ("ce-source", "\"/my context\""),
            ("ce-type", "com.example.someevent"),
            ("ce-comment", "Euro%20%E2%82%AC%20%f0%9f%98%80"),
        ] {
            foreign.insert(k, v);
        }
        let read = decode(Some(&foreign), b"{}").unwrap();
        assert_eq!(read.headers["comment"], "Euro € 😀");
        assert_eq!(read.event_type, "com.example.someevent");
        foreign.insert("ce-bad", "%C0%A0");
        let err = decode(Some(&foreign), b"{}").unwrap_err();
        assert!(err.contains("`ce-bad`"), "{err}");
    }

    #[test]
    fn structured_and_previous_messages_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Content-Type",
            "application/cloudevents+json; charset=utf-8",
        );
        let body = br#"{"specversion":"1.0","id":"1","source":"/py","type":"a.v1","data":[1]}"#;
        let env = decode(Some(&headers), body).unwrap();
        assert_eq!(
            (env.event_type.as_str(), env.payload.as_slice()),
            ("a.v1", &b"[1]"[..])
        );
        let id = Uuid::now_v7();
        let mut headers = HeaderMap::new();
        let previous = format!(
            r#"{{"id":"{id}","type":"old.v1","correlation_id":null,"causation_id":null,
            "traceparent":null,"tracestate":null,"timestamp":"1763700000.000000005",
            "content_type":"application/json","partition_key":"k","headers":{{"a":"b"}}}}"#
        )
        .replace('\n', "");
        headers.insert(H_ENVELOPE, previous.as_str());
        let env = decode(Some(&headers), b"x").unwrap();
        assert_eq!((env.message_id, env.event_type.as_str()), (id, "old.v1"));
        assert_eq!(env.partition_key.as_deref(), Some("k"));
        assert_eq!(env.timestamp, UNIX_EPOCH + Duration::new(1_763_700_000, 5));
    }

    #[test]
    fn foreign_messages_are_refused_with_a_reason() {
        let err = decode(None, b"x").unwrap_err();
        assert!(err.contains("neither a CloudEvent"), "{err}");
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
        let (headers, _) = encode(&env, "order-service", ContentMode::Binary).unwrap();
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

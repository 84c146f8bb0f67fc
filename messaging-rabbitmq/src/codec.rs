//! The envelope on the wire: AMQP properties, headers and body.
//!
//! | envelope field   | AMQP                                                        |
//! |------------------|-------------------------------------------------------------|
//! | `message_id`     | property `message_id` (UUID text)                           |
//! | `event_type`     | property `type`, and the routing key                        |
//! | `correlation_id` | property `correlation_id` (header `chassis-correlation-id` when longer than 255 bytes) |
//! | `causation_id`   | header `chassis-causation-id`                               |
//! | `traceparent`    | header `traceparent` (W3C name)                             |
//! | `tracestate`     | header `tracestate` (W3C name)                              |
//! | `timestamp`      | header `chassis-timestamp` (exact, `secs.nanos`), and property `timestamp` (seconds) |
//! | `content_type`   | property `content_type`                                     |
//! | `partition_key`  | header `chassis-partition-key`                              |
//! | `headers`        | header `chassis-headers`, a nested table of strings         |
//! | `payload`        | body                                                        |
//!
//! An absent header is `None`; a present one (even empty) is `Some`, so every
//! field round-trips exactly. Free headers live in their own table so they can
//! never collide with transport headers (`x-death`, `chassis-attempts`, ...).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use messaging_abstractions::{EncodeError, Envelope, FailureKind};
use uuid::Uuid;

use crate::topology::MAX_NAME_LEN;

pub(crate) const H_CAUSATION_ID: &str = "chassis-causation-id";
pub(crate) const H_CORRELATION_ID: &str = "chassis-correlation-id";
pub(crate) const H_TRACEPARENT: &str = "traceparent";
pub(crate) const H_TRACESTATE: &str = "tracestate";
pub(crate) const H_TIMESTAMP: &str = "chassis-timestamp";
pub(crate) const H_PARTITION_KEY: &str = "chassis-partition-key";
pub(crate) const H_HEADERS: &str = "chassis-headers";
/// Failed deliveries so far (set when a message goes to a delay queue or the DLQ).
pub(crate) const H_ATTEMPTS: &str = "chassis-attempts";
/// Classic queues: deliveries lost without a settle (crash-loop counter).
pub(crate) const H_REDELIVERIES: &str = "chassis-redeliveries";
pub(crate) const H_FAILURE_KIND: &str = "chassis-failure-kind";
pub(crate) const H_FAILURE_REASON: &str = "chassis-failure-reason";
pub(crate) const H_FAILED_AT: &str = "chassis-failed-at";
pub(crate) const H_DEAD_LETTER_ID: &str = "chassis-dead-letter-id";
pub(crate) const H_GROUP: &str = "chassis-group";
/// Quorum queues count redeliveries in this header.
pub(crate) const H_DELIVERY_COUNT: &str = "x-delivery-count";
pub(crate) const H_DEATH: &str = "x-death";

/// AMQP delivery mode of persistent messages.
pub(crate) const PERSISTENT: u8 = 2;
/// AMQP delivery mode of messages kept in memory only (replies).
pub(crate) const TRANSIENT: u8 = 1;

fn encode_error(event_type: &str, reason: String) -> EncodeError {
    EncodeError {
        event_type: event_type.to_owned(),
        source: <serde_json::Error as serde::ser::Error>::custom(reason),
    }
}

fn short_field(event_type: &str, what: &str, value: &str) -> Result<ShortString, EncodeError> {
    ShortString::try_new(value).map_err(|_| {
        encode_error(
            event_type,
            format!(
                "{what} is {} bytes long; AMQP allows at most {MAX_NAME_LEN}",
                value.len()
            ),
        )
    })
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// The exact, lossless text form of a timestamp: `secs.nanos` from the Unix
/// epoch, negative before it.
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

/// A message ready for `basic_publish` (the body is the envelope's payload).
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) routing_key: ShortString,
    pub(crate) properties: BasicProperties,
}

/// Maps an envelope to AMQP properties and headers (persistent delivery mode).
pub(crate) fn encode(env: &Envelope) -> Result<Outgoing, EncodeError> {
    let et = env.event_type.as_str();
    let routing_key = short_field(et, "the event type (routing key)", et)?;
    let mut headers = FieldTable::default();
    let mut put = |key: &'static str, value: &Option<String>| {
        if let Some(v) = value {
            headers.insert(ShortString::from(key), long(v));
        }
    };
    put(H_CAUSATION_ID, &env.causation_id);
    put(H_TRACEPARENT, &env.traceparent);
    put(H_TRACESTATE, &env.tracestate);
    put(H_PARTITION_KEY, &env.partition_key);
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(ShortString::from(env.message_id.to_string()))
        .with_type(routing_key.clone())
        .with_content_type(short_field(et, "the content type", &env.content_type)?);
    if let Some(correlation_id) = &env.correlation_id {
        match ShortString::try_new(correlation_id.as_str()) {
            Ok(short) => properties = properties.with_correlation_id(short),
            Err(_) => {
                headers.insert(ShortString::from(H_CORRELATION_ID), long(correlation_id));
            }
        }
    }
    if let Ok(since_epoch) = env.timestamp.duration_since(UNIX_EPOCH) {
        properties = properties.with_timestamp(since_epoch.as_secs());
    }
    headers.insert(
        ShortString::from(H_TIMESTAMP),
        long(&timestamp_text(env.timestamp)),
    );
    if !env.headers.is_empty() {
        let mut free = FieldTable::default();
        for (name, value) in &env.headers {
            free.insert(short_field(et, "a header name", name)?, long(value));
        }
        headers.insert(ShortString::from(H_HEADERS), AMQPValue::FieldTable(free));
    }
    Ok(Outgoing {
        routing_key,
        properties: properties.with_headers(headers),
    })
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// Read access to the headers of a delivered message.
pub(crate) struct Headers<'a>(Option<&'a FieldTable>);

impl<'a> Headers<'a> {
    pub(crate) fn of(properties: &'a BasicProperties) -> Self {
        Self(properties.headers().as_ref())
    }

    fn get(&self, key: &str) -> Option<&'a AMQPValue> {
        self.0.and_then(|t| t.inner().get(key))
    }

    pub(crate) fn text(&self, key: &str) -> Option<String> {
        self.get(key).and_then(text)
    }

    pub(crate) fn count(&self, key: &str) -> u32 {
        self.get(key)
            .and_then(integer)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    }

    /// `reason` of the newest `x-death` entry (the broker dead-lettered it).
    pub(crate) fn death_reason(&self) -> Option<String> {
        match self.get(H_DEATH)? {
            AMQPValue::FieldArray(deaths) => deaths.as_slice().iter().find_map(|d| match d {
                AMQPValue::FieldTable(t) => t.inner().get("reason").and_then(text),
                _ => None,
            }),
            _ => None,
        }
    }

    fn free_headers(&self) -> Result<BTreeMap<String, String>, String> {
        match self.get(H_HEADERS) {
            None => Ok(BTreeMap::new()),
            Some(AMQPValue::FieldTable(t)) => t
                .inner()
                .iter()
                .map(|(k, v)| {
                    text(v)
                        .map(|v| (k.as_str().to_owned(), v))
                        .ok_or_else(|| format!("header `{H_HEADERS}.{k}` is not a string"))
                })
                .collect(),
            Some(other) => Err(format!(
                "header `{H_HEADERS}` must be a table, got {:?}",
                other.get_type()
            )),
        }
    }
}

/// Rebuilds the envelope of a delivered message. `Err` says why the message is
/// not a chassis envelope (it is then dead-lettered as undecodable).
pub(crate) fn decode(
    properties: &BasicProperties,
    routing_key: &str,
    body: &[u8],
) -> Result<Envelope, String> {
    let message_id = match properties.message_id() {
        None => return Err("property `message_id` is missing".into()),
        Some(id) => Uuid::parse_str(id.as_str())
            .map_err(|e| format!("property `message_id` `{id}` is not a UUID: {e}"))?,
    };
    let headers = Headers::of(properties);
    let timestamp = match headers.text(H_TIMESTAMP) {
        Some(t) => parse_timestamp(&t)
            .ok_or_else(|| format!("header `{H_TIMESTAMP}` `{t}` is not `secs.nanos`"))?,
        None => properties
            .timestamp()
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap_or_else(SystemTime::now),
    };
    Ok(Envelope {
        message_id,
        event_type: event_type(properties, routing_key),
        correlation_id: properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .or_else(|| headers.text(H_CORRELATION_ID)),
        causation_id: headers.text(H_CAUSATION_ID),
        traceparent: headers.text(H_TRACEPARENT),
        tracestate: headers.text(H_TRACESTATE),
        timestamp,
        content_type: properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        partition_key: headers.text(H_PARTITION_KEY),
        headers: headers.free_headers()?,
        payload: body.to_vec(),
    })
}

fn event_type(properties: &BasicProperties, routing_key: &str) -> String {
    properties
        .kind()
        .as_ref()
        .map_or_else(|| routing_key.to_owned(), |k| k.as_str().to_owned())
}

/// An envelope for a message [`decode`] refused, keeping what can be read, so
/// the dead letter still shows it.
pub(crate) fn best_effort(
    properties: &BasicProperties,
    routing_key: &str,
    body: &[u8],
) -> Envelope {
    let mut env = Envelope::new(
        event_type(properties, routing_key),
        properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        body.to_vec(),
    );
    if let Some(id) = properties
        .message_id()
        .as_ref()
        .and_then(|id| Uuid::parse_str(id.as_str()).ok())
    {
        env.message_id = id;
    }
    env.correlation_id = properties
        .correlation_id()
        .as_ref()
        .map(|c| c.as_str().to_owned());
    env
}

/// Why and when a message was dead-lettered or scheduled for a retry.
pub(crate) struct Failure<'a> {
    pub(crate) kind: FailureKind,
    pub(crate) reason: &'a str,
    /// Deliveries so far, the failed one included.
    pub(crate) attempts: u32,
}

/// Headers the broker adds on dead-lettering and redelivery; a copy the
/// chassis republishes drops them so they do not pile up.
fn is_broker_header(key: &str) -> bool {
    key == H_DEATH
        || key == H_DELIVERY_COUNT
        || key.starts_with("x-first-death-")
        || key.starts_with("x-last-death-")
}

fn without(properties: &BasicProperties, drop: impl Fn(&str) -> bool) -> FieldTable {
    let mut table = FieldTable::default();
    if let Some(headers) = properties.headers() {
        for (k, v) in headers.inner() {
            if !drop(k.as_str()) {
                table.insert(k.clone(), v.clone());
            }
        }
    }
    table
}

fn failure_headers(table: &mut FieldTable, failure: &Failure<'_>) {
    table.insert(
        ShortString::from(H_ATTEMPTS),
        AMQPValue::LongLongInt(i64::from(failure.attempts)),
    );
    table.insert(
        ShortString::from(H_FAILURE_KIND),
        long(failure.kind.as_str()),
    );
    table.insert(ShortString::from(H_FAILURE_REASON), long(failure.reason));
    table.insert(
        ShortString::from(H_FAILED_AT),
        long(&timestamp_text(SystemTime::now())),
    );
}

/// Properties of the copy sent to a delay queue.
pub(crate) fn for_retry(properties: &BasicProperties, failure: &Failure<'_>) -> BasicProperties {
    let mut table = without(properties, |k| is_broker_header(k) || k == H_REDELIVERIES);
    failure_headers(&mut table, failure);
    properties
        .clone()
        .with_delivery_mode(PERSISTENT)
        .with_headers(table)
}

/// Properties of the copy sent to the dead-letter exchange.
pub(crate) fn for_dead_letter(
    properties: &BasicProperties,
    group: &str,
    failure: &Failure<'_>,
) -> BasicProperties {
    let mut table = without(properties, |k| is_broker_header(k) || k == H_REDELIVERIES);
    failure_headers(&mut table, failure);
    table.insert(
        ShortString::from(H_DEAD_LETTER_ID),
        long(&Uuid::now_v7().to_string()),
    );
    table.insert(ShortString::from(H_GROUP), long(group));
    properties
        .clone()
        .with_delivery_mode(PERSISTENT)
        .with_headers(table)
}

/// Properties of a classic-queue message put back after a lost delivery,
/// with its redelivery count.
pub(crate) fn for_redelivery(properties: &BasicProperties, redeliveries: u32) -> BasicProperties {
    let mut table = without(properties, is_broker_header);
    table.insert(
        ShortString::from(H_REDELIVERIES),
        AMQPValue::LongLongInt(i64::from(redeliveries)),
    );
    properties
        .clone()
        .with_delivery_mode(PERSISTENT)
        .with_headers(table)
}

/// Properties of a replayed dead letter: the original message, attempts
/// starting again.
pub(crate) fn for_replay(properties: &BasicProperties) -> BasicProperties {
    let table = without(properties, |k| {
        is_broker_header(k)
            || matches!(
                k,
                H_ATTEMPTS
                    | H_REDELIVERIES
                    | H_FAILURE_KIND
                    | H_FAILURE_REASON
                    | H_FAILED_AT
                    | H_DEAD_LETTER_ID
                    | H_GROUP
            )
    });
    properties
        .clone()
        .with_delivery_mode(PERSISTENT)
        .with_headers(table)
}

/// Reads the `chassis-failed-at` header.
pub(crate) fn failed_at(headers: &Headers<'_>) -> Option<SystemTime> {
    headers.text(H_FAILED_AT).and_then(|t| parse_timestamp(&t))
}

/// Parses the failure kind written by [`FailureKind::as_str`].
pub(crate) fn failure_kind(name: &str) -> Option<FailureKind> {
    [
        FailureKind::Retryable,
        FailureKind::Permanent,
        FailureKind::Undecodable,
    ]
    .into_iter()
    .find(|k| k.as_str() == name)
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
        .with_correlation_id("corr-1")
        .with_header("tenant", "acme")
        .with_header("x-death", "a free header may use any name")
        .with_header("empty", "");
        env.causation_id = Some("cause-9".into());
        env.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        env.tracestate = Some("congo=t61rcWkgMzE".into());
        env.partition_key = Some("order-42".into());
        env.timestamp = UNIX_EPOCH + Duration::new(1_763_700_000, 123_456_789);
        env
    }

    fn round_trip(env: &Envelope) -> Envelope {
        let out = encode(env).unwrap();
        assert_eq!(out.routing_key.as_str(), env.event_type);
        assert_eq!(out.properties.delivery_mode(), &Some(PERSISTENT));
        decode(&out.properties, out.routing_key.as_str(), &env.payload).unwrap()
    }

    #[test]
    fn every_field_round_trips() {
        let env = full_envelope();
        assert_eq!(round_trip(&env), env);
    }

    #[test]
    fn none_and_empty_are_kept_apart() {
        let mut env = Envelope::new("t.v1", "application/json", Vec::new());
        assert_eq!(round_trip(&env), env);
        env.causation_id = Some(String::new());
        env.partition_key = Some(String::new());
        env.correlation_id = Some(String::new());
        assert_eq!(round_trip(&env), env);
    }

    #[test]
    fn long_correlation_id_and_old_timestamps_survive() {
        let mut env = full_envelope();
        env.correlation_id = Some("c".repeat(1000));
        env.timestamp = UNIX_EPOCH - Duration::new(86_400, 5);
        assert_eq!(round_trip(&env), env);
    }

    #[test]
    fn overlong_names_fail_to_encode() {
        let env = Envelope::new("t".repeat(300), "application/json", Vec::new());
        let err = encode(&env).unwrap_err().to_string();
        assert!(err.contains("at most 255"), "{err}");
        let env = full_envelope().with_header("h".repeat(256), "v");
        assert!(encode(&env).is_err());
    }

    #[test]
    fn foreign_messages_are_refused_with_a_reason() {
        let props = BasicProperties::default();
        let err = decode(&props, "rk", b"x").unwrap_err();
        assert!(err.contains("message_id"), "{err}");
        let props = props.with_message_id("not-a-uuid".into());
        let env = best_effort(&props, "rk", b"x");
        assert_eq!(env.event_type, "rk");
        assert_eq!(env.payload, b"x");
    }

    #[test]
    fn failure_copies_carry_reason_and_drop_broker_headers() {
        let env = full_envelope();
        let mut props = encode(&env).unwrap().properties;
        let mut table = props.headers().clone().unwrap();
        table.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        props = props.with_headers(table);
        let failure = Failure {
            kind: FailureKind::Permanent,
            reason: "bad order",
            attempts: 2,
        };
        let dead = for_dead_letter(&props, "shipping", &failure);
        let h = Headers::of(&dead);
        assert_eq!(h.count(H_ATTEMPTS), 2);
        assert_eq!(h.count(H_DELIVERY_COUNT), 0);
        assert_eq!(h.text(H_FAILURE_REASON).as_deref(), Some("bad order"));
        assert_eq!(
            h.text(H_FAILURE_KIND).and_then(|k| failure_kind(&k)),
            Some(FailureKind::Permanent)
        );
        assert_eq!(h.text(H_GROUP).as_deref(), Some("shipping"));
        assert!(failed_at(&h).is_some());
        // The envelope inside a dead letter is still the original one.
        assert_eq!(decode(&dead, "rk", &env.payload).unwrap(), env);
        // A replay drops every failure header.
        let replayed = for_replay(&dead);
        let h = Headers::of(&replayed);
        assert!(h.text(H_FAILURE_REASON).is_none());
        assert!(h.text(H_DEAD_LETTER_ID).is_none());
        assert_eq!(h.count(H_ATTEMPTS), 0);
        assert_eq!(decode(&replayed, "rk", &env.payload).unwrap(), env);
    }
}

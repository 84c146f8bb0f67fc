//! The envelope on the wire: a CloudEvent in binary content mode, after the
//! CloudEvents AMQP protocol binding adapted to AMQP 0-9-1.
//!
//! The attributes are [`messaging_abstractions::cloudevents`]'s. Each one but
//! `datacontenttype` is a header (AMQP 0-9-1's counterpart of AMQP 1.0's
//! application-properties) named `cloudEvents_` + its name, with a string
//! value; `datacontenttype` is the `content_type` property; the payload is the
//! body. As secondary mappings for the broker's own tools, the `message_id`
//! (`id`), `type` (`type`), `timestamp` (`time`, whole seconds) and, when
//! short enough, `correlation_id` (`correlationid`) properties are set too;
//! readers go by the headers.
//!
//! Read side, by the binding's rules: a `content_type` starting with
//! `application/cloudevents` is the structured content mode (the JSON event
//! format in the body); a `cloudEvents_` or `cloudEvents:` header makes a
//! binary-mode event. For one release, a message in the previous format
//! (`chassis-*` headers, recognised by `chassis-timestamp`) is read too, so a
//! rolling upgrade loses nothing. Anything else is refused with the reason
//! (and dead-lettered as undecodable).
//!
//! Transport headers (`chassis-attempts`, `chassis-failure-*`, `x-death`, ...)
//! sit next to the attributes; they are never attributes themselves.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use messaging_abstractions::cloudevents::{self, attribute};
use messaging_abstractions::{EncodeError, Envelope, FailureKind, epoch_text};
use uuid::Uuid;

use crate::topology::MAX_NAME_LEN;

/// The prefix of attribute headers the chassis writes (the binding's
/// preferred separator, which JMS selectors accept too).
pub(crate) const CE_PREFIX: &str = "cloudEvents_";
/// The binding's other separator, read as well.
const CE_PREFIX_COLON: &str = "cloudEvents:";
/// Knative eventing's RabbitMQ binding, read as well.
const CE_PREFIX_KNATIVE: &str = "ce-";
/// The partition key attribute's header, read before decoding (ordering).
const H_CE_PARTITION_KEY: &str = "cloudEvents_partitionkey";

// The previous format's headers, read for one release.
const H_CAUSATION_ID: &str = "chassis-causation-id";
const H_CORRELATION_ID: &str = "chassis-correlation-id";
const H_TRACEPARENT: &str = "traceparent";
const H_TRACESTATE: &str = "tracestate";
const H_TIMESTAMP: &str = "chassis-timestamp";
const H_PARTITION_KEY: &str = "chassis-partition-key";
const H_HEADERS: &str = "chassis-headers";
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

/// A message ready for `basic_publish` (the body is the envelope's payload).
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) routing_key: ShortString,
    pub(crate) properties: BasicProperties,
}

/// Maps an envelope published by `source` to AMQP properties and headers
/// (persistent delivery mode).
pub(crate) fn encode(env: &Envelope, source: &str) -> Result<Outgoing, EncodeError> {
    let et = env.event_type.as_str();
    let routing_key = short_field(et, "the event type (routing key)", et)?;
    let mut headers = FieldTable::default();
    for (name, value) in cloudevents::attributes(env, source) {
        if name == attribute::DATACONTENTTYPE {
            continue;
        }
        let key = short_field(et, "an attribute header", &format!("{CE_PREFIX}{name}"))?;
        headers.insert(key, long(&value));
    }
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(ShortString::from(env.message_id.to_string()))
        .with_type(routing_key.clone());
    if !env.content_type.is_empty() {
        properties =
            properties.with_content_type(short_field(et, "the content type", &env.content_type)?);
    }
    if let Some(correlation_id) = &env.correlation_id
        && let Ok(short) = ShortString::try_new(correlation_id.as_str())
    {
        properties = properties.with_correlation_id(short);
    }
    if let Ok(since_epoch) = env.timestamp.duration_since(UNIX_EPOCH) {
        properties = properties.with_timestamp(since_epoch.as_secs());
    }
    Ok(Outgoing {
        routing_key,
        properties: properties.with_headers(headers),
    })
}

/// The attribute name of a binary-mode header, `None` for other headers:
/// `cloudEvents_` or `cloudEvents:` (the AMQP binding) or `ce-` (the
/// RabbitMQ binding of Knative eventing, which the CloudEvents SDKs' RabbitMQ
/// modules write) and the name.
fn attribute_name(key: &str) -> Option<&str> {
    if let Some(prefix) = key.get(..CE_PREFIX.len())
        && (prefix.eq_ignore_ascii_case(CE_PREFIX) || prefix.eq_ignore_ascii_case(CE_PREFIX_COLON))
    {
        return Some(&key[CE_PREFIX.len()..]);
    }
    key.get(..CE_PREFIX_KNATIVE.len())
        .filter(|p| p.eq_ignore_ascii_case(CE_PREFIX_KNATIVE))
        .map(|_| &key[CE_PREFIX_KNATIVE.len()..])
}

/// An attribute header's value in its canonical string form: the binding
/// allows native AMQP types next to strings. A native `time` is an AMQP 0-9-1
/// timestamp (seconds) or an integer of milliseconds (AMQP 1.0's timestamp,
/// which the CloudEvents SDKs' AMQP modules write).
fn attribute_text(name: &str, value: &AMQPValue) -> Option<String> {
    let time = name.eq_ignore_ascii_case(attribute::TIME);
    match value {
        AMQPValue::Boolean(b) => Some(b.to_string()),
        AMQPValue::Timestamp(secs) if time => Some(cloudevents::format_time(
            UNIX_EPOCH + Duration::from_secs(*secs),
        )),
        other => text(other).or_else(|| {
            let n = integer(other)?;
            if time {
                let ms = u64::try_from(n).ok()?;
                Some(cloudevents::format_time(
                    UNIX_EPOCH + Duration::from_millis(ms),
                ))
            } else {
                Some(n.to_string())
            }
        }),
    }
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

/// Rebuilds the envelope of a delivered message: a CloudEvent (binary or
/// structured mode) or a message of the previous format. `Err` says why it is
/// neither (it is then dead-lettered as undecodable).
pub(crate) fn decode(
    properties: &BasicProperties,
    routing_key: &str,
    body: &[u8],
) -> Result<Envelope, String> {
    let content_type = properties
        .content_type()
        .as_ref()
        .map_or("", |c| c.as_str());
    if cloudevents::is_structured(content_type) {
        return cloudevents::from_structured(body).map_err(|e| e.to_string());
    }
    let headers = Headers::of(properties);
    let mut attributes = Vec::new();
    for (key, value) in headers.0.map(|t| t.inner().iter()).into_iter().flatten() {
        let Some(name) = attribute_name(key.as_str()) else {
            continue;
        };
        let value = attribute_text(name, value).ok_or_else(|| {
            format!(
                "header `{key}` is a {:?}, not a CloudEvents attribute value",
                value.get_type()
            )
        })?;
        attributes.push((name, value));
    }
    if !attributes.is_empty() {
        if !content_type.is_empty() {
            attributes.push((attribute::DATACONTENTTYPE, content_type.to_owned()));
        }
        return cloudevents::from_attributes(attributes, body).map_err(|e| e.to_string());
    }
    if headers.text(H_TIMESTAMP).is_some() {
        return decode_previous(properties, routing_key, body);
    }
    Err(format!(
        "neither a CloudEvent (no `{CE_PREFIX}specversion` header, and content type \
         `{content_type}` is not `{}`) nor a chassis message of the previous format \
         (no `{H_TIMESTAMP}` header)",
        cloudevents::STRUCTURED_JSON
    ))
}

/// The partition key of a delivered message, read before it is decoded.
pub(crate) fn partition_key(properties: &BasicProperties) -> Option<String> {
    let headers = Headers::of(properties);
    headers
        .text(H_CE_PARTITION_KEY)
        .or_else(|| headers.text(&format!("{CE_PREFIX_COLON}{}", attribute::PARTITIONKEY)))
        .or_else(|| headers.text(&format!("{CE_PREFIX_KNATIVE}{}", attribute::PARTITIONKEY)))
        .or_else(|| headers.text(H_PARTITION_KEY))
}

/// Reads the previous format (`chassis-*` headers).
fn decode_previous(
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
        Some(t) => epoch_text::parse(&t)
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
        long(&epoch_text::format(SystemTime::now())),
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
    headers
        .text(H_FAILED_AT)
        .and_then(|t| epoch_text::parse(&t))
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
        let out = encode(env, "order-service").unwrap();
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
        let err = encode(&env, "s").unwrap_err().to_string();
        assert!(err.contains("at most 255"), "{err}");
        let env = Envelope::new("t.v1", "a".repeat(256), Vec::new());
        assert!(encode(&env, "s").is_err());
        // A long free header name travels inside `chassisheaders`.
        let env = full_envelope().with_header("h".repeat(256), "v");
        assert_eq!(round_trip(&env), env);
    }

    #[test]
    fn the_wire_is_a_binary_mode_cloudevent() {
        let env = full_envelope();
        let props = encode(&env, "order-service").unwrap().properties;
        let h = Headers::of(&props);
        assert_eq!(h.text("cloudEvents_specversion").as_deref(), Some("1.0"));
        assert_eq!(h.text("cloudEvents_id"), Some(env.message_id.to_string()));
        assert_eq!(
            h.text("cloudEvents_source").as_deref(),
            Some("order-service")
        );
        assert_eq!(
            h.text("cloudEvents_type").as_deref(),
            Some("order.completed.v1")
        );
        assert_eq!(
            h.text("cloudEvents_time").as_deref(),
            Some("2025-11-21T04:40:00.123456789Z")
        );
        assert_eq!(
            h.text("cloudEvents_correlationid").as_deref(),
            Some("corr-1")
        );
        assert_eq!(h.text("cloudEvents_tenant").as_deref(), Some("acme"));
        assert!(h.text("cloudEvents_datacontenttype").is_none());
        assert_eq!(
            props.content_type().as_ref().map(|c| c.as_str()),
            Some("application/json")
        );
        assert_eq!(partition_key(&props).as_deref(), Some("order-42"));
    }

    #[test]
    fn foreign_and_previous_messages_are_read() {
        // The other separator and native AMQP values, as a foreign producer may send.
        let mut table = FieldTable::default();
        for (k, v) in [
            ("cloudEvents:specversion", long("1.0")),
            ("cloudEvents:id", long("42")),
            ("cloudEvents:source", long("/python")),
            ("cloudEvents:type", long("order.completed.v1")),
            ("cloudEvents:time", AMQPValue::Timestamp(1_700_000_000)),
            ("cloudEvents:priority", AMQPValue::LongLongInt(3)),
            ("ce-subject", long("o-1")),
        ] {
            table.insert(k.into(), v);
        }
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(table);
        let env = decode(&props, "rk", b"{}").unwrap();
        assert_eq!(env.event_type, "order.completed.v1");
        assert_eq!(env.content_type, "application/json");
        assert_eq!(
            env.timestamp,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert_eq!(env.headers["priority"], "3");
        assert_eq!(env.headers["subject"], "o-1");
        // An integer time is milliseconds (AMQP 1.0's timestamp).
        let mut table = props.headers().clone().unwrap();
        table.insert(
            "cloudEvents:time".into(),
            AMQPValue::LongLongInt(1_700_000_000_250),
        );
        let env = decode(&props.clone().with_headers(table), "rk", b"{}").unwrap();
        assert_eq!(
            env.timestamp,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)
        );
        // Structured mode.
        let props =
            BasicProperties::default().with_content_type(cloudevents::STRUCTURED_JSON.into());
        let body = br#"{"specversion":"1.0","id":"1","source":"/py","type":"a.v1","data":{}}"#;
        assert_eq!(decode(&props, "rk", body).unwrap().event_type, "a.v1");
        // The previous format.
        let id = Uuid::now_v7();
        let mut table = FieldTable::default();
        table.insert(H_TIMESTAMP.into(), long("1763700000.000000005"));
        table.insert(H_PARTITION_KEY.into(), long("k"));
        let props = BasicProperties::default()
            .with_message_id(id.to_string().into())
            .with_type("old.v1".into())
            .with_headers(table);
        assert_eq!(partition_key(&props).as_deref(), Some("k"));
        let env = decode(&props, "rk", b"x").unwrap();
        assert_eq!((env.message_id, env.event_type.as_str()), (id, "old.v1"));
        assert_eq!(env.timestamp, UNIX_EPOCH + Duration::new(1_763_700_000, 5));
    }

    #[test]
    fn other_messages_are_refused_with_a_reason() {
        let props = BasicProperties::default();
        let err = decode(&props, "rk", b"x").unwrap_err();
        assert!(err.contains("neither a CloudEvent"), "{err}");
        let mut table = FieldTable::default();
        table.insert("cloudEvents_id".into(), long("1"));
        let err = decode(&props.clone().with_headers(table), "rk", b"x").unwrap_err();
        assert!(err.contains("`specversion` is missing"), "{err}");
        let structured =
            BasicProperties::default().with_content_type(cloudevents::STRUCTURED_JSON.into());
        let err = decode(&structured, "rk", b"{nope").unwrap_err();
        assert!(err.contains("not a JSON CloudEvent"), "{err}");
        let props = props.with_message_id("not-a-uuid".into());
        let env = best_effort(&props, "rk", b"x");
        assert_eq!(env.event_type, "rk");
        assert_eq!(env.payload, b"x");
    }

    #[test]
    fn failure_copies_carry_reason_and_drop_broker_headers() {
        let env = full_envelope();
        let mut props = encode(&env, "order-service").unwrap().properties;
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

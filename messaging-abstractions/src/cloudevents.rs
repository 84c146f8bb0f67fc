//! CloudEvents 1.0 on the wire: the attributes of an [`Envelope`], once for
//! every broker provider.
//!
//! A provider publishes in the *binary content mode* of its protocol binding
//! by default: the payload is the message body and every attribute travels
//! as its own header, named by the binding (`cloudEvents_` on AMQP, `ce-` on
//! NATS). This module maps an envelope to `(name, value)` attribute pairs and
//! back; the provider only applies its binding's naming and value rules. It
//! also writes and reads the JSON *structured content mode*
//! (`application/cloudevents+json`, the whole event as the body:
//! [`to_structured`], [`from_structured`]), which a provider may offer as its
//! [`ContentMode`] and foreign producers may use.
//!
//! | envelope field   | attribute         | CloudEvents                                |
//! |------------------|-------------------|--------------------------------------------|
//! | —                | `specversion`     | always `1.0`                               |
//! | `message_id`     | `id`              | the UUID as text                           |
//! | —                | `source`          | the publishing service's name              |
//! | `event_type`     | `type`            | e.g. `order.completed.v1`                  |
//! | `timestamp`      | `time`            | RFC 3339, UTC, nanoseconds                 |
//! | `content_type`   | `datacontenttype` | absent when empty                          |
//! | `correlation_id` | `correlationid`   | extension                                  |
//! | `causation_id`   | `causationid`     | extension                                  |
//! | `traceparent`    | `traceparent`     | Distributed Tracing extension              |
//! | `tracestate`     | `tracestate`      | Distributed Tracing extension              |
//! | `partition_key`  | `partitionkey`    | Partitioning extension                     |
//! | `headers`        | one attribute each, named after the header, when the name is a valid attribute name (`a-z`, `0-9`, at most 20) not taken above and the value is a non-empty string without control characters (so `subject` sets the CloudEvents `subject`); every other header goes into `chassisheaders`, a JSON object |
//! | `payload`        | the message body  | `data`                                     |
//!
//! Reading is the reverse, and accepts what any CloudEvents producer may send:
//! an `id` that is not a UUID becomes the name-based UUID (v5) of `source`
//! and `id`, so a redelivery of the same event is still recognised as one;
//! a missing `time` is the time of receipt; attributes not listed above
//! (`subject`, `dataschema`, foreign extensions) become free headers.
//!
//! ```
//! use messaging_abstractions::{Envelope, cloudevents};
//!
//! let envelope = Envelope::new("order.completed.v1", "application/json", b"{}".to_vec())
//!     .with_correlation_id("req-1")
//!     .with_header("subject", "order-42");
//! let attributes = cloudevents::attributes(&envelope, "order-service");
//! assert!(attributes.iter().any(|(n, v)| n == "correlationid" && v == "req-1"));
//! let read = cloudevents::from_attributes(
//!     attributes.iter().map(|(n, v)| (n.as_ref(), v.to_string())),
//!     &envelope.payload,
//! )
//! .unwrap();
//! assert_eq!(read, envelope);
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chassis_core::calendar::{civil_from_days, days_from_civil};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;
use uuid::Uuid;

use crate::envelope::{Envelope, JSON_CONTENT_TYPE};

/// The CloudEvents version written and read.
pub const SPEC_VERSION: &str = "1.0";
/// The media type of the JSON structured content mode.
pub const STRUCTURED_JSON: &str = "application/cloudevents+json";
/// Every structured content mode's media type starts with this.
const CLOUDEVENTS_MEDIA_TYPE: &str = "application/cloudevents";

/// Attribute names.
pub mod attribute {
    /// `specversion`.
    pub const SPECVERSION: &str = "specversion";
    /// `id`.
    pub const ID: &str = "id";
    /// `source`.
    pub const SOURCE: &str = "source";
    /// `type`.
    pub const TYPE: &str = "type";
    /// `time`.
    pub const TIME: &str = "time";
    /// `datacontenttype`.
    pub const DATACONTENTTYPE: &str = "datacontenttype";
    /// Extension: the correlation id.
    pub const CORRELATIONID: &str = "correlationid";
    /// Extension: the id of the message that caused this one.
    pub const CAUSATIONID: &str = "causationid";
    /// Distributed Tracing extension: W3C `traceparent`.
    pub const TRACEPARENT: &str = "traceparent";
    /// Distributed Tracing extension: W3C `tracestate`.
    pub const TRACESTATE: &str = "tracestate";
    /// Partitioning extension.
    pub const PARTITIONKEY: &str = "partitionkey";
    /// Extension: free headers whose names or values are not attributes.
    pub const CHASSISHEADERS: &str = "chassisheaders";
}

/// Names a free header cannot take as an attribute of its own.
const RESERVED: [&str; 13] = [
    attribute::SPECVERSION,
    attribute::ID,
    attribute::SOURCE,
    attribute::TYPE,
    attribute::TIME,
    attribute::DATACONTENTTYPE,
    attribute::CORRELATIONID,
    attribute::CAUSATIONID,
    attribute::TRACEPARENT,
    attribute::TRACESTATE,
    attribute::PARTITIONKEY,
    attribute::CHASSISHEADERS,
    "data",
];

/// The recommended maximum length of an attribute name.
const MAX_NAME_LEN: usize = 20;

/// Namespace of the name-based ids given to events whose `id` is not a UUID.
const FOREIGN_ID_NAMESPACE: Uuid = Uuid::from_u128(0x48dd5c83_74d8_4c65_959c_67b5ce310d28);

/// A message is not a CloudEvent the chassis can read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CloudEventError {
    /// A required attribute is absent or empty.
    #[error("CloudEvents attribute `{0}` is missing")]
    Missing(&'static str),
    /// The event is of another CloudEvents version.
    #[error("CloudEvents specversion `{0}` is not supported (only `1.0` is)")]
    SpecVersion(String),
    /// An attribute's value is not of its type.
    #[error("CloudEvents attribute `{name}` `{value}` is invalid: {reason}")]
    Invalid {
        /// The attribute.
        name: String,
        /// Its value as received.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A structured-mode body is not a JSON CloudEvent.
    #[error("not a JSON CloudEvent (structured content mode): {0}")]
    Structured(String),
}

/// How a provider puts an event on the wire: the two content modes every
/// CloudEvents protocol binding defines. Readers accept both, whatever a
/// provider writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentMode {
    /// Every attribute in a header of its own, the payload as the body:
    /// routers and tools see the attributes without reading the body.
    #[default]
    Binary,
    /// The whole event in the body, in the JSON event format
    /// ([`STRUCTURED_JSON`]; see [`to_structured`]): one header instead of
    /// a dozen, what a protocol with costly or limited headers prefers.
    Structured,
}

/// Whether `content_type` marks the structured content mode
/// (`application/cloudevents`, any format, case-insensitive).
pub fn is_structured(content_type: &str) -> bool {
    content_type
        .trim_start()
        .get(..CLOUDEVENTS_MEDIA_TYPE.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(CLOUDEVENTS_MEDIA_TYPE))
}

/// Whether `name` is a valid extension attribute name the chassis writes:
/// lower-case ASCII letters and digits, at most 20 of them.
pub fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn is_plain_value(value: &str) -> bool {
    !value.is_empty() && !value.chars().any(char::is_control)
}

/// The attributes of `envelope` in binary content mode, published by
/// `source` (the service name). `datacontenttype` is among them when the
/// content type is not empty; a binding that carries it elsewhere (AMQP's
/// `content-type`) takes it out.
pub fn attributes<'a>(
    envelope: &'a Envelope,
    source: &'a str,
) -> Vec<(Cow<'static, str>, Cow<'a, str>)> {
    let mut out: Vec<(Cow<'static, str>, Cow<'a, str>)> = Vec::with_capacity(12);
    let mut put = |name: &'static str, value: Cow<'a, str>| out.push((Cow::Borrowed(name), value));
    put(attribute::SPECVERSION, Cow::Borrowed(SPEC_VERSION));
    put(attribute::ID, Cow::Owned(envelope.message_id.to_string()));
    put(attribute::SOURCE, Cow::Borrowed(source));
    put(attribute::TYPE, Cow::Borrowed(&envelope.event_type));
    put(attribute::TIME, Cow::Owned(format_time(envelope.timestamp)));
    if !envelope.content_type.is_empty() {
        put(
            attribute::DATACONTENTTYPE,
            Cow::Borrowed(&envelope.content_type),
        );
    }
    for (name, value) in [
        (attribute::CORRELATIONID, &envelope.correlation_id),
        (attribute::CAUSATIONID, &envelope.causation_id),
        (attribute::TRACEPARENT, &envelope.traceparent),
        (attribute::TRACESTATE, &envelope.tracestate),
        (attribute::PARTITIONKEY, &envelope.partition_key),
    ] {
        if let Some(value) = value {
            put(name, Cow::Borrowed(value));
        }
    }
    let mut rest = BTreeMap::new();
    for (name, value) in &envelope.headers {
        if is_attribute_name(name) && !RESERVED.contains(&name.as_str()) && is_plain_value(value) {
            out.push((Cow::Owned(name.clone()), Cow::Borrowed(value)));
        } else {
            rest.insert(name, value);
        }
    }
    if !rest.is_empty() {
        // A map of strings always serializes.
        let json = serde_json::to_string(&rest).unwrap_or_default();
        out.push((Cow::Borrowed(attribute::CHASSISHEADERS), Cow::Owned(json)));
    }
    out
}

/// Rebuilds an envelope from binary-mode attributes (names without the
/// binding's prefix, any case) and the message body.
pub fn from_attributes<N: AsRef<str>>(
    attributes: impl IntoIterator<Item = (N, String)>,
    payload: &[u8],
) -> Result<Envelope, CloudEventError> {
    envelope_of(attributes, payload.to_vec())
}

/// [`from_attributes`] with the payload already owned.
fn envelope_of<N: AsRef<str>>(
    attributes: impl IntoIterator<Item = (N, String)>,
    payload: Vec<u8>,
) -> Result<Envelope, CloudEventError> {
    let mut spec_version = None;
    let mut id = None;
    let mut source = None;
    let mut event_type = None;
    let mut time = None;
    // Not `Envelope::new`: its fresh id and clock reading would be
    // overwritten below (and a v7 id costs a getrandom call per message).
    let mut envelope = Envelope {
        message_id: Uuid::nil(),
        event_type: String::new(),
        correlation_id: None,
        causation_id: None,
        traceparent: None,
        tracestate: None,
        timestamp: SystemTime::UNIX_EPOCH,
        content_type: String::new(),
        partition_key: None,
        headers: BTreeMap::new(),
        payload,
    };
    for (name, value) in attributes {
        let name = name.as_ref();
        let name: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        match name.as_ref() {
            attribute::SPECVERSION => spec_version = Some(value),
            attribute::ID => id = Some(value),
            attribute::SOURCE => source = Some(value),
            attribute::TYPE => event_type = Some(value),
            attribute::TIME => time = Some(value),
            attribute::DATACONTENTTYPE => envelope.content_type = value,
            attribute::CORRELATIONID => envelope.correlation_id = Some(value),
            attribute::CAUSATIONID => envelope.causation_id = Some(value),
            attribute::TRACEPARENT => envelope.traceparent = Some(value),
            attribute::TRACESTATE => envelope.tracestate = Some(value),
            attribute::PARTITIONKEY => envelope.partition_key = Some(value),
            attribute::CHASSISHEADERS => {
                let rest: BTreeMap<String, String> =
                    serde_json::from_str(&value).map_err(|e| CloudEventError::Invalid {
                        name: attribute::CHASSISHEADERS.into(),
                        value: value.clone(),
                        reason: format!("not a JSON object of strings: {e}"),
                    })?;
                envelope.headers.extend(rest);
            }
            other => {
                envelope.headers.insert(other.to_owned(), value);
            }
        }
    }
    match spec_version {
        None => return Err(CloudEventError::Missing(attribute::SPECVERSION)),
        Some(v) if v != SPEC_VERSION => return Err(CloudEventError::SpecVersion(v)),
        Some(_) => {}
    }
    let required = |value: Option<String>, name: &'static str| {
        value
            .filter(|v| !v.is_empty())
            .ok_or(CloudEventError::Missing(name))
    };
    let id = required(id, attribute::ID)?;
    let source = required(source, attribute::SOURCE)?;
    envelope.event_type = required(event_type, attribute::TYPE)?;
    envelope.message_id = Uuid::parse_str(&id).unwrap_or_else(|_| {
        Uuid::new_v5(&FOREIGN_ID_NAMESPACE, format!("{source}\n{id}").as_bytes())
    });
    envelope.timestamp = match time {
        None => SystemTime::now(),
        Some(text) => parse_time(&text).ok_or_else(|| CloudEventError::Invalid {
            name: attribute::TIME.into(),
            value: text.clone(),
            reason: "not an RFC 3339 timestamp".into(),
        })?,
    };
    Ok(envelope)
}

/// The event as text of the JSON event format, for the structured content
/// mode: every attribute of [`attributes`] as a string member; a payload
/// whose content type is JSON as `data`, byte for byte; any other non-empty
/// payload (or one that claims JSON but is not) as `data_base64`.
/// [`from_structured`] reads it back to the same envelope.
///
/// ```
/// use messaging_abstractions::{Envelope, cloudevents};
///
/// let envelope = Envelope::new("order.completed.v1", "application/json", br#"{"n":1}"#.to_vec());
/// let body = cloudevents::to_structured(&envelope, "order-service");
/// let text = String::from_utf8(body.clone()).unwrap();
/// assert!(text.starts_with(r#"{"specversion":"1.0","id":""#));
/// assert!(text.ends_with(r#","data":{"n":1}}"#));
/// assert_eq!(cloudevents::from_structured(&body).unwrap(), envelope);
/// ```
pub fn to_structured(envelope: &Envelope, source: &str) -> Vec<u8> {
    let payload = &envelope.payload;
    let mut out = Vec::with_capacity(payload.len() * 4 / 3 + 400);
    out.push(b'{');
    for (i, (name, value)) in attributes(envelope, source).iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(&mut out, name);
        out.push(b':');
        write_json_string(&mut out, value);
    }
    if is_json(&envelope.content_type) && is_exact_json(payload) {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(payload);
    } else if !payload.is_empty() {
        use base64::Engine as _;
        out.extend_from_slice(b",\"data_base64\":\"");
        out.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(payload)
                .as_bytes(),
        );
        out.push(b'"');
    }
    out.push(b'}');
    out
}

fn write_json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(out, text).expect("a string always serializes into memory");
}

/// Whether `payload` is one JSON value with nothing around it, so that as
/// `data` it reads back byte for byte.
fn is_exact_json(payload: &[u8]) -> bool {
    match (payload.first(), payload.last()) {
        (Some(first), Some(last))
            if !first.is_ascii_whitespace() && !last.is_ascii_whitespace() =>
        {
            serde_json::from_slice::<de::IgnoredAny>(payload).is_ok()
        }
        _ => false,
    }
}

/// Reads an event in the JSON structured content mode (the whole event is
/// the body). `data` becomes the payload: JSON data as its JSON text, byte
/// for byte (content type `application/json` unless the event names
/// another), a string of a non-JSON content type as its text, `data_base64`
/// as its bytes. Members are read in place, never into a JSON tree.
pub fn from_structured(body: &[u8]) -> Result<Envelope, CloudEventError> {
    let structured = CloudEventError::Structured;
    // Checked as UTF-8 once here: read from a `&str`, serde_json does not
    // check each raw member again.
    let text = std::str::from_utf8(body).map_err(|e| structured(e.to_string()))?;
    let Members(members) = serde_json::from_str(text).map_err(|e| structured(e.to_string()))?;
    let mut attributes: Vec<(Cow<'_, str>, String)> = Vec::with_capacity(members.len());
    let mut data = None;
    let mut data_base64 = None;
    for (name, value) in members {
        match name.as_ref() {
            "data" => data = Some(value),
            "data_base64" => data_base64 = Some(value),
            _ => {
                let text = value.get();
                match text.as_bytes().first() {
                    Some(b'n') => {}
                    Some(b'"') => attributes.push((name, json_string(value)?)),
                    Some(b't' | b'f' | b'-' | b'0'..=b'9') => {
                        attributes.push((name, text.to_owned()));
                    }
                    _ => {
                        return Err(structured(format!(
                            "attribute `{name}` is {text}, not a string, number or boolean"
                        )));
                    }
                }
            }
        }
    }
    let content_type = attributes
        .iter()
        .find(|(n, _)| n == attribute::DATACONTENTTYPE)
        .map(|(_, v)| v.clone());
    let payload = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(structured("both `data` and `data_base64` are set".into()));
        }
        (None, Some(encoded)) if encoded.get().starts_with('"') => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(json_string(encoded)?.as_bytes())
                .map_err(|e| structured(format!("`data_base64` is not base64: {e}")))?
        }
        (None, Some(_)) => return Err(structured("`data_base64` is not a string".into())),
        (None, None) => Vec::new(),
        (Some(data), None) if data.get() == "null" => Vec::new(),
        (Some(data), None) => match &content_type {
            Some(ct) if !is_json(ct) && data.get().starts_with('"') => {
                json_string(data)?.into_bytes()
            }
            _ => {
                if content_type.is_none() {
                    attributes.push((
                        Cow::Borrowed(attribute::DATACONTENTTYPE),
                        JSON_CONTENT_TYPE.to_owned(),
                    ));
                }
                data.get().as_bytes().to_vec()
            }
        },
    };
    envelope_of(attributes, payload)
}

/// The members of a JSON object in order, names unescaped (borrowed when
/// they need no unescaping), values as their raw JSON text.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object (a CloudEvent)")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some(Name(name)) = map.next_key()? {
                    members.push((name, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Object)
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// The text of a JSON string value (the caller checked it is one); copied
/// as is when it has no escapes.
fn json_string(raw: &RawValue) -> Result<String, CloudEventError> {
    let text = raw.get();
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Ok(inner.to_owned()),
        _ => serde_json::from_str(text).map_err(|e| CloudEventError::Structured(e.to_string())),
    }
}

/// `application/json`, `text/json` and any `+json` type, parameters aside.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let suffix = essence
        .len()
        .checked_sub(5)
        .and_then(|at| essence.get(at..));
    essence.eq_ignore_ascii_case(JSON_CONTENT_TYPE)
        || essence.eq_ignore_ascii_case("text/json")
        || suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json"))
}

/// `t` as an RFC 3339 UTC timestamp with nanoseconds
/// (`2026-12-06T13:05:09.123456789Z`): exact, so it reads back to `t`.
pub fn format_time(t: SystemTime) -> String {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(before) => {
            let d = before.duration();
            let secs = -(d.as_secs() as i64);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    };
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    if !(0..=9999).contains(&year) {
        return format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        );
    }
    // By hand: `format!` of eight padded numbers costs more than the rest
    // of a message's headers (this runs once per published message).
    let mut out = [0u8; 30];
    let mut at = 0;
    let mut put = |value: u64, width: u32, then: Option<u8>| {
        for power in (0..width).rev() {
            out[at] = b'0' + (value / 10u64.pow(power) % 10) as u8;
            at += 1;
        }
        if let Some(separator) = then {
            out[at] = separator;
            at += 1;
        }
    };
    put(year as u64, 4, Some(b'-'));
    put(month as u64, 2, Some(b'-'));
    put(day as u64, 2, Some(b'T'));
    put((of_day / 3600) as u64, 2, Some(b':'));
    put((of_day % 3600 / 60) as u64, 2, Some(b':'));
    put((of_day % 60) as u64, 2, Some(b'.'));
    put(u64::from(nanos), 9, Some(b'Z'));
    out.iter().map(|&b| char::from(b)).collect()
}

/// Parses an RFC 3339 timestamp (`T` or space, any fraction, `Z` or an offset).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| b.get(i) != Some(&c))
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    let mut at = 19;
    let mut nanos: u32 = 0;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        let len = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        for (i, d) in b[start..start + len].iter().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + u32::from(d - b'0');
            }
        }
        nanos *= 10u32.pow(9u32.saturating_sub(len as u32));
        at = start + len;
    }
    let offset = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && b[at + 3] == b':' => {
            let minutes = digits(at + 1..at + 3)? * 60 + digits(at + 4..at + 6)?;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset * 60;
    let whole = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    whole.checked_add(Duration::from_nanos(u64::from(nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Envelope {
        let mut env = Envelope::new(
            "order.completed.v1",
            "application/json; charset=utf-8",
            b"{\"n\":1}".to_vec(),
        )
        .with_correlation_id("corr-1")
        .with_header("tenant", "acme")
        .with_header("subject", "order-42")
        .with_header("x-tenant", "größe ✓")
        .with_header("id", "a free header named like an attribute")
        .with_header("multiline", "a\r\nb")
        .with_header("empty", "");
        env.causation_id = Some(String::new());
        env.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        env.tracestate = Some("congo=t61rcWkgMzE".into());
        env.partition_key = Some("order-42".into());
        env.timestamp = UNIX_EPOCH + Duration::new(1_763_700_000, 123_456_789);
        env
    }

    fn round_trip(env: &Envelope) -> Envelope {
        let attributes = attributes(env, "order-service");
        from_attributes(
            attributes.iter().map(|(n, v)| (n.as_ref(), v.to_string())),
            &env.payload,
        )
        .unwrap()
    }

    #[test]
    fn every_field_round_trips() {
        for env in [
            full(),
            Envelope::new("t.v1", "", Vec::new()),
            Envelope {
                timestamp: UNIX_EPOCH - Duration::new(86_400 * 365 * 80, 5),
                ..full()
            },
        ] {
            assert_eq!(round_trip(&env), env);
        }
    }

    #[test]
    fn attributes_follow_the_spec() {
        let env = full();
        let attributes = attributes(&env, "order-service");
        let get = |name: &str| {
            attributes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(get("specversion").as_deref(), Some("1.0"));
        assert_eq!(get("id"), Some(env.message_id.to_string()));
        assert_eq!(get("source").as_deref(), Some("order-service"));
        assert_eq!(get("type").as_deref(), Some("order.completed.v1"));
        assert_eq!(
            get("time").as_deref(),
            Some("2025-11-21T04:40:00.123456789Z")
        );
        assert_eq!(get("subject").as_deref(), Some("order-42"));
        assert_eq!(get("tenant").as_deref(), Some("acme"));
        let rest: BTreeMap<String, String> =
            serde_json::from_str(&get("chassisheaders").unwrap()).unwrap();
        assert_eq!(
            rest.keys().collect::<Vec<_>>(),
            ["empty", "id", "multiline", "x-tenant"]
        );
        for (name, _) in &attributes {
            assert!(is_attribute_name(name), "{name}");
        }
    }

    #[test]
    fn foreign_events_are_read() {
        let attrs = [
            ("SpecVersion", "1.0"),
            ("id", "A234-1234-1234"),
            ("source", "/python/producer"),
            ("type", "order.completed.v1"),
            ("time", "2018-04-05T17:31:00+02:00"),
            ("datacontenttype", "application/json"),
            ("subject", "order-1"),
            ("comexampleextension1", "value"),
        ];
        let read = |attrs: &[(&str, &str)]| {
            from_attributes(attrs.iter().map(|(n, v)| (*n, v.to_string())), b"{}")
        };
        let a = read(&attrs).unwrap();
        let b = read(&attrs).unwrap();
        assert_eq!(a.message_id, b.message_id, "the same event, the same id");
        assert_eq!(a.message_id.get_version_num(), 5);
        assert_eq!(format_time(a.timestamp), "2018-04-05T15:31:00.000000000Z");
        assert_eq!(a.headers["subject"], "order-1");
        assert_eq!(a.headers["comexampleextension1"], "value");
        assert_eq!(
            read(&attrs[1..]).unwrap_err(),
            CloudEventError::Missing("specversion")
        );
        let mut v03 = attrs;
        v03[0].1 = "0.3";
        assert!(matches!(
            read(&v03),
            Err(CloudEventError::SpecVersion(v)) if v == "0.3"
        ));
        let mut bad_time = attrs;
        bad_time[4].1 = "yesterday";
        let err = read(&bad_time).unwrap_err().to_string();
        assert!(err.contains("`time`") && err.contains("RFC 3339"), "{err}");
        assert_eq!(
            read(&[attrs[0], attrs[1], attrs[3]]).unwrap_err(),
            CloudEventError::Missing("source")
        );
    }

    #[test]
    fn structured_events_are_read() {
        let json = br#"{"specversion":"1.0","id":"1","source":"/py","type":"order.completed.v1",
            "time":"2026-01-02T03:04:05.5Z","priority":3,"urgent":true,
            "data":{"order_id":"o-1"}}"#;
        let env = from_structured(json).unwrap();
        assert_eq!(env.content_type, "application/json");
        assert_eq!(env.payload, br#"{"order_id":"o-1"}"#);
        assert_eq!(env.headers["priority"], "3");
        assert_eq!(env.headers["urgent"], "true");
        let text = br#"{"specversion":"1.0","id":"1","source":"/py","type":"t.v1",
            "datacontenttype":"text/plain","data":"hello"}"#;
        assert_eq!(from_structured(text).unwrap().payload, b"hello");
        let binary = br#"{"specversion":"1.0","id":"1","source":"/py","type":"t.v1",
            "datacontenttype":"application/octet-stream","data_base64":"AAEC"}"#;
        assert_eq!(from_structured(binary).unwrap().payload, [0, 1, 2]);
        for bad in [
            &b"[1]"[..],
            b"{not json",
            br#"{"specversion":"1.0","a":{}}"#,
        ] {
            assert!(from_structured(bad).is_err());
        }
        assert_eq!(
            from_structured(br#"{"specversion":"1.0","id":"1","source":"/py"}"#).unwrap_err(),
            CloudEventError::Missing("type")
        );
    }

    #[test]
    fn every_field_round_trips_in_structured_mode() {
        let with = |content_type: &str, payload: &[u8]| Envelope {
            content_type: content_type.into(),
            payload: payload.to_vec(),
            ..full()
        };
        for env in [
            full(),
            Envelope::new("t.v1", "", Vec::new()),
            with("", b"{}"),
            with("application/json", b""),
            with("application/json", b"\"just a string\""),
            with("application/json", b" {\"padded\": true}\n"),
            with("application/json", b"{not json"),
            with("application/problem+json", b"[1, 2.50, null]"),
            with("text/plain", "größe \"quoted\" \\ ✓".as_bytes()),
            with("application/octet-stream", &[0, 1, 2, 255]),
        ] {
            let body = to_structured(&env, "order-service");
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(parsed["source"], "order-service");
            assert_eq!(from_structured(&body).unwrap(), env, "{parsed}");
        }
    }

    #[test]
    fn structured_data_is_the_json_payload_or_base64() {
        let data = |content_type: &str, payload: &[u8]| {
            let env = Envelope::new("t.v1", content_type, payload.to_vec());
            let body: serde_json::Value =
                serde_json::from_slice(&to_structured(&env, "s")).unwrap();
            (body.get("data").cloned(), body.get("data_base64").cloned())
        };
        assert_eq!(
            data("application/json", br#"{"n":1}"#),
            (Some(serde_json::json!({"n": 1})), None)
        );
        assert_eq!(
            data("text/plain", b"hi"),
            (None, Some(serde_json::json!("aGk=")))
        );
        assert_eq!(data("application/json", b""), (None, None));
    }

    #[test]
    fn json_content_types_are_told_apart() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/json",
            "application/problem+json",
            " application/cloudevents+JSON ;x=y",
        ] {
            assert!(is_json(json), "{json}");
        }
        for other in [
            "",
            "json",
            "text/plain",
            "application/jsonx",
            "application/json-seq",
        ] {
            assert!(!is_json(other), "{other}");
        }
    }

    #[test]
    fn structured_members_may_be_escaped_and_in_any_order() {
        let body = br#"{"data":[1],"ty\u0070e":"t.v1","source":"\/py","id":"e\"1",
            "specversion":"1.0","subject":null}"#;
        let env = from_structured(body).unwrap();
        assert_eq!(env.event_type, "t.v1");
        assert_eq!(env.payload, b"[1]");
        assert_eq!(env.content_type, "application/json");
        assert!(!env.headers.contains_key("subject"));
        assert_eq!(
            env.message_id,
            Uuid::new_v5(&FOREIGN_ID_NAMESPACE, b"/py\ne\"1")
        );
        for (bad, why) in [
            (
                &br#"{"specversion":"1.0","data":1,"data_base64":"AA=="}"#[..],
                "both",
            ),
            (br#"{"specversion":"1.0","data_base64":1}"#, "not a string"),
            (br#"{"specversion":"1.0","data_base64":"!"}"#, "not base64"),
            (br#"{"specversion":"1.0","a":[]}"#, "attribute `a`"),
            (br#""1.0""#, "a JSON object"),
        ] {
            let err = from_structured(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn structured_mode_is_told_by_the_content_type() {
        assert!(is_structured(STRUCTURED_JSON));
        assert!(is_structured("Application/CloudEvents+JSON; charset=utf-8"));
        assert!(is_structured("application/cloudevents-batch+json"));
        assert!(!is_structured("application/json"));
        assert!(!is_structured(""));
    }

    #[test]
    fn times_are_exact_and_rfc_3339() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(951_782_400, 1), // 2000-02-29
            UNIX_EPOCH - Duration::new(1, 1),
            UNIX_EPOCH + Duration::new(4_102_444_800, 999_999_999),
        ] {
            assert_eq!(parse_time(&format_time(t)), Some(t), "{}", format_time(t));
        }
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            parse_time("1985-04-12T23:20:50.52Z"),
            Some(UNIX_EPOCH + Duration::new(482_196_050, 520_000_000))
        );
        assert_eq!(
            parse_time("1996-12-19t16:39:57-08:00"),
            parse_time("1996-12-20T00:39:57Z")
        );
        for bad in [
            "",
            "2021-02-29T00:00:00Z",
            "2021-13-01T00:00:00Z",
            "2021-01-01T00:00:00",
            "2021-01-01T00:00:00.Z",
            "2021-01-01T24:00:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}

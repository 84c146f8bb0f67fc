//! CloudEvents 1.0 on the wire: the attributes of an [`Envelope`], once for
//! every broker provider.
//!
//! A provider publishes in the *binary content mode* of its protocol binding:
//! the payload is the message body and every attribute travels as its own
//! header, named by the binding (`cloudEvents_` on AMQP, `ce-` on NATS). This
//! module maps an envelope to `(name, value)` attribute pairs and back; the
//! provider only applies its binding's naming and value rules. It also reads
//! the JSON *structured content mode* (`application/cloudevents+json`), which
//! foreign producers may use.
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

use serde_json::Value;
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
        payload: payload.to_vec(),
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

/// Reads an event in the JSON structured content mode (the whole event is
/// the body). `data` becomes the payload: JSON data as JSON text (content
/// type `application/json` unless the event names another), a string of a
/// non-JSON content type as its text, `data_base64` as its bytes.
pub fn from_structured(body: &[u8]) -> Result<Envelope, CloudEventError> {
    let structured = CloudEventError::Structured;
    let Value::Object(object) =
        serde_json::from_slice::<Value>(body).map_err(|e| structured(e.to_string()))?
    else {
        return Err(structured("the body is not a JSON object".into()));
    };
    let mut attributes = Vec::with_capacity(object.len());
    let mut data = None;
    let mut data_base64 = None;
    for (name, value) in object {
        match name.as_str() {
            "data" => data = Some(value),
            "data_base64" => data_base64 = Some(value),
            _ => match value {
                Value::Null => {}
                Value::String(s) => attributes.push((name, s)),
                Value::Number(n) => attributes.push((name, n.to_string())),
                Value::Bool(b) => attributes.push((name, b.to_string())),
                other => {
                    return Err(structured(format!(
                        "attribute `{name}` is {other}, not a string, number or boolean"
                    )));
                }
            },
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
        (None, Some(Value::String(encoded))) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map_err(|e| structured(format!("`data_base64` is not base64: {e}")))?
        }
        (None, Some(_)) => return Err(structured("`data_base64` is not a string".into())),
        (None, None) | (Some(Value::Null), None) => Vec::new(),
        (Some(data), None) => match (&content_type, data) {
            (Some(ct), Value::String(text)) if !is_json(ct) => text.into_bytes(),
            (_, data) => {
                if content_type.is_none() {
                    attributes.push((
                        attribute::DATACONTENTTYPE.to_owned(),
                        JSON_CONTENT_TYPE.to_owned(),
                    ));
                }
                serde_json::to_vec(&data).map_err(|e| structured(e.to_string()))?
            }
        },
    };
    from_attributes(attributes, &payload)
}

/// `application/json`, `text/json` and any `+json` type, parameters aside.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == JSON_CONTENT_TYPE || essence == "text/json" || essence.ends_with("+json")
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

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

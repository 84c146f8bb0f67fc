//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the
//! `traceparent` and `tracestate` values carried by HTTP headers and by
//! message envelopes.
//!
//! Parsing follows the specification strictly (lower-case hex, version `ff`
//! forbidden, all-zero ids invalid, future versions read by their version-00
//! prefix), so a malformed value from another service is rejected rather than
//! silently starting a broken trace.

use std::fmt;
use std::str::FromStr;

/// Name of the HTTP header (and envelope field) carrying the parent.
pub const TRACEPARENT: &str = "traceparent";
/// Name of the HTTP header (and envelope field) carrying vendor state.
pub const TRACESTATE: &str = "tracestate";

/// Bit of [`TraceParent::flags`] that says the caller recorded the trace.
pub const FLAG_SAMPLED: u8 = 0x01;

/// Length of a version-00 `traceparent`: `2 + 1 + 32 + 1 + 16 + 1 + 2`.
const TRACEPARENT_LEN: usize = 55;
/// Most list members a `tracestate` may hold.
const TRACESTATE_MAX_MEMBERS: usize = 32;

/// A 16-byte trace id, shown as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id, shown as 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

macro_rules! hex_id {
    ($ty:ident, $len:literal, $field:literal) => {
        impl $ty {
            /// Reads the id from lower-case hex digits; the all-zero id is invalid.
            pub fn from_hex(hex: &str) -> Result<Self, TraceParentError> {
                let mut bytes = [0u8; $len];
                decode_hex(hex, &mut bytes).ok_or_else(|| TraceParentError::Field {
                    field: $field,
                    expected: concat!(stringify!($len), " bytes as lower-case hex digits"),
                    actual: hex.to_owned(),
                })?;
                if bytes == [0u8; $len] {
                    return Err(TraceParentError::ZeroId { field: $field });
                }
                Ok(Self(bytes))
            }

            /// The raw bytes.
            pub fn to_bytes(self) -> [u8; $len] {
                self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self)
            }
        }

        impl FromStr for $ty {
            type Err = TraceParentError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }
    };
}

hex_id!(TraceId, 16, "trace-id");
hex_id!(SpanId, 8, "parent-id");

/// Why a `traceparent` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// Wrong overall shape.
    #[error(
        "invalid traceparent `{actual}`: expected \"00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>\" ({reason})"
    )]
    Format {
        /// The rejected value.
        actual: String,
        /// What exactly is wrong.
        reason: &'static str,
    },
    /// One field is not what the specification allows.
    #[error("invalid traceparent {field} `{actual}`: expected {expected}")]
    Field {
        /// `version`, `trace-id`, `parent-id` or `trace-flags`.
        field: &'static str,
        /// What the field must look like.
        expected: &'static str,
        /// The rejected field.
        actual: String,
    },
    /// An all-zero trace id or parent id.
    #[error("invalid traceparent {field}: expected a non-zero id")]
    ZeroId {
        /// `trace-id` or `parent-id`.
        field: &'static str,
    },
}

/// A parsed `traceparent`: which trace, which span of the caller, and
/// whether the caller sampled it.
///
/// ```
/// use traces_abstractions::TraceParent;
/// let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap();
/// assert!(tp.is_sampled());
/// assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace every span of this request belongs to.
    pub trace_id: TraceId,
    /// The caller's span, the parent of the next span.
    pub parent_id: SpanId,
    /// Trace flags; bit 0 is [`FLAG_SAMPLED`]. Other bits of a version-00
    /// value are kept as received.
    pub flags: u8,
}

impl TraceParent {
    /// A parent from its parts.
    pub fn new(trace_id: TraceId, parent_id: SpanId, sampled: bool) -> Self {
        Self {
            trace_id,
            parent_id,
            flags: if sampled { FLAG_SAMPLED } else { 0 },
        }
    }

    /// Whether the caller recorded the trace.
    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Parses a header value (surrounding blanks are ignored, as HTTP allows).
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let value = value.trim_matches([' ', '\t']);
        let format = |reason| TraceParentError::Format {
            actual: value.to_owned(),
            reason,
        };
        if value.len() < TRACEPARENT_LEN || !value.is_ascii() {
            return Err(format("too short or not ASCII"));
        }
        let mut version = [0u8; 1];
        decode_hex(&value[0..2], &mut version).ok_or_else(|| TraceParentError::Field {
            field: "version",
            expected: "2 lower-case hex digits",
            actual: value[0..2].to_owned(),
        })?;
        let version = version[0];
        if version == 0xff {
            return Err(TraceParentError::Field {
                field: "version",
                expected: "a version other than ff",
                actual: "ff".to_owned(),
            });
        }
        // Version 00 has exactly four fields; a later version may append
        // fields after a dash, and its first four are read as version 00.
        if version == 0 && value.len() != TRACEPARENT_LEN {
            return Err(format("version 00 is exactly 55 characters"));
        }
        if value.len() > TRACEPARENT_LEN && value.as_bytes()[TRACEPARENT_LEN] != b'-' {
            return Err(format("fields of a later version must follow a dash"));
        }
        let bytes = value.as_bytes();
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(format("fields are separated by single dashes"));
        }
        let trace_id = TraceId::from_hex(&value[3..35])?;
        let parent_id = SpanId::from_hex(&value[36..52])?;
        let mut flags = [0u8; 1];
        decode_hex(&value[53..55], &mut flags).ok_or_else(|| TraceParentError::Field {
            field: "trace-flags",
            expected: "2 lower-case hex digits",
            actual: value[53..55].to_owned(),
        })?;
        // Flags of an unknown version mean nothing beyond the sampled bit.
        let flags = if version == 0 {
            flags[0]
        } else {
            flags[0] & FLAG_SAMPLED
        };
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Always written as version 00, the only version this crate produces.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// Why a `tracestate` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceStateError {
    /// A list member is not `key=value` with a valid key and value.
    #[error(
        "invalid tracestate member `{member}`: expected key=value with a lower-case key \
         (a-z0-9_-*/, optionally tenant@system) and a printable value without ',' or '='"
    )]
    Member {
        /// The rejected member.
        member: String,
    },
    /// More than 32 members.
    #[error("invalid tracestate: expected at most 32 members, got {count}")]
    TooManyMembers {
        /// Members found.
        count: usize,
    },
    /// A key appears twice.
    #[error("invalid tracestate: key `{key}` appears more than once")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
}

/// A validated `tracestate`: vendor entries passed along unchanged, in order.
///
/// ```
/// use traces_abstractions::TraceState;
/// let ts: TraceState = "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE".parse().unwrap();
/// assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
/// assert_eq!(ts.to_string(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TraceState {
    members: Vec<(String, String)>,
}

impl TraceState {
    /// Parses a header value. Empty members (`a=1,,b=2`) and blanks around
    /// members are allowed, as the specification says.
    pub fn parse(value: &str) -> Result<Self, TraceStateError> {
        let mut members: Vec<(String, String)> = Vec::new();
        for raw in value.split(',') {
            let member = raw.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let invalid = || TraceStateError::Member {
                member: member.to_owned(),
            };
            let (key, val) = member.split_once('=').ok_or_else(invalid)?;
            if !valid_key(key) || !valid_value(val) {
                return Err(invalid());
            }
            if members.iter().any(|(k, _)| k == key) {
                return Err(TraceStateError::DuplicateKey {
                    key: key.to_owned(),
                });
            }
            members.push((key.to_owned(), val.to_owned()));
        }
        if members.len() > TRACESTATE_MAX_MEMBERS {
            return Err(TraceStateError::TooManyMembers {
                count: members.len(),
            });
        }
        Ok(Self { members })
    }

    /// Whether there is no entry (then no header is sent).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The value of one vendor's entry.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The entries in order, left-most (most recent) first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl FromStr for TraceState {
    type Err = TraceStateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// The trace context one message or request carries: a parent and the
/// vendor state that travels with it.
///
/// ```
/// use traces_abstractions::TraceContext;
/// // What a consumer reads from an envelope's `traceparent` / `tracestate`.
/// let cx = TraceContext::extract(
///     Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
///     Some("congo=t61rcWkgMzE"),
/// )
/// .unwrap();
/// assert_eq!(cx.traceparent.parent_id.to_string(), "b7ad6b7169203331");
/// let (traceparent, tracestate) = cx.to_headers();
/// assert_eq!(tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
/// assert!(traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The parent.
    pub traceparent: TraceParent,
    /// Vendor state (empty when none was sent).
    pub tracestate: TraceState,
}

impl TraceContext {
    /// Reads the context from the two header values, following the
    /// specification's rules for a receiver: no or an invalid `traceparent`
    /// gives `None` (a new trace starts); an invalid `tracestate` is dropped
    /// while the parent is kept.
    pub fn extract(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Self> {
        let traceparent = TraceParent::parse(traceparent?).ok()?;
        let tracestate = tracestate
            .and_then(|v| TraceState::parse(v).ok())
            .unwrap_or_default();
        Some(Self {
            traceparent,
            tracestate,
        })
    }

    /// Like [`TraceContext::extract`] but reports why a present value is
    /// invalid (for diagnostics); `Ok(None)` when no `traceparent` was sent.
    pub fn try_extract(
        traceparent: Option<&str>,
        tracestate: Option<&str>,
    ) -> Result<Option<Self>, TraceContextError> {
        let Some(traceparent) = traceparent else {
            return Ok(None);
        };
        let traceparent = TraceParent::parse(traceparent)?;
        let tracestate = match tracestate {
            Some(v) => TraceState::parse(v)?,
            None => TraceState::default(),
        };
        Ok(Some(Self {
            traceparent,
            tracestate,
        }))
    }

    /// The `traceparent` value and, when there is vendor state, the
    /// `tracestate` value — ready for an envelope or HTTP headers.
    pub fn to_headers(&self) -> (String, Option<String>) {
        let state = (!self.tracestate.is_empty()).then(|| self.tracestate.to_string());
        (self.traceparent.to_string(), state)
    }
}

/// Why a trace context could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceContextError {
    /// The `traceparent` value is invalid.
    #[error(transparent)]
    TraceParent(#[from] TraceParentError),
    /// The `tracestate` value is invalid.
    #[error(transparent)]
    TraceState(#[from] TraceStateError),
}

/// Decodes lower-case hex into `out`; `None` unless `hex` is exactly twice
/// `out.len()` lower-case hex digits.
fn decode_hex(hex: &str, out: &mut [u8]) -> Option<()> {
    let bytes = hex.as_bytes();
    if bytes.len() != out.len() * 2 {
        return None;
    }
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

/// `simple-key` or `tenant-id@system-id` of the specification.
fn valid_key(key: &str) -> bool {
    fn rest_ok(s: &[u8]) -> bool {
        s.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
        })
    }
    match key.split_once('@') {
        None => {
            let b = key.as_bytes();
            !b.is_empty() && b.len() <= 256 && b[0].is_ascii_lowercase() && rest_ok(&b[1..])
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            !t.is_empty()
                && t.len() <= 241
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && rest_ok(&t[1..])
                && !s.is_empty()
                && s.len() <= 14
                && s[0].is_ascii_lowercase()
                && rest_ok(&s[1..])
        }
    }
}

/// `0*255(chr) nblk-chr`: printable ASCII except `,` and `=`, not ending in
/// a space.
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

#[cfg(test)]
mod tests {
    use super::*;

    // Examples from the W3C Trace Context recommendation.
    const SPEC_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const SPEC_NOT_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    #[test]
    fn parses_spec_examples() {
        let tp = TraceParent::parse(SPEC_SAMPLED).unwrap();
        assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(tp.is_sampled());
        assert_eq!(tp.to_string(), SPEC_SAMPLED);

        let tp = TraceParent::parse(SPEC_NOT_SAMPLED).unwrap();
        assert!(!tp.is_sampled());
        assert_eq!(tp.to_string(), SPEC_NOT_SAMPLED);
    }

    #[test]
    fn keeps_unknown_version_00_flags_and_trims_blanks() {
        let tp = TraceParent::parse(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09\t")
            .unwrap();
        assert_eq!(tp.flags, 0x09);
        assert!(tp.is_sampled());
    }

    #[test]
    fn reads_future_versions_by_their_version_00_prefix() {
        let tp =
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-ever")
                .unwrap();
        assert_eq!(tp.flags, FLAG_SAMPLED, "only the sampled bit is understood");
        assert_eq!(tp.to_string(), SPEC_SAMPLED, "written back as version 00");
        let exact =
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!exact.is_sampled());
        assert!(
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x").is_err(),
            "extra fields must follow a dash"
        );
    }

    #[test]
    fn rejects_malformed_traceparents() {
        let cases = [
            ("", "too short"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "missing flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                "v00 has 4 fields",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff",
            ),
            (
                "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "hex version",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "upper-case",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "zero trace-id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "zero parent-id",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                "separators",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                "non-hex trace-id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                "non-hex flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bé-1",
                "non-ASCII",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01",
                "misplaced dash",
            ),
        ];
        for (value, why) in cases {
            assert!(
                TraceParent::parse(value).is_err(),
                "{why}: `{value}` accepted"
            );
        }
        let err = TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid traceparent trace-id: expected a non-zero id"
        );
        let err = TraceParent::parse("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap_err();
        assert!(err.to_string().contains("version other than ff"), "{err}");
    }

    #[test]
    fn tracestate_spec_examples_pass_through() {
        let ts = TraceState::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").unwrap();
        assert_eq!(ts.to_string(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        let ts = TraceState::parse(" congo=ucfJifl5GOE , ,rojo=00f067aa0ba902b7\t").unwrap();
        assert_eq!(
            ts.iter().collect::<Vec<_>>(),
            vec![("congo", "ucfJifl5GOE"), ("rojo", "00f067aa0ba902b7")]
        );
        let ts = TraceState::parse("fw529a3039@dt=  spaced value,1tenant@vendor=x").unwrap();
        assert_eq!(ts.get("fw529a3039@dt"), Some("  spaced value"));
        assert!(TraceState::parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_tracestates() {
        for value in [
            "novalue",
            "Upper=1",
            "1digitfirst=1",
            "k=va,lue=x=y",
            "k=",
            "t@toolongsystemid=1",
            "@v=1",
            "k=\u{7f}",
        ] {
            assert!(TraceState::parse(value).is_err(), "`{value}` accepted");
        }
        assert_eq!(
            TraceState::parse("a=1,a=2").unwrap_err(),
            TraceStateError::DuplicateKey { key: "a".into() }
        );
        let many = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            TraceState::parse(&many).unwrap_err(),
            TraceStateError::TooManyMembers { count: 33 }
        );
        let max = (0..32)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(TraceState::parse(&max).is_ok());
    }

    #[test]
    fn extract_follows_receiver_rules() {
        assert_eq!(TraceContext::extract(None, Some("a=1")), None);
        assert_eq!(TraceContext::extract(Some("garbage"), None), None);
        let cx = TraceContext::extract(Some(SPEC_SAMPLED), Some("Bad Key=1")).unwrap();
        assert!(cx.tracestate.is_empty(), "invalid tracestate is dropped");
        assert_eq!(cx.to_headers(), (SPEC_SAMPLED.to_owned(), None));

        assert_eq!(TraceContext::try_extract(None, None), Ok(None));
        assert!(matches!(
            TraceContext::try_extract(Some(SPEC_SAMPLED), Some("Bad Key=1")),
            Err(TraceContextError::TraceState(_))
        ));
        assert!(matches!(
            TraceContext::try_extract(Some("00-x"), None),
            Err(TraceContextError::TraceParent(_))
        ));
        let cx = TraceContext::try_extract(Some(SPEC_SAMPLED), Some("congo=t61rcWkgMzE"))
            .unwrap()
            .unwrap();
        assert_eq!(
            cx.to_headers(),
            (
                SPEC_SAMPLED.to_owned(),
                Some("congo=t61rcWkgMzE".to_owned())
            )
        );
    }

    #[test]
    fn ids_round_trip() {
        let id: TraceId = "0af7651916cd43dd8448eb211c80319c".parse().unwrap();
        assert_eq!(id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(
            format!("{id:?}"),
            "TraceId(0af7651916cd43dd8448eb211c80319c)"
        );
        let span = SpanId::from_hex("b7ad6b7169203331").unwrap();
        assert_eq!(span.to_bytes()[0], 0xb7);
        let tp = TraceParent::new(id, span, false);
        assert_eq!(
            tp.to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        );
        assert!(SpanId::from_hex("b7ad6b716920333").is_err());
    }
}

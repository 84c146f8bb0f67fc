//! The JSON line format, written directly.
//!
//! The same lines as `tracing-subscriber`'s JSON format with a flattened
//! event and the span list (`timestamp`, `level`, the event's fields,
//! `target`, `spans`), plus the fields of the [`LogContext`] at the top
//! level — written straight into the line buffer. `tracing-subscriber`'s
//! own format collects the fields through `serde` and re-parses every
//! span's fields per line: measured at ≈ 20 000 instructions for one access
//! log line, which made a line per request cost more than the whole HTTP
//! request it described (see `docs/bench-http.md`).

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chassis_core::calendar::civil_from_days;
use logging_abstractions::LogContext;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format of JSON lines (see the module docs).
pub(crate) struct JsonLine {
    context: Arc<dyn LogContext>,
}

impl JsonLine {
    pub(crate) fn new(context: Arc<dyn LogContext>) -> Self {
        Self { context }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut result = Ok(());
        self.context.visit(&mut |name, value| {
            if result.is_ok() {
                result = write_entry(&mut writer, name, value);
            }
        });
        result?;
        let mut fields = Fields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, meta.target())?;
        let scope = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = scope {
            writer.write_str(",\"spans\":[")?;
            for (i, span) in span.scope().from_root().enumerate() {
                if i > 0 {
                    writer.write_char(',')?;
                }
                writer.write_char('{')?;
                let extensions = span.extensions();
                // The span's fields as the layer's `JsonFields` wrote them:
                // one JSON object, spliced in without its braces.
                let inner = extensions
                    .get::<FormattedFields<N>>()
                    .map(|f| f.fields.trim())
                    .and_then(|f| f.strip_prefix('{'))
                    .and_then(|f| f.strip_suffix('}'))
                    .map(str::trim)
                    .unwrap_or_default();
                if !inner.is_empty() {
                    writer.write_str(inner)?;
                    writer.write_char(',')?;
                }
                writer.write_str("\"name\":")?;
                write_string(&mut writer, span.metadata().name())?;
                writer.write_char('}')?;
            }
            writer.write_char(']')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes the event's fields as `,"name":value` entries.
struct Fields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn raw(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_ok() {
            self.result = (|| {
                self.writer.write_char(',')?;
                write_string(self.writer, field.name())?;
                self.writer.write_char(':')?;
                self.writer.write_fmt(value)
            })();
        }
    }
}

impl Fields<'_, '_> {
    /// `,"name":` and `prefix` and `value` as they are (numbers).
    fn raw_str(&mut self, field: &Field, prefix: &str, value: &str) {
        if self.result.is_ok() {
            self.result = (|| {
                self.writer.write_char(',')?;
                write_string(self.writer, field.name())?;
                self.writer.write_char(':')?;
                self.writer.write_str(prefix)?;
                self.writer.write_str(value)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            self.result = write_entry(self.writer, field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = (|| {
                self.writer.write_char(',')?;
                write_string(self.writer, field.name())?;
                self.writer.write_str(":\"")?;
                write!(Escape(self.writer), "{value:?}")?;
                self.writer.write_char('"')
            })();
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_ok() {
            self.result = (|| {
                self.writer.write_char(',')?;
                write_string(self.writer, field.name())?;
                self.writer.write_str(":\"")?;
                write!(Escape(self.writer), "{value}")?;
                self.writer.write_char('"')
            })();
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let mut digits = [0u8; 20];
        self.raw_str(field, "", decimal(value, &mut digits));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let mut digits = [0u8; 20];
        let sign = if value < 0 { "-" } else { "" };
        let magnitude = decimal(value.unsigned_abs(), &mut digits);
        self.raw_str(field, sign, magnitude);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity (serde_json writes null too).
        if value.is_finite() {
            self.raw(field, format_args!("{value}"));
        } else {
            self.raw(field, format_args!("null"));
        }
    }
}

/// `value` in decimal, written into `digits` (integers are most fields of
/// an access log line; this skips the formatting machinery's padding and
/// flag handling).
fn decimal(mut value: u64, digits: &mut [u8; 20]) -> &str {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&digits[at..]).unwrap_or("0")
}

/// `,"name":"value"`.
fn write_entry(writer: &mut Writer<'_>, name: &str, value: &str) -> fmt::Result {
    writer.write_char(',')?;
    write_string(writer, name)?;
    writer.write_char(':')?;
    write_string(writer, value)
}

/// `value` as a JSON string literal.
pub(crate) fn write_string(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escape(out).write_str(value)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escape<'a, W: ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escape<'_, W> {
    fn write_str(&mut self, value: &str) -> fmt::Result {
        let bytes = value.as_bytes();
        let plain = |b: &u8| *b >= 0x20 && *b != b'"' && *b != b'\\';
        if bytes.iter().all(plain) {
            return self.0.write_str(value);
        }
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escaped = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            // Slicing at ASCII bytes keeps UTF-8 boundaries.
            self.0.write_str(&value[start..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escaped)?;
            }
            start = i + 1;
        }
        self.0.write_str(&value[start..])
    }
}

/// RFC 3339 in UTC with microseconds, as `tracing-subscriber` writes it:
/// `2026-11-22T03:00:01.123456Z`.
fn write_timestamp(out: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    // Digit by digit into a fixed layout: `write!` with width flags cost
    // more than the rest of a line's fields.
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day % 3600 / 60);
    put(17, 2, of_day % 60);
    put(20, 6, u64::from(since.subsec_micros()));
    out.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut out = String::new();
        let at = UNIX_EPOCH + Duration::from_micros(1_795_316_401_123_456);
        write_timestamp(&mut out, at).unwrap();
        assert_eq!(out, "2026-11-22T03:00:01.123456Z");
        out.clear();
        write_timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400)).unwrap();
        assert_eq!(out, "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        write_string(&mut out, "a\"b\\c\nd\u{1}é").unwrap();
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }
}

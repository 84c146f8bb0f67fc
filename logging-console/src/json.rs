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

use std::cell::RefCell;
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

/// A line buffer larger than this is not kept for the next line.
const KEPT_LINE_BYTES: usize = 16 * 1024;

thread_local! {
    /// The line being assembled. A line is built here with inlined pushes
    /// and handed to the layer's writer in one call: each of the layer's
    /// `Writer` calls is a dynamic call, and a line made of some forty of
    /// them cost more than its formatting.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl JsonLine {
    pub(crate) fn new(context: Arc<dyn LogContext>) -> Self {
        Self { context }
    }

    fn line<S, N>(
        &self,
        ctx: &FmtContext<'_, S, N>,
        line: &mut String,
        event: &Event<'_>,
    ) -> fmt::Result
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let meta = event.metadata();
        line.push_str("{\"timestamp\":\"");
        push_timestamp(line, SystemTime::now());
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push('"');
        self.context
            .visit(&mut |name, value| push_entry(line, name, value));
        let mut fields = Fields {
            line,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        line.push_str(",\"target\":");
        push_string(line, meta.target());
        let scope = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = scope {
            line.push_str(",\"spans\":[");
            for (i, span) in span.scope().from_root().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                line.push('{');
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
                    line.push_str(inner);
                    line.push(',');
                }
                line.push_str("\"name\":");
                push_string(line, span.metadata().name());
                line.push('}');
            }
            line.push(']');
        }
        line.push_str("}\n");
        Ok(())
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
        LINE.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                let written = self
                    .line(ctx, &mut line, event)
                    .and_then(|()| writer.write_str(&line));
                if line.capacity() > KEPT_LINE_BYTES {
                    *line = String::new();
                }
                written
            }
            // A field's `Debug` that logs while its line is being written.
            Err(_) => {
                let mut line = String::new();
                self.line(ctx, &mut line, event)?;
                writer.write_str(&line)
            }
        })
    }
}

/// Writes the event's fields as `,"name":value` entries.
struct Fields<'a> {
    line: &'a mut String,
    result: fmt::Result,
}

impl Fields<'_> {
    /// `,"name":` and `value` formatted as it is (numbers, booleans).
    fn raw(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_ok() {
            push_name(self.line, field.name());
            self.result = self.line.write_fmt(value);
        }
    }

    /// `,"name":"value"` with `value` formatted by `fmt` and escaped.
    fn quoted(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_ok() {
            push_name(self.line, field.name());
            self.line.push('"');
            self.result = Escape(self.line).write_fmt(value);
            self.line.push('"');
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        push_entry(self.line, field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.quoted(field, format_args!("{value:?}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.quoted(field, format_args!("{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        push_name(self.line, field.name());
        push_decimal(self.line, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        push_name(self.line, field.name());
        if value < 0 {
            self.line.push('-');
        }
        push_decimal(self.line, value.unsigned_abs());
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        push_name(self.line, field.name());
        self.line.push_str(if value { "true" } else { "false" });
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

/// `value` in decimal (integers are most fields of an access log line;
/// this skips the formatting machinery's padding and flag handling).
fn push_decimal(line: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
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
    line.push_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"));
}

/// `,"name":`.
fn push_name(line: &mut String, name: &str) {
    line.push(',');
    push_string(line, name);
    line.push(':');
}

/// `,"name":"value"`.
fn push_entry(line: &mut String, name: &str, value: &str) {
    push_name(line, name);
    push_string(line, value);
}

/// `value` as a JSON string literal.
pub(crate) fn push_string(line: &mut String, value: &str) {
    line.push('"');
    push_escaped(line, value);
    line.push('"');
}

/// Whether any of the 8 bytes in `word` must be escaped in a JSON string:
/// a control character (below 0x20), `"` or `\`. Exact, word at a time
/// (the "has a zero byte" and "has a byte less than n" tests).
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH != 0;
    below_space
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
}

/// Whether `bytes` hold nothing a JSON string must escape.
fn is_plain(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for word in words.by_ref() {
        let word: [u8; 8] = word.try_into().unwrap_or_default();
        if word_needs_escape(u64::from_ne_bytes(word)) {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// `value` escaped for the inside of a JSON string.
fn push_escaped(line: &mut String, value: &str) {
    let bytes = value.as_bytes();
    if is_plain(bytes) {
        line.push_str(value);
        return;
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
        line.push_str(&value[start..i]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            line.push_str("\\u00");
            line.push(char::from(HEX[usize::from(b >> 4)]));
            line.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            line.push_str(escaped);
        }
        start = i + 1;
    }
    line.push_str(&value[start..]);
}

/// Escapes what it is given for the inside of a JSON string (for values
/// that are formatted, such as `Debug` fields).
struct Escape<'a>(&'a mut String);

impl fmt::Write for Escape<'_> {
    fn write_str(&mut self, value: &str) -> fmt::Result {
        push_escaped(self.0, value);
        Ok(())
    }
}

/// RFC 3339 in UTC with microseconds, as `tracing-subscriber` writes it:
/// `2026-11-22T03:00:01.123456Z`.
fn push_timestamp(line: &mut String, now: SystemTime) {
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
    // Only ASCII digits and separators were written.
    line.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut out = String::new();
        let at = UNIX_EPOCH + Duration::from_micros(1_795_316_401_123_456);
        push_timestamp(&mut out, at);
        assert_eq!(out, "2026-11-22T03:00:01.123456Z");
        out.clear();
        push_timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400));
        assert_eq!(out, "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        push_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn every_byte_needing_an_escape_is_found_at_every_position_of_a_word() {
        for byte in 0u8..0x80 {
            for at in 0..17 {
                let mut text = vec![b'a'; 17];
                text[at] = byte;
                let text = String::from_utf8(text).unwrap();
                let mut out = String::new();
                push_string(&mut out, &text);
                let parsed: String = serde_json::from_str(&out)
                    .unwrap_or_else(|e| panic!("byte {byte:#04x} at {at}: {out:?}: {e}"));
                assert_eq!(parsed, text);
                let escaped = byte < 0x20 || byte == b'"' || byte == b'\\';
                assert_eq!(
                    out.len() > text.len() + 2,
                    escaped,
                    "byte {byte:#04x} at {at}"
                );
            }
        }
        // Multi-byte characters are never escaped.
        let mut out = String::new();
        push_string(&mut out, "zürich → 東京 ÿ");
        assert_eq!(out, "\"zürich → 東京 ÿ\"");
    }
}

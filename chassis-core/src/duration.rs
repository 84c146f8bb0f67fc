//! Durations in configuration, written the way people write them: `"250ms"`,
//! `"30s"`, `"5m"`, `"1h"`, `"1m30s"`.
//!
//! Use with `#[serde(with = "chassis_core::duration")]` on a
//! [`std::time::Duration`] field, or [`option`] on an `Option<Duration>`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Why a duration text could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration `{input}`: {reason} (expected e.g. \"250ms\", \"30s\", \"5m\", \"1h\")")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1m30s"`, `"0"`.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let err = |reason| ParseDurationError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(err("empty"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(err("a number must come before each unit"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            "" => return Err(err("missing unit (ms, s, m or h)")),
            _ => return Err(err("unknown unit (use ms, s, m or h)")),
        };
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it (`"1500ms"`, `"30s"`).
pub fn format(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 && !d.is_zero() {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// Serde `serialize` for `#[serde(with = "chassis_core::duration")]`.
pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*d))
}

/// Serde `deserialize` for `#[serde(with = "chassis_core::duration")]`.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(|e| invalid::<D::Error>(&text, &e))
}

/// serde's "invalid value" shape (`invalid value: string "x", expected ...`),
/// so configuration errors can say what was found and what was expected.
fn invalid<E: serde::de::Error>(text: &str, error: &ParseDurationError) -> E {
    let expected = format!(
        "a duration such as \"250ms\", \"30s\", \"5m\", \"1h\" ({})",
        error.reason
    );
    E::invalid_value(serde::de::Unexpected::Str(text), &expected.as_str())
}

/// The same for `Option<Duration>`: `#[serde(with = "chassis_core::duration::option", default)]`.
pub mod option {
    use super::*;

    /// Serde `serialize` for an optional duration.
    pub fn serialize<S: Serializer>(
        d: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Serde `deserialize` for an optional duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            Some(text) => parse(&text)
                .map(Some)
                .map_err(|e| invalid::<D::Error>(&text, &e)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_input_with_reason() {
        assert!(
            parse("30")
                .unwrap_err()
                .to_string()
                .contains("missing unit")
        );
        assert!(
            parse("3d")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(parse("").is_err());
        assert!(parse("s").is_err());
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::from_millis(1500),
            Duration::from_secs(30),
            Duration::ZERO,
        ] {
            assert_eq!(parse(&format(d)).unwrap(), d);
        }
    }
}

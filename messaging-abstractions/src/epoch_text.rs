//! The exact text form of a timestamp the broker providers write where no
//! attribute format is prescribed (a dead letter's `failed_at`) and read in
//! the previous release's wire format: `secs.nanos` from the Unix epoch,
//! negative before it. Lossless both ways.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use messaging_abstractions::epoch_text;
//!
//! let t = UNIX_EPOCH + Duration::new(1_763_700_000, 5);
//! assert_eq!(epoch_text::format(t), "1763700000.000000005");
//! assert_eq!(epoch_text::parse("1763700000.000000005"), Some(t));
//! assert_eq!(epoch_text::parse("yesterday"), None);
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `t` as `secs.nanos` from the Unix epoch (`-secs.nanos` before it).
pub fn format(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        Err(before) => {
            let d = before.duration();
            format!("-{}.{:09}", d.as_secs(), d.subsec_nanos())
        }
    }
}

/// Reads what [`format()`] writes; `None` for anything else.
pub fn parse(text: &str) -> Option<SystemTime> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_on_both_sides_of_the_epoch() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_763_700_000, 123_456_789),
            UNIX_EPOCH - Duration::new(86_400, 1),
        ] {
            assert_eq!(parse(&format(t)), Some(t), "{}", format(t));
        }
        assert_eq!(format(UNIX_EPOCH - Duration::new(1, 0)), "-1.000000000");
        assert_eq!(parse("12"), None);
    }
}

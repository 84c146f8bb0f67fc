//! Names of everything the provider makes on the server: subjects, streams,
//! consumers. Free of I/O so the rules are unit tested.
//!
//! With `P` = `messaging.nats.subject_prefix`:
//!
//! | what | name |
//! |---|---|
//! | subject of an event of type `T` (`order.placed.v1`) | `P.T` (`P.order.placed.v1`) |
//! | stream of the namespace `N` of `T` (its first token: `order`) | `P_events_N`, subjects `P.N.>` |
//! | durable consumer of group `G` for `T` | `G__<T with . as _>__<hash>` (filter `P.T`) |
//! | dead-letter stream | `P_dead_letters`, subjects `P_dlq.>` |
//! | subject of a dead letter of group `G` | `P_dlq.G` |

/// Whether `s` is one subject token usable in names: letters, digits, `_`, `-`.
pub(crate) fn is_name_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The names derived from the subject prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Checks an event type can be a subject: tokens separated by `.`,
    /// each of letters, digits, `_` or `-`.
    pub(crate) fn check_event_type(event_type: &str) -> Result<(), String> {
        if event_type.split('.').all(is_name_token) {
            Ok(())
        } else {
            Err(format!(
                "event type `{event_type}` cannot be a NATS subject: expected tokens of \
                 letters, digits, `_` or `-` separated by `.`"
            ))
        }
    }

    /// The namespace of an event type: its first token.
    pub(crate) fn namespace(event_type: &str) -> &str {
        event_type.split('.').next().unwrap_or(event_type)
    }

    /// The subject events of `event_type` are published to.
    pub(crate) fn subject(&self, event_type: &str) -> String {
        format!("{}.{event_type}", self.prefix)
    }

    /// The event type of a subject made by [`Names::subject`].
    pub(crate) fn event_type<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
    }

    /// The stream holding the events of `namespace`.
    pub(crate) fn stream(&self, namespace: &str) -> String {
        format!("{}_events_{namespace}", self.prefix)
    }

    /// The subjects of the stream of `namespace`.
    pub(crate) fn stream_subjects(&self, namespace: &str) -> String {
        format!("{}.{namespace}.>", self.prefix)
    }

    /// The durable consumer of `group` for `event_type`: readable, and a
    /// hash of both keeps names apart that `_` for `.` would merge.
    pub(crate) fn consumer(&self, group: &str, event_type: &str) -> String {
        let readable = |s: &str| s.replace('.', "_");
        format!(
            "{}__{}__{:08x}",
            readable(group),
            readable(event_type),
            fnv1a(&format!("{group}\n{event_type}")) as u32
        )
    }

    /// The stream of dead letters (every group).
    pub(crate) fn dead_letter_stream(&self) -> String {
        format!("{}_dead_letters", self.prefix)
    }

    /// The subjects of the dead-letter stream.
    pub(crate) fn dead_letter_subjects(&self) -> String {
        format!("{}_dlq.>", self.prefix)
    }

    /// The subject of `group`'s dead letters.
    pub(crate) fn dead_letter_subject(&self, group: &str) -> String {
        format!("{}_dlq.{group}", self.prefix)
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (names live on the
/// server longer than a process).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_scheme() {
        let n = Names::new("chassis");
        assert_eq!(n.subject("order.placed.v1"), "chassis.order.placed.v1");
        assert_eq!(
            n.event_type("chassis.order.placed.v1"),
            Some("order.placed.v1")
        );
        assert_eq!(n.event_type("other.order.placed.v1"), None);
        assert_eq!(Names::namespace("order.placed.v1"), "order");
        assert_eq!(n.stream("order"), "chassis_events_order");
        assert_eq!(n.stream_subjects("order"), "chassis.order.>");
        assert_eq!(n.dead_letter_stream(), "chassis_dead_letters");
        assert_eq!(n.dead_letter_subject("shipping"), "chassis_dlq.shipping");
        let consumer = n.consumer("shipping", "order.placed.v1");
        assert!(
            consumer.starts_with("shipping__order_placed_v1__"),
            "{consumer}"
        );
        assert!(!consumer.contains('.'));
    }

    #[test]
    fn consumers_of_look_alike_names_stay_apart() {
        let n = Names::new("p");
        assert_ne!(n.consumer("a.b", "t.v1"), n.consumer("a_b", "t.v1"));
        assert_eq!(n.consumer("a", "t.v1"), n.consumer("a", "t.v1"));
    }

    #[test]
    fn event_types_must_be_subjects() {
        assert!(Names::check_event_type("order.placed.v1").is_ok());
        assert!(Names::check_event_type("shipping.quote-result.v1").is_ok());
        for bad in ["", "a..b", "a.*", "a.>", "a b", "a.b."] {
            assert!(Names::check_event_type(bad).is_err(), "{bad}");
        }
    }
}

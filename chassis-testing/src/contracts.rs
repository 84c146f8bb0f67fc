//! Event contract checks: a recorded JSON payload of each event type a
//! service publishes, kept next to its tests, and the checks that the
//! current event type stays compatible with it in both directions.
//!
//! For a recorded payload `R` (what the last released producer sent) and
//! the current type `E`:
//! - **backward**: `E` reads `R` (a consumer upgraded first still reads
//!   what the old producer sends);
//! - **tolerant**: `E` reads `R` with an unknown field added to every object
//!   (a producer that adds a field breaks no consumer: no
//!   `deny_unknown_fields` anywhere in an event);
//! - **forward**: the current payload keeps every field of `R` with a value
//!   of the same JSON kind (a consumer still on the old type, which ignores
//!   the new fields, reads what the upgraded producer sends). `null` on
//!   either side passes (an optional field).
//!
//! A missing recording fails with how to make one: run the test with
//! `CHASSIS_RECORD_CONTRACTS=1` once, review the file and commit it.
//! Re-record only together with a new event version (`…v2`): see
//! `docs/event-contracts.md`.
//!
//! ```
//! use chassis_testing::contracts::check_event_contract;
//! use messaging_abstractions::IntegrationEvent;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Shipped { order_id: String, carrier: Option<String> }
//! impl IntegrationEvent for Shipped { const EVENT_TYPE: &'static str = "doc.shipped.v1"; }
//!
//! let dir = std::env::temp_dir().join(format!("contracts-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! // What the released producer sent, with a field this version no longer knows.
//! std::fs::write(
//!     dir.join("doc.shipped.v1.json"),
//!     r#"{"order_id": "o-1", "carrier": "dhl", "weight_grams": 1200}"#,
//! )
//! .unwrap();
//! let current = Shipped { order_id: "o-2".into(), carrier: None };
//! let problems = chassis_testing::contracts::contract_problems(&dir, &current);
//! assert_eq!(problems, ["forward: the current payload lacks `weight_grams`, \
//!     which consumers of the recorded version read (number)"]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::path::{Path, PathBuf};

use messaging_abstractions::IntegrationEvent;
use serde_json::Value;

/// Set to `1` to write missing recordings instead of failing.
pub const RECORD_VAR: &str = "CHASSIS_RECORD_CONTRACTS";

/// The field added to every object of a recording to prove tolerance.
const PROBE_FIELD: &str = "x_chassis_contract_probe";

/// Panics, listing every problem, unless `current` is compatible with the
/// payload recorded in `dir/<EVENT_TYPE>.json` (see the module docs).
pub fn check_event_contract<E: IntegrationEvent>(dir: impl AsRef<Path>, current: &E) {
    let problems = contract_problems(dir.as_ref(), current);
    assert!(
        problems.is_empty(),
        "event contract `{}` broken:\n- {}\n(how to evolve an event: docs/event-contracts.md)",
        E::EVENT_TYPE,
        problems.join("\n- ")
    );
}

/// What [`check_event_contract`] would complain about; empty when
/// compatible. Writes a missing recording when [`RECORD_VAR`] is `1`.
pub fn contract_problems<E: IntegrationEvent>(dir: &Path, current: &E) -> Vec<String> {
    let path = recording(dir, E::EVENT_TYPE);
    let current = match serde_json::to_value(current) {
        Ok(value) => value,
        Err(e) => return vec![format!("the current event does not encode: {e}")],
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(_) if std::env::var(RECORD_VAR).as_deref() == Ok("1") => {
            let pretty = serde_json::to_string_pretty(&current).unwrap_or_default();
            if let Err(e) = std::fs::write(&path, pretty + "\n") {
                return vec![format!("cannot record {}: {e}", path.display())];
            }
            return Vec::new();
        }
        Err(e) => {
            return vec![format!(
                "no recorded payload at {} ({e}): run the test once with {RECORD_VAR}=1, \
                 review the file and commit it",
                path.display()
            )];
        }
    };
    let recorded: Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(e) => return vec![format!("{} is not JSON: {e}", path.display())],
    };
    let mut problems = Vec::new();
    if let Err(e) = serde_json::from_value::<E>(recorded.clone()) {
        problems.push(format!(
            "backward: the current type cannot read the recorded payload: {e}"
        ));
    }
    let mut extended = recorded.clone();
    add_probe_fields(&mut extended);
    if let Err(e) = serde_json::from_value::<E>(extended) {
        problems.push(format!(
            "tolerant: the current type refuses a payload with one more field ({e}); \
             events must ignore unknown fields (no `deny_unknown_fields` in an event or a \
             type it holds)"
        ));
    }
    missing_in(&recorded, &current, "", &mut problems);
    problems
}

fn recording(dir: &Path, event_type: &str) -> PathBuf {
    dir.join(format!("{event_type}.json"))
}

/// Adds [`PROBE_FIELD`] to every object, at every depth.
fn add_probe_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(add_probe_fields);
            map.insert(PROBE_FIELD.to_owned(), Value::Bool(true));
        }
        Value::Array(items) => items.iter_mut().for_each(add_probe_fields),
        _ => {}
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field of `recorded` that `current` lacks or holds with another kind.
fn missing_in(recorded: &Value, current: &Value, path: &str, problems: &mut Vec<String>) {
    match (recorded, current) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(old), Value::Object(new)) => {
            for (key, old_value) in old {
                let field = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match new.get(key) {
                    Some(new_value) => missing_in(old_value, new_value, &field, problems),
                    None => problems.push(format!(
                        "forward: the current payload lacks `{field}`, which consumers of the \
                         recorded version read ({})",
                        kind(old_value)
                    )),
                }
            }
        }
        (Value::Array(old), Value::Array(new)) => {
            if let (Some(old), Some(new)) = (old.first(), new.first()) {
                missing_in(old, new, &format!("{path}[]"), problems);
            }
        }
        (old, new) if kind(old) != kind(new) => problems.push(format!(
            "forward: `{path}` was {} in the recorded payload and is {} now",
            kind(old),
            kind(new)
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    struct Inner {
        city: String,
    }

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct StrictInner {
        city: String,
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Tolerant {
        id: u32,
        to: Inner,
    }

    impl IntegrationEvent for Tolerant {
        const EVENT_TYPE: &'static str = "test.tolerant.v1";
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Strict {
        id: u32,
        to: StrictInner,
    }

    impl IntegrationEvent for Strict {
        const EVENT_TYPE: &'static str = "test.strict.v1";
    }

    fn dir_with(name: &str, payload: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "chassis-contracts-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.json")), payload).unwrap();
        dir
    }

    #[test]
    fn a_compatible_event_passes() {
        let dir = dir_with("test.tolerant.v1", r#"{"id": 1, "to": {"city": "Oslo"}}"#);
        let current = Tolerant {
            id: 2,
            to: Inner {
                city: "Rome".into(),
            },
        };
        assert_eq!(contract_problems(&dir, &current), Vec::<String>::new());
    }

    #[test]
    fn a_nested_strict_type_is_caught() {
        let dir = dir_with("test.strict.v1", r#"{"id": 1, "to": {"city": "Oslo"}}"#);
        let current = Strict {
            id: 2,
            to: StrictInner {
                city: "Rome".into(),
            },
        };
        let problems = contract_problems(&dir, &current);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("tolerant:"), "{problems:?}");
    }

    #[test]
    fn a_removed_or_retyped_field_is_caught() {
        let dir = dir_with(
            "test.tolerant.v1",
            r#"{"id": "one", "to": {"city": "Oslo", "zip": "0150"}}"#,
        );
        let current = Tolerant {
            id: 2,
            to: Inner {
                city: "Rome".into(),
            },
        };
        let problems = contract_problems(&dir, &current);
        assert!(problems[0].starts_with("backward:"), "{problems:?}");
        assert!(
            problems.contains(
                &"forward: `id` was string in the recorded payload and is number now".to_owned()
            ),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("lacks `to.zip`")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_missing_recording_says_how_to_make_one() {
        let dir = dir_with("other", "{}");
        let current = Tolerant {
            id: 2,
            to: Inner {
                city: "Rome".into(),
            },
        };
        let problems = contract_problems(&dir, &current);
        assert!(
            problems[0].contains("CHASSIS_RECORD_CONTRACTS=1"),
            "{problems:?}"
        );
    }
}

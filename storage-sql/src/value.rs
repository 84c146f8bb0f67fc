//! Values bound to a statement: one enum both drivers can encode, so a
//! service's code does not name a driver.

use time::OffsetDateTime;
use uuid::Uuid;

/// A value bound to a `$n` placeholder. Every variant carries an `Option`:
/// `None` is SQL `NULL` of that type (PostgreSQL wants typed nulls).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `boolean` (SQLite: 0/1).
    Bool(Option<bool>),
    /// `bigint` (SQLite: INTEGER). Smaller integers widen to it.
    Int(Option<i64>),
    /// `double precision` (SQLite: REAL).
    Float(Option<f64>),
    /// `text`.
    Text(Option<String>),
    /// `bytea` (SQLite: BLOB).
    Bytes(Option<Vec<u8>>),
    /// `uuid` (SQLite: a 16-byte BLOB).
    Uuid(Option<Uuid>),
    /// `timestamptz` (SQLite: text, `YYYY-MM-DD HH:MM:SS.fff+00:00`;
    /// store UTC so text order is time order).
    Timestamp(Option<OffsetDateTime>),
    /// `jsonb` (SQLite: text).
    Json(Option<serde_json::Value>),
}

macro_rules! value_from {
    ($variant:ident: $($ty:ty => $convert:expr),+ $(,)?) => {$(
        impl From<$ty> for Value {
            fn from(value: $ty) -> Self {
                let convert = $convert;
                Value::$variant(Some(convert(value)))
            }
        }
        impl From<Option<$ty>> for Value {
            fn from(value: Option<$ty>) -> Self {
                Value::$variant(value.map($convert))
            }
        }
    )+};
}

value_from!(Bool: bool => |v| v);
value_from!(Int: i64 => |v| v, i32 => i64::from, i16 => i64::from, u32 => i64::from);
value_from!(Float: f64 => |v| v, f32 => f64::from);
value_from!(Text: String => |v| v, &str => str::to_owned, &String => String::clone);
value_from!(Bytes: Vec<u8> => |v| v, &[u8] => <[u8]>::to_vec);
value_from!(Uuid: Uuid => |v| v, &Uuid => |v: &Uuid| *v);
value_from!(Timestamp: OffsetDateTime => |v| v);
value_from!(Json: serde_json::Value => |v| v, &serde_json::Value => serde_json::Value::clone);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_keep_their_type() {
        assert_eq!(Value::from(None::<i32>), Value::Int(None));
        assert_eq!(Value::from(Some("a")), Value::Text(Some("a".into())));
        assert_eq!(Value::from(7u32), Value::Int(Some(7)));
    }
}

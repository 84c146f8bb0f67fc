//! Reading configuration sections, and the one error for a value that is
//! wrong.
//!
//! The host loads the layered configuration once; init crates read the
//! subsection of the provider they build through a [`ConfigSource`], so the
//! provider's own config type (its keys, defaults and validation) lives in the
//! provider crate and nowhere else. Every error is an [`InvalidValue`] naming
//! the key path, what was expected and the layer the value came from.
//!
//! ```
//! use chassis_core::config::{ConfigSource, Defaults, InvalidValue};
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(default)]
//! struct PoolConfig { size: u32 }
//! impl Default for PoolConfig { fn default() -> Self { Self { size: 4 } } }
//!
//! let pool: PoolConfig = Defaults.read("storage.pool").unwrap();
//! assert_eq!(pool.size, 4);
//!
//! let err = Defaults.locate(InvalidValue::new("storage.pool.size", "an integer >= 1"));
//! assert_eq!(err.to_string(), "storage.pool.size: expected an integer >= 1 (from built-in default)");
//! ```

use std::collections::BTreeSet;

use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// The layer of a value no file, variable or override set.
pub const DEFAULT_LAYER: &str = "built-in default";

/// A configuration value is wrong: its key path, what was expected there and
/// the layer it came from (a file path, `env VAR`, `built-in default`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key}: expected {expected}{}{}", found.as_ref().map(|f| format!(", found {f}")).unwrap_or_default(), layer.as_ref().map(|l| format!(" (from {l})")).unwrap_or_default())]
pub struct InvalidValue {
    /// Key path, e.g. `messaging.retry.multiplier`.
    pub key: String,
    /// What the key accepts, e.g. `a number >= 1.0`.
    pub expected: String,
    /// What was found, when it helps (`string "eighty"`).
    pub found: Option<String>,
    /// The layer the value came from, once known.
    pub layer: Option<String>,
}

impl InvalidValue {
    /// A value error; the layer is filled in by whoever knows the layers
    /// ([`ConfigSource::locate`]).
    pub fn new(key: impl Into<String>, expected: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            expected: expected.into(),
            found: None,
            layer: None,
        }
    }

    /// The same error, saying what was found.
    pub fn found(mut self, found: impl Into<String>) -> Self {
        self.found = Some(found.into());
        self
    }

    /// The same error, naming the layer the value came from.
    pub fn in_layer(mut self, layer: impl Into<String>) -> Self {
        self.layer = Some(layer.into());
        self
    }

    /// The same error under a section: `prefix` + `.` + its key (a provider
    /// validates its own keys; the init crate knows where its section sits).
    pub fn under(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.key = format!("{prefix}.{}", self.key);
        }
        self
    }
}

/// Where configuration sections are read from.
///
/// The host implements it over the loaded layers; [`Defaults`] gives every
/// section its defaults (tests, embedded use).
pub trait ConfigSource {
    /// Deserializes the section at the dotted `key` (a missing section reads
    /// as an empty table, so `#[serde(default)]` types get their defaults).
    fn read<T: DeserializeOwned>(&self, key: &str) -> Result<T, InvalidValue>;

    /// The layer the value at `key` came from.
    fn origin(&self, key: &str) -> String;

    /// Reads the section at `key` and checks it with `validate` (a provider's
    /// own `validate`); either error names the key path and its layer.
    fn read_valid<T: DeserializeOwned, R>(
        &self,
        key: &str,
        validate: impl FnOnce(&T) -> Result<R, InvalidValue>,
    ) -> Result<T, InvalidValue> {
        let section: T = self.read(key)?;
        validate(&section).map_err(|e| self.locate(e))?;
        Ok(section)
    }

    /// Fills in the layer of an error that does not name one yet.
    fn locate(&self, error: InvalidValue) -> InvalidValue {
        if error.layer.is_some() {
            return error;
        }
        let layer = self.origin(&error.key);
        error.in_layer(layer)
    }
}

/// Every section at its defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defaults;

impl ConfigSource for Defaults {
    fn read<T: DeserializeOwned>(&self, key: &str) -> Result<T, InvalidValue> {
        let empty = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(
            std::iter::empty::<(String, String)>(),
        );
        T::deserialize(empty).map_err(|e| InvalidValue::new(key, e.to_string()))
    }

    fn origin(&self, _key: &str) -> String {
        DEFAULT_LAYER.to_owned()
    }
}

/// Sections given as one JSON tree (tests, embedded use): what is not in the
/// tree reads as its defaults; every value's layer is `layer`.
///
/// ```
/// use chassis_core::config::{ConfigSource, JsonSource};
///
/// let source = JsonSource::new(serde_json::json!({"messaging": {"rabbitmq": {"url": "amqp://h"}}}));
/// let url: String = source.read("messaging.rabbitmq.url").unwrap();
/// assert_eq!(url, "amqp://h");
/// ```
#[derive(Debug, Clone, Default)]
pub struct JsonSource {
    tree: serde_json::Value,
    layer: String,
}

impl JsonSource {
    /// A source over `tree`, its values in the layer `override in code`.
    pub fn new(tree: serde_json::Value) -> Self {
        Self {
            tree,
            layer: "override in code".into(),
        }
    }

    fn at(&self, key: &str) -> Option<&serde_json::Value> {
        key.split('.')
            .filter(|s| !s.is_empty())
            .try_fold(&self.tree, |value, segment| value.get(segment))
    }
}

impl ConfigSource for JsonSource {
    fn read<T: DeserializeOwned>(&self, key: &str) -> Result<T, InvalidValue> {
        match self.at(key) {
            None => Defaults.read(key),
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|e| InvalidValue::new(key, e.to_string()).in_layer(self.layer.clone())),
        }
    }

    fn origin(&self, key: &str) -> String {
        match self.at(key) {
            Some(_) => self.layer.clone(),
            None => DEFAULT_LAYER.to_owned(),
        }
    }
}

/// The keys of a concern's section that its own type does not declare: the
/// provider subsections (`messaging.rabbitmq`, `storage.postgres`, ...) and
/// anything misspelled.
///
/// A concern's section type captures them with `#[serde(flatten)]`, so it
/// never names a provider's type; the init crate then checks each against the
/// providers it knows ([`ProviderTable::check_sections`](crate::provider::ProviderTable::check_sections))
/// and reads the one it builds through a [`ConfigSource`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtherKeys(pub BTreeSet<String>);

impl<'de> Deserialize<'de> for OtherKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = OtherKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OtherKeys, A::Error> {
                let mut keys = BTreeSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.insert(key);
                }
                Ok(OtherKeys(keys))
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_key_expectation_found_and_layer() {
        let e = InvalidValue::new("http.port", "an integer")
            .found("string \"eighty\"")
            .in_layer("env CHASSIS__HTTP__PORT");
        assert_eq!(
            e.to_string(),
            "http.port: expected an integer, found string \"eighty\" (from env CHASSIS__HTTP__PORT)"
        );
        assert_eq!(
            InvalidValue::new("prefetch", "an integer >= 1")
                .under("messaging")
                .to_string(),
            "messaging.prefetch: expected an integer >= 1"
        );
    }

    #[test]
    fn locate_keeps_a_known_layer() {
        let e = InvalidValue::new("a", "b").in_layer("file x.toml");
        assert_eq!(Defaults.locate(e).layer.as_deref(), Some("file x.toml"));
    }
}

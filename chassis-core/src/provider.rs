//! Picking a provider by its configured name.
//!
//! Every `*-init` crate keeps one [`ProviderTable`]: the names its
//! `<concern>.provider` key accepts, the cargo feature compiling each in, and
//! whether that feature is on. [`ProviderTable::resolve`] turns a configured
//! name into the provider or into the one error users need: unknown (with the
//! known names) or not compiled in (with the feature to enable). Nothing ever
//! falls back silently to another provider.
//!
//! ```
//! use chassis_core::provider::{ProviderInfo, ProviderTable};
//!
//! const PROVIDERS: ProviderTable = ProviderTable {
//!     concern: "messaging",
//!     init_crate: "messaging-init",
//!     providers: &[
//!         ProviderInfo::new("inmemory", "inmemory", true),
//!         ProviderInfo::new("rabbitmq", "rabbitmq", false),
//!     ],
//! };
//! assert_eq!(PROVIDERS.resolve("inmemory").unwrap().name, "inmemory");
//! assert_eq!(
//!     PROVIDERS.resolve("rabbitmq").unwrap_err().to_string(),
//!     "messaging.provider = `rabbitmq` is not compiled into this service: \
//!      enable feature `rabbitmq` of messaging-init (or chassis-web)"
//! );
//! assert_eq!(
//!     PROVIDERS.resolve("kafka").unwrap_err().to_string(),
//!     "messaging.provider: unknown provider `kafka`; expected one of: inmemory, rabbitmq"
//! );
//! ```

use thiserror::Error;

/// One provider an init crate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The name written in `<concern>.provider`.
    pub name: &'static str,
    /// The cargo feature of the init crate that compiles it in.
    pub feature: &'static str,
    /// Whether it is compiled into this build (`cfg!(feature = "...")`).
    pub compiled_in: bool,
}

impl ProviderInfo {
    /// A provider behind a cargo feature.
    pub const fn new(name: &'static str, feature: &'static str, compiled_in: bool) -> Self {
        Self {
            name,
            feature,
            compiled_in,
        }
    }

    /// A provider that is always there (e.g. tracing's `none`).
    pub const fn built_in(name: &'static str) -> Self {
        Self {
            name,
            feature: name,
            compiled_in: true,
        }
    }
}

/// The providers of one concern.
#[derive(Debug, Clone, Copy)]
pub struct ProviderTable {
    /// The config section, e.g. `messaging`.
    pub concern: &'static str,
    /// The init crate whose features compile providers in, e.g. `messaging-init`.
    pub init_crate: &'static str,
    /// Every provider known, compiled in or not.
    pub providers: &'static [ProviderInfo],
}

impl ProviderTable {
    /// The provider named `name` if it is compiled in, else why not.
    pub fn resolve(&self, name: &str) -> Result<&'static ProviderInfo, ProviderError> {
        let name = name.trim();
        match self.providers.iter().find(|p| p.name == name) {
            Some(p) if p.compiled_in => Ok(p),
            Some(p) => Err(self.not_compiled_in(p)),
            None => Err(ProviderError::Unknown {
                concern: self.concern,
                provider: name.to_owned(),
                known: self.known().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// The error for a provider whose feature is off. Init crates use it in
    /// the fallback arm of their `match` on [`ProviderInfo::name`].
    pub fn not_compiled_in(&self, provider: &ProviderInfo) -> ProviderError {
        ProviderError::NotCompiledIn {
            concern: self.concern,
            provider: provider.name.to_owned(),
            feature: provider.feature,
            init_crate: self.init_crate,
        }
    }

    /// Every known provider name.
    pub fn known(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.providers.iter().map(|p| p.name)
    }

    /// The names of the providers compiled into this build.
    pub fn compiled(&self) -> Vec<&'static str> {
        self.providers
            .iter()
            .filter(|p| p.compiled_in)
            .map(|p| p.name)
            .collect()
    }
}

/// A configured provider cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProviderError {
    /// No provider of that name exists.
    #[error("{concern}.provider: unknown provider `{provider}`; expected one of: {known}")]
    Unknown {
        /// The config section.
        concern: &'static str,
        /// The configured name.
        provider: String,
        /// The known names, comma separated.
        known: String,
    },
    /// The provider exists but its cargo feature is off in this build.
    #[error(
        "{concern}.provider = `{provider}` is not compiled into this service: enable feature \
         `{feature}` of {init_crate} (or chassis-web)"
    )]
    NotCompiledIn {
        /// The config section.
        concern: &'static str,
        /// The configured name.
        provider: String,
        /// The feature to enable.
        feature: &'static str,
        /// The crate that has the feature.
        init_crate: &'static str,
    },
}

/// A configuration value is out of range: the key path and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key}: {expected}")]
pub struct InvalidValue {
    /// Key path, e.g. `messaging.retry.multiplier`.
    pub key: String,
    /// What was expected there.
    pub expected: String,
}

impl InvalidValue {
    /// A value error.
    pub fn new(key: impl Into<String>, expected: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            expected: expected.into(),
        }
    }

    /// Splits a `"key.path: expectation"` validation message; without a key
    /// part, `section` stands for the key.
    pub fn parse(section: &str, message: &str) -> Self {
        match message.split_once(": ") {
            Some((key, expected)) if !key.contains(' ') => Self::new(key, expected),
            _ => Self::new(section, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_value_splits_key_and_expectation() {
        let v = InvalidValue::parse("messaging", "messaging.prefetch: expected an integer >= 1");
        assert_eq!(v.key, "messaging.prefetch");
        assert_eq!(v.expected, "expected an integer >= 1");
        let v = InvalidValue::parse("storage", "bad things happened: really");
        assert_eq!(v.key, "storage");
        assert_eq!(v.to_string(), "storage: bad things happened: really");
    }

    #[test]
    fn compiled_and_trimmed() {
        const T: ProviderTable = ProviderTable {
            concern: "tracing",
            init_crate: "traces-init",
            providers: &[
                ProviderInfo::built_in("none"),
                ProviderInfo::new("otlp", "otlp", false),
            ],
        };
        assert_eq!(T.compiled(), vec!["none"]);
        assert_eq!(T.resolve(" none ").unwrap().name, "none");
    }
}

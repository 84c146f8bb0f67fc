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

use crate::config::{InvalidValue, OtherKeys};

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

    /// Checks the keys a concern's section type did not declare
    /// ([`OtherKeys`]): each must be the subsection of a known provider.
    /// `declared` lists the section's own keys, for the error.
    pub fn check_sections(&self, other: &OtherKeys, declared: &[&str]) -> Result<(), InvalidValue> {
        match other
            .0
            .iter()
            .find(|key| !self.known().any(|name| name == key.as_str()))
        {
            None => Ok(()),
            Some(key) => Err(InvalidValue::new(
                format!("{}.{key}", self.concern),
                format!(
                    "a key of [{}] ({}) or a provider's section ({})",
                    self.concern,
                    declared.join(", "),
                    self.known().collect::<Vec<_>>().join(", ")
                ),
            )
            .found("an unknown key")),
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

#[cfg(test)]
mod tests {
    use super::*;

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

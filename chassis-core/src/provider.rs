//! Picking a provider by its configured name.
//!
//! Every `*-init` crate keeps one [`ProviderTable`]: one [`Provider`] line
//! per provider, with the name its `<concern>.provider` key accepts, the
//! cargo feature compiling it in and — when that feature is on — the
//! concern's *driver* `D` (what reads the provider's settings and builds
//! it). [`provider!`](crate::provider!) writes such a line, leaving the
//! driver out when the feature is off. [`ProviderTable::resolve`] turns a
//! configured name into the driver or into the one error users need:
//! unknown (with the known names) or not compiled in (with the feature to
//! enable). Nothing ever falls back silently to another provider.
//!
//! ```
//! use chassis_core::provider::{Provider, ProviderTable};
//!
//! // A concern's driver; init crates use a struct of functions.
//! type Build = fn() -> &'static str;
//! fn in_process() -> &'static str {
//!     "an in-process bus"
//! }
//!
//! let providers: ProviderTable<Build> = ProviderTable::new(
//!     "messaging",
//!     "messaging-init",
//!     vec![
//!         Provider::new("inmemory", "inmemory", Some(in_process as Build)),
//!         Provider::new("rabbitmq", "rabbitmq", None), // feature off
//!     ],
//! );
//! assert_eq!((providers.resolve("inmemory").unwrap().driver)(), "an in-process bus");
//! assert_eq!(
//!     providers.resolve("rabbitmq").unwrap_err().to_string(),
//!     "messaging.provider = `rabbitmq` is not compiled into this service: \
//!      enable feature `rabbitmq` of messaging-init (or chassis-web)"
//! );
//! assert_eq!(
//!     providers.resolve("kafka").unwrap_err().to_string(),
//!     "messaging.provider: unknown provider `kafka`; expected one of: inmemory, rabbitmq"
//! );
//! ```

use thiserror::Error;

use crate::config::{InvalidValue, OtherKeys};

/// One provider an init crate knows: its line in the [`ProviderTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provider<D> {
    /// The name written in `<concern>.provider`.
    pub name: &'static str,
    /// The cargo feature of the init crate that compiles it in.
    pub feature: &'static str,
    /// What reads its settings and builds it; `None` when the feature is
    /// off in this build.
    pub driver: Option<D>,
}

impl<D> Provider<D> {
    /// A provider behind a cargo feature (`driver` is `None` when it is off;
    /// [`provider!`](crate::provider!) writes that `cfg` for you).
    pub const fn new(name: &'static str, feature: &'static str, driver: Option<D>) -> Self {
        Self {
            name,
            feature,
            driver,
        }
    }

    /// A provider that is always there (e.g. tracing's `none`).
    pub const fn built_in(name: &'static str, driver: D) -> Self {
        Self {
            name,
            feature: name,
            driver: Some(driver),
        }
    }

    /// Whether it is compiled into this build.
    pub fn is_compiled_in(&self) -> bool {
        self.driver.is_some()
    }
}

/// One line of a [`ProviderTable`]: the provider `$name`, compiled in by
/// the feature `$feature` *of the crate invoking the macro*, built by
/// `$driver` (an expression only compiled when the feature is on, so it may
/// name the optional provider crate).
///
/// ```
/// use chassis_core::provider::Provider;
///
/// let line: Provider<u8> = chassis_core::provider!("kafka", feature = "kafka", 7);
/// assert_eq!(line.name, "kafka");
/// assert!(!line.is_compiled_in()); // this doctest has no feature `kafka`
/// ```
#[macro_export]
macro_rules! provider {
    ($name:literal, feature = $feature:literal, $driver:expr $(,)?) => {
        $crate::provider::Provider::new($name, $feature, {
            #[cfg(feature = $feature)]
            let driver = ::core::option::Option::Some($driver);
            #[cfg(not(feature = $feature))]
            let driver = ::core::option::Option::None;
            driver
        })
    };
}

/// A provider's settings as `--print-config` shows them: the section's key
/// and its effective value (secrets redacted by their type).
pub type Section = (&'static str, serde_json::Value);

/// A configured provider, resolved.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'t, D> {
    /// Its name.
    pub name: &'static str,
    /// Its driver.
    pub driver: &'t D,
}

/// The providers of one concern: the one list of its provider names.
#[derive(Debug, Clone)]
pub struct ProviderTable<D> {
    /// The config section, e.g. `messaging`.
    pub concern: &'static str,
    /// The init crate whose features compile providers in, e.g. `messaging-init`.
    pub init_crate: &'static str,
    /// Every provider known, compiled in or not.
    pub providers: Vec<Provider<D>>,
}

impl<D> ProviderTable<D> {
    /// The table of `concern`, whose features are those of `init_crate`.
    pub fn new(
        concern: &'static str,
        init_crate: &'static str,
        providers: Vec<Provider<D>>,
    ) -> Self {
        Self {
            concern,
            init_crate,
            providers,
        }
    }

    /// The provider named `name` if it is compiled in, else why not.
    pub fn resolve(&self, name: &str) -> Result<Resolved<'_, D>, ProviderError> {
        let name = name.trim();
        match self.providers.iter().find(|p| p.name == name) {
            Some(Provider {
                name,
                driver: Some(driver),
                ..
            }) => Ok(Resolved { name, driver }),
            Some(p) => Err(ProviderError::NotCompiledIn {
                concern: self.concern,
                provider: p.name.to_owned(),
                feature: p.feature,
                init_crate: self.init_crate,
            }),
            None => Err(ProviderError::Unknown {
                concern: self.concern,
                provider: name.to_owned(),
                known: self.known().collect::<Vec<_>>().join(", "),
            }),
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
        self.compiled_drivers().map(|p| p.name).collect()
    }

    /// The providers compiled into this build, with their drivers.
    pub fn compiled_drivers(&self) -> impl Iterator<Item = Resolved<'_, D>> + '_ {
        self.providers.iter().filter_map(|p| {
            p.driver.as_ref().map(|driver| Resolved {
                name: p.name,
                driver,
            })
        })
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
        let table = ProviderTable::new(
            "tracing",
            "traces-init",
            vec![
                Provider::built_in("none", 0),
                Provider::new("otlp", "otlp", None),
            ],
        );
        assert_eq!(table.compiled(), vec!["none"]);
        assert_eq!(table.resolve(" none ").unwrap().name, "none");
        assert!(matches!(
            table.resolve("otlp"),
            Err(ProviderError::NotCompiledIn {
                feature: "otlp",
                ..
            })
        ));
    }

    #[test]
    fn other_keys_must_be_provider_sections() {
        let table: ProviderTable<()> = ProviderTable::new(
            "storage",
            "storage-init",
            vec![Provider::new("sqlite", "sqlite", None)],
        );
        let keys = |k: &[&str]| OtherKeys(k.iter().map(|s| (*s).to_owned()).collect());
        assert!(
            table
                .check_sections(&keys(&["sqlite"]), &["provider"])
                .is_ok()
        );
        assert_eq!(
            table
                .check_sections(&keys(&["sqllite"]), &["provider", "outbox"])
                .unwrap_err()
                .to_string(),
            "storage.sqllite: expected a key of [storage] (provider, outbox) or a provider's \
             section (sqlite), found an unknown key"
        );
    }
}

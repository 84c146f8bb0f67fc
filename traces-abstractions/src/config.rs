//! The shared keys of the `tracing` section and their resolution against the
//! standard OpenTelemetry environment variables every provider honours.

use std::collections::BTreeMap;

use chassis_core::config::{InvalidValue, OtherKeys};
use serde::{Deserialize, Serialize};

/// Values `tracing.span_level` accepts.
pub const SPAN_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Service name used when neither configuration, environment nor host gives one
/// (the OpenTelemetry default).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// How the environment is read: a lookup from variable name to value.
/// [`process_env`] reads the real process environment; tests pass a map.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads a variable of the process environment (unset or not UTF-8 → `None`).
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// An environment of fixed variables, for the functions that take an
/// [`EnvLookup`] (tests, embedded use): nothing of the process environment
/// is read.
///
/// ```
/// let env = traces_abstractions::fixed_env(&[("OTEL_SERVICE_NAME", "orders")]);
/// assert_eq!(env("OTEL_SERVICE_NAME").as_deref(), Some("orders"));
/// assert_eq!(env("HOME"), None);
/// ```
pub fn fixed_env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |key| vars.get(key).cloned()
}

/// The `tracing` section of the chassis configuration: the keys every
/// provider shares. A provider's own settings sit in a subsection named
/// after it (`[tracing.<provider>]`), whose type, defaults and validation
/// live in the provider crate; `traces-init` reads the one it builds.
///
/// ```toml
/// [tracing]
/// provider = "stdout"          # see traces-init for the names; "none" is the default
/// sampling_ratio = 0.25        # 0.0..=1.0, applied to new traces only
/// span_level = "info"          # most verbose `tracing` span level exported
/// service_name = "orders"      # else OTEL_SERVICE_NAME, else the host's name
/// service_version = "1.4.2"
/// [tracing.resource_attributes]
/// "deployment.environment.name" = "staging"
/// ```
///
/// # Precedence
///
/// For every value, highest first:
/// 1. this section, whether it comes from a file or from a chassis
///    environment variable (`CHASSIS__TRACING__SERVICE_NAME`, ...);
/// 2. the standard OpenTelemetry variables `OTEL_SERVICE_NAME` and
///    `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, values percent-encoded);
/// 3. the host's own service name and version
///    ([`TracingConfig::with_host_service`]);
/// 4. `unknown_service`.
///
/// Resource attributes are merged key by key with the same order. The
/// `provider` itself is never taken from `OTEL_*` variables: switching
/// tracing on is a chassis decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TracingConfig {
    /// Which provider to build (the names `traces-init` knows).
    pub provider: String,
    /// Share of new traces recorded, `0.0..=1.0`. A trace continued from a
    /// caller follows the caller's sampling decision.
    pub sampling_ratio: f64,
    /// Most verbose level of the `tracing` spans turned into OpenTelemetry
    /// spans: `error`, `warn`, `info` (default), `debug` or `trace`. Spans
    /// of the exporter's own HTTP/gRPC stack are never exported.
    pub span_level: String,
    /// `service.name` of every span.
    pub service_name: Option<String>,
    /// `service.version` of every span.
    pub service_version: Option<String>,
    /// Further resource attributes (`deployment.environment.name`, ...).
    pub resource_attributes: BTreeMap<String, String>,
    /// The provider subsections (and anything misspelled), checked by
    /// `traces-init` against the providers it knows.
    #[serde(flatten, skip_serializing)]
    pub other_keys: OtherKeys,
    /// The host's own name and version, used when no service name is
    /// configured. Set by the host in code, never read from configuration.
    #[serde(skip)]
    pub host_service: Option<ServiceIdentity>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            provider: "none".to_owned(),
            sampling_ratio: 1.0,
            span_level: "info".to_owned(),
            service_name: None,
            service_version: None,
            resource_attributes: BTreeMap::new(),
            other_keys: OtherKeys::default(),
            host_service: None,
        }
    }
}

/// A service's name and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// `service.name`.
    pub name: String,
    /// `service.version`.
    pub version: Option<String>,
}

/// What every provider needs, resolved: sampling and the resource.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// Share of new traces recorded, `0.0..=1.0`.
    pub sampling_ratio: f64,
    /// `service.name`.
    pub service_name: String,
    /// `service.version`.
    pub service_version: Option<String>,
    /// Further resource attributes (without `service.name`/`service.version`).
    pub resource_attributes: BTreeMap<String, String>,
}

impl TracingSettings {
    /// Every resource attribute, `service.name` and `service.version` included.
    pub fn resource(&self) -> Vec<(String, String)> {
        let mut all = vec![("service.name".to_owned(), self.service_name.clone())];
        if let Some(version) = &self.service_version {
            all.push(("service.version".to_owned(), version.clone()));
        }
        all.extend(
            self.resource_attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        all
    }
}

impl TracingConfig {
    /// Where the section sits in the chassis configuration.
    pub const SECTION: &'static str = "tracing";

    /// The keys this type declares (named in the error about any other).
    pub const KEYS: &'static [&'static str] = &[
        "provider",
        "sampling_ratio",
        "span_level",
        "service_name",
        "service_version",
        "resource_attributes",
    ];

    /// Sets the host's service name and version, used when neither
    /// `tracing.service_name` nor `OTEL_SERVICE_NAME` is set.
    pub fn with_host_service(mut self, name: impl Into<String>, version: Option<String>) -> Self {
        self.host_service = Some(ServiceIdentity {
            name: name.into(),
            version,
        });
        self
    }

    /// Checks the shared values of this section alone (not the environment,
    /// not the provider subsections); the error names the key path and what
    /// was expected.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if !(self.sampling_ratio.is_finite() && (0.0..=1.0).contains(&self.sampling_ratio)) {
            return Err(
                InvalidValue::new("tracing.sampling_ratio", "a number from 0.0 to 1.0")
                    .found(self.sampling_ratio.to_string()),
            );
        }
        if !SPAN_LEVELS
            .iter()
            .any(|l| l.eq_ignore_ascii_case(self.span_level.trim()))
        {
            return Err(InvalidValue::new(
                "tracing.span_level",
                "one of error, warn, info, debug, trace",
            )
            .found(format!("`{}`", self.span_level)));
        }
        let blank = |key: &str| InvalidValue::new(key, "a non-empty name").found("a blank one");
        if self
            .service_name
            .as_ref()
            .is_some_and(|n| n.trim().is_empty())
        {
            return Err(blank("tracing.service_name"));
        }
        if self.resource_attributes.keys().any(|k| k.trim().is_empty()) {
            return Err(blank("tracing.resource_attributes"));
        }
        Ok(())
    }

    /// Validates and resolves what every provider needs, reading
    /// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` through `env` (an
    /// error about a variable names it as the layer).
    pub fn settings(&self, env: EnvLookup<'_>) -> Result<TracingSettings, InvalidValue> {
        self.validate()?;
        let from_env = env("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty());
        let service_name = match (&self.service_name, from_env, &self.host_service) {
            (Some(name), _, _) => name.clone(),
            (None, Some(name), _) => name,
            (None, None, Some(host)) => host.name.clone(),
            (None, None, None) => UNKNOWN_SERVICE.to_owned(),
        };
        let mut resource_attributes = match env("OTEL_RESOURCE_ATTRIBUTES") {
            Some(text) => parse_key_values(
                "tracing.resource_attributes",
                "OTEL_RESOURCE_ATTRIBUTES",
                &text,
            )?,
            None => BTreeMap::new(),
        };
        resource_attributes.extend(self.resource_attributes.clone());
        // The dedicated settings win over the same keys in the attribute map.
        resource_attributes.remove("service.name");
        let attr_version = resource_attributes.remove("service.version");
        let service_version = self
            .service_version
            .clone()
            .or(attr_version)
            .or_else(|| self.host_service.as_ref().and_then(|h| h.version.clone()));
        Ok(TracingSettings {
            sampling_ratio: self.sampling_ratio,
            service_name,
            service_version,
            resource_attributes,
        })
    }
}

/// Reads the list format of the OpenTelemetry variables
/// (`key1=value1,key2=value2`, values percent-encoded) from the variable
/// `var`, which stands for the configuration key `key`.
///
/// An error names `key`, the layer `env <var>` and what was wrong, never a
/// value (header lists hold secrets).
///
/// ```
/// let map = traces_abstractions::parse_key_values("tracing.resource_attributes",
///     "OTEL_RESOURCE_ATTRIBUTES", "team=a%20b, tier=1").unwrap();
/// assert_eq!(map["team"], "a b");
/// let err = traces_abstractions::parse_key_values("k", "VAR", "a=%zz").unwrap_err();
/// assert_eq!(err.layer.as_deref(), Some("env VAR"));
/// ```
pub fn parse_key_values(
    key: &str,
    var: &str,
    text: &str,
) -> Result<BTreeMap<String, String>, InvalidValue> {
    let bad = |expected: &str, found: String| {
        InvalidValue::new(key, expected)
            .found(found)
            .in_layer(format!("env {var}"))
    };
    let list = "a list like key1=value1,key2=value2";
    let mut map = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| bad(list, "an item without `=`".into()))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad(list, "an item with an empty key".into()));
        }
        let value = percent_decode(value.trim()).ok_or_else(|| {
            bad(
                "values with valid percent-encoding (UTF-8)",
                format!("a malformed value of `{name}`"),
            )
        })?;
        map.insert(name.to_owned(), value);
    }
    Ok(map)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn default_is_none_and_valid() {
        let config = TracingConfig::default();
        assert_eq!(config.provider, "none");
        assert_eq!(config.sampling_ratio, 1.0);
        config.validate().unwrap();
        let settings = config.settings(&no_env).unwrap();
        assert_eq!(settings.service_name, UNKNOWN_SERVICE);
    }

    #[test]
    fn provider_subsections_are_kept_as_names_and_never_serialized() {
        let config: TracingConfig = serde_json::from_value(serde_json::json!({
            "provider": "otlp",
            "sampling_ratio": 0.5,
            "service_name": "orders",
            "otlp": { "endpoint": "http://collector:4318", "headers": { "x-api-key": "k3y" } },
            "sampling": 1
        }))
        .unwrap();
        assert_eq!(config.sampling_ratio, 0.5);
        let names: Vec<&str> = config.other_keys.0.iter().map(String::as_str).collect();
        assert_eq!(names, ["otlp", "sampling"]);
        let json = serde_json::to_value(&config).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut declared = TracingConfig::KEYS.to_vec();
        keys.sort_unstable();
        declared.sort_unstable();
        assert_eq!(keys, declared, "serialized keys = declared keys");
        assert!(!json.to_string().contains("k3y"));
    }

    #[test]
    fn sampling_ratio_is_checked_with_key_path() {
        for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let config = TracingConfig {
                sampling_ratio: bad,
                ..TracingConfig::default()
            };
            let err = config.validate().unwrap_err();
            assert_eq!(err.key, "tracing.sampling_ratio");
            assert!(
                err.to_string()
                    .contains("expected a number from 0.0 to 1.0"),
                "{err}"
            );
        }
        for good in [0.0, 0.3, 1.0] {
            let config = TracingConfig {
                sampling_ratio: good,
                ..TracingConfig::default()
            };
            config.validate().unwrap();
        }
    }

    #[test]
    fn other_section_values_are_checked() {
        let mut config = TracingConfig {
            service_name: Some(" ".into()),
            ..TracingConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().key, "tracing.service_name");
        config.service_name = None;
        config.resource_attributes.insert(String::new(), "x".into());
        assert_eq!(
            config.validate().unwrap_err().key,
            "tracing.resource_attributes"
        );
        config.resource_attributes.clear();
        config.span_level = "verbose".into();
        let err = config.validate().unwrap_err();
        assert_eq!(err.key, "tracing.span_level");
        assert_eq!(
            err.to_string(),
            "tracing.span_level: expected one of error, warn, info, debug, trace, found `verbose`"
        );
        config.span_level = "DEBUG".into();
        config.validate().unwrap();
    }

    #[test]
    fn service_name_precedence() {
        let env = fixed_env(&[("OTEL_SERVICE_NAME", "from-env")]);
        let host = TracingConfig::default().with_host_service("host", Some("9.9.9".into()));
        let s = host.settings(&no_env).unwrap();
        assert_eq!(
            (s.service_name.as_str(), s.service_version.as_deref()),
            ("host", Some("9.9.9"))
        );
        let s = host.settings(&env).unwrap();
        assert_eq!(
            s.service_name, "from-env",
            "OTEL_SERVICE_NAME beats the host default"
        );
        let configured = TracingConfig {
            service_name: Some("configured".into()),
            service_version: Some("1.0.0".into()),
            ..host
        };
        let s = configured.settings(&env).unwrap();
        assert_eq!(s.service_name, "configured");
        assert_eq!(s.service_version.as_deref(), Some("1.0.0"));
    }

    #[test]
    fn resource_attributes_merge_config_over_env() {
        let env = fixed_env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=prod, team=a%20b,service.name=ignored",
        )]);
        let mut config = TracingConfig {
            service_name: Some("orders".into()),
            ..TracingConfig::default()
        };
        config
            .resource_attributes
            .insert("deployment.environment.name".into(), "staging".into());
        let s = config.settings(&env).unwrap();
        assert_eq!(
            s.resource_attributes["deployment.environment.name"],
            "staging"
        );
        assert_eq!(s.resource_attributes["team"], "a b");
        assert_eq!(
            s.resource(),
            vec![
                ("service.name".to_owned(), "orders".to_owned()),
                (
                    "deployment.environment.name".to_owned(),
                    "staging".to_owned()
                ),
                ("team".to_owned(), "a b".to_owned()),
            ]
        );
        let err = TracingConfig::default()
            .settings(&fixed_env(&[("OTEL_RESOURCE_ATTRIBUTES", "novalue")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tracing.resource_attributes: expected a list like key1=value1,key2=value2, \
             found an item without `=` (from env OTEL_RESOURCE_ATTRIBUTES)"
        );
    }

    #[test]
    fn list_errors_never_print_values() {
        for (text, found) in [
            ("=x", "an item with an empty key"),
            ("token=s%zzcret", "a malformed value of `token`"),
            ("s3cret", "an item without `=`"),
        ] {
            let err = parse_key_values("tracing.x.headers", "VAR", text).unwrap_err();
            assert_eq!(err.found.as_deref(), Some(found));
            assert!(!err.to_string().contains("cret"), "{err}");
        }
    }
}

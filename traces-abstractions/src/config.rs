//! The `tracing` section of the chassis configuration and its resolution
//! against the standard OpenTelemetry environment variables.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chassis_core::Secret;
use serde::{Deserialize, Serialize};

/// Provider name: no tracing at all (no layer, no exporter).
pub const PROVIDER_NONE: &str = "none";
/// Provider name: spans printed to stdout (development).
pub const PROVIDER_STDOUT: &str = "stdout";
/// Provider name: spans exported with OTLP.
pub const PROVIDER_OTLP: &str = "otlp";
/// Every provider name the chassis knows.
pub const KNOWN_PROVIDERS: [&str; 3] = [PROVIDER_NONE, PROVIDER_STDOUT, PROVIDER_OTLP];

/// Values `tracing.span_level` accepts.
pub const SPAN_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Service name used when neither configuration, environment nor host gives one
/// (the OpenTelemetry default).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Default OTLP/gRPC endpoint.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// Default OTLP/HTTP base endpoint (`/v1/traces` is appended).
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// Path of the traces signal on an OTLP/HTTP endpoint.
pub const HTTP_TRACES_PATH: &str = "/v1/traces";
/// Default export timeout (the OpenTelemetry default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the environment is read: a lookup from variable name to value.
/// [`process_env`] reads the real process environment; tests pass a map.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads a variable of the process environment (unset or not UTF-8 → `None`).
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// The `tracing` section of the chassis configuration.
///
/// ```toml
/// [tracing]
/// provider = "otlp"            # "none" (default) | "stdout" | "otlp"
/// sampling_ratio = 0.25        # 0.0..=1.0, applied to new traces only
/// span_level = "info"          # most verbose `tracing` span level exported
/// service_name = "orders"      # else OTEL_SERVICE_NAME, else the host's name
/// service_version = "1.4.2"
/// [tracing.resource_attributes]
/// "deployment.environment.name" = "staging"
/// [tracing.otlp]
/// endpoint = "http://collector:4317"
/// protocol = "grpc"            # or "http/protobuf"
/// timeout = "5s"
/// headers = { authorization = "Bearer ..." }  # secrets: prefer the environment
/// ```
///
/// # Precedence
///
/// For every value, highest first:
/// 1. this section, whether it comes from a file or from a chassis
///    environment variable (`TRACING__OTLP__ENDPOINT`, ...);
/// 2. the standard OpenTelemetry variables: `OTEL_SERVICE_NAME`,
///    `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_TRACES_*` before
///    `OTEL_EXPORTER_OTLP_*` (`ENDPOINT`, `PROTOCOL`, `TIMEOUT` in
///    milliseconds, `HEADERS` as `k=v,k2=v2` with percent-encoded values);
/// 3. the host's own service name and version
///    ([`TracingConfig::with_host_service`]), for the service name only;
/// 4. built-in defaults (gRPC to `localhost:4317`, 10 s, `unknown_service`).
///
/// Resource attributes and headers are merged key by key with the same
/// order. The `provider` itself is never taken from `OTEL_*` variables:
/// switching tracing on is a chassis decision (`TRACING__PROVIDER=otlp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// Which provider to build: `none`, `stdout` or `otlp`.
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
    /// Settings of the `otlp` provider.
    pub otlp: OtlpConfig,
    /// The host's own name and version, used when no service name is
    /// configured. Set by the host in code, never read from configuration.
    #[serde(skip)]
    pub host_service: Option<ServiceIdentity>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            provider: PROVIDER_NONE.to_owned(),
            sampling_ratio: 1.0,
            span_level: "info".to_owned(),
            service_name: None,
            service_version: None,
            resource_attributes: BTreeMap::new(),
            otlp: OtlpConfig::default(),
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

/// Settings of the `otlp` provider; unset values come from the environment
/// or the defaults (see [`TracingConfig`] for the precedence).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Collector URL. For `grpc`: `http://host:4317`. For `http/protobuf`:
    /// the base URL (`http://host:4318`, `/v1/traces` is appended) or the
    /// full URL ending in `/v1/traces`.
    pub endpoint: Option<String>,
    /// Wire protocol.
    pub protocol: Option<OtlpProtocol>,
    /// Longest wait for one export.
    #[serde(with = "chassis_core::duration::option")]
    pub timeout: Option<Duration>,
    /// Extra request headers (API keys): secrets, never printed.
    pub headers: BTreeMap<String, Secret>,
}

/// OTLP wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (port 4317 by convention).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318 by convention).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The name used in configuration and in `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

impl fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An invalid tracing setting: where it came from (a key path such as
/// `tracing.sampling_ratio`, or an environment variable) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: expected {expected}, got `{actual}`")]
pub struct TracingConfigError {
    /// Key path or environment variable name.
    pub key: String,
    /// What the value must look like.
    pub expected: String,
    /// The rejected value (never a secret).
    pub actual: String,
}

impl TracingConfigError {
    fn new(key: impl Into<String>, expected: impl Into<String>, actual: impl fmt::Display) -> Self {
        Self {
            key: key.into(),
            expected: expected.into(),
            actual: actual.to_string(),
        }
    }
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

/// The OTLP exporter's settings, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// The URL the exporter sends to (for HTTP, the full `/v1/traces` URL).
    pub endpoint: String,
    /// Wire protocol.
    pub protocol: OtlpProtocol,
    /// Longest wait for one export.
    pub timeout: Duration,
    /// Request headers.
    pub headers: BTreeMap<String, Secret>,
}

impl TracingConfig {
    /// Sets the host's service name and version, used when neither
    /// `tracing.service_name` nor `OTEL_SERVICE_NAME` is set.
    pub fn with_host_service(mut self, name: impl Into<String>, version: Option<String>) -> Self {
        self.host_service = Some(ServiceIdentity {
            name: name.into(),
            version,
        });
        self
    }

    /// Checks the values of this section alone (not the environment).
    pub fn validate(&self) -> Result<(), TracingConfigError> {
        if !(self.sampling_ratio.is_finite() && (0.0..=1.0).contains(&self.sampling_ratio)) {
            return Err(TracingConfigError::new(
                "tracing.sampling_ratio",
                "a number from 0.0 to 1.0",
                self.sampling_ratio,
            ));
        }
        if !SPAN_LEVELS
            .iter()
            .any(|l| l.eq_ignore_ascii_case(self.span_level.trim()))
        {
            return Err(TracingConfigError::new(
                "tracing.span_level",
                "one of error, warn, info, debug, trace",
                &self.span_level,
            ));
        }
        if let Some(name) = &self.service_name {
            non_blank("tracing.service_name", name)?;
        }
        for key in self.resource_attributes.keys() {
            non_blank("tracing.resource_attributes", key)?;
        }
        if let Some(endpoint) = &self.otlp.endpoint {
            check_url("tracing.otlp.endpoint", endpoint)?;
        }
        if self.otlp.timeout == Some(Duration::ZERO) {
            return Err(TracingConfigError::new(
                "tracing.otlp.timeout",
                "a duration above zero",
                "0s",
            ));
        }
        for name in self.otlp.headers.keys() {
            check_header_name("tracing.otlp.headers", name)?;
        }
        Ok(())
    }

    /// Validates and resolves what every provider needs, reading the
    /// `OTEL_*` variables through `env`.
    pub fn settings(&self, env: EnvLookup<'_>) -> Result<TracingSettings, TracingConfigError> {
        self.validate()?;
        let from_env = env("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty());
        let service_name = match (&self.service_name, from_env, &self.host_service) {
            (Some(name), _, _) => name.clone(),
            (None, Some(name), _) => name,
            (None, None, Some(host)) => host.name.clone(),
            (None, None, None) => UNKNOWN_SERVICE.to_owned(),
        };
        let mut resource_attributes = match env("OTEL_RESOURCE_ATTRIBUTES") {
            Some(text) => parse_key_values("OTEL_RESOURCE_ATTRIBUTES", &text)?,
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

impl OtlpConfig {
    /// Resolves the exporter's settings, reading the `OTEL_EXPORTER_OTLP_*`
    /// variables through `env`. Call it only when the `otlp` provider is
    /// chosen, so stray variables never break a service that does not export.
    pub fn resolve(&self, env: EnvLookup<'_>) -> Result<OtlpSettings, TracingConfigError> {
        let pick = |name: &str| {
            let specific = format!("OTEL_EXPORTER_OTLP_TRACES_{name}");
            let generic = format!("OTEL_EXPORTER_OTLP_{name}");
            env(&specific)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (specific, v))
                .or_else(|| {
                    env(&generic)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (generic, v))
                })
        };

        let protocol = match (self.protocol, pick("PROTOCOL")) {
            (Some(p), _) => p,
            (None, Some((var, value))) => match value.trim() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                other => {
                    return Err(TracingConfigError::new(
                        var,
                        "`grpc` or `http/protobuf`",
                        other,
                    ));
                }
            },
            (None, None) => OtlpProtocol::Grpc,
        };

        // A signal-specific variable is the full URL; the configuration and
        // the generic variable are a base to which HTTP adds `/v1/traces`.
        let (key, base, is_full) = match (&self.endpoint, pick("ENDPOINT")) {
            (Some(url), _) => ("tracing.otlp.endpoint".to_owned(), url.clone(), false),
            (None, Some((var, url))) => {
                let full = var.contains("_TRACES_");
                (var, url.trim().to_owned(), full)
            }
            (None, None) => {
                let default = match protocol {
                    OtlpProtocol::Grpc => DEFAULT_GRPC_ENDPOINT,
                    OtlpProtocol::HttpProtobuf => DEFAULT_HTTP_ENDPOINT,
                };
                ("default".to_owned(), default.to_owned(), false)
            }
        };
        check_url(&key, &base)?;
        let endpoint = match protocol {
            OtlpProtocol::HttpProtobuf if !is_full && !base.ends_with(HTTP_TRACES_PATH) => {
                format!("{}{HTTP_TRACES_PATH}", base.trim_end_matches('/'))
            }
            _ => base,
        };

        let timeout = match (self.timeout, pick("TIMEOUT")) {
            (Some(t), _) => t,
            (None, Some((var, value))) => match value.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(TracingConfigError::new(
                        var,
                        "a whole number of milliseconds above zero",
                        value,
                    ));
                }
            },
            (None, None) => DEFAULT_TIMEOUT,
        };

        let mut headers = BTreeMap::new();
        if let Some((var, text)) = pick("HEADERS") {
            for (name, value) in parse_key_values(&var, &text)? {
                check_header_name(&var, &name)?;
                headers.insert(name, Secret::new(value));
            }
        }
        headers.extend(self.headers.clone());

        Ok(OtlpSettings {
            endpoint,
            protocol,
            timeout,
            headers,
        })
    }
}

fn non_blank(key: &str, value: &str) -> Result<(), TracingConfigError> {
    if value.trim().is_empty() {
        return Err(TracingConfigError::new(key, "a non-empty name", value));
    }
    Ok(())
}

fn check_url(key: &str, url: &str) -> Result<(), TracingConfigError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(TracingConfigError::new(
            key,
            "an http:// or https:// URL with a host, e.g. http://localhost:4317",
            url,
        )),
    }
}

fn check_header_name(key: &str, name: &str) -> Result<(), TracingConfigError> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
    if token {
        Ok(())
    } else {
        Err(TracingConfigError::new(
            key,
            "HTTP header names (letters, digits and !#$%&'*+-.^_`|~)",
            name,
        ))
    }
}

/// Reads the W3C Baggage-like list the OpenTelemetry variables use:
/// `key1=value1,key2=value2`, values percent-encoded.
fn parse_key_values(var: &str, text: &str) -> Result<BTreeMap<String, String>, TracingConfigError> {
    let mut map = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = || TracingConfigError::new(var, "a list like key1=value1,key2=value2", item);
        let (key, value) = item.split_once('=').ok_or_else(bad)?;
        let key = key.trim();
        if key.is_empty() {
            return Err(bad());
        }
        let value = percent_decode(value.trim()).ok_or_else(|| {
            TracingConfigError::new(var, "values with valid percent-encoding (UTF-8)", item)
        })?;
        map.insert(key.to_owned(), value);
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
    use std::collections::HashMap;

    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| map.get(key).cloned()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn default_is_none_and_valid() {
        let config = TracingConfig::default();
        assert_eq!(config.provider, PROVIDER_NONE);
        assert_eq!(config.sampling_ratio, 1.0);
        config.validate().unwrap();
        let settings = config.settings(&no_env).unwrap();
        assert_eq!(settings.service_name, UNKNOWN_SERVICE);
    }

    #[test]
    fn reads_toml_like_values_and_rejects_unknown_keys() {
        let config: TracingConfig = serde_json::from_value(serde_json::json!({
            "provider": "otlp",
            "sampling_ratio": 0.5,
            "service_name": "orders",
            "otlp": { "endpoint": "http://collector:4318", "protocol": "http/protobuf",
                      "timeout": "3s", "headers": { "x-api-key": "k3y" } }
        }))
        .unwrap();
        assert_eq!(config.otlp.protocol, Some(OtlpProtocol::HttpProtobuf));
        assert_eq!(config.otlp.timeout, Some(Duration::from_secs(3)));
        assert_eq!(config.otlp.headers["x-api-key"].expose(), "k3y");
        assert!(
            !format!("{config:?}").contains("k3y"),
            "headers are secrets"
        );
        let err = serde_json::from_value::<TracingConfig>(serde_json::json!({ "sampling": 1 }))
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `sampling`"),
            "{err}"
        );
        let err =
            serde_json::from_value::<OtlpConfig>(serde_json::json!({ "protocol": "http/json" }))
                .unwrap_err();
        assert!(err.to_string().contains("grpc"), "{err}");
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
        let mut config = TracingConfig::default();
        config.otlp.endpoint = Some("collector:4317".into());
        assert_eq!(config.validate().unwrap_err().key, "tracing.otlp.endpoint");
        config.otlp.endpoint = Some("https://collector:4317".into());
        config.otlp.timeout = Some(Duration::ZERO);
        assert_eq!(config.validate().unwrap_err().key, "tracing.otlp.timeout");
        config.otlp.timeout = None;
        config
            .otlp
            .headers
            .insert("bad header".into(), Secret::new("x"));
        assert_eq!(config.validate().unwrap_err().key, "tracing.otlp.headers");
        config.otlp.headers.clear();
        config.service_name = Some(" ".into());
        assert_eq!(config.validate().unwrap_err().key, "tracing.service_name");
        config.service_name = None;
        config.span_level = "verbose".into();
        let err = config.validate().unwrap_err();
        assert_eq!(err.key, "tracing.span_level");
        assert!(
            err.to_string()
                .contains("one of error, warn, info, debug, trace")
        );
        config.span_level = "DEBUG".into();
        config.validate().unwrap();
    }

    #[test]
    fn service_name_precedence() {
        let env = env_of(&[("OTEL_SERVICE_NAME", "from-env")]);
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
        let env = env_of(&[(
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
            .settings(&env_of(&[("OTEL_RESOURCE_ATTRIBUTES", "novalue")]))
            .unwrap_err();
        assert_eq!(err.key, "OTEL_RESOURCE_ATTRIBUTES");
    }

    #[test]
    fn otlp_defaults() {
        let s = OtlpConfig::default().resolve(&no_env).unwrap();
        assert_eq!(s.protocol, OtlpProtocol::Grpc);
        assert_eq!(s.endpoint, DEFAULT_GRPC_ENDPOINT);
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        let http = OtlpConfig {
            protocol: Some(OtlpProtocol::HttpProtobuf),
            ..OtlpConfig::default()
        };
        assert_eq!(
            http.resolve(&no_env).unwrap().endpoint,
            "http://localhost:4318/v1/traces"
        );
    }

    #[test]
    fn otlp_env_and_precedence() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret,x-team=a"),
        ]);
        let s = OtlpConfig::default().resolve(&env).unwrap();
        assert_eq!(s.endpoint, "http://generic:4318/v1/traces");
        assert_eq!(s.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(s.timeout, Duration::from_millis(2500));
        assert_eq!(s.headers["api-key"].expose(), "s=cret");

        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        let s = OtlpConfig::default().resolve(&env).unwrap();
        assert_eq!(
            s.endpoint, "http://traces:9999/custom",
            "signal URL used as is"
        );
        assert_eq!(s.protocol, OtlpProtocol::HttpProtobuf);

        let mut config = OtlpConfig {
            endpoint: Some("http://configured:4317".into()),
            protocol: Some(OtlpProtocol::Grpc),
            timeout: Some(Duration::from_secs(1)),
            ..OtlpConfig::default()
        };
        config.headers.insert("x-team".into(), Secret::new("b"));
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-team=a,api-key=k"),
        ]);
        let s = config.resolve(&env).unwrap();
        assert_eq!(s.endpoint, "http://configured:4317");
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!(s.headers["x-team"].expose(), "b", "config wins per header");
        assert_eq!(s.headers["api-key"].expose(), "k");
    }

    #[test]
    fn otlp_env_errors_name_the_variable() {
        let cases = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "=x"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=%zz"),
        ];
        for (var, value) in cases {
            let err = OtlpConfig::default()
                .resolve(&env_of(&[(var, value)]))
                .unwrap_err();
            assert_eq!(err.key, var, "{err}");
        }
    }
}

//! The `[tracing.otlp]` section: the exporter's settings, their defaults,
//! validation and resolution against the `OTEL_EXPORTER_OTLP_*` variables.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chassis_core::Secret;
use chassis_core::config::InvalidValue;
use serde::{Deserialize, Serialize};
use traces_abstractions::{EnvLookup, parse_key_values};

/// Default OTLP/gRPC endpoint.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// Default OTLP/HTTP base endpoint (`/v1/traces` is appended).
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// Path of the traces signal on an OTLP/HTTP endpoint.
pub const HTTP_TRACES_PATH: &str = "/v1/traces";
/// Default export timeout (the OpenTelemetry default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the `otlp` provider: the `[tracing.otlp]` section. Unset
/// values come from the environment or the defaults.
///
/// ```toml
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
///    environment variable (`CHASSIS__TRACING__OTLP__ENDPOINT`, ...);
/// 2. `OTEL_EXPORTER_OTLP_TRACES_*` before `OTEL_EXPORTER_OTLP_*`
///    (`ENDPOINT`, `PROTOCOL`, `TIMEOUT` in milliseconds, `HEADERS` as
///    `k=v,k2=v2` with percent-encoded values);
/// 3. defaults: gRPC to `http://localhost:4317`, 10 s.
///
/// Headers are merged name by name with the same order.
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

impl OtlpConfig {
    /// Where the section sits in the chassis configuration.
    pub const SECTION: &'static str = "tracing.otlp";

    /// Checks the section's own values (not the environment); the error
    /// names the key path and what was expected.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if let Some(endpoint) = &self.endpoint {
            check_url(&key("endpoint"), endpoint)?;
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(InvalidValue::new(key("timeout"), "a duration above zero").found("0s"));
        }
        for name in self.headers.keys() {
            check_header_name(&key("headers"), name)?;
        }
        Ok(())
    }

    /// Validates and resolves the exporter's settings, reading the
    /// `OTEL_EXPORTER_OTLP_*` variables through `env` (an error about a
    /// variable names it as the layer). Call it only when the `otlp`
    /// provider is chosen, so stray variables never break a service that
    /// does not export.
    pub fn resolve(&self, env: EnvLookup<'_>) -> Result<OtlpSettings, InvalidValue> {
        self.validate()?;
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
        let from_env = |error: InvalidValue, var: &str| error.in_layer(format!("env {var}"));

        let protocol = match (self.protocol, pick("PROTOCOL")) {
            (Some(p), _) => p,
            (None, Some((var, value))) => match value.trim() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                other => {
                    let error = InvalidValue::new(key("protocol"), "`grpc` or `http/protobuf`")
                        .found(format!("`{other}`"));
                    return Err(from_env(error, &var));
                }
            },
            (None, None) => OtlpProtocol::Grpc,
        };

        // A signal-specific variable is the full URL; the configuration and
        // the generic variable are a base to which HTTP adds `/v1/traces`.
        let (base, is_full) = match (&self.endpoint, pick("ENDPOINT")) {
            (Some(url), _) => (url.clone(), false),
            (None, Some((var, url))) => {
                let url = url.trim().to_owned();
                check_url(&key("endpoint"), &url).map_err(|e| from_env(e, &var))?;
                (url, var.contains("_TRACES_"))
            }
            (None, None) => {
                let default = match protocol {
                    OtlpProtocol::Grpc => DEFAULT_GRPC_ENDPOINT,
                    OtlpProtocol::HttpProtobuf => DEFAULT_HTTP_ENDPOINT,
                };
                (default.to_owned(), false)
            }
        };
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
                    let error = InvalidValue::new(
                        key("timeout"),
                        "a whole number of milliseconds above zero",
                    )
                    .found(format!("`{value}`"));
                    return Err(from_env(error, &var));
                }
            },
            (None, None) => DEFAULT_TIMEOUT,
        };

        let mut headers = BTreeMap::new();
        if let Some((var, text)) = pick("HEADERS") {
            for (name, value) in parse_key_values(&key("headers"), &var, &text)? {
                check_header_name(&key("headers"), &name).map_err(|e| from_env(e, &var))?;
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

/// The key path of one of the section's keys.
fn key(name: &str) -> String {
    format!("{}.{name}", OtlpConfig::SECTION)
}

fn check_url(key: &str, url: &str) -> Result<(), InvalidValue> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(InvalidValue::new(
            key,
            "an http:// or https:// URL with a host, e.g. http://localhost:4317",
        )
        .found(format!("`{url}`"))),
    }
}

fn check_header_name(key: &str, name: &str) -> Result<(), InvalidValue> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
    if token {
        Ok(())
    } else {
        Err(InvalidValue::new(
            key,
            "HTTP header names (letters, digits and !#$%&'*+-.^_`|~)",
        )
        .found(format!("`{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use traces_abstractions::fixed_env;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn reads_the_section_and_rejects_unknown_keys() {
        let config: OtlpConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "http://collector:4318", "protocol": "http/protobuf",
            "timeout": "3s", "headers": { "x-api-key": "k3y" }
        }))
        .unwrap();
        assert_eq!(config.protocol, Some(OtlpProtocol::HttpProtobuf));
        assert_eq!(config.timeout, Some(Duration::from_secs(3)));
        assert_eq!(config.headers["x-api-key"].expose(), "k3y");
        assert!(
            !format!("{config:?}").contains("k3y"),
            "headers are secrets"
        );
        assert!(
            !serde_json::to_string(&config).unwrap().contains("k3y"),
            "and never serialized"
        );
        let err = serde_json::from_value::<OtlpConfig>(serde_json::json!({ "endpiont": "x" }))
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `endpiont`"),
            "{err}"
        );
        let err =
            serde_json::from_value::<OtlpConfig>(serde_json::json!({ "protocol": "http/json" }))
                .unwrap_err();
        assert!(err.to_string().contains("grpc"), "{err}");
    }

    #[test]
    fn section_values_are_checked_with_key_path() {
        let mut config = OtlpConfig {
            endpoint: Some("collector:4317".into()),
            ..OtlpConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "tracing.otlp.endpoint: expected an http:// or https:// URL with a host, \
             e.g. http://localhost:4317, found `collector:4317`"
        );
        config.endpoint = Some("https://collector:4317".into());
        config.timeout = Some(Duration::ZERO);
        assert_eq!(config.validate().unwrap_err().key, "tracing.otlp.timeout");
        config.timeout = None;
        config.headers.insert("bad header".into(), Secret::new("x"));
        assert_eq!(config.validate().unwrap_err().key, "tracing.otlp.headers");
        assert_eq!(
            config.resolve(&no_env).unwrap_err().key,
            "tracing.otlp.headers",
            "resolve validates first"
        );
        config.headers.clear();
        config.validate().unwrap();
    }

    #[test]
    fn defaults() {
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
    fn env_and_precedence() {
        let env = fixed_env(&[
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

        let env = fixed_env(&[
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
        let env = fixed_env(&[
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
    fn env_errors_name_the_key_and_the_variable() {
        let cases = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "protocol"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift", "protocol"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317", "endpoint"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s", "timeout"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "=x", "headers"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=%zz", "headers"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "bad name=x", "headers"),
        ];
        for (var, value, key) in cases {
            let err = OtlpConfig::default()
                .resolve(&fixed_env(&[(var, value)]))
                .unwrap_err();
            assert_eq!(err.key, format!("tracing.otlp.{key}"), "{err}");
            assert_eq!(err.layer, Some(format!("env {var}")), "{err}");
        }
        let err = OtlpConfig::default()
            .resolve(&fixed_env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tracing.otlp.protocol: expected `grpc` or `http/protobuf`, found `http/json` \
             (from env OTEL_EXPORTER_OTLP_PROTOCOL)"
        );
    }
}

//! Builds the tracing provider named by `tracing.provider` and hands the
//! host what it needs: a `tracing_subscriber` layer turning `tracing` spans
//! into OpenTelemetry spans, an explicit flush and shutdown, and W3C
//! trace-context propagation for HTTP headers and message envelopes
//! ([`propagation`]).
//!
//! | `tracing.provider` | cargo feature | provider crate | its section |
//! |---|---|---|---|
//! | `none` (default) | always there | (none: no layer, no cost) | |
//! | `stdout` | `stdout` (default) | `traces-stdout` | |
//! | `otlp` | `otlp` | `traces-otlp` | `[tracing.otlp]` |
//!
//! [`build`] checks the shared `[tracing]` keys, checks that every other key
//! of the section is a known provider's subsection, reads the subsection of
//! the provider it builds through a [`ConfigSource`] (its type, defaults and
//! validation are the provider's) and starts the provider. A provider named
//! in the configuration but not compiled in fails with a message naming the
//! feature to enable.
//!
//! Nothing global is installed by [`build`]: the host adds the layer to its
//! subscriber and calls [`TracingProvider::install_global`] only if some
//! library needs the global OpenTelemetry tracer provider.
//!
//! ```
//! use chassis_core::config::Defaults;
//! use traces_abstractions::TracingConfig;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[cfg(feature = "stdout")]
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = TracingConfig { provider: "stdout".into(), ..Default::default() }
//!     .with_host_service("orders", Some("1.0.0".into()));
//! // The host passes its loaded configuration; `Defaults` reads every
//! // provider section at its defaults.
//! let tracing = traces_init::build(&config, &Defaults)?;
//!
//! // The host composes the layer with its logging layers (logging-init
//! // takes it as an extra layer) and installs the subscriber once.
//! let subscriber = tracing_subscriber::registry().with(tracing.layer());
//! tracing::subscriber::with_default(subscriber, || {
//!     let _span = tracing::info_span!("place_order").entered();
//!     // Message envelopes and outgoing requests carry the context:
//!     let (mut traceparent, mut tracestate) = (None, None);
//!     traces_init::propagation::inject_current(&mut traceparent, &mut tracestate);
//!     assert!(traceparent.is_some());
//! });
//!
//! tracing.shutdown().await?; // flushes what is left
//! # Ok(()) }
//! # #[cfg(not(feature = "stdout"))] fn main() {}
//! ```
//!
//! Unknown providers and unknown keys are reported precisely:
//!
//! ```
//! use chassis_core::config::{Defaults, JsonSource};
//! use traces_abstractions::TracingConfig;
//!
//! let config = TracingConfig { provider: "jaeger".into(), ..Default::default() };
//! let err = traces_init::build(&config, &Defaults).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "tracing.provider: unknown provider `jaeger`; expected one of: none, stdout, otlp"
//! );
//!
//! let tree = serde_json::json!({"tracing": {"sampling": 0.5}});
//! let config: TracingConfig = serde_json::from_value(tree["tracing"].clone()).unwrap();
//! let err = traces_init::build(&config, &JsonSource::new(tree)).unwrap_err();
//! assert!(err.to_string().starts_with("tracing.sampling: expected a key of [tracing]"), "{err}");
//! ```

pub mod propagation;
mod provider;

use chassis_core::config::{ConfigSource, InvalidValue};
use chassis_core::provider::{Provider, ProviderError, ProviderTable, Section};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, TracerProviderBuilder};
use traces_abstractions::{EnvLookup, TracingConfig, TracingSettings};

pub use provider::{TracingProvider, TracingShutdownError};

/// Every provider `tracing.provider` accepts, one line each: its name, the
/// cargo feature compiling it in and its [`TracesDriver`]. The one list of
/// the concern's provider names.
pub fn providers<S: ConfigSource>() -> ProviderTable<TracesDriver<S>> {
    ProviderTable::new(
        "tracing",
        "traces-init",
        vec![
            Provider::built_in("none", none::driver()),
            chassis_core::provider!("stdout", feature = "stdout", stdout::driver()),
            chassis_core::provider!("otlp", feature = "otlp", otlp::driver()),
        ],
    )
}

/// How one tracing provider is read and built, reading its settings from a
/// source of type `S` and the `OTEL_*` variables through an [`EnvLookup`].
pub struct TracesDriver<S> {
    /// Reads and checks the provider's section: `(key, value)`, or `None`
    /// for a provider without settings of its own.
    pub settings: fn(&S) -> Result<Option<Section>, TracingInitError>,
    /// Builds the provider.
    pub build: fn(&TracingConfig, &S, EnvLookup<'_>) -> Result<TracingProvider, TracingInitError>,
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracingInitError {
    /// `tracing.provider` is unknown or not compiled in.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A value of the section (or of an `OTEL_*` variable) is wrong: its key
    /// path, what was expected and the layer it came from.
    #[error(transparent)]
    InvalidConfig(#[from] InvalidValue),
    /// The OTLP provider could not be built.
    #[cfg(feature = "otlp")]
    #[error(transparent)]
    Otlp(#[from] traces_otlp::OtlpTracingError),
}

/// Builds the configured provider, reading the provider's subsection from
/// `source` (the host passes its loaded configuration) and the `OTEL_*`
/// variables of the process environment. The `otlp` provider must be built
/// inside a Tokio runtime.
pub fn build(
    config: &TracingConfig,
    source: &impl ConfigSource,
) -> Result<TracingProvider, TracingInitError> {
    build_with_env(config, source, &traces_abstractions::process_env)
}

/// [`build`] with the environment read through `env` (tests pass a map).
pub fn build_with_env<S: ConfigSource>(
    config: &TracingConfig,
    source: &S,
    env: EnvLookup<'_>,
) -> Result<TracingProvider, TracingInitError> {
    let table = providers::<S>();
    let provider = table.resolve(&config.provider)?;
    // Check even for `none`, so a typo is caught before tracing is switched
    // on in production.
    config.validate().map_err(|e| source.locate(e))?;
    table
        .check_sections(&config.other_keys, TracingConfig::KEYS)
        .map_err(|e| source.locate(e))?;
    (provider.driver.build)(config, source, env)
}

/// The configured settings of every compiled-in provider that has a
/// section, as `(section key, value)`, secrets redacted: what
/// `--print-config` shows. Unset values that the `OTEL_*` variables or the
/// defaults fill in at start-up show as `null`.
pub fn provider_sections(source: &impl ConfigSource) -> Result<Vec<Section>, TracingInitError> {
    let mut sections = Vec::new();
    for provider in providers().compiled_drivers() {
        sections.extend((provider.driver.settings)(source)?);
    }
    Ok(sections)
}

/// A provider exporting spans through `processor`.
#[cfg(any(feature = "stdout", feature = "otlp"))]
fn exporting(
    name: &'static str,
    config: &TracingConfig,
    settings: TracingSettings,
    processor: impl opentelemetry_sdk::trace::SpanProcessor + 'static,
) -> TracingProvider {
    let sdk = sdk_builder(&settings)
        .with_span_processor(processor)
        .build();
    let level = provider::span_level(&config.span_level);
    TracingProvider::new(name, sdk, settings, level)
}

mod none {
    use super::*;

    pub(super) fn driver<S: ConfigSource>() -> TracesDriver<S> {
        TracesDriver {
            settings: |_| Ok(None),
            build: |_, _, _| Ok(TracingProvider::disabled()),
        }
    }
}

#[cfg(feature = "stdout")]
mod stdout {
    use super::*;

    pub(super) fn driver<S: ConfigSource>() -> TracesDriver<S> {
        TracesDriver {
            settings: |_| Ok(None),
            build,
        }
    }

    fn build<S: ConfigSource>(
        config: &TracingConfig,
        source: &S,
        env: EnvLookup<'_>,
    ) -> Result<TracingProvider, TracingInitError> {
        let settings = config.settings(env).map_err(|e| source.locate(e))?;
        let processor = traces_stdout::span_processor();
        Ok(exporting("stdout", config, settings, processor))
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use traces_otlp::OtlpConfig;

    use super::*;

    pub(super) fn driver<S: ConfigSource>() -> TracesDriver<S> {
        TracesDriver {
            settings: |source| {
                let section = serde_json::to_value(read(source)?).unwrap_or_default();
                Ok(Some((OtlpConfig::SECTION, section)))
            },
            build,
        }
    }

    /// The `[tracing.otlp]` section, read and checked.
    fn read(source: &impl ConfigSource) -> Result<OtlpConfig, TracingInitError> {
        Ok(source.read_valid(OtlpConfig::SECTION, OtlpConfig::validate)?)
    }

    fn build<S: ConfigSource>(
        config: &TracingConfig,
        source: &S,
        env: EnvLookup<'_>,
    ) -> Result<TracingProvider, TracingInitError> {
        let settings = config.settings(env).map_err(|e| source.locate(e))?;
        let otlp = read(source)?.resolve(env).map_err(|e| source.locate(e))?;
        let processor = traces_otlp::span_processor(&otlp)?;
        Ok(exporting("otlp", config, settings, processor))
    }
}

/// The SDK provider builder every exporting provider shares: the resource
/// and a sampler that follows the caller's decision and samples new traces
/// at the configured ratio.
pub fn sdk_builder(settings: &TracingSettings) -> TracerProviderBuilder {
    let resource = Resource::builder_empty()
        .with_attributes(
            settings
                .resource()
                .into_iter()
                .map(|(k, v)| opentelemetry::KeyValue::new(k, v)),
        )
        .build();
    SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sampling_ratio,
        ))))
}

#[cfg(test)]
mod tests {
    use chassis_core::config::{Defaults, JsonSource};

    use super::*;

    #[test]
    fn unknown_provider_lists_the_known_ones() {
        let config = TracingConfig {
            provider: "zipkin".into(),
            ..TracingConfig::default()
        };
        let err = build(&config, &Defaults).unwrap_err();
        assert!(matches!(
            err,
            TracingInitError::Provider(ProviderError::Unknown { .. })
        ));
        assert_eq!(
            err.to_string(),
            "tracing.provider: unknown provider `zipkin`; expected one of: none, stdout, otlp"
        );
    }

    #[test]
    fn none_builds_no_layer() {
        let tracing = build(&TracingConfig::default(), &Defaults).unwrap();
        assert!(!tracing.is_enabled());
        assert_eq!(tracing.provider_name(), "none");
        assert!(tracing.layer().is_none());
        assert!(tracing.tracer_provider().is_none());
        tracing.shutdown_blocking().unwrap();
    }

    #[test]
    fn invalid_config_is_reported_with_key_path() {
        let config = TracingConfig {
            sampling_ratio: 2.0,
            ..TracingConfig::default()
        };
        let err = build(&config, &Defaults).unwrap_err();
        assert!(matches!(err, TracingInitError::InvalidConfig(_)));
        assert!(
            err.to_string()
                .starts_with("tracing.sampling_ratio: expected a number from 0.0 to 1.0"),
            "{err}"
        );
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn otlp_without_its_feature_names_the_feature() {
        let config = TracingConfig {
            provider: "otlp".into(),
            ..TracingConfig::default()
        };
        let err = build(&config, &Defaults).unwrap_err();
        assert!(matches!(
            err,
            TracingInitError::Provider(ProviderError::NotCompiledIn {
                feature: "otlp",
                ..
            })
        ));
        assert!(
            err.to_string()
                .contains("enable feature `otlp` of traces-init"),
            "{err}"
        );
    }

    #[test]
    fn bad_otel_variables_fail_only_when_used() {
        let env = |key: &str| (key == "OTEL_RESOURCE_ATTRIBUTES").then(|| "broken".to_owned());
        // `none` never reads the environment.
        build_with_env(&TracingConfig::default(), &Defaults, &env).unwrap();
        #[cfg(feature = "stdout")]
        {
            let config = TracingConfig {
                provider: "stdout".into(),
                ..TracingConfig::default()
            };
            let err = build_with_env(&config, &Defaults, &env).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("tracing.resource_attributes: expected"),
                "{err}"
            );
            assert!(
                err.to_string()
                    .ends_with("(from env OTEL_RESOURCE_ATTRIBUTES)"),
                "{err}"
            );
        }
    }

    fn section(tree: serde_json::Value) -> (TracingConfig, JsonSource) {
        let config = serde_json::from_value(tree["tracing"].clone()).unwrap();
        (config, JsonSource::new(tree))
    }

    #[test]
    fn unknown_keys_of_the_section_are_rejected_with_their_layer() {
        let (config, source) = section(serde_json::json!({
            "tracing": { "provider": "none", "otlp": {}, "stdout": {}, "sampling": 0.5 }
        }));
        let err = build(&config, &source).unwrap_err();
        let TracingInitError::InvalidConfig(value) = &err else {
            panic!("expected InvalidConfig, got {err}");
        };
        assert_eq!(value.key, "tracing.sampling");
        assert_eq!(value.layer.as_deref(), Some("override in code"));
        assert_eq!(
            err.to_string(),
            "tracing.sampling: expected a key of [tracing] (provider, sampling_ratio, span_level, \
             service_name, service_version, resource_attributes) or a provider's section \
             (none, stdout, otlp), found an unknown key (from override in code)"
        );
    }

    #[test]
    fn shared_values_are_located() {
        let (config, source) = section(serde_json::json!({
            "tracing": { "sampling_ratio": 1.5 }
        }));
        let err = build(&config, &source).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tracing.sampling_ratio: expected a number from 0.0 to 1.0, found 1.5 (from override in code)"
        );
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn otlp_section_is_read_checked_and_shown() {
        let (config, source) = section(serde_json::json!({
            "tracing": { "provider": "otlp", "otlp": { "endpoint": "collector:4317" } }
        }));
        let err = build_with_env(&config, &source, &|_| None).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "tracing.otlp.endpoint: expected an http:// or https:// URL with a host"
            ),
            "{err}"
        );
        assert!(
            err.to_string().ends_with("(from override in code)"),
            "{err}"
        );
        // A wrong type is reported by the reader, with the key.
        let (_, source) = section(serde_json::json!({
            "tracing": { "otlp": { "timeout": 5 } }
        }));
        let TracingInitError::InvalidConfig(value) = provider_sections(&source).unwrap_err() else {
            panic!("expected InvalidConfig");
        };
        assert!(value.key.starts_with("tracing.otlp"), "{value}");

        let (_, source) = section(serde_json::json!({
            "tracing": { "otlp": { "protocol": "http/protobuf", "headers": { "x-api-key": "k3y" } } }
        }));
        let sections = provider_sections(&source).unwrap();
        assert_eq!(sections.len(), 1);
        let (key, value) = &sections[0];
        assert_eq!(*key, "tracing.otlp");
        assert_eq!(value["protocol"], "http/protobuf");
        assert_eq!(value["endpoint"], serde_json::Value::Null);
        assert!(!value.to_string().contains("k3y"), "{value}");
        let defaults = provider_sections(&Defaults).unwrap();
        assert_eq!(defaults[0].1["headers"], serde_json::json!({}));
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn no_sections_without_otlp() {
        assert!(provider_sections(&Defaults).unwrap().is_empty());
    }
}

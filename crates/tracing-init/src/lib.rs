//! Builds the tracing provider named by `tracing.provider` (`none`, `stdout`
//! or `otlp`) and hands the host what it needs: a `tracing_subscriber` layer
//! turning `tracing` spans into OpenTelemetry spans, an explicit flush and
//! shutdown, and W3C trace-context propagation for HTTP headers and message
//! envelopes ([`propagation`]).
//!
//! Providers are cargo features (`stdout`, on by default; `otlp`). A provider
//! named in the configuration but not compiled in fails with a message
//! naming the feature to enable. With `none` there is no layer at all, so
//! tracing costs nothing.
//!
//! Nothing global is installed by [`build`]: the host adds the layer to its
//! subscriber and calls [`TracingProvider::install_global`] only if some
//! library needs the global OpenTelemetry tracer provider.
//!
//! ```
//! use tracing_abstractions::TracingConfig;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[cfg(feature = "stdout")]
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = TracingConfig { provider: "stdout".into(), ..Default::default() }
//!     .with_host_service("orders", Some("1.0.0".into()));
//! let tracing = tracing_init::build(&config)?;
//!
//! // The host composes the layer with its logging layers (logging-init
//! // takes it as an extra layer) and installs the subscriber once.
//! let subscriber = tracing_subscriber::registry().with(tracing.layer());
//! tracing::subscriber::with_default(subscriber, || {
//!     let _span = tracing::info_span!("place_order").entered();
//!     // Message envelopes and outgoing requests carry the context:
//!     let (mut traceparent, mut tracestate) = (None, None);
//!     tracing_init::propagation::inject_current(&mut traceparent, &mut tracestate);
//!     assert!(traceparent.is_some());
//! });
//!
//! tracing.shutdown().await?; // flushes what is left
//! # Ok(()) }
//! # #[cfg(not(feature = "stdout"))] fn main() {}
//! ```
//!
//! Unknown or missing providers are reported precisely:
//!
//! ```
//! use tracing_abstractions::TracingConfig;
//! let config = TracingConfig { provider: "jaeger".into(), ..Default::default() };
//! let err = tracing_init::build(&config).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "tracing.provider: unknown provider `jaeger` (expected one of: none, stdout, otlp)"
//! );
//! ```

pub mod propagation;
mod provider;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, TracerProviderBuilder};
use tracing_abstractions::{EnvLookup, TracingConfig, TracingConfigError, TracingSettings};

pub use provider::{BoxedLayer, TracingProvider, TracingShutdownError};

/// One provider this crate knows: its config name, the cargo feature that
/// compiles it in, and whether that feature is on in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The name written in `tracing.provider`.
    pub name: &'static str,
    /// The cargo feature of `tracing-init` that compiles it in (`None` for
    /// `none`, always available).
    pub feature: Option<&'static str>,
    /// Whether it is compiled into this build.
    pub compiled_in: bool,
}

/// Every provider this crate knows.
pub const PROVIDERS: &[ProviderInfo] = &[
    ProviderInfo {
        name: tracing_abstractions::PROVIDER_NONE,
        feature: None,
        compiled_in: true,
    },
    ProviderInfo {
        name: tracing_abstractions::PROVIDER_STDOUT,
        feature: Some("stdout"),
        compiled_in: cfg!(feature = "stdout"),
    },
    ProviderInfo {
        name: tracing_abstractions::PROVIDER_OTLP,
        feature: Some("otlp"),
        compiled_in: cfg!(feature = "otlp"),
    },
];

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracingInitError {
    /// `tracing.provider` names no known provider.
    #[error("tracing.provider: unknown provider `{provider}` (expected one of: {known})")]
    UnknownProvider {
        /// The configured name.
        provider: String,
        /// The known names, comma separated.
        known: String,
    },
    /// The provider exists but its cargo feature is off.
    #[error(
        "tracing.provider: provider `{provider}` is not compiled in; enable feature `{feature}` of tracing-init (or chassis-web)"
    )]
    NotCompiledIn {
        /// The configured name.
        provider: String,
        /// The feature to enable.
        feature: &'static str,
    },
    /// The section (or an `OTEL_*` variable) is invalid.
    #[error(transparent)]
    InvalidConfig(#[from] TracingConfigError),
    /// The OTLP provider could not be built.
    #[cfg(feature = "otlp")]
    #[error(transparent)]
    Otlp(#[from] tracing_otlp::OtlpTracingError),
}

/// Finds `name` in `providers`: the provider if it is compiled in, else why not.
pub fn resolve<'a>(
    name: &str,
    providers: &'a [ProviderInfo],
) -> Result<&'a ProviderInfo, TracingInitError> {
    match providers.iter().find(|p| p.name == name) {
        Some(p) if p.compiled_in => Ok(p),
        Some(p) => Err(TracingInitError::NotCompiledIn {
            provider: name.to_owned(),
            feature: p.feature.unwrap_or(p.name),
        }),
        None => Err(TracingInitError::UnknownProvider {
            provider: name.to_owned(),
            known: providers
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Builds the configured provider, reading the `OTEL_*` variables of the
/// process environment. The `otlp` provider must be built inside a Tokio
/// runtime.
pub fn build(config: &TracingConfig) -> Result<TracingProvider, TracingInitError> {
    build_with_env(config, &tracing_abstractions::process_env)
}

/// [`build`] with the environment read through `env` (tests pass a map).
#[cfg_attr(
    not(any(feature = "stdout", feature = "otlp")),
    allow(unused_variables, reason = "only `none` is compiled in")
)]
pub fn build_with_env(
    config: &TracingConfig,
    env: EnvLookup<'_>,
) -> Result<TracingProvider, TracingInitError> {
    let provider = resolve(config.provider.trim(), PROVIDERS)?;
    // Validate even for `none`, so a typo is caught before tracing is
    // switched on in production.
    config.validate()?;
    let level = provider::span_level(&config.span_level);
    match provider.name {
        tracing_abstractions::PROVIDER_NONE => Ok(TracingProvider::disabled()),
        #[cfg(feature = "stdout")]
        tracing_abstractions::PROVIDER_STDOUT => {
            let settings = config.settings(env)?;
            let sdk = sdk_builder(&settings)
                .with_span_processor(tracing_stdout::span_processor())
                .build();
            Ok(TracingProvider::new(provider.name, sdk, settings, level))
        }
        #[cfg(feature = "otlp")]
        tracing_abstractions::PROVIDER_OTLP => {
            let settings = config.settings(env)?;
            let otlp = config.otlp.resolve(env)?;
            let sdk = sdk_builder(&settings)
                .with_span_processor(tracing_otlp::span_processor(&otlp)?)
                .build();
            Ok(TracingProvider::new(provider.name, sdk, settings, level))
        }
        // `resolve` only returns compiled-in providers, and each has an arm.
        other => Err(TracingInitError::NotCompiledIn {
            provider: other.to_owned(),
            feature: provider.feature.unwrap_or(other),
        }),
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
    use super::*;

    const TABLE: &[ProviderInfo] = &[
        ProviderInfo {
            name: "none",
            feature: None,
            compiled_in: true,
        },
        ProviderInfo {
            name: "otlp",
            feature: Some("otlp"),
            compiled_in: false,
        },
    ];

    #[test]
    fn resolve_explains_unknown_and_missing_providers() {
        assert_eq!(resolve("none", TABLE).unwrap().name, "none");
        let err = resolve("otlp", TABLE).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tracing.provider: provider `otlp` is not compiled in; enable feature `otlp` of tracing-init (or chassis-web)"
        );
        let err = resolve("zipkin", TABLE).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tracing.provider: unknown provider `zipkin` (expected one of: none, otlp)"
        );
    }

    #[test]
    fn none_builds_no_layer() {
        let tracing = build(&TracingConfig::default()).unwrap();
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
        let err = build(&config).unwrap_err();
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
        let err = build(&config).unwrap_err();
        assert!(matches!(
            err,
            TracingInitError::NotCompiledIn {
                feature: "otlp",
                ..
            }
        ));
        assert!(
            err.to_string()
                .contains("enable feature `otlp` of tracing-init"),
            "{err}"
        );
    }

    #[test]
    fn bad_otel_variables_fail_only_when_used() {
        let env = |key: &str| (key == "OTEL_RESOURCE_ATTRIBUTES").then(|| "broken".to_owned());
        // `none` never reads the environment.
        build_with_env(&TracingConfig::default(), &env).unwrap();
        #[cfg(feature = "stdout")]
        {
            let config = TracingConfig {
                provider: "stdout".into(),
                ..TracingConfig::default()
            };
            let err = build_with_env(&config, &env).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("OTEL_RESOURCE_ATTRIBUTES: expected"),
                "{err}"
            );
        }
    }
}

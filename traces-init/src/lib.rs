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
//! use traces_abstractions::TracingConfig;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[cfg(feature = "stdout")]
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = TracingConfig { provider: "stdout".into(), ..Default::default() }
//!     .with_host_service("orders", Some("1.0.0".into()));
//! let tracing = traces_init::build(&config)?;
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
//! Unknown or missing providers are reported precisely:
//!
//! ```
//! use traces_abstractions::TracingConfig;
//! let config = TracingConfig { provider: "jaeger".into(), ..Default::default() };
//! let err = traces_init::build(&config).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "tracing.provider: unknown provider `jaeger`; expected one of: none, stdout, otlp"
//! );
//! ```

pub mod propagation;
mod provider;

use chassis_core::provider::{ProviderError, ProviderInfo, ProviderTable};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, TracerProviderBuilder};
use traces_abstractions::{EnvLookup, TracingConfig, TracingConfigError, TracingSettings};

pub use provider::{TracingProvider, TracingShutdownError};

/// Every provider `tracing.provider` accepts, and whether it is compiled in.
pub const PROVIDERS: ProviderTable = ProviderTable {
    concern: "tracing",
    init_crate: "traces-init",
    providers: &[
        ProviderInfo::built_in(traces_abstractions::PROVIDER_NONE),
        ProviderInfo::new(
            traces_abstractions::PROVIDER_STDOUT,
            "stdout",
            cfg!(feature = "stdout"),
        ),
        ProviderInfo::new(
            traces_abstractions::PROVIDER_OTLP,
            "otlp",
            cfg!(feature = "otlp"),
        ),
    ],
};

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracingInitError {
    /// `tracing.provider` is unknown or not compiled in.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The section (or an `OTEL_*` variable) is invalid.
    #[error(transparent)]
    InvalidConfig(#[from] TracingConfigError),
    /// The OTLP provider could not be built.
    #[cfg(feature = "otlp")]
    #[error(transparent)]
    Otlp(#[from] traces_otlp::OtlpTracingError),
}

/// Builds the configured provider, reading the `OTEL_*` variables of the
/// process environment. The `otlp` provider must be built inside a Tokio
/// runtime.
pub fn build(config: &TracingConfig) -> Result<TracingProvider, TracingInitError> {
    build_with_env(config, &traces_abstractions::process_env)
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
    let provider = PROVIDERS.resolve(&config.provider)?;
    // Validate even for `none`, so a typo is caught before tracing is
    // switched on in production.
    config.validate()?;
    let level = provider::span_level(&config.span_level);
    match provider.name {
        traces_abstractions::PROVIDER_NONE => Ok(TracingProvider::disabled()),
        #[cfg(feature = "stdout")]
        traces_abstractions::PROVIDER_STDOUT => {
            let settings = config.settings(env)?;
            let sdk = sdk_builder(&settings)
                .with_span_processor(traces_stdout::span_processor())
                .build();
            Ok(TracingProvider::new(provider.name, sdk, settings, level))
        }
        #[cfg(feature = "otlp")]
        traces_abstractions::PROVIDER_OTLP => {
            let settings = config.settings(env)?;
            let otlp = config.otlp.resolve(env)?;
            let sdk = sdk_builder(&settings)
                .with_span_processor(traces_otlp::span_processor(&otlp)?)
                .build();
            Ok(TracingProvider::new(provider.name, sdk, settings, level))
        }
        // `resolve` only returns compiled-in providers, and each has an arm.
        _ => Err(PROVIDERS.not_compiled_in(provider).into()),
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

    #[test]
    fn unknown_provider_lists_the_known_ones() {
        let config = TracingConfig {
            provider: "zipkin".into(),
            ..TracingConfig::default()
        };
        let err = build(&config).unwrap_err();
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

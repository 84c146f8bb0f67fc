//! The built provider: layer, flush, shutdown, optional globals.

use std::fmt;

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use traces_abstractions::TracingSettings;
use tracing::Subscriber;
use tracing::metadata::LevelFilter;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// A layer of the host's subscriber, the shape `logging-init` accepts as an
/// extra layer.
type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// Crates whose spans are never exported: the exporter's own HTTP/gRPC
/// stack (exporting them would feed the exporter its own work) and the
/// OpenTelemetry crates themselves.
const EXPORT_STACK: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
    "tracing_opentelemetry",
];

/// Reads `tracing.span_level` (already validated); `info` if unreadable.
#[cfg(any(feature = "stdout", feature = "otlp"))]
pub(crate) fn span_level(text: &str) -> LevelFilter {
    <LevelFilter as std::str::FromStr>::from_str(text.trim()).unwrap_or(LevelFilter::INFO)
}

fn exported(level: LevelFilter, meta: &tracing::Metadata<'_>) -> bool {
    if level < *meta.level() {
        return false;
    }
    let target = meta.target();
    !EXPORT_STACK.iter().any(|krate| {
        target
            .strip_prefix(krate)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// Flushing or shutting down the provider failed.
#[derive(Debug, thiserror::Error)]
#[error("tracing provider `{provider}`: {action} failed: {source}")]
pub struct TracingShutdownError {
    /// The provider's name.
    pub provider: &'static str,
    /// `flush` or `shutdown`.
    pub action: &'static str,
    /// What the SDK said.
    #[source]
    pub source: OTelSdkError,
}

struct Enabled {
    sdk: SdkTracerProvider,
    tracer: SdkTracer,
    settings: TracingSettings,
    level: LevelFilter,
}

/// The tracing provider the configuration named, ready to be wired into
/// the host. Built by [`crate::build`].
///
/// Call [`TracingProvider::shutdown`] before the process exits: it flushes
/// the spans still queued. (Dropping the last handle without it also shuts
/// down, but then blocks the dropping thread, which must not be the only
/// thread of a current-thread Tokio runtime.)
pub struct TracingProvider {
    name: &'static str,
    enabled: Option<Enabled>,
}

impl fmt::Debug for TracingProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingProvider")
            .field("provider", &self.name)
            .field("settings", &self.enabled.as_ref().map(|e| &e.settings))
            .finish_non_exhaustive()
    }
}

impl TracingProvider {
    #[cfg_attr(
        not(any(feature = "stdout", feature = "otlp")),
        allow(dead_code, reason = "only `none` is compiled in")
    )]
    pub(crate) fn new(
        name: &'static str,
        sdk: SdkTracerProvider,
        settings: TracingSettings,
        level: LevelFilter,
    ) -> Self {
        let scope = InstrumentationScope::builder("chassis")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = sdk.tracer_with_scope(scope);
        Self {
            name,
            enabled: Some(Enabled {
                sdk,
                tracer,
                settings,
                level,
            }),
        }
    }

    /// The provider of `tracing.provider = "none"`: no layer, nothing to flush.
    pub fn disabled() -> Self {
        Self {
            name: "none",
            enabled: None,
        }
    }

    /// The configured provider's name (`none`, `stdout`, `otlp`).
    pub fn provider_name(&self) -> &'static str {
        self.name
    }

    /// Whether spans are recorded at all (`false` for `none`).
    pub fn is_enabled(&self) -> bool {
        self.enabled.is_some()
    }

    /// The resolved service identity and sampling, `None` for `none`.
    pub fn settings(&self) -> Option<&TracingSettings> {
        self.enabled.as_ref().map(|e| &e.settings)
    }

    /// The layer to add to the host's subscriber (boxed for a
    /// `Registry`-rooted stack, as `logging-init` takes extra layers), or
    /// `None` for `none` — then nothing is added and tracing costs nothing.
    pub fn layer(&self) -> Option<BoxedLayer> {
        self.layer_for::<Registry>()
            .map(|l| Box::new(l) as BoxedLayer)
    }

    /// The layer for any subscriber with span storage (a `Registry` with
    /// other layers already on it), filtered to `tracing.span_level`.
    pub fn layer_for<S>(&self) -> Option<impl Layer<S> + Send + Sync + 'static>
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let enabled = self.enabled.as_ref()?;
        let level = enabled.level;
        let layer = tracing_opentelemetry::layer()
            .with_tracer(enabled.tracer.clone())
            // busy/idle times per span cost a clock read per poll; the span's
            // own duration is what traces are read for.
            .with_tracked_inactivity(false)
            .with_threads(false);
        Some(layer.with_filter(FilterFn::new(move |meta| exported(level, meta))))
    }

    /// The OpenTelemetry SDK provider, for hosts that create spans through
    /// the OpenTelemetry API directly. `None` for `none`.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.enabled.as_ref().map(|e| &e.sdk)
    }

    /// Installs this provider as OpenTelemetry's global tracer provider and
    /// the W3C propagator as the global propagator, for libraries that use
    /// the globals. Only a host calls this, once; the chassis itself never
    /// needs it. Does nothing for `none`.
    pub fn install_global(&self) {
        if let Some(enabled) = &self.enabled {
            opentelemetry::global::set_tracer_provider(enabled.sdk.clone());
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        }
    }

    /// Exports every span ended so far and waits for the exporter.
    pub async fn force_flush(&self) -> Result<(), TracingShutdownError> {
        let Some(enabled) = &self.enabled else {
            return Ok(());
        };
        let sdk = enabled.sdk.clone();
        off_runtime(move || sdk.force_flush())
            .await
            .map_err(|source| self.error("flush", source))
    }

    /// Flushes the queued spans and stops the exporter. Spans ended later
    /// are dropped.
    pub async fn shutdown(self) -> Result<(), TracingShutdownError> {
        let Some(enabled) = self.enabled else {
            return Ok(());
        };
        let name = self.name;
        let sdk = enabled.sdk;
        off_runtime(move || sdk.shutdown())
            .await
            .map_err(|source| TracingShutdownError {
                provider: name,
                action: "shutdown",
                source,
            })
    }

    /// [`TracingProvider::shutdown`] for code outside any async runtime.
    /// Do not call it on a Tokio worker thread (it blocks until the batch
    /// task answers).
    pub fn shutdown_blocking(self) -> Result<(), TracingShutdownError> {
        let Some(enabled) = &self.enabled else {
            return Ok(());
        };
        enabled
            .sdk
            .shutdown()
            .map_err(|source| self.error("shutdown", source))
    }

    fn error(&self, action: &'static str, source: OTelSdkError) -> TracingShutdownError {
        TracingShutdownError {
            provider: self.name,
            action,
            source,
        }
    }
}

/// Runs a blocking SDK call without blocking a runtime worker: the batch
/// processor's task must keep running on the runtime to answer it.
async fn off_runtime(f: impl FnOnce() -> OTelSdkResult + Send + 'static) -> OTelSdkResult {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(f).await {
            Ok(result) => result,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => Err(OTelSdkError::InternalFailure(
                    "the Tokio runtime shut down during the call".into(),
                )),
            },
        },
        Err(_) => f(),
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing::callsite::Identifier;
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;

    use super::*;

    struct Callsite;
    impl tracing::callsite::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unreachable!("never registered")
        }
    }
    static CALLSITE: Callsite = Callsite;

    fn meta(target: &'static str, level: Level) -> tracing::Metadata<'static> {
        tracing::Metadata::new(
            "span",
            target,
            level,
            None,
            None,
            None,
            FieldSet::new(&[], Identifier(&CALLSITE)),
            Kind::SPAN,
        )
    }

    #[test]
    fn filter_keeps_level_and_drops_the_export_stack() {
        let info = LevelFilter::INFO;
        assert!(exported(info, &meta("orders::api", Level::INFO)));
        assert!(exported(info, &meta("orders::api", Level::WARN)));
        assert!(!exported(info, &meta("orders::api", Level::DEBUG)));
        assert!(exported(LevelFilter::TRACE, &meta("orders", Level::TRACE)));
        for noisy in [
            "h2::proto",
            "hyper",
            "tonic::transport",
            "tower::buffer",
            "opentelemetry_sdk",
        ] {
            assert!(!exported(info, &meta(noisy, Level::ERROR)), "{noisy}");
        }
        // Only whole crate names are excluded.
        assert!(exported(info, &meta("tower_http::trace", Level::INFO)));
        assert!(exported(info, &meta("hyperion", Level::INFO)));
    }

    #[test]
    #[cfg(any(feature = "stdout", feature = "otlp"))]
    fn span_levels_parse() {
        assert_eq!(span_level("debug"), LevelFilter::DEBUG);
        assert_eq!(span_level(" WARN "), LevelFilter::WARN);
    }
}

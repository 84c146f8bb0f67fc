//! OTLP tracing provider of the service chassis: spans go to an
//! OpenTelemetry collector (or any OTLP back end: Jaeger, Tempo, ...) over
//! gRPC (tonic) or HTTP/protobuf (reqwest).
//!
//! The exporter sits behind a batch span processor that runs as a task on
//! the Tokio runtime, so spans leave the request path at once and go out in
//! batches. [`span_processor`] must therefore be called inside a Tokio
//! runtime; flushing and shutting down block until the task answers, so do
//! them off the runtime's worker threads (`traces-init` offers async
//! wrappers that do).
//!
//! The provider owns its configuration, the `[tracing.otlp]` section
//! ([`OtlpConfig`], read by `traces-init`): [`OtlpConfig::resolve`] applies
//! it first, then the `OTEL_EXPORTER_OTLP_*` variables, then the defaults.
//! `traces-init` assembles the processor with the sampler and resource; by
//! hand:
//!
//! ```no_run
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use traces_abstractions::process_env;
//! use traces_otlp::OtlpConfig;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = OtlpConfig::default().resolve(&process_env)?;
//! let provider = SdkTracerProvider::builder()
//!     .with_span_processor(traces_otlp::span_processor(&settings)?)
//!     .build();
//! // ... create spans ...
//! tokio::task::spawn_blocking(move || provider.shutdown()).await??;
//! # Ok(()) }
//! ```

mod config;

use std::collections::HashMap;

use opentelemetry_otlp::{
    ExporterBuildError, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

pub use config::{
    DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT, DEFAULT_TIMEOUT, HTTP_TRACES_PATH, OtlpConfig,
    OtlpProtocol, OtlpSettings,
};

/// The batch span processor this provider builds.
pub type OtlpSpanProcessor = BatchSpanProcessor<Tokio>;

/// Why the OTLP provider could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OtlpTracingError {
    /// Built outside a Tokio runtime.
    #[error(
        "the otlp tracing provider needs a Tokio runtime: build it from inside the runtime (e.g. in `#[tokio::main]`)"
    )]
    NoRuntime,
    /// A configured header cannot be sent.
    #[error("tracing.otlp.headers: header `{name}` cannot be sent: {reason}")]
    InvalidHeader {
        /// The header name.
        name: String,
        /// Why not.
        reason: String,
    },
    /// The exporter rejected its settings.
    #[error("could not build the OTLP {protocol} exporter for {endpoint}: {source}")]
    Exporter {
        /// The protocol.
        protocol: OtlpProtocol,
        /// The endpoint.
        endpoint: String,
        /// What the exporter said.
        #[source]
        source: ExporterBuildError,
    },
}

/// Builds the OTLP span exporter for `settings` (gRPC or HTTP/protobuf).
///
/// Must run inside a Tokio runtime (the gRPC channel and the HTTP client
/// live on it).
pub fn span_exporter(settings: &OtlpSettings) -> Result<SpanExporter, OtlpTracingError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(OtlpTracingError::NoRuntime);
    }
    let exporter = match settings.protocol {
        OtlpProtocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_protocol(Protocol::Grpc)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .with_metadata(metadata(settings)?)
            .build(),
        OtlpProtocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .with_headers(
                settings
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                    .collect::<HashMap<_, _>>(),
            )
            .build(),
    };
    exporter.map_err(|source| OtlpTracingError::Exporter {
        protocol: settings.protocol,
        endpoint: settings.endpoint.clone(),
        source,
    })
}

/// Builds the exporter and the batch processor (a task on the current Tokio
/// runtime) that feeds it. Batch sizes and delays follow the standard
/// `OTEL_BSP_*` variables.
pub fn span_processor(settings: &OtlpSettings) -> Result<OtlpSpanProcessor, OtlpTracingError> {
    let exporter = span_exporter(settings)?;
    Ok(BatchSpanProcessor::builder(exporter, Tokio).build())
}

fn metadata(settings: &OtlpSettings) -> Result<MetadataMap, OtlpTracingError> {
    let mut map = MetadataMap::with_capacity(settings.headers.len());
    for (name, value) in &settings.headers {
        let invalid = |reason: &str| OtlpTracingError::InvalidHeader {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        // gRPC metadata keys are lower-case.
        let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| invalid("not a valid gRPC metadata key"))?;
        let value = MetadataValue::try_from(value.expose())
            .map_err(|_| invalid("the value is not printable ASCII"))?;
        map.insert(key, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chassis_core::Secret;

    use super::*;

    fn settings(protocol: OtlpProtocol, endpoint: &str) -> OtlpSettings {
        OtlpSettings {
            endpoint: endpoint.into(),
            protocol,
            timeout: Duration::from_secs(1),
            headers: [("X-Api-Key".to_owned(), Secret::new("k3y"))].into(),
        }
    }

    #[test]
    fn needs_a_tokio_runtime() {
        let err =
            span_processor(&settings(OtlpProtocol::Grpc, "http://127.0.0.1:4317")).unwrap_err();
        assert!(matches!(err, OtlpTracingError::NoRuntime), "{err}");
        assert!(err.to_string().contains("Tokio runtime"));
    }

    #[tokio::test]
    async fn builds_both_protocols() {
        span_processor(&settings(OtlpProtocol::Grpc, "http://127.0.0.1:4317")).unwrap();
        span_processor(&settings(
            OtlpProtocol::HttpProtobuf,
            "http://127.0.0.1:4318/v1/traces",
        ))
        .unwrap();
    }

    #[tokio::test]
    async fn rejects_headers_grpc_cannot_send() {
        let mut bad = settings(OtlpProtocol::Grpc, "http://127.0.0.1:4317");
        bad.headers
            .insert("x-token".into(), Secret::new("line\nbreak"));
        let err = span_exporter(&bad).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tracing.otlp.headers: header `x-token` cannot be sent"),
            "{err}"
        );
        assert!(!err.to_string().contains("line"), "never prints the secret");
    }

    #[tokio::test]
    async fn reports_exporter_errors_with_endpoint() {
        let err = span_exporter(&settings(OtlpProtocol::Grpc, "http://bad host:4317")).unwrap_err();
        assert!(matches!(err, OtlpTracingError::Exporter { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("grpc exporter for http://bad host:4317"),
            "{err}"
        );
    }
}

//! Development tracing provider of the service chassis: every finished span
//! is printed as one line on stdout (or any writer).
//!
//! ```text
//! span service=orders name="place_order" trace_id=4bf9…4736 span_id=00f0…02b7 parent_id=- kind=internal duration_ms=1.204 status=unset order_id="o-42"
//! ```
//!
//! The exporter runs behind a [`SimpleSpanProcessor`]: a line appears the
//! moment its span closes, in order, which is what a developer watching a
//! terminal wants. Writing happens on the thread that closes the span, so this
//! provider is for development, not for production load (use `traces-otlp`).
//!
//! `traces-init` assembles it with the sampler and resource from the
//! configuration; by hand it looks like this:
//!
//! ```
//! use opentelemetry::trace::{Tracer, TracerProvider};
//! use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
//!
//! let provider = SdkTracerProvider::builder()
//!     .with_resource(Resource::builder_empty().with_service_name("orders").build())
//!     .with_span_processor(traces_stdout::span_processor())
//!     .build();
//! provider.tracer("example").in_span("place_order", |_cx| {});
//! provider.shutdown().unwrap();
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SimpleSpanProcessor, SpanData, SpanExporter};

/// A span exporter writing one line per span.
pub struct StdoutSpanExporter {
    writer: Mutex<Box<dyn Write + Send>>,
    service: String,
}

impl fmt::Debug for StdoutSpanExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdoutSpanExporter")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Default for StdoutSpanExporter {
    fn default() -> Self {
        Self::with_writer(io::stdout())
    }
}

impl StdoutSpanExporter {
    /// An exporter writing to stdout.
    pub fn new() -> Self {
        Self::default()
    }

    /// An exporter writing to `writer` (a file, a buffer in a test).
    pub fn with_writer(writer: impl Write + Send + 'static) -> Self {
        Self {
            writer: Mutex::new(Box::new(writer)),
            service: String::new(),
        }
    }

    fn write_batch(&self, batch: &[SpanData]) -> io::Result<()> {
        let mut text = String::new();
        for span in batch {
            format_span(&mut text, &self.service, span);
        }
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| io::Error::other("stdout span exporter lock poisoned"))?;
        writer.write_all(text.as_bytes())?;
        writer.flush()
    }
}

impl SpanExporter for StdoutSpanExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = self
            .write_batch(&batch)
            .map_err(|e| OTelSdkError::InternalFailure(format!("writing spans failed: {e}")));
        std::future::ready(result)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.writer
            .lock()
            .map_err(|_| OTelSdkError::InternalFailure("lock poisoned".into()))?
            .flush()
            .map_err(|e| OTelSdkError::InternalFailure(format!("flushing spans failed: {e}")))
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.service = resource
            .get(&"service.name".into())
            .map(|v| v.to_string())
            .unwrap_or_default();
    }
}

/// A processor printing each span to stdout as it closes.
pub fn span_processor() -> SimpleSpanProcessor<StdoutSpanExporter> {
    SimpleSpanProcessor::new(StdoutSpanExporter::new())
}

/// A processor printing each span to `writer` as it closes.
pub fn span_processor_with_writer(
    writer: impl Write + Send + 'static,
) -> SimpleSpanProcessor<StdoutSpanExporter> {
    SimpleSpanProcessor::new(StdoutSpanExporter::with_writer(writer))
}

/// Appends the line of one span (newline included) to `out`.
fn format_span(out: &mut String, service: &str, span: &SpanData) {
    let cx = &span.span_context;
    let duration = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    let kind = match span.span_kind {
        SpanKind::Client => "client",
        SpanKind::Server => "server",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    };
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "span service={service} name={:?} trace_id={} span_id={} parent_id={} kind={kind} duration_ms={:.3}",
        span.name,
        cx.trace_id(),
        cx.span_id(),
        if span.parent_span_id == SpanId::INVALID {
            Cow::Borrowed("-")
        } else {
            Cow::Owned(span.parent_span_id.to_string())
        },
        duration.as_secs_f64() * 1000.0,
    );
    let _ = match &span.status {
        Status::Unset => write!(out, " status=unset"),
        Status::Ok => write!(out, " status=ok"),
        Status::Error { description } => write!(out, " status=error({description:?})"),
    };
    if !span.events.is_empty() {
        let _ = write!(out, " events={}", span.events.len());
    }
    for kv in &span.attributes {
        let _ = write!(out, " {}=", kv.key);
        match &kv.value {
            Value::String(s) => {
                let _ = write!(out, "{:?}", s.as_str());
            }
            other => {
                let _ = write!(out, "{other}");
            }
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_line_per_span_with_ids_parent_and_attributes() {
        let buffer = Buffer::default();
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder_empty()
                    .with_service_name("orders")
                    .build(),
            )
            .with_span_processor(span_processor_with_writer(buffer.clone()))
            .build();
        let tracer = provider.tracer("test");
        let (trace_id, parent_id) = tracer.in_span("outer", |cx| {
            let outer = cx.span().span_context().clone();
            let mut inner = tracer.start("inner \"quoted\"\nline");
            inner.set_attribute(KeyValue::new("order.id", "o-42"));
            inner.set_attribute(KeyValue::new("items", 3_i64));
            inner.set_status(Status::error("boom"));
            inner.end();
            (outer.trace_id(), outer.span_id())
        });
        provider.shutdown().unwrap();

        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let inner = lines[0];
        assert!(
            inner.starts_with("span service=orders name=\"inner \\\"quoted\\\"\\nline\" "),
            "{inner}"
        );
        assert!(inner.contains(&format!("trace_id={trace_id} ")), "{inner}");
        assert!(
            inner.contains(&format!("parent_id={parent_id} ")),
            "{inner}"
        );
        assert!(inner.contains(" kind=internal "), "{inner}");
        assert!(inner.contains(" status=error(\"boom\")"), "{inner}");
        assert!(inner.ends_with(" order.id=\"o-42\" items=3"), "{inner}");
        let outer = lines[1];
        assert!(
            outer.contains(&format!("span_id={parent_id} parent_id=- ")),
            "{outer}"
        );
    }

    #[test]
    fn write_errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let exporter = StdoutSpanExporter::with_writer(Broken);
        let data = test_span();
        let err = poll_ready(exporter.export(vec![data])).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
    }

    fn test_span() -> SpanData {
        use opentelemetry::trace::{SpanContext, TraceFlags, TraceId, TraceState};
        use std::time::SystemTime;
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1u128),
                SpanId::from(2u64),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "s".into(),
            start_time: SystemTime::UNIX_EPOCH,
            end_time: SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    /// The exporter's future is ready at once; poll it once.
    fn poll_ready<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("stdout export must complete at once"),
        }
    }
}

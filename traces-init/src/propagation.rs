//! W3C trace-context propagation between `tracing` spans and the outside:
//! message envelopes (`traceparent` / `tracestate` fields) and HTTP headers.
//!
//! These functions read and write the OpenTelemetry context that the layer
//! of [`TracingProvider`](crate::TracingProvider) keeps on every `tracing`
//! span; without that layer (provider `none`) they find no context and do
//! nothing, at no cost beyond a lookup.
//!
//! - Producer side: [`inject_current`] fills an envelope's (or a
//!   `MessageContext`'s) two fields from the current span; [`inject_http`]
//!   does the same for outgoing HTTP headers.
//! - Consumer side: create the handler's span, then, **before entering it**,
//!   call [`set_parent`] (envelope fields) or [`set_parent_from_headers`]
//!   (HTTP request) so the span joins the caller's trace.

use opentelemetry::trace::{
    SpanContext, TraceContextExt, TraceFlags, TraceId as OtelTraceId, TraceState as OtelTraceState,
};
use opentelemetry::{Context, trace::SpanId as OtelSpanId};
use traces_abstractions::{
    SpanId, TRACEPARENT, TRACESTATE, TraceContext, TraceId, TraceParent, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace context of `span`, if it takes part in a trace (`None` when no
/// tracing layer is installed). Unsampled spans have a context too: the
/// decision travels with it.
pub fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    from_otel(&span.context())
}

/// The trace context of the current `tracing` span.
pub fn current_context() -> Option<TraceContext> {
    context_of(&tracing::Span::current())
}

/// The trace id of the current span, e.g. to record it on a log line or an
/// error response.
pub fn current_trace_id() -> Option<TraceId> {
    current_context().map(|cx| cx.traceparent.trace_id)
}

/// Name of the span field [`record_trace_id`] fills.
pub const TRACE_ID_FIELD: &str = "trace_id";

/// Records the trace id of `span` in its `trace_id` field, so every log line
/// inside the span carries it. The span must declare the field
/// (`trace_id = tracing::field::Empty`). Call it after [`set_parent`]:
/// reading the context starts the OpenTelemetry span, after which the parent
/// can no longer change. Returns the id, `None` without a tracing layer.
pub fn record_trace_id(span: &tracing::Span) -> Option<TraceId> {
    let trace_id = context_of(span)?.traceparent.trace_id;
    span.record(TRACE_ID_FIELD, tracing::field::display(trace_id));
    Some(trace_id)
}

/// Sets the OpenTelemetry attribute `key` of `span` to `value` without
/// making it a `tracing` field: exporters see it, log lines do not (they
/// take such ids from the host's log context). Nothing without a tracing
/// layer.
pub fn set_attribute(span: &tracing::Span, key: &'static str, value: &str) {
    if !span.is_none() {
        span.set_attribute(key, value.to_owned());
    }
}

/// Writes the current span's context into the two envelope fields
/// (`Envelope::traceparent`/`tracestate`, `MessageContext` likewise).
/// Returns whether there was a context; when not, the fields are untouched.
pub fn inject_current(traceparent: &mut Option<String>, tracestate: &mut Option<String>) -> bool {
    inject_from(&tracing::Span::current(), traceparent, tracestate)
}

/// [`inject_current`] for a given span.
pub fn inject_from(
    span: &tracing::Span,
    traceparent: &mut Option<String>,
    tracestate: &mut Option<String>,
) -> bool {
    let Some(cx) = context_of(span) else {
        return false;
    };
    let (parent, state) = cx.to_headers();
    *traceparent = Some(parent);
    *tracestate = state;
    true
}

/// The OpenTelemetry parent context the two values describe; `None` when
/// `traceparent` is missing or invalid (then a new trace starts). An
/// invalid `tracestate` is dropped, the parent kept.
pub fn parent_context(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Context> {
    TraceContext::extract(traceparent, tracestate).map(|cx| to_otel(&cx))
}

/// Makes the caller described by `traceparent`/`tracestate` the parent of
/// `span`. Call it right after creating the span and before entering it
/// (or instrumenting a future with it). Returns whether the parent was set:
/// `false` when the values are missing or invalid, when no tracing layer is
/// installed, or when the span was already entered.
pub fn set_parent(
    span: &tracing::Span,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> bool {
    match parent_context(traceparent, tracestate) {
        Some(parent) => span.set_parent(parent).is_ok(),
        None => false,
    }
}

/// [`set_parent`] from the `traceparent` and `tracestate` headers of an
/// HTTP request. Several `tracestate` headers are joined, as RFC 9110 allows;
/// several `traceparent` headers make the value invalid.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) -> bool {
    let (traceparent, tracestate) = header_values(headers);
    set_parent(span, traceparent.as_deref(), tracestate.as_deref())
}

/// The trace context the headers of an HTTP request carry.
pub fn extract_headers(headers: &http::HeaderMap) -> Option<TraceContext> {
    let (traceparent, tracestate) = header_values(headers);
    TraceContext::extract(traceparent.as_deref(), tracestate.as_deref())
}

/// Writes the current span's context into outgoing HTTP headers. Returns
/// whether there was a context.
pub fn inject_http(headers: &mut http::HeaderMap) -> bool {
    let Some(cx) = current_context() else {
        return false;
    };
    let (parent, state) = cx.to_headers();
    // Both values are ASCII by construction (validated hex and tracestate).
    if let Ok(value) = http::HeaderValue::from_str(&parent) {
        headers.insert(TRACEPARENT, value);
    }
    match state.and_then(|s| http::HeaderValue::from_str(&s).ok()) {
        Some(value) => {
            headers.insert(TRACESTATE, value);
        }
        None => {
            headers.remove(TRACESTATE);
        }
    }
    true
}

fn header_values(headers: &http::HeaderMap) -> (Option<String>, Option<String>) {
    let mut parents = headers.get_all(TRACEPARENT).iter();
    let traceparent = match (parents.next(), parents.next()) {
        (Some(one), None) => one.to_str().ok().map(str::to_owned),
        _ => None,
    };
    let states: Vec<&str> = headers
        .get_all(TRACESTATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let tracestate = (!states.is_empty()).then(|| states.join(","));
    (traceparent, tracestate)
}

/// An OpenTelemetry context with `cx` as its remote parent.
pub fn to_otel(cx: &TraceContext) -> Context {
    let state = if cx.tracestate.is_empty() {
        OtelTraceState::default()
    } else {
        // Both sides implement the same W3C grammar; if the SDK is stricter
        // on some value, the state is dropped as the specification allows.
        cx.tracestate
            .to_string()
            .parse::<OtelTraceState>()
            .unwrap_or_default()
    };
    let span_context = SpanContext::new(
        OtelTraceId::from_bytes(cx.traceparent.trace_id.to_bytes()),
        OtelSpanId::from_bytes(cx.traceparent.parent_id.to_bytes()),
        TraceFlags::new(cx.traceparent.flags),
        true,
        state,
    );
    Context::new().with_remote_span_context(span_context)
}

/// The W3C context of an OpenTelemetry context's span, `None` if invalid.
pub fn from_otel(cx: &Context) -> Option<TraceContext> {
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    let traceparent = TraceParent {
        trace_id: TraceId(sc.trace_id().to_bytes()),
        parent_id: SpanId(sc.span_id().to_bytes()),
        flags: sc.trace_flags().to_u8(),
    };
    let header = sc.trace_state().header();
    let tracestate = TraceState::parse(&header).unwrap_or_default();
    Some(TraceContext {
        traceparent,
        tracestate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn otel_conversion_round_trips() {
        let cx = TraceContext::extract(
            Some(PARENT),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        )
        .unwrap();
        let otel = to_otel(&cx);
        assert!(otel.span().span_context().is_remote());
        assert!(otel.span().span_context().is_sampled());
        assert_eq!(from_otel(&otel), Some(cx));
        assert_eq!(from_otel(&Context::new()), None);
    }

    #[test]
    fn without_a_layer_nothing_is_injected_or_set() {
        let (mut tp, mut ts) = (None, Some("kept".to_owned()));
        assert!(!inject_current(&mut tp, &mut ts));
        assert_eq!((tp, ts.as_deref()), (None, Some("kept")));
        let span = tracing::info_span!("handler");
        assert!(!set_parent(&span, Some(PARENT), None));
        assert!(current_trace_id().is_none());
        let mut headers = http::HeaderMap::new();
        assert!(!inject_http(&mut headers));
        assert!(headers.is_empty());
    }

    #[test]
    fn header_rules() {
        let mut headers = http::HeaderMap::new();
        headers.append(TRACEPARENT, PARENT.parse().unwrap());
        headers.append(TRACESTATE, "a=1".parse().unwrap());
        headers.append(TRACESTATE, "b=2".parse().unwrap());
        let cx = extract_headers(&headers).unwrap();
        assert_eq!(cx.tracestate.to_string(), "a=1,b=2");
        headers.append(TRACEPARENT, PARENT.parse().unwrap());
        assert_eq!(
            extract_headers(&headers),
            None,
            "two traceparents are invalid"
        );
        assert_eq!(extract_headers(&http::HeaderMap::new()), None);
    }
}

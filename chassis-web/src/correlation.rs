//! Correlation ids: accepted from `x-correlation-id` or generated, echoed in
//! the response, kept in the task-local message context of the request —
//! where code that publishes messages finds it and every log line written
//! while serving the request takes it from ([`MessageLogContext`]).

use std::fmt;
use std::sync::Arc;

use logging_abstractions::LogContext;
use messaging_abstractions::MessageContext;

pub use chassis_core::CORRELATION_ID_HEADER;

/// Longest correlation id accepted from a client; longer ones are replaced.
pub const MAX_CORRELATION_ID_LEN: usize = 128;

/// The correlation id of the current request. As an axum extractor it reads
/// the request's message context (set by the chassis middleware).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(pub String);

impl CorrelationId {
    /// A fresh random id (a UUID v4, from a fast thread-local generator).
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::random();
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        // Encoded into a stack buffer: `to_string` goes through the
        // formatting machinery, a measurable share of the edge's cost.
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        Self(uuid.hyphenated().encode_lower(&mut text).to_owned())
    }

    /// The id given by a client, if it is usable: 1 to 128 visible ASCII
    /// characters (so it is safe in headers and logs).
    pub fn from_client(value: &[u8]) -> Option<Self> {
        // Only visible ASCII is accepted, so this is valid UTF-8.
        Self::is_valid(value).then(|| Self(String::from_utf8_lossy(value).into_owned()))
    }

    /// Whether a client's id is usable (see [`CorrelationId::from_client`]).
    pub fn is_valid(value: &[u8]) -> bool {
        !value.is_empty()
            && value.len() <= MAX_CORRELATION_ID_LEN
            && value.iter().all(|b| b.is_ascii_graphic())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The message context of the request (or message handler) being served:
/// what `Envelope::with_context` / `EventBusExt::publish_event_in` need so
/// published messages carry the request's correlation id.
///
/// Outside a request it is empty. It follows the request's task, not tasks
/// it spawns: capture it before `tokio::spawn` and use
/// [`with_message_context`] inside.
pub fn current_message_context() -> MessageContext {
    MessageContext::current()
}

/// The correlation id of the request being served, if any.
pub fn current_correlation_id() -> Option<String> {
    MessageContext::with_current(|c| c.correlation_id.clone()).flatten()
}

/// Runs `future` with `context` as the current message context (what the
/// middleware does for each request; message consumers and spawned tasks
/// use it too).
pub fn with_message_context<F: Future>(
    context: MessageContext,
    future: F,
) -> impl Future<Output = F::Output> {
    scope(context, future)
}

/// The log context of a chassis host: every log line written while a
/// request or a message is handled carries its `correlation_id`, while a
/// message is handled its `causation_id` (the id of that message) and, when
/// tracing is on, its `trace_id` (read from the task-local message context
/// when the line is written, so a request pays nothing for it).
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageLogContext;

impl LogContext for MessageLogContext {
    fn visit(&self, field: &mut dyn FnMut(&'static str, &str)) {
        let _outside = MessageContext::with_current(|context| {
            if let Some(id) = &context.correlation_id {
                field("correlation_id", id);
            }
            if let Some(id) = &context.causation_id {
                field("causation_id", id);
            }
            if let Some(trace_id) = context.traceparent.as_deref().and_then(trace_id_of) {
                field("trace_id", trace_id);
            }
        });
    }
}

/// [`MessageLogContext`], as the logging providers take it (what a test
/// passes to a console layer it builds itself).
pub fn log_context() -> Arc<dyn LogContext> {
    Arc::new(MessageLogContext)
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace_id)
}

/// Runs `f` with `context` as the current message context (synchronous
/// code: a log line written outside the future that had the context).
pub(crate) fn sync_scope<R>(context: MessageContext, f: impl FnOnce() -> R) -> R {
    context.sync_scope(f)
}

/// [`with_message_context`] as a nameable future (no state machine of its
/// own around `future`: the edge moves one future less per request).
pub(crate) fn scope<F: Future>(
    context: MessageContext,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<MessageContext, F> {
    context.scope(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_checked() {
        assert_eq!(
            CorrelationId::from_client(b"abc-1").unwrap().as_str(),
            "abc-1"
        );
        assert!(CorrelationId::from_client(b"").is_none());
        assert!(CorrelationId::from_client(b"has space").is_none());
        assert!(CorrelationId::from_client("é".as_bytes()).is_none());
        assert!(CorrelationId::from_client(&[b'a'; 129]).is_none());
    }

    #[test]
    fn generated_ids_are_uuids() {
        let id = CorrelationId::generate();
        let parsed = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(id, CorrelationId::generate());
    }

    fn log_fields() -> Vec<String> {
        let mut fields = Vec::new();
        MessageLogContext.visit(&mut |name, value| fields.push(format!("{name}={value}")));
        fields
    }

    #[tokio::test]
    async fn log_context_reads_the_message_context() {
        assert!(log_fields().is_empty(), "no fields outside a request");
        let ctx = MessageContext {
            correlation_id: Some("c-2".into()),
            causation_id: Some("m-1".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..Default::default()
        };
        let fields = with_message_context(ctx, async { log_fields() }).await;
        assert_eq!(
            fields,
            [
                "correlation_id=c-2",
                "causation_id=m-1",
                "trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
            ]
        );
        let malformed = MessageContext {
            correlation_id: Some("c-3".into()),
            traceparent: Some("00-not-a-trace".into()),
            ..Default::default()
        };
        let fields = with_message_context(malformed, async { log_fields() }).await;
        assert_eq!(fields, ["correlation_id=c-3"]);
    }

    #[tokio::test]
    async fn context_is_scoped() {
        assert_eq!(current_correlation_id(), None);
        let ctx = MessageContext {
            correlation_id: Some("c-1".into()),
            ..Default::default()
        };
        let seen = with_message_context(ctx, async { current_correlation_id() }).await;
        assert_eq!(seen.as_deref(), Some("c-1"));
    }
}

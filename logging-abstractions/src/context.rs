//! Fields a log line takes from where it is written.

/// Fields every log line takes from the code that writes it rather than
/// from its spans: the correlation id (and, with tracing on, the trace id)
/// of the request or message being handled.
///
/// The host supplies one (chassis-web reads its task-local message
/// context) and the provider asks it once per line it writes. Nothing is
/// paid per request, only per line: a request span that existed only to
/// carry the correlation id into log lines cost more than the rest of the
/// HTTP edge (see `docs/bench-http.md`).
///
/// ```
/// use logging_abstractions::LogContext;
///
/// struct Fixed;
/// impl LogContext for Fixed {
///     fn visit(&self, field: &mut dyn FnMut(&'static str, &str)) {
///         field("correlation_id", "c-1");
///     }
/// }
///
/// let mut seen = Vec::new();
/// Fixed.visit(&mut |name, value| seen.push(format!("{name}={value}")));
/// assert_eq!(seen, ["correlation_id=c-1"]);
/// ```
pub trait LogContext: Send + Sync + 'static {
    /// Calls `field` with the name and value of each context field of the
    /// calling code; none outside a request or message handler.
    fn visit(&self, field: &mut dyn FnMut(&'static str, &str));
}

/// A [`LogContext`] without fields: lines carry only their own and their
/// spans' fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLogContext;

impl LogContext for NoLogContext {
    fn visit(&self, _field: &mut dyn FnMut(&'static str, &str)) {}
}

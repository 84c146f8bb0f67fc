//! The standard middleware stack, assembled in one place.
//!
//! From the outside in:
//! 1. **edge** ([`EdgeLayer`]): correlation id (accept `x-correlation-id` or
//!    generate one, echo it, open the request span with it, set the
//!    [`MessageContext`] task-local), request timeout (503 problem), and
//!    conversion of every framework error response (404, 405, 413, 415,
//!    extractor rejections) into `application/problem+json`;
//! 2. `tower-http` trace: DEBUG events per request and response, ERROR on 5xx
//!    (nothing is written per request at the default INFO level, which keeps
//!    the hot path lean);
//! 3. body size limit (413);
//! 4. panic catcher (500 problem, the panic message goes to the log only).
//!
//! Later concerns (metrics, authentication, rate limits, CORS) add their
//! layers in [`standard_stack`], between the edge and the trace layer, so they
//! see the correlation id and their rejections become problems too.

use std::any::Any;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, Uri, header};
use messaging_abstractions::MessageContext;
use tower::{Layer, Service};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use tracing::Instrument;

use crate::config::HttpConfig;
use crate::correlation::{CORRELATION_HEADER, CorrelationId, with_message_context};
use crate::problem::{PROBLEM_JSON, Problem};

/// Wraps `router` (the service's routes plus health) in the standard stack.
/// A fallback answering 404 problems is set for unknown paths.
pub fn standard_stack(router: Router, http: &HttpConfig) -> Router {
    router
        .fallback(not_found)
        .layer(CatchPanicLayer::custom(panic_response))
        // One limit for everything: the tower-http one, which also catches
        // bodies read without axum extractors.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(http.body_limit))
        .layer(TraceLayer::new_for_http().make_span_with(
            // The edge already opened the request span (with the correlation id).
            |_: &Request| tracing::Span::current(),
        ))
        .layer(EdgeLayer::new(http.request_timeout))
}

async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(format!("no resource at `{}`", uri.path()))
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    Problem::internal(format_args!("handler panicked: {message}")).into_response()
}

/// The outermost layer: correlation id, request span, message context,
/// timeout, problem conversion. See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLayer {
    timeout: Duration,
}

impl EdgeLayer {
    /// An edge with this request timeout.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service of [`EdgeLayer`].
#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    timeout: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = req
            .headers()
            .get(CORRELATION_HEADER)
            .and_then(|v| CorrelationId::from_client(v.as_bytes()))
            .unwrap_or_else(CorrelationId::generate);
        let span = tracing::info_span!(
            "request",
            correlation_id = %id,
            method = %req.method(),
            path = %req.uri().path(),
        );
        // Only visible ASCII gets here, always a valid header value.
        let echo = HeaderValue::from_str(id.as_str()).ok();
        let uri = req.uri().clone();
        let context = MessageContext {
            correlation_id: Some(id.0.clone()),
            ..MessageContext::default()
        };
        req.extensions_mut().insert(id);
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let timeout = self.timeout;
        let future = async move {
            let mut response = match tokio::time::timeout(timeout, inner.call(req)).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => timed_out(timeout),
            };
            if needs_problem(&response) {
                response = into_problem(response, &uri).await;
            }
            if let Some(echo) = echo {
                response.headers_mut().insert(CORRELATION_HEADER, echo);
            }
            Ok(response)
        };
        Box::pin(with_message_context(context, future.instrument(span)))
    }
}

fn timed_out(timeout: Duration) -> Response {
    tracing::warn!(timeout = %chassis_core::duration::format(timeout), "request timed out");
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .with_title("Request timed out")
        .with_detail(format!(
            "the request did not complete within {} (http.request_timeout)",
            chassis_core::duration::format(timeout)
        ))
        .into_response()
}

/// An error response produced by the framework (empty or plain-text body)
/// rather than by a handler that chose its own format.
fn needs_problem(response: &Response) -> bool {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    match response.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(ct) => ct.as_bytes().starts_with(b"text/plain"),
    }
}

/// Largest framework error text kept as the problem detail.
const MAX_DETAIL_BYTES: usize = 4096;

async fn into_problem(response: Response, uri: &Uri) -> Response {
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let text = axum::body::to_bytes(body, MAX_DETAIL_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            format!(
                "method not allowed for `{}`; allowed: {allowed}",
                uri.path()
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than the configured limit (http.body_limit)".to_owned()
        }
        // Server errors never show their text: it may reveal internals.
        s if s.is_server_error() => "The server could not complete the request.".to_owned(),
        _ if !text.is_empty() => text,
        s => s.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut problem = Problem::new(status)
        .with_detail(detail)
        .with_instance(uri.path())
        .into_response();
    // Keep the original headers (e.g. `Allow` of a 405), not its body's.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    problem
}

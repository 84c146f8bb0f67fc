//! The standard middleware stack, assembled in one place.
//!
//! [`standard_stack`] wraps the whole router (the service's routes, the
//! health probes and a 404 fallback) in one [`Edge`] service that does, per
//! request:
//!
//! 1. **correlation id**: accepts `x-correlation-id` (1–128 visible ASCII
//!    characters) or generates a UUID, echoes it in the response and sets
//!    the task-local [`MessageContext`]: what publishers read, and what every
//!    log line written while serving the request takes its `correlation_id`
//!    (and, with tracing on, `trace_id`) from ([`crate::MessageLogContext`]);
//!    with tracing on, the request also runs in an OpenTelemetry server span
//!    continuing the caller's trace;
//! 2. **body size limit** (`http.body_limit`): a declared `Content-Length`
//!    above it is answered 413 at once; a body of unknown length is read
//!    through a limit (413 when crossed);
//! 3. **request timeout** (`http.request_timeout`): 503 problem;
//! 4. **panic catcher**: 500 problem, the panic message goes to the log only;
//! 5. **problem conversion**: every framework error response (404, 405, 413,
//!    415, extractor rejections — empty or plain-text bodies) becomes
//!    `application/problem+json`;
//! 6. **trace**: one DEBUG event per completed request (method, path, status,
//!    latency) and one ERROR event per 5xx — the events `tower-http`'s
//!    `TraceLayer` would write, without its per-request allocations: nothing is
//!    written per request at the default INFO level, which keeps the hot path
//!    lean (see `docs/bench-http.md`).
//!
//! 7. **security** ([`Edge::security`], `[security]`): CORS preflights,
//!    concurrency limit, authentication, per-client rate limit (anonymous
//!    clients by their peer address) and hardening headers, before routing
//!    — see [`crate::security`];
//! 8. **access log** (`http.access_log`, off by default): one INFO line per
//!    request with method, route template, status, duration, bytes and
//!    client (see [`crate::AccessLogConfig`]).
//!
//! Doing these in one service instead of a `tower` layer each is measured:
//! the layered version of the first five cost about three times the
//! instructions per request, and security as a layer of its own cost about
//! 0.05× of bare axum's throughput (see `docs/bench-http.md`). A concern that
//! is off costs nothing per request. HTTP metrics need the matched route
//! template, which only exists inside the router: they stay a route layer
//! ([`crate::telemetry::Metrics::track_http`]).

use std::any::Any;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use http::header::HeaderName;
use http::{HeaderValue, StatusCode, Uri, header};
use http_body_util::Limited;
use messaging_abstractions::MessageContext;
use tower::Service;
use tracing::Instrument;

use crate::access_log::{AccessLog, Captured, RouteLayer};
use crate::config::HttpConfig;
use crate::correlation::CorrelationId;
use crate::problem::{PROBLEM_JSON, Problem};
use crate::security::{Security, Verdict};
use crate::telemetry::HttpSeries;

/// [`chassis_core::CORRELATION_ID_HEADER`] as a pre-parsed header name.
const CORRELATION_HEADER_NAME: HeaderName =
    HeaderName::from_static(chassis_core::CORRELATION_ID_HEADER);

/// axum's own default body limit; above it axum's extractors must be told.
const AXUM_DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Wraps `router` (the service's routes plus health) in the standard stack.
/// A fallback answering 404 problems is set for unknown paths.
pub fn standard_stack(router: Router, http: &HttpConfig) -> Edge<Router> {
    let mut router = router;
    if http.access_log.enabled {
        // Reports the matched route template to the access log.
        router = router.layer(RouteLayer);
    }
    let mut router = router.fallback(not_found);
    if http.body_limit > AXUM_DEFAULT_BODY_LIMIT {
        // The edge enforces the limit; lift axum's lower default out of its way.
        router = router.layer(DefaultBodyLimit::max(http.body_limit));
    }
    // Turns every handler into its route (with its layers) once, as
    // `into_make_service` would; called as a service without it, axum
    // rebuilds the route of the matched handler on every request.
    Edge::new(router.with_state(()), http)
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

/// The service wrapping the router; see the module docs.
#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    timeout: Duration,
    body_limit: usize,
    propagate: bool,
    security: Option<Arc<Security>>,
    /// Counts the requests the security checks answer (they never reach
    /// the router's metrics layer).
    answered: Option<Arc<HttpSeries>>,
    /// The client's address, set per connection by the server.
    peer: Option<IpAddr>,
    access_log: Option<Arc<AccessLog>>,
}

impl<S> Edge<S> {
    /// Wraps `inner` with the settings of `http`. With the access log on,
    /// the route of a line is the template `inner` reports through the
    /// route layer [`standard_stack`] adds (`unmatched` without it).
    pub fn new(inner: S, http: &HttpConfig) -> Self {
        Self {
            inner,
            timeout: http.request_timeout,
            body_limit: http.body_limit,
            propagate: false,
            security: None,
            answered: None,
            peer: None,
            access_log: AccessLog::new(&http.access_log).map(Arc::new),
        }
    }

    /// Leaves the requests of `path` (the metrics path: a probe) out of
    /// the access log, unless `http.access_log.probes` asks for them.
    pub(crate) fn access_log_probe(mut self, path: &str) -> Self {
        if let Some(log) = &mut self.access_log {
            Arc::make_mut(log).exclude_probe(path);
        }
        self
    }

    /// With a tracing provider enabled: the request span becomes an
    /// OpenTelemetry server span continuing the caller's trace
    /// (`traceparent`/`tracestate` headers), records `trace_id`, and the
    /// message context carries the trace on to published messages. Off by
    /// default: with tracing provider `none` this costs nothing per request.
    pub fn propagate_trace_context(mut self, enabled: bool) -> Self {
        self.propagate = enabled;
        self
    }

    /// Runs the security checks of `security` on every request (see
    /// [`crate::security`]). With every check and header off, nothing runs.
    pub fn security(mut self, security: Security) -> Self {
        self.security = security.is_active().then(|| Arc::new(security));
        self
    }

    /// Counts the requests the security checks answer themselves (401, 403,
    /// 429, 503, preflights) in the HTTP metrics, under route `unmatched`:
    /// they are answered before routing.
    pub(crate) fn count_answers(mut self, series: Option<Arc<HttpSeries>>) -> Self {
        self.answered = series;
        self
    }

    /// This service for the connection of a client at `peer` (what keys the
    /// rate limit of anonymous clients).
    pub fn for_peer(&self, peer: SocketAddr) -> Self
    where
        S: Clone,
    {
        let mut edge = self.clone();
        edge.peer = Some(peer.ip());
        edge
    }
}

/// A service that can be handed to one connection with the client's
/// address (see [`ConnectPeers`]).
pub trait ForPeer: Sized {
    /// This service for the connection of a client at `peer`.
    fn for_peer(&self, peer: SocketAddr) -> Self;
}

impl<S: Clone> ForPeer for Edge<S> {
    fn for_peer(&self, peer: SocketAddr) -> Self {
        Edge::for_peer(self, peer)
    }
}

/// Serves `S` with the peer address of each connection: what
/// `into_make_service_with_connect_info` does, without a request extension
/// per request (the address is set once per connection).
#[derive(Debug, Clone)]
pub struct ConnectPeers<S>(pub S);

impl<'a, S> Service<axum::serve::IncomingStream<'a, tokio::net::TcpListener>> for ConnectPeers<S>
where
    S: ForPeer,
{
    type Response = S;
    type Error = Infallible;
    type Future = std::future::Ready<Result<S, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(
        &mut self,
        stream: axum::serve::IncomingStream<'a, tokio::net::TcpListener>,
    ) -> Self::Future {
        std::future::ready(Ok(self.0.for_peer(*stream.remote_addr())))
    }
}

/// The request span and the message context of one request.
///
/// The correlation id travels in the message context only: publishers read
/// it there, and so does the log formatter for every line written while the
/// request is served ([`crate::MessageLogContext`]). A span exists only with
/// tracing on, as the OpenTelemetry server span: a span per request just to
/// carry the id into log lines cost more than the rest of the edge.
fn request_span(req: &Request, id: String, propagate: bool) -> (tracing::Span, MessageContext) {
    use traces_init::propagation;
    use tracing::field::Empty;

    let mut context = MessageContext::default();
    let span = if propagate {
        let span = tracing::info_span!(
            "request",
            otel.name = %req.method(),
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = %req.method(),
            url.path = req.uri().path(),
            http.response.status_code = Empty,
        );
        propagation::set_parent_from_headers(&span, req.headers());
        propagation::set_attribute(&span, CORRELATION_ATTRIBUTE, &id);
        propagation::inject_from(&span, &mut context.traceparent, &mut context.tracestate);
        span
    } else {
        tracing::Span::none()
    };
    context.correlation_id = Some(id);
    (span, context)
}

/// The OpenTelemetry attribute of a span that carries the correlation id.
pub(crate) const CORRELATION_ATTRIBUTE: &str = "correlation_id";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = tokio::task::futures::TaskLocalFuture<
        MessageContext,
        tracing::instrument::Instrumented<BoxFuture<Result<Response, Infallible>>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let given = req
            .headers()
            .get(CORRELATION_HEADER_NAME)
            .filter(|v| CorrelationId::is_valid(v.as_bytes()));
        let (id, echo) = match given {
            // Valid ids are visible ASCII: the header is reused as is.
            Some(value) => (
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
                value.clone(),
            ),
            None => {
                let id = CorrelationId::generate().0;
                let echo = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static(""));
                (id, echo)
            }
        };
        let propagate = self.propagate;
        let (span, context) = request_span(&req, id, propagate);
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (timeout, limit) = (self.timeout, self.body_limit);
        let (security, peer) = (self.security.clone(), self.peer);
        let answered = self.answered.clone();
        let access_log = self.access_log.clone();
        let logged = access_log.is_some();
        let future = async move {
            let method = req.method().clone();
            let uri = req.uri().clone();
            let mut admitted = None;
            let mut route = None;
            let mut response = match limit_body(req, limit) {
                Err(too_large) => too_large.into_response(),
                Ok(mut req) => match match security {
                    Some(security) => Some(security.admit(&mut req, peer).await),
                    None => None,
                } {
                    Some(Verdict::Answer(answer)) => {
                        if let Some(series) = &answered {
                            series.record(
                                "unmatched",
                                crate::telemetry::method_label(&method),
                                answer.status(),
                                started.elapsed(),
                            );
                        }
                        answer
                    }
                    verdict => {
                        if let Some(Verdict::Admit(verdict)) = verdict {
                            admitted = Some(verdict);
                        }
                        let call =
                            AssertUnwindSafe(async move { inner.call(req).await }).catch_unwind();
                        let call = tokio::time::timeout(timeout, call);
                        let outcome = if logged {
                            let (outcome, matched) = Captured::new(call).await;
                            route = matched;
                            outcome
                        } else {
                            call.await
                        };
                        match outcome {
                            Ok(Ok(Ok(response))) => response,
                            Ok(Ok(Err(never))) => match never {},
                            Ok(Err(panic)) => panic_response(panic),
                            Err(_) => timed_out(timeout),
                        }
                    }
                },
            };
            if needs_problem(&response) {
                response = into_problem(response, &uri).await;
            }
            if let Some(admitted) = admitted {
                // Also gives the concurrency permit back.
                admitted.finish(&mut response);
            }
            response.headers_mut().insert(CORRELATION_HEADER_NAME, echo);
            let status = response.status();
            if propagate {
                let span = tracing::Span::current();
                span.record("http.response.status_code", status.as_u16());
                if status.is_server_error() {
                    span.record("otel.status_code", "error");
                }
            }
            if status.is_server_error() {
                tracing::error!(%method, path = uri.path(), status = status.as_u16(), "request failed");
            }
            if let Some(log) = &access_log {
                log.write(&method, &response, started, peer, route.as_ref());
            }
            tracing::debug!(
                %method,
                path = uri.path(),
                status = status.as_u16(),
                latency_us = started.elapsed().as_micros() as u64,
                "request completed"
            );
            Ok(response)
        };
        // The request's future is boxed before it is wrapped: the wrappers
        // around it then move a pointer, not the whole state machine.
        let future: BoxFuture<Result<Response, Infallible>> = Box::pin(future);
        crate::correlation::scope(context, future.instrument(span))
    }
}

/// Applies `http.body_limit`: a declared length above it is refused at once;
/// a body without a known bound is read through [`Limited`] (413 from the
/// extractor when crossed). Bodies of known length within the limit pass
/// untouched (hyper enforces the declared length).
fn limit_body(req: Request, limit: usize) -> Result<Request, Problem> {
    use axum::body::HttpBody as _;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE).with_detail(
            "the request body is larger than the configured limit (http.body_limit)",
        ));
    }
    let bounded = req
        .body()
        .size_hint()
        .upper()
        .is_some_and(|upper| upper <= limit as u64);
    if bounded {
        Ok(req)
    } else {
        Ok(req.map(|body| Body::new(Limited::new(body, limit))))
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

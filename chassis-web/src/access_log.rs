//! The access log: one line per request (`http.access_log`).
//!
//! ```toml
//! [http.access_log]
//! enabled = true        # default false
//! probes = false        # default: health and metrics probes are not logged
//! exclude = ["/internal/ping"]  # more route templates not logged
//! ```
//!
//! Each line is an INFO event of target `chassis_web::access_log` with the
//! message `request` and the fields `method`, `route` (the matched route
//! template, never the raw path — paths may carry identifiers; `unmatched`
//! for requests no route took, such as 404s and the answers of the
//! security checks), `status`, `duration_us` (until the response head is
//! ready), `bytes` (the response body's length, when known) and `client`
//! (the peer address). It goes through `tracing` like every other line, so
//! it is written in the logging provider's format, and it carries the
//! request's `correlation_id` (and, with tracing on, `trace_id`) from the
//! log context. Filter it like any target: `logging.level =
//! "info,chassis_web::access_log=off"`.
//!
//! The console provider hands lines to a bounded queue: a request never
//! waits for stdout (see `logging-console`).

use std::cell::Cell;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::HttpBody as _;
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use chassis_core::config::InvalidValue;
use http::Method;
use serde::{Deserialize, Serialize};
use tower::Service;

/// The `http.access_log` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogConfig {
    /// Whether a line is written per request (off by default in the
    /// library; the production configurations of the examples and the
    /// template turn it on).
    pub enabled: bool,
    /// Whether the health probes (`/health/live`, `/health/ready`) and the
    /// metrics path are logged too (default: no — they are polled every
    /// few seconds and say nothing about the service's traffic).
    pub probes: bool,
    /// Route templates (`/orders/{id}`) whose requests are not logged.
    pub exclude: Vec<String>,
}

impl AccessLogConfig {
    /// Checks the values; the error names the key.
    pub(crate) fn validate(&self) -> Result<(), InvalidValue> {
        match self.exclude.iter().find(|route| !route.starts_with('/')) {
            Some(route) => Err(InvalidValue::new(
                "http.access_log.exclude",
                "route templates starting with `/`",
            )
            .found(format!("`{route}`"))),
            None => Ok(()),
        }
    }
}

/// What the edge needs to write the access log: which routes are left out.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    excluded: Vec<Arc<str>>,
    probes: bool,
}

impl AccessLog {
    /// The access log `config` asks for; `None` when it is off.
    pub(crate) fn new(config: &AccessLogConfig) -> Option<Self> {
        let mut log = Self {
            excluded: config
                .exclude
                .iter()
                .map(|r| Arc::from(r.as_str()))
                .collect(),
            probes: config.probes,
        };
        for probe in [crate::LIVE_PATH, crate::READY_PATH] {
            log.exclude_probe(probe);
        }
        config.enabled.then_some(log)
    }

    /// Leaves `path` out unless probes are logged.
    pub(crate) fn exclude_probe(&mut self, path: &str) {
        if !self.probes {
            self.excluded.push(Arc::from(path));
        }
    }

    /// Writes the line of a request answered with `response` (`route`: the
    /// template [`Captured`] caught), unless its route is excluded. Called
    /// inside the request's message context (which gives the line its
    /// correlation id).
    pub(crate) fn write(
        &self,
        method: &Method,
        response: &Response,
        started: Instant,
        client: Option<IpAddr>,
        route: Option<&MatchedPath>,
    ) {
        let route = route.map_or("unmatched", MatchedPath::as_str);
        if self.excluded.iter().any(|excluded| **excluded == *route) {
            return;
        }
        let mut text = ClientText::default();
        tracing::info!(
            method = method.as_str(),
            route,
            status = response.status().as_u16(),
            duration_us = started.elapsed().as_micros() as u64,
            bytes = response.body().size_hint().exact(),
            client = client.map(|ip| text.of(ip)),
            "request"
        );
    }
}

/// A client address as text, written without the formatting machinery for
/// IPv4 (its `Display` cost more than the rest of the line's fields).
struct ClientText {
    text: [u8; 45],
}

impl Default for ClientText {
    fn default() -> Self {
        Self { text: [0; 45] }
    }
}

impl ClientText {
    fn of(&mut self, ip: IpAddr) -> &str {
        let mut len = 0;
        match ip {
            IpAddr::V4(v4) => {
                for (i, mut octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.text[len] = b'.';
                        len += 1;
                    }
                    let digits = match octet {
                        100.. => 3,
                        10.. => 2,
                        _ => 1,
                    };
                    for at in (len..len + digits).rev() {
                        self.text[at] = b'0' + octet % 10;
                        octet /= 10;
                    }
                    len += digits;
                }
            }
            IpAddr::V6(v6) => {
                let mut cursor = std::io::Cursor::new(&mut self.text[..]);
                // 45 bytes hold the longest IPv6 text (with an IPv4 tail).
                let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{v6}"));
                len = cursor.position() as usize;
            }
        }
        std::str::from_utf8(&self.text[..len]).unwrap_or_default()
    }
}

pin_project_lite::pin_project! {
/// A future (the edge's call of the router) that catches the route template
/// [`ReportRoute`] reports while it is polled.
///
/// The report goes through a thread-local slot, emptied before and read
/// after every poll: the route layer runs inside one of these polls, on the
/// polling thread. A task-local scope around the request did the same at
/// about three times the cost (it swaps its value in and out on every poll
/// of every future inside it).
pub(crate) struct Captured<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
    }
}

impl<F: Future> Captured<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner, route: None }
    }
}

impl<F: Future> Future for Captured<F> {
    type Output = (F::Output, Option<MatchedPath>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Left over by a router called outside an edge, never ours.
        ROUTE.with(Cell::take);
        let polled = this.inner.poll(cx);
        if let Some(route) = ROUTE.with(Cell::take) {
            this.route.get_or_insert(route);
        }
        polled.map(|output| (output, this.route.take()))
    }
}

thread_local! {
    /// The matched route of the request being polled, reported by
    /// [`RouteLayer`] from inside the router (only there is it known) to
    /// the edge outside it (see [`Captured`]).
    static ROUTE: Cell<Option<MatchedPath>> = const { Cell::new(None) };
}

/// A route layer reporting the matched route template to the edge's
/// access log: one `Arc` clone per request, no extension, no allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteLayer;

impl<S> tower::Layer<S> for RouteLayer {
    type Service = ReportRoute<S>;

    fn layer(&self, inner: S) -> ReportRoute<S> {
        ReportRoute(inner)
    }
}

/// The service of [`RouteLayer`].
#[derive(Debug, Clone)]
pub(crate) struct ReportRoute<S>(S);

impl<S> Service<Request> for ReportRoute<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> S::Future {
        if let Some(route) = req.extensions().get::<MatchedPath>() {
            // The first route of a request wins (a handler may call a
            // router of its own).
            ROUTE.with(|slot| match slot.take() {
                Some(first) => slot.set(Some(first)),
                None => slot.set(Some(route.clone())),
            });
        }
        self.0.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn client_addresses_read_as_their_display() {
        let addresses = [
            IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 99, 100, 255)),
            IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6)),
            IpAddr::V6(Ipv4Addr::new(192, 168, 100, 200).to_ipv6_mapped()),
            IpAddr::V6(Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )),
        ];
        for ip in addresses {
            assert_eq!(ClientText::default().of(ip), ip.to_string());
        }
    }
}

//! Security defaults of the edge: authentication, rate and concurrency
//! limits, CORS and hardening headers, configured by `[security]`
//! ([`SecurityConfig`]).
//!
//! The checks are part of the one [`Edge`](crate::middleware::Edge) service
//! (not a layer of their own: that cost a boxed future and a clone of the
//! route per request), before routing, so they cover every path — unknown
//! ones too — and their refusals carry the correlation id. Per request, in
//! this order:
//! 1. CORS preflight (`OPTIONS` with `Origin`): answered here, 204 when the
//!    origin, method and headers are allowed, 403 problem otherwise;
//! 2. concurrency limit: 503 problem with `Retry-After` above
//!    `security.concurrency.max_in_flight`;
//! 3. authentication (paths outside `security.auth.allow`): an API key in
//!    `security.auth.api_key_header` or `Authorization: Bearer <jwt>`;
//!    401/403 problems with `WWW-Authenticate`; the caller becomes the
//!    [`Principal`] extension;
//! 4. rate limit per client — the API key or token subject when
//!    authenticated, else the peer's IP address (behind a proxy of
//!    `security.trusted_proxies`, the rightmost `X-Forwarded-For` address
//!    that is not a trusted proxy), an IPv6 peer by its /64
//!    network (requests with missing or
//!    invalid credentials count against it too, so guessing keys is
//!    limited): 429 problem with `Retry-After`;
//! 5. response headers: `X-Content-Type-Options: nosniff`,
//!    `X-Frame-Options: DENY`, `Cache-Control: no-store` when authenticated,
//!    CORS headers for allowed origins.
//!
//! A feature that is off costs nothing per request. Nothing is logged with a
//! credential in it: refusals log the reason only.

mod auth;
mod config;
#[cfg(feature = "jwks")]
mod fetch;
#[cfg(feature = "jwks")]
mod jwks;
#[cfg(feature = "jwt")]
mod jwt;
mod limit;
#[cfg(feature = "openapi")]
mod openapi;
mod proxy;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use chassis_core::config::{ConfigSource, InvalidValue};
use http::{HeaderValue, Method, StatusCode, header};

pub use auth::Principal;
pub use config::{
    AuthConfig, ConcurrencyConfig, CorsConfig, HeadersConfig, JwtConfig, RateLimitConfig,
    SecurityConfig,
};
#[cfg(feature = "openapi")]
pub(crate) use openapi::operations as openapi_operations;
#[cfg(feature = "openapi")]
pub use openapi::{API_KEY_SCHEME, BEARER_SCHEME, declare_in_openapi};

use auth::{Authenticator, Refusal};
use limit::{Client, RateLimiter};
use proxy::TrustedProxies;

use crate::problem::Problem;

/// Variables read instead of the process environment (`None`: the process').
pub(crate) type EnvVars<'a> = Option<&'a std::collections::BTreeMap<String, String>>;

/// The security configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A value is invalid or missing (authentication on without a
    /// credential, a bad CIDR, a key that cannot be read, ...): its key
    /// path, what was expected and, once [located](SecurityError::locate),
    /// the layer the value came from.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
}

impl SecurityError {
    /// The same error naming the layer its key's value came from in
    /// `source` (the host does this with the loaded configuration).
    ///
    /// ```
    /// use chassis_core::config::JsonSource;
    /// use chassis_web::security::{Security, SecurityConfig};
    ///
    /// let mut config = SecurityConfig::default();
    /// config.auth.enabled = false;
    /// config.trusted_proxies = vec!["10.0.0.0/40".into()];
    /// let source = JsonSource::new(serde_json::json!({
    ///     "security": { "trusted_proxies": ["10.0.0.0/40"] }
    /// }));
    /// let err = Security::build(&config).unwrap_err().locate(&source);
    /// assert!(err.to_string().starts_with("security.trusted_proxies: expected"));
    /// assert!(err.to_string().ends_with("(from override in code)"));
    /// ```
    pub fn locate(self, source: &impl ConfigSource) -> Self {
        match self {
            SecurityError::Invalid(value) => SecurityError::Invalid(source.locate(value)),
        }
    }

    /// The key path, expectation and layer.
    pub fn invalid_value(&self) -> &InvalidValue {
        match self {
            SecurityError::Invalid(value) => value,
        }
    }
}

struct Cors {
    any_origin: bool,
    origins: Vec<HeaderValue>,
    methods: Vec<Method>,
    allow_methods: HeaderValue,
    headers: Vec<String>,
    allow_headers: HeaderValue,
    max_age: HeaderValue,
}

/// `security.auth.allow`, split once: exact paths and `/prefix/*` prefixes.
pub(crate) struct AllowList {
    exact: Vec<String>,
    /// Without the trailing `/*`.
    prefixes: Vec<String>,
}

impl AllowList {
    pub(crate) fn new(allow: &[String]) -> Self {
        let (mut exact, mut prefixes) = (Vec::new(), Vec::new());
        for entry in allow {
            match entry.strip_suffix("/*") {
                Some(prefix) => prefixes.push(prefix.to_owned()),
                None => exact.push(entry.clone()),
            }
        }
        Self { exact, prefixes }
    }

    pub(crate) fn contains(&self, path: &str) -> bool {
        self.exact.iter().any(|e| e == path)
            || self.prefixes.iter().any(|prefix| {
                path.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }
}

/// `security.concurrency`: requests in flight, counted without a lock.
struct InFlight {
    max: usize,
    now: AtomicUsize,
}

/// The security checks of the edge; build them with [`Security::build`] and
/// give them to the edge with
/// [`Edge::security`](crate::middleware::Edge::security) (the host does both).
pub struct Security {
    auth: Option<Authenticator>,
    allow: AllowList,
    limiter: Option<RateLimiter>,
    proxies: TrustedProxies,
    in_flight: Option<InFlight>,
    cors: Option<Cors>,
    headers: bool,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("auth", &self.auth.is_some())
            .field("rate_limit", &self.limiter.is_some())
            .field("concurrency", &self.in_flight.as_ref().map(|i| i.max))
            .field("cors", &self.cors.is_some())
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

fn header_list(values: &[String], key: &str) -> Result<HeaderValue, InvalidValue> {
    HeaderValue::try_from(values.join(", ")).map_err(|_| {
        InvalidValue::new(
            format!("security.cors.{key}"),
            "names that fit in a header value",
        )
    })
}

fn build_cors(cors: &CorsConfig) -> Result<Option<Cors>, InvalidValue> {
    if cors.allowed_origins.is_empty() {
        return Ok(None);
    }
    let origins = cors
        .allowed_origins
        .iter()
        .filter(|o| *o != "*")
        .map(|o| {
            HeaderValue::try_from(o.trim_end_matches('/')).map_err(|_| {
                InvalidValue::new(
                    "security.cors.allowed_origins",
                    "origins such as `https://shop.example`, or `*`",
                )
                .found(format!("`{o}`"))
            })
        })
        .collect::<Result<_, _>>()?;
    let methods = cors
        .allowed_methods
        .iter()
        .map(|m| {
            Method::try_from(m.to_ascii_uppercase().as_str()).map_err(|_| {
                InvalidValue::new("security.cors.allowed_methods", "HTTP methods")
                    .found(format!("`{m}`"))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(Cors {
        any_origin: cors.allowed_origins.iter().any(|o| o == "*"),
        origins,
        methods,
        allow_methods: header_list(&cors.allowed_methods, "allowed_methods")?,
        headers: cors
            .allowed_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        allow_headers: header_list(&cors.allowed_headers, "allowed_headers")?,
        max_age: HeaderValue::from(cors.max_age.as_secs()),
    }))
}

/// What the checks decided about a request.
pub(crate) enum Verdict {
    /// Serve it.
    Admit(Admitted),
    /// Answer it with this (a preflight answer or a refusal, headers
    /// finished).
    Answer(Response),
}

/// The outcome of [`Security::check`].
enum Checked {
    Pass {
        permit: bool,
        authenticated: bool,
    },
    Answer {
        response: Response,
        authenticated: bool,
    },
}

/// A request the checks let through to the router: finishes its response
/// headers, and gives its concurrency permit back when dropped (also when
/// the response future is dropped unfinished).
pub(crate) struct Admitted {
    security: Arc<Security>,
    permit: bool,
    authenticated: bool,
    /// The request's `Origin`, kept only when CORS is configured.
    origin: Option<HeaderValue>,
}

impl Admitted {
    /// Adds the response headers (hardening, CORS).
    pub(crate) fn finish(&self, response: &mut Response) {
        self.security
            .finish_headers(response, self.origin.as_ref(), self.authenticated);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if self.permit
            && let Some(in_flight) = &self.security.in_flight
        {
            in_flight.now.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Security {
    /// Checks the configuration; fails with the key path of what is wrong
    /// and what was expected ([`SecurityError::locate`] adds the layer).
    ///
    /// With the `jwks` feature, the issuer's keys are fetched through the
    /// proxy the process environment names (`HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY`, `NO_PROXY`, or their lower-case forms), read here once.
    pub fn build(config: &SecurityConfig) -> Result<Self, SecurityError> {
        Self::build_in(config, None)
    }

    /// [`build`](Self::build), reading the proxy variables from `env`
    /// instead of the process environment when it is given (the host's
    /// [`env_vars`](crate::ServiceHostBuilder::env_vars)).
    pub(crate) fn build_in(
        config: &SecurityConfig,
        env: EnvVars<'_>,
    ) -> Result<Self, SecurityError> {
        let auth = if config.auth.enabled {
            Some(Authenticator::build(&config.auth, env)?)
        } else {
            None
        };
        if config.rate_limit.enabled {
            let limits = &config.rate_limit;
            for (key, value) in [
                ("per_second", limits.per_second as usize),
                ("burst", limits.burst as usize),
                ("max_clients", limits.max_clients),
            ] {
                if value == 0 {
                    return Err(InvalidValue::new(
                        format!("security.rate_limit.{key}"),
                        "an integer >= 1 (or security.rate_limit.enabled = false)",
                    )
                    .into());
                }
            }
        }
        let in_flight = if config.concurrency.enabled {
            if config.concurrency.max_in_flight == 0 {
                return Err(InvalidValue::new(
                    "security.concurrency.max_in_flight",
                    "an integer >= 1 (or security.concurrency.enabled = false)",
                )
                .into());
            }
            Some(InFlight {
                max: config.concurrency.max_in_flight,
                now: AtomicUsize::new(0),
            })
        } else {
            None
        };
        Ok(Self {
            auth,
            allow: AllowList::new(&config.auth.allow),
            limiter: config
                .rate_limit
                .enabled
                .then(|| RateLimiter::new(&config.rate_limit)),
            proxies: TrustedProxies::new(&config.trusted_proxies)?,
            in_flight,
            cors: build_cors(&config.cors)?,
            headers: config.headers.enabled,
        })
    }

    /// Whether any check or header is on (otherwise the edge skips them).
    pub(crate) fn is_active(&self) -> bool {
        self.auth.is_some()
            || self.limiter.is_some()
            || self.in_flight.is_some()
            || self.cors.is_some()
            || self.headers
    }

    /// Fetches the issuer's keys when bearer tokens are checked against a
    /// remote JWKS (at start-up; a failure is logged and the fetch tried
    /// again on demand).
    pub(crate) async fn prefetch_keys(&self) {
        #[cfg(feature = "jwks")]
        if let Some(remote) = self.auth.as_ref().and_then(|a| a.remote_keys()) {
            remote.refresh().await;
        }
    }

    /// Runs the checks on `req` from `peer`: admitted (the principal is then
    /// a request extension), or the answer.
    pub(crate) async fn admit(self: Arc<Self>, req: &mut Request, peer: Option<IpAddr>) -> Verdict {
        // A token naming a key not held yet waits for the issuer's keys
        // (rate bounded); every other request goes on at once.
        #[cfg(feature = "jwks")]
        if let Some(remote) = self.auth.as_ref().and_then(|a| a.wants_keys(req.headers()))
            && !self.allow.contains(req.uri().path())
        {
            remote.refresh().await;
        }
        let origin = match &self.cors {
            Some(_) => req.headers().get(header::ORIGIN).cloned(),
            None => None,
        };
        let peer = match peer {
            Some(peer) if !self.proxies.is_empty() => {
                Some(self.proxies.client(peer, req.headers()))
            }
            peer => peer,
        };
        match self.check(req, peer) {
            Checked::Pass {
                permit,
                authenticated,
            } => Verdict::Admit(Admitted {
                security: self,
                permit,
                authenticated,
                origin,
            }),
            Checked::Answer {
                mut response,
                authenticated,
            } => {
                self.finish_headers(&mut response, origin.as_ref(), authenticated);
                Verdict::Answer(response)
            }
        }
    }

    /// The checks. A refusal gives the permit back.
    fn check(&self, req: &mut Request, peer: Option<IpAddr>) -> Checked {
        if let Some(response) = self.preflight(req) {
            return Checked::Answer {
                response,
                authenticated: false,
            };
        }
        let mut permit = false;
        if let Some(in_flight) = &self.in_flight {
            if in_flight.now.fetch_add(1, Ordering::AcqRel) >= in_flight.max {
                in_flight.now.fetch_sub(1, Ordering::AcqRel);
                let response = retry_after(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many requests in flight",
                    "the service is at its concurrency limit (security.concurrency.max_in_flight)",
                    1,
                );
                return Checked::Answer {
                    response,
                    authenticated: false,
                };
            }
            permit = true;
        }
        let refuse = |response: Response, authenticated: bool| {
            if let (true, Some(in_flight)) = (permit, &self.in_flight) {
                in_flight.now.fetch_sub(1, Ordering::AcqRel);
            }
            Checked::Answer {
                response,
                authenticated,
            }
        };
        // Anonymous clients are keyed by their address; without one (a
        // server that does not record peers) they are not limited.
        let limited = |client: Option<Client<'_>>| {
            let wait = self
                .limiter
                .as_ref()
                .zip(client)
                .and_then(|(limiter, client)| limiter.acquire(client, Instant::now()).err())?;
            Some(retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "the client exceeded its request rate (security.rate_limit)",
                wait.as_secs_f64().ceil() as u64,
            ))
        };
        let mut principal = None;
        if let Some(auth) = &self.auth
            && !self.allow.contains(req.uri().path())
        {
            match auth.authenticate(req.headers()) {
                Ok(found) => principal = Some(found),
                Err(refusal) => {
                    // Failed attempts count against the address: guessing
                    // keys is rate limited too.
                    let response =
                        limited(peer.map(Client::peer)).unwrap_or_else(|| self.refused(refusal));
                    return refuse(response, false);
                }
            }
        }
        let authenticated = principal.is_some();
        let client = match &principal {
            Some((_, Some(key))) => Some(Client::ApiKey(*key)),
            Some((principal, None)) => Some(Client::Subject(&principal.id)),
            None => peer.map(Client::peer),
        };
        if let Some(response) = limited(client) {
            return refuse(response, authenticated);
        }
        if let Some((principal, _)) = principal {
            req.extensions_mut().insert(principal);
        }
        Checked::Pass {
            permit,
            authenticated,
        }
    }

    fn origin_allowed(&self, origin: &HeaderValue) -> Option<&Cors> {
        let cors = self.cors.as_ref()?;
        (cors.any_origin || cors.origins.iter().any(|o| o == origin)).then_some(cors)
    }

    fn preflight(&self, req: &Request) -> Option<Response> {
        if req.method() != Method::OPTIONS {
            return None;
        }
        let headers = req.headers();
        let origin = headers.get(header::ORIGIN)?;
        let requested = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let allowed = self.origin_allowed(origin).filter(|cors| {
            let method_ok = cors
                .methods
                .iter()
                .any(|m| m.as_str().as_bytes() == requested.as_bytes());
            let headers_ok = headers
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .all(|h| cors.headers.contains(&h));
            method_ok && headers_ok
        });
        let Some(cors) = allowed else {
            return Some(
                Problem::new(StatusCode::FORBIDDEN)
                    .with_title("CORS preflight refused")
                    .with_detail("the origin, method or headers are not allowed (security.cors)")
                    .into_response(),
            );
        };
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            cors.allow_methods.clone(),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            cors.allow_headers.clone(),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, cors.max_age.clone());
        h.insert(header::VARY, HeaderValue::from_static("origin"));
        Some(response)
    }

    fn refused(&self, refusal: Refusal) -> Response {
        let (status, detail, challenge) = match refusal {
            Refusal::Unauthenticated(detail) => {
                let auth = self.auth.as_ref();
                let mut challenge = String::new();
                if auth.is_some_and(|a| a.accepts_bearer()) {
                    challenge.push_str("Bearer realm=\"api\"");
                    if detail != "credentials are required" {
                        challenge.push_str(", error=\"invalid_token\"");
                    }
                    challenge.push_str(", ");
                }
                challenge.push_str(&format!(
                    "ApiKey realm=\"api\", header=\"{}\"",
                    auth.map(|a| a.api_key_header()).unwrap_or("x-api-key")
                ));
                (StatusCode::UNAUTHORIZED, detail, challenge)
            }
            Refusal::Forbidden => (
                StatusCode::FORBIDDEN,
                "the token does not grant the required scope",
                "Bearer realm=\"api\", error=\"insufficient_scope\"".to_owned(),
            ),
        };
        tracing::info!(status = status.as_u16(), reason = detail, "request refused");
        let mut response = Problem::new(status).with_detail(detail).into_response();
        if let Ok(value) = HeaderValue::try_from(challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    fn finish_headers(
        &self,
        response: &mut Response,
        origin: Option<&HeaderValue>,
        authenticated: bool,
    ) {
        let h = response.headers_mut();
        if self.headers {
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            if authenticated {
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
        }
        if let Some(origin) = origin
            && self.origin_allowed(origin).is_some()
        {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.append(header::VARY, HeaderValue::from_static("origin"));
        }
    }
}

fn retry_after(status: StatusCode, title: &str, detail: &str, seconds: u64) -> Response {
    let mut response = Problem::new(status)
        .with_title(title)
        .with_detail(detail)
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_exact_paths_and_prefixes() {
        let allow = AllowList::new(&["/health/live".into(), "/docs/*".into()]);
        assert!(allow.contains("/health/live"));
        assert!(!allow.contains("/health/live/x"));
        assert!(allow.contains("/docs"));
        assert!(allow.contains("/docs/index.html"));
        assert!(!allow.contains("/docsx"));
        assert!(!allow.contains("/orders"));
    }
}

//! Security defaults of the edge: authentication, rate and concurrency
//! limits, CORS and hardening headers, configured by `[security]`
//! ([`SecurityConfig`]).
//!
//! Per request, in this order:
//! 1. CORS preflight (`OPTIONS` with `Origin`): answered here, 204 when the
//!    origin, method and headers are allowed, 403 problem otherwise;
//! 2. concurrency limit: 503 problem with `Retry-After` above
//!    `security.concurrency.max_in_flight`;
//! 3. authentication (paths outside `security.auth.allow`): an API key in
//!    `security.auth.api_key_header` or `Authorization: Bearer <jwt>`;
//!    401/403 problems with `WWW-Authenticate`; the caller becomes the
//!    [`Principal`] extension;
//! 4. rate limit per client (principal, else peer address when the server
//!    records it as `ConnectInfo`): 429 problem
//!    with `Retry-After`;
//! 5. response headers: `X-Content-Type-Options: nosniff`,
//!    `X-Frame-Options: DENY`, `Cache-Control: no-store` when authenticated,
//!    CORS headers for allowed origins.
//!
//! Nothing is logged with a credential in it: refusals log the reason only.

mod auth;
mod config;
mod limit;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, FutureExt};
use http::{HeaderValue, Method, StatusCode, header};
use tokio::sync::Semaphore;
use tower::{Layer, Service};

pub use auth::Principal;
pub use config::{
    AuthConfig, ConcurrencyConfig, CorsConfig, HeadersConfig, JwtConfig, RateLimitConfig,
    SecurityConfig,
};

use auth::{Authenticator, Refusal};
use limit::RateLimiter;

use crate::problem::Problem;

/// The security configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Authentication is on and no credential is configured.
    #[error(
        "security.auth.enabled is true but no credential is configured: set security.auth.api_keys \
         (CHASSIS__SECURITY__AUTH__API_KEYS or CHASSIS__SECURITY__AUTH__API_KEYS_FILE) or \
         security.auth.jwt.algorithm with its key, or set security.auth.enabled = false"
    )]
    NoCredentials,
    /// A value is invalid; the message names the key path.
    #[error("{0}")]
    Invalid(String),
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

struct Inner {
    auth: Option<Authenticator>,
    allow: Vec<String>,
    limiter: Option<RateLimiter>,
    in_flight: Option<Arc<Semaphore>>,
    cors: Option<Cors>,
    headers: bool,
}

/// The security layer; build it with [`SecurityLayer::build`] and apply it
/// to a router with [`SecurityLayer::apply`] (the host does both).
#[derive(Clone)]
pub struct SecurityLayer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SecurityLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityLayer")
            .field("auth", &self.inner.auth.is_some())
            .field("allow", &self.inner.allow)
            .finish_non_exhaustive()
    }
}

fn header_list(values: &[String], key: &str) -> Result<HeaderValue, SecurityError> {
    HeaderValue::try_from(values.join(", ")).map_err(|_| {
        SecurityError::Invalid(format!("security.cors.{key}: not a valid header value"))
    })
}

impl SecurityLayer {
    /// Checks the configuration; fails with the key path of what is missing.
    pub fn build(config: &SecurityConfig) -> Result<Self, SecurityError> {
        let auth = if config.auth.enabled {
            Some(Authenticator::build(&config.auth)?)
        } else {
            None
        };
        let in_flight = if config.concurrency.enabled {
            if config.concurrency.max_in_flight == 0 {
                return Err(SecurityError::Invalid(
                    "security.concurrency.max_in_flight: expected at least 1".into(),
                ));
            }
            Some(Arc::new(Semaphore::new(config.concurrency.max_in_flight)))
        } else {
            None
        };
        let cors = &config.cors;
        let cors = if cors.allowed_origins.is_empty() {
            None
        } else {
            let origins = cors
                .allowed_origins
                .iter()
                .filter(|o| *o != "*")
                .map(|o| {
                    HeaderValue::try_from(o.trim_end_matches('/')).map_err(|_| {
                        SecurityError::Invalid(format!(
                            "security.cors.allowed_origins: `{o}` is not a valid origin"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            let methods = cors
                .allowed_methods
                .iter()
                .map(|m| {
                    Method::try_from(m.to_ascii_uppercase().as_str()).map_err(|_| {
                        SecurityError::Invalid(format!(
                            "security.cors.allowed_methods: `{m}` is not a method"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            Some(Cors {
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
            })
        };
        Ok(Self {
            inner: Arc::new(Inner {
                auth,
                allow: config.auth.allow.clone(),
                limiter: config
                    .rate_limit
                    .enabled
                    .then(|| RateLimiter::new(&config.rate_limit)),
                in_flight,
                cors,
                headers: config.headers.enabled,
            }),
        })
    }

    /// `router` with every route behind this layer (a fallback added later
    /// is not).
    pub fn apply(self, router: Router) -> Router {
        router.layer(self)
    }
}

impl<S> Layer<S> for SecurityLayer {
    type Service = Secured<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Secured {
            inner,
            security: self.inner.clone(),
        }
    }
}

/// A service behind [`SecurityLayer`].
#[derive(Clone)]
pub struct Secured<S> {
    inner: S,
    security: Arc<Inner>,
}

impl<S> std::fmt::Debug for Secured<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secured").finish_non_exhaustive()
    }
}

impl Inner {
    fn allowed(&self, path: &str) -> bool {
        self.allow.iter().any(|a| match a.strip_suffix("/*") {
            Some(prefix) => path == prefix || path.starts_with(&format!("{prefix}/")),
            None => a == path,
        })
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

    fn finish(&self, response: &mut Response, origin: Option<&HeaderValue>, authenticated: bool) {
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

impl<S> Service<Request> for Secured<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let security = self.security.clone();
        let origin = req.headers().get(header::ORIGIN).cloned();
        let done = |mut response: Response, authenticated: bool| {
            security.finish(&mut response, origin.as_ref(), authenticated);
            futures::future::ready(Ok(response)).boxed()
        };
        if let Some(response) = security.preflight(&req) {
            return done(response, false);
        }
        let permit = match &security.in_flight {
            None => None,
            Some(semaphore) => match semaphore.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let response = retry_after(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Too many requests in flight",
                        "the service is at its concurrency limit (security.concurrency.max_in_flight)",
                        1,
                    );
                    return done(response, false);
                }
            },
        };
        let mut client = None;
        if let Some(auth) = &security.auth
            && !security.allowed(req.uri().path())
        {
            match auth.authenticate(req.headers()) {
                Ok(principal) => {
                    client = Some(principal.id.clone());
                    req.extensions_mut().insert(principal);
                }
                Err(refusal) => return done(security.refused(refusal), false),
            }
        }
        let authenticated = client.is_some();
        // Unauthenticated requests are limited by peer address when the
        // server records it (`ConnectInfo`); without it they are not keyed.
        let key = client.or_else(|| {
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
        });
        if let (Some(limiter), Some(key)) = (&security.limiter, key)
            && let Err(wait) = limiter.acquire(&key, Instant::now())
        {
            let response = retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "the client exceeded its request rate (security.rate_limit)",
                wait.as_secs_f64().ceil() as u64,
            );
            return done(response, authenticated);
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        async move {
            let Ok(response) = inner.call(req).await;
            drop(permit);
            let mut response = response.into_response();
            security.finish(&mut response, origin.as_ref(), authenticated);
            Ok(response)
        }
        .boxed()
    }
}

//! Typed HTTP client plumbing for *service access crates* — the small crate a
//! service publishes so that others call it without hand-written HTTP.
//!
//! A service access crate (e.g. `order-service-client`) holds the service's
//! request and response types and a client struct whose methods wrap
//! [`HttpClient`]. This crate does the transport part once for all of them:
//!
//! - base URL, request timeout and connect timeout from a config section
//!   ([`ClientConfig`]);
//! - credentials for a service with authentication on ([`ClientAuth`]): an
//!   API key or a bearer token of the calling service, or the bearer token
//!   of the caller's own caller, forwarded ([`CallContext::bearer_token`]);
//!   never logged, redacted wherever the configuration is shown;
//! - the caller's correlation id and W3C trace context (`traceparent`,
//!   `tracestate`) sent with every request ([`CallContext`]);
//! - error responses in RFC 9457 `application/problem+json` decoded into
//!   [`Problem`] and returned as [`ClientError::Problem`]; timeouts,
//!   connection failures and undecodable bodies each their own variant.
//!
//! ```no_run
//! use chassis_client::{CallContext, ClientConfig, HttpClient};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Order { id: String }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let http = HttpClient::new(&ClientConfig::new("http://127.0.0.1:8081"))?;
//! let scoped = http.with_context(CallContext {
//!     correlation_id: Some("req-42".into()),
//!     ..CallContext::default()
//! });
//! match scoped.get::<Order>("/orders/0191e0d2-0000-7000-8000-000000000000", &[]).await {
//!     Ok(reply) => println!("order {}", reply.body.id),
//!     Err(e) if e.is_not_found() => println!("no such order"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use messaging_abstractions::MessageContext;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use chassis_core::{CORRELATION_ID_HEADER, PROBLEM_JSON, Secret};
/// W3C trace context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// W3C trace state header.
pub const TRACESTATE_HEADER: &str = "tracestate";

/// Configuration of a client, usually a section of the calling service's
/// config (`[clients.shipping]`).
///
/// ```toml
/// base_url = "http://shipping:8080"
/// timeout = "5s"
/// connect_timeout = "1s"
/// rate_limit_retries = 3
///
/// [clients.shipping.auth]
/// # Secrets from the environment or a mounted file, never from this file:
/// #   CHASSIS__CLIENTS__SHIPPING__AUTH__API_KEY_FILE=/run/secrets/shipping-key
/// forward_bearer = true
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Where the service answers, e.g. `http://127.0.0.1:8081`; a path
    /// prefix (`http://gateway/shipping/`) is kept.
    pub base_url: String,
    /// Longest time one request may take, body included.
    #[serde(with = "chassis_core::duration")]
    pub timeout: Duration,
    /// Longest time to establish a connection.
    #[serde(with = "chassis_core::duration")]
    pub connect_timeout: Duration,
    /// How many times a request refused with `429 Too Many Requests` is sent
    /// again after the `Retry-After` the service named (a refused request
    /// was not handled, so sending it again is safe for every method). Each
    /// wait is at most [`ClientConfig::timeout`]; 0 turns retrying off.
    pub rate_limit_retries: u32,
    /// `[...auth]`: the credentials sent with every request.
    pub auth: ClientAuth,
}

/// The credentials a client sends: the keys follow the called service's
/// `[security.auth]` (`api_key_header`, API keys, bearer tokens).
///
/// What is sent, in order: the caller's forwarded bearer token when
/// [`ClientAuth::forward_bearer`] is on and the [`CallContext`] carries one;
/// else [`ClientAuth::bearer_token`]; else [`ClientAuth::api_key`]; else
/// nothing. One credential per request: a service checks an API key before a
/// bearer token, so sending both would hide the forwarded caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientAuth {
    /// An API key of the called service (`…__AUTH__API_KEY_FILE` reads it
    /// from a mounted file). Empty: none.
    pub api_key: Secret,
    /// The header the called service reads API keys from.
    pub api_key_header: String,
    /// A bearer token (JWT) for the calling service itself, sent as
    /// `Authorization: Bearer …`. Empty: none.
    pub bearer_token: Secret,
    /// Send the bearer token of the request being served
    /// ([`CallContext::bearer_token`]) instead of this client's own
    /// credential: the called service sees the end user. Off by default, so
    /// a user's token reaches only the services configured to receive it.
    pub forward_bearer: bool,
}

impl Default for ClientAuth {
    fn default() -> Self {
        Self {
            api_key: Secret::default(),
            api_key_header: "x-api-key".into(),
            bearer_token: Secret::default(),
            forward_bearer: false,
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080".into(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            rate_limit_retries: 3,
            auth: ClientAuth::default(),
        }
    }
}

impl ClientConfig {
    /// Default timeouts for `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ..Self::default()
        }
    }
}

/// Why a client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// `base_url` is not an absolute http(s) URL.
    #[error("base_url `{url}`: expected an absolute http:// or https:// URL ({reason})")]
    InvalidBaseUrl {
        /// The configured value.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A timeout of zero would fail every request.
    #[error("{key}: expected a duration greater than zero")]
    ZeroTimeout {
        /// Which setting (`timeout` or `connect_timeout`).
        key: &'static str,
    },
    /// A credential that cannot be sent as a header.
    #[error("auth.{key}: {reason}")]
    InvalidCredential {
        /// Which setting (`api_key_header`, `api_key` or `bearer_token`).
        key: &'static str,
        /// What is wrong with it (never the value).
        reason: &'static str,
    },
    /// The HTTP stack could not be set up.
    #[error("could not build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// The caller's context, sent along with every request so that logs and
/// traces of both services join up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    /// Correlation id of the work that makes this call.
    pub correlation_id: Option<String>,
    /// W3C `traceparent` of the caller's current span.
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    pub tracestate: Option<String>,
    /// The bearer token the caller presented (`Principal::bearer_token` of
    /// chassis-web), sent on only by clients with
    /// [`ClientAuth::forward_bearer`] on.
    pub bearer_token: Option<Secret>,
}

impl CallContext {
    /// The context of the request or message being handled on this task
    /// (correlation id, trace), from [`MessageContext::current`].
    pub fn current() -> Self {
        MessageContext::with_current(|context| Self::from(context)).unwrap_or_default()
    }

    /// This context carrying the caller's bearer token, for clients that
    /// forward it. In an HTTP handler the token is the `Principal`'s
    /// (chassis-web), e.g. `principal.bearer_token.clone()`:
    ///
    /// ```
    /// use chassis_client::{CallContext, Secret};
    /// let token = Some(Secret::new("eyJhbGciOi..."));
    /// let context = CallContext::current().with_bearer_token(token);
    /// assert!(context.bearer_token.is_some());
    /// assert_eq!(format!("{context:?}").contains("eyJ"), false);
    /// ```
    pub fn with_bearer_token(mut self, token: Option<Secret>) -> Self {
        self.bearer_token = token;
        self
    }
}

impl From<&MessageContext> for CallContext {
    /// A message handler calling another service keeps the message's
    /// correlation id and trace.
    fn from(context: &MessageContext) -> Self {
        Self {
            correlation_id: context.correlation_id.clone(),
            traceparent: context.traceparent.clone(),
            tracestate: context.tracestate.clone(),
            bearer_token: None,
        }
    }
}

/// RFC 9457 problem details, as every chassis service answers errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// URI identifying the problem type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    /// Short summary of the problem type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// HTTP status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Explanation specific to this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// URI of this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members (field errors, correlation id, ...).
    #[serde(flatten)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// Whether the problem mentions `field` (in `detail` or in any extension
    /// member), e.g. `items[2].quantity` of a validation problem.
    pub fn mentions(&self, field: &str) -> bool {
        self.detail.as_deref().is_some_and(|d| d.contains(field))
            || self
                .extensions
                .values()
                .any(|v| v.to_string().contains(field))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title.as_deref().unwrap_or("problem"))?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

/// Why a call failed. Every variant names the request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with problem details.
    #[error("{method} {url} answered {status}: {problem}")]
    Problem {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// Response status.
        status: StatusCode,
        /// The decoded problem.
        problem: Box<Problem>,
    },
    /// The service answered with an error status but no problem details.
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// Response status.
        status: StatusCode,
        /// The start of the body, for diagnosis.
        body: String,
    },
    /// No complete answer within the configured timeout.
    #[error("{method} {url} timed out after {timeout:?}")]
    Timeout {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The service could not be reached or the connection broke.
    #[error("{method} {url} failed: {source}")]
    Transport {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// The service refused the credentials: 401 (none, or not valid) or 403
    /// (valid, without the permission needed). A configuration matter of the
    /// caller, not of the request.
    #[error("{method} {url} answered {status}: {}{}", .problem.as_ref().map_or(String::new(), |p| p.to_string()), .challenge.as_ref().map_or(String::new(), |c| format!(" (WWW-Authenticate: {c})")))]
    Unauthorized {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// 401 or 403.
        status: StatusCode,
        /// The `WWW-Authenticate` challenge: which credentials the service
        /// accepts.
        challenge: Option<String>,
        /// The decoded problem, when the service sent one.
        problem: Option<Box<Problem>>,
    },
    /// A success response whose body is not the expected type.
    #[error("{method} {url} answered {status} with a body that is not the expected JSON: {source}")]
    Decode {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// Response status.
        status: StatusCode,
        /// Why decoding failed.
        #[source]
        source: serde_json::Error,
    },
    /// The request body could not be encoded.
    #[error("could not encode the body of {method} {url}: {source}")]
    Encode {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// Why encoding failed.
        #[source]
        source: serde_json::Error,
    },
    /// A path that does not make a valid URL with the base URL.
    #[error("`{path}` is not a valid path below `{base}`")]
    InvalidPath {
        /// The base URL.
        base: String,
        /// The path.
        path: String,
    },
}

impl ClientError {
    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Problem { status, .. }
            | Self::Status { status, .. }
            | Self::Unauthorized { status, .. }
            | Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem details, when the service sent them.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Problem { problem, .. } => Some(problem),
            Self::Unauthorized { problem, .. } => problem.as_deref(),
            _ => None,
        }
    }

    /// The service answered 401: no credentials, or not valid ones.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(StatusCode::UNAUTHORIZED)
    }

    /// The service answered 403: valid credentials without the permission.
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(StatusCode::FORBIDDEN)
    }

    /// The service answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// The service answered 409 (the resource's state forbids the change).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(StatusCode::CONFLICT)
    }

    /// The service answered 422 (invalid input).
    pub fn is_validation(&self) -> bool {
        self.status() == Some(StatusCode::UNPROCESSABLE_ENTITY)
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    /// Response status (2xx).
    pub status: StatusCode,
    /// The `Location` header, if any (set on 201 Created).
    pub location: Option<String>,
    /// The decoded body.
    pub body: T,
}

/// The transport shared by service access crates: cheap to clone, one
/// connection pool per [`HttpClient::new`].
#[derive(Debug, Clone)]
pub struct HttpClient {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
    rate_limit_retries: u32,
    credentials: Credentials,
    context: CallContext,
}

/// [`ClientAuth`], checked once and ready to send.
#[derive(Clone)]
struct Credentials {
    /// The client's own credential: a header and its (sensitive) value.
    own: Option<(HeaderName, HeaderValue)>,
    forward_bearer: bool,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("own", &self.own.as_ref().map(|(name, _)| name))
            .field("forward_bearer", &self.forward_bearer)
            .finish()
    }
}

impl Credentials {
    fn new(auth: &ClientAuth) -> Result<Self, ClientBuildError> {
        let invalid = |key, reason| ClientBuildError::InvalidCredential { key, reason };
        let own = if !auth.bearer_token.is_empty() {
            Some((
                AUTHORIZATION,
                bearer_value(&auth.bearer_token).ok_or(invalid(
                    "bearer_token",
                    "not a valid header value (control characters?)",
                ))?,
            ))
        } else if !auth.api_key.is_empty() {
            let name = HeaderName::try_from(auth.api_key_header.as_str())
                .map_err(|_| invalid("api_key_header", "not a valid header name"))?;
            let mut value = HeaderValue::from_str(auth.api_key.expose().trim()).map_err(|_| {
                invalid("api_key", "not a valid header value (control characters?)")
            })?;
            value.set_sensitive(true);
            Some((name, value))
        } else {
            None
        };
        Ok(Self {
            own,
            forward_bearer: auth.forward_bearer,
        })
    }
}

/// `Bearer <token>`, marked sensitive (kept out of HTTP/2 header tables and
/// of reqwest's debug output).
fn bearer_value(token: &Secret) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose().trim())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

impl HttpClient {
    /// A client for `config.base_url`.
    pub fn new(config: &ClientConfig) -> Result<Self, ClientBuildError> {
        let invalid = |reason: String| ClientBuildError::InvalidBaseUrl {
            url: config.base_url.clone(),
            reason,
        };
        let mut base = Url::parse(&config.base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme `{}` is not supported",
                base.scheme()
            )));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("no host".into()));
        }
        // Joining `orders` onto `http://gw/shop` would drop `shop`: keep the
        // prefix by making it a directory.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if config.timeout.is_zero() {
            return Err(ClientBuildError::ZeroTimeout { key: "timeout" });
        }
        if config.connect_timeout.is_zero() {
            return Err(ClientBuildError::ZeroTimeout {
                key: "connect_timeout",
            });
        }
        let credentials = Credentials::new(&config.auth)?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("chassis-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientBuildError::Http)?;
        Ok(Self {
            http,
            base,
            timeout: config.timeout,
            rate_limit_retries: config.rate_limit_retries,
            credentials,
            context: CallContext::default(),
        })
    }

    /// The same client (same connection pool) sending `context` with every
    /// request.
    pub fn with_context(&self, context: CallContext) -> Self {
        Self {
            context,
            ..self.clone()
        }
    }

    /// The context sent with every request.
    pub fn context(&self) -> &CallContext {
        &self.context
    }

    /// The base URL (always ending in `/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET path?query`, decoding a JSON body.
    pub async fn get<R: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Reply<R>, ClientError> {
        self.call(Method::GET, path, query, None::<&()>).await
    }

    /// `POST path` with a JSON body, decoding a JSON answer.
    pub async fn post<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Reply<R>, ClientError> {
        self.call(Method::POST, path, &[], Some(body)).await
    }

    /// `POST path` without a body (an action such as `/send`).
    pub async fn post_empty<R: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Reply<R>, ClientError> {
        self.call(Method::POST, path, &[], None::<&()>).await
    }

    /// `PUT path` with a JSON body, decoding a JSON answer.
    pub async fn put<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Reply<R>, ClientError> {
        self.call(Method::PUT, path, &[], Some(body)).await
    }

    /// Sends one request and maps the answer: 2xx → decoded body; error
    /// status → [`ClientError::Problem`] or [`ClientError::Status`].
    pub async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<Reply<R>, ClientError> {
        let mut url =
            self.base
                .join(path.trim_start_matches('/'))
                .map_err(|_| ClientError::InvalidPath {
                    base: self.base.to_string(),
                    path: path.to_owned(),
                })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let url_text = url.to_string();
        let body =
            body.map(serde_json::to_vec)
                .transpose()
                .map_err(|source| ClientError::Encode {
                    method: method.clone(),
                    url: url_text.clone(),
                    source,
                })?;
        let transport = |source: reqwest::Error| {
            if source.is_timeout() {
                ClientError::Timeout {
                    method: method.clone(),
                    url: url_text.clone(),
                    timeout: self.timeout,
                }
            } else {
                ClientError::Transport {
                    method: method.clone(),
                    url: url_text.clone(),
                    source,
                }
            }
        };
        let mut retries_left = self.rate_limit_retries;
        let response = loop {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .headers(self.context_headers())
                .header(ACCEPT, "application/json, application/problem+json");
            if let Some(bytes) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(bytes.clone());
            }
            let response = request.send().await.map_err(transport)?;
            match rate_limit_wait(&response, self.timeout) {
                Some(wait) if retries_left > 0 => {
                    retries_left -= 1;
                    tokio::time::sleep(wait).await;
                }
                _ => break response,
            }
        };
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let bytes = response.bytes().await.unwrap_or_default();
            return Err(ClientError::Unauthorized {
                method,
                url: url_text,
                status,
                challenge,
                problem: serde_json::from_slice::<Problem>(&bytes).ok().map(Box::new),
            });
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(error_from(method, url_text, status, &bytes));
        }
        // An empty success body decodes as JSON `null` (for `()` replies).
        let body = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes
        };
        let body = serde_json::from_slice(body).map_err(|source| ClientError::Decode {
            method,
            url: url_text,
            status,
            source,
        })?;
        Ok(Reply {
            status,
            location,
            body,
        })
    }

    fn context_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let pairs = [
            (CORRELATION_ID_HEADER, &self.context.correlation_id),
            (TRACEPARENT_HEADER, &self.context.traceparent),
            (TRACESTATE_HEADER, &self.context.tracestate),
        ];
        for (name, value) in pairs {
            // A value that is not a valid header (control characters) is
            // dropped rather than failing the business call.
            if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, value);
            }
        }
        let forwarded = self
            .context
            .bearer_token
            .as_ref()
            .filter(|_| self.credentials.forward_bearer)
            .and_then(bearer_value);
        if let Some(value) = forwarded {
            headers.insert(AUTHORIZATION, value);
        } else if let Some((name, value)) = &self.credentials.own {
            headers.insert(name.clone(), value.clone());
        }
        headers
    }
}

/// The body of a reply, `None` on 404: for `GET /things/{id}` lookups.
pub fn found<T>(result: Result<Reply<T>, ClientError>) -> Result<Option<T>, ClientError> {
    match result {
        Ok(reply) => Ok(Some(reply.body)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Longest part of a non-problem error body kept in [`ClientError::Status`].
const MAX_ERROR_BODY: usize = 512;

/// For a `429 Too Many Requests` answer, how long to wait before sending the
/// request again: the `Retry-After` seconds (1 s when absent or given as a
/// date), `None` when it is longer than `limit` (waiting would outlast the
/// caller's own timeout) or the answer is not a 429.
fn rate_limit_wait(response: &reqwest::Response, limit: Duration) -> Option<Duration> {
    if response.status() != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs);
    (wait <= limit).then_some(wait)
}

fn error_from(method: Method, url: String, status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<Problem>(body) {
        Ok(problem) if problem.title.is_some() || problem.status.is_some() => {
            ClientError::Problem {
                method,
                url,
                status,
                problem: Box::new(problem),
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let body = match text.char_indices().nth(MAX_ERROR_BODY) {
                Some((end, _)) => format!("{}…", &text[..end]),
                None => text.into_owned(),
            };
            ClientError::Status {
                method,
                url,
                status,
                body,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_checked_and_keeps_its_prefix() {
        let c = HttpClient::new(&ClientConfig::new("http://gw:8080/shop")).unwrap();
        assert_eq!(c.base_url().as_str(), "http://gw:8080/shop/");
        assert_eq!(
            c.base_url().join("orders").unwrap().as_str(),
            "http://gw:8080/shop/orders"
        );
        for bad in ["not a url", "ftp://host/", "http://"] {
            let err = HttpClient::new(&ClientConfig::new(bad)).unwrap_err();
            assert!(
                matches!(err, ClientBuildError::InvalidBaseUrl { .. }),
                "{bad}: {err}"
            );
        }
        let mut zero = ClientConfig::new("http://h");
        zero.timeout = Duration::ZERO;
        assert_eq!(
            HttpClient::new(&zero).unwrap_err().to_string(),
            "timeout: expected a duration greater than zero"
        );
    }

    #[test]
    fn config_reads_durations_as_text() {
        let c: ClientConfig =
            serde_json::from_str(r#"{"base_url":"http://s:1","timeout":"250ms"}"#).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(250));
        assert_eq!(c.connect_timeout, ClientConfig::default().connect_timeout);
    }

    #[test]
    fn problem_bodies_become_typed_errors() {
        let body = br#"{"type":"about:blank","title":"Unprocessable Entity","status":422,
            "detail":"items[2].quantity: must be between 1 and 10000",
            "errors":[{"field":"items[2].quantity"}]}"#;
        let err = error_from(
            Method::POST,
            "http://s/orders".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            body,
        );
        assert!(err.is_validation());
        let problem = err.problem().unwrap();
        assert!(problem.mentions("items[2].quantity"));
        assert!(problem.extensions.contains_key("errors"));
        assert!(
            err.to_string()
                .starts_with("POST http://s/orders answered 422")
        );

        let long = "x".repeat(2000);
        let err = error_from(
            Method::GET,
            "http://s/".into(),
            StatusCode::BAD_GATEWAY,
            long.as_bytes(),
        );
        match err {
            ClientError::Status { body, .. } => assert_eq!(body.chars().count(), 513),
            other => panic!("expected Status, got {other:?}"),
        }
    }

    #[test]
    fn message_context_carries_over() {
        let m = MessageContext {
            correlation_id: Some("c".into()),
            causation_id: Some("m".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: None,
        };
        let c = CallContext::from(&m);
        assert_eq!(c.correlation_id.as_deref(), Some("c"));
        assert_eq!(c.traceparent, m.traceparent);
    }
}

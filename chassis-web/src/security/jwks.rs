//! Bearer-token keys fetched from the issuer over HTTP: a JWKS document at
//! `security.auth.jwt.jwks_url`, or found by OpenID Connect discovery
//! (`<issuer>/.well-known/openid-configuration` → `jwks_uri`).
//!
//! The keys are held in memory and fetched again
//! - when a token names a key id (`kid`) that is not held: the issuer has
//!   rotated its keys;
//! - when they are older than `jwks_max_age`: a withdrawn key stops working;
//!
//! but never more often than once per `jwks_refresh_min_interval`, however
//! many requests ask (one fetch at a time; the others wait for it or, inside
//! the interval, are answered with the keys held): tokens with made-up key
//! ids cannot turn the service into a load generator against the issuer.
//! A failed fetch keeps the keys held and is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;

use super::SecurityError;
use super::config::JwtConfig;

/// Where the key set is.
#[derive(Debug)]
enum Source {
    /// `jwks_url`.
    Url(String),
    /// `discovery = true`: the issuer's OpenID Connect metadata names it.
    Discovery { issuer: String },
}

/// When the keys were last fetched.
#[derive(Default)]
struct Fetched {
    /// The last attempt, successful or not (bounds the rate).
    attempt: Option<Instant>,
    /// The last success (bounds the age).
    success: Option<Instant>,
    /// The `jwks_uri` discovery found (discovered once).
    jwks_uri: Option<String>,
}

/// The keys of a remote JWKS by key id, and how to fetch them again.
pub(crate) struct RemoteKeys {
    source: Source,
    http: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, DecodingKey>>>,
    fetched: Mutex<Fetched>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    min_interval: Duration,
    max_age: Duration,
}

/// Why the keys could not be fetched (logged; the keys held stay).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("GET {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url}: {what}")]
    Document { url: String, what: String },
}

impl RemoteKeys {
    /// Checks the settings; fetches nothing yet.
    pub(crate) fn new(config: &JwtConfig) -> Result<Option<Self>, SecurityError> {
        let invalid = |what: String| SecurityError::Invalid(format!("security.auth.jwt.{what}"));
        let source = match (config.jwks_url.trim(), config.discovery) {
            ("", false) => return Ok(None),
            ("", true) => {
                if config.issuer.trim().is_empty() {
                    return Err(invalid(
                        "discovery: OpenID Connect discovery needs security.auth.jwt.issuer".into(),
                    ));
                }
                check_url("issuer", &config.issuer)?;
                Source::Discovery {
                    issuer: config.issuer.trim().to_owned(),
                }
            }
            (url, false) => {
                check_url("jwks_url", url)?;
                Source::Url(url.to_owned())
            }
            (_, true) => {
                return Err(invalid(
                    "jwks_url: set either jwks_url or discovery = true, not both".into(),
                ));
            }
        };
        if config.jwks_refresh_min_interval.is_zero() {
            return Err(invalid(
                "jwks_refresh_min_interval: expected a duration greater than zero".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(config.jwks_timeout)
            .connect_timeout(config.jwks_timeout)
            .user_agent(concat!("chassis-web/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(format!("jwks_url: cannot build the HTTP client: {e}")))?;
        Ok(Some(Self {
            source,
            http,
            keys: RwLock::default(),
            fetched: Mutex::default(),
            fetching: tokio::sync::Mutex::new(()),
            min_interval: config.jwks_refresh_min_interval,
            max_age: config.jwks_max_age,
        }))
    }

    /// The keys held now.
    pub(crate) fn keys(&self) -> Arc<HashMap<String, DecodingKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether a token naming `kid` should wait for a fetch first: the key
    /// is not held, or the keys are too old — and the rate bound allows one.
    pub(crate) fn wants_refresh(&self, kid: Option<&str>, now: Instant) -> bool {
        let fetched = self.fetched.lock().unwrap_or_else(|e| e.into_inner());
        if fetched
            .attempt
            .is_some_and(|at| now.saturating_duration_since(at) < self.min_interval)
        {
            return false;
        }
        let unknown = kid.is_none_or(|kid| !self.keys().contains_key(kid));
        let stale = fetched
            .success
            .is_none_or(|at| now.saturating_duration_since(at) >= self.max_age);
        unknown || stale
    }

    /// Fetches the keys unless another fetch ran within the minimum interval
    /// (callers that queued behind a fetch get its result).
    pub(crate) async fn refresh(&self) {
        let _one_at_a_time = self.fetching.lock().await;
        {
            let mut fetched = self.fetched.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if fetched
                .attempt
                .is_some_and(|at| now.saturating_duration_since(at) < self.min_interval)
            {
                return;
            }
            fetched.attempt = Some(now);
        }
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "fetched the token issuer's keys (JWKS)");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                self.fetched
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .success = Some(Instant::now());
            }
            Err(error) => {
                tracing::warn!(%error, "could not fetch the token issuer's keys (JWKS); keeping the keys held");
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, FetchError> {
        let url = match &self.source {
            Source::Url(url) => url.clone(),
            Source::Discovery { issuer } => {
                let known = self
                    .fetched
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .jwks_uri
                    .clone();
                match known {
                    Some(uri) => uri,
                    None => {
                        let uri = self.discover(issuer).await?;
                        self.fetched
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .jwks_uri = Some(uri.clone());
                        uri
                    }
                }
            }
        };
        let set: JwkSet = self.get_json(&url).await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            // Encryption keys are not for checking signatures.
            if matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) {
                continue;
            }
            if let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) {
                keys.insert(kid.clone(), key);
            }
        }
        if keys.is_empty() {
            return Err(FetchError::Document {
                url,
                what: "the JWKS holds no usable signing key with a `kid`".into(),
            });
        }
        Ok(keys)
    }

    /// The `jwks_uri` of the issuer's OpenID Connect metadata, whose
    /// `issuer` must be the configured one (OpenID Connect Discovery §4.3).
    async fn discover(&self, issuer: &str) -> Result<String, FetchError> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let metadata: Metadata = self.get_json(&url).await?;
        if metadata.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(FetchError::Document {
                url,
                what: format!(
                    "names issuer `{}`, not the configured `{issuer}`",
                    metadata.issuer
                ),
            });
        }
        Ok(metadata.jwks_uri)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let http = |source| FetchError::Http {
            url: url.to_owned(),
            source,
        };
        let response = self.http.get(url).send().await.map_err(http)?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: response.status(),
            });
        }
        let bytes = response.bytes().await.map_err(http)?;
        serde_json::from_slice(&bytes).map_err(|e| FetchError::Document {
            url: url.to_owned(),
            what: format!("not the expected JSON: {e}"),
        })
    }
}

/// An absolute `http://` URL; `https://` needs TLS, which chassis-web does
/// not compile in (docs/security.md says why and what to do).
fn check_url(key: &str, url: &str) -> Result<(), SecurityError> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| {
        SecurityError::Invalid(format!(
            "security.auth.jwt.{key}: `{url}` is not an absolute URL ({e})"
        ))
    })?;
    match parsed.scheme() {
        "http" => Ok(()),
        "https" => Err(SecurityError::Invalid(format!(
            "security.auth.jwt.{key}: `{url}` needs TLS, which this build does not include; \
             fetch the keys over http inside the cluster (a sidecar or the issuer's internal \
             address), or mount them with security.auth.jwt.jwks_file (docs/security.md)"
        ))),
        other => Err(SecurityError::Invalid(format!(
            "security.auth.jwt.{key}: `{url}`: expected http://, found scheme `{other}`"
        ))),
    }
}

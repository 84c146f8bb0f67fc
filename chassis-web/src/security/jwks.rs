//! Bearer-token keys fetched from the issuer over http or https: a JWKS
//! document at `security.auth.jwt.jwks_url`, or found by OpenID Connect
//! discovery (`<issuer>/.well-known/openid-configuration` → `jwks_uri`).
//! https uses the system's root certificates plus
//! `security.auth.jwt.jwks_ca_file` ([`super::fetch`]).
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

use chassis_core::config::InvalidValue;

use super::config::JwtConfig;
use super::fetch::{Fetcher, GetError, Target};

/// Where the key set is.
#[derive(Debug)]
enum Source {
    /// `jwks_url`.
    Url(Target),
    /// `discovery = true`: the issuer's OpenID Connect metadata names it.
    Discovery { issuer: String, metadata: Target },
}

/// When the keys were last fetched.
#[derive(Default)]
struct Fetched {
    /// The last attempt, successful or not (bounds the rate).
    attempt: Option<Instant>,
    /// The last success (bounds the age).
    success: Option<Instant>,
    /// The `jwks_uri` discovery found (discovered once).
    jwks_uri: Option<Target>,
}

/// The keys of a remote JWKS by key id, and how to fetch them again.
pub(crate) struct RemoteKeys {
    source: Source,
    http: Fetcher,
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
    Get {
        url: String,
        #[source]
        source: GetError,
    },
    #[error("{url}: {what}")]
    Document { url: String, what: String },
}

impl RemoteKeys {
    /// Checks the settings and reads the trusted certificates; fetches
    /// nothing yet.
    /// `env`: where the proxy variables are read (`None`: the process').
    pub(crate) fn new(
        config: &JwtConfig,
        env: super::EnvVars<'_>,
    ) -> Result<Option<Self>, InvalidValue> {
        let (source, key) = match (config.jwks_url.trim(), config.discovery) {
            ("", false) => return Ok(None),
            ("", true) => {
                if config.issuer.trim().is_empty() {
                    return Err(invalid(
                        "issuer",
                        "the issuer's URL: discovery = true reads \
                         <issuer>/.well-known/openid-configuration",
                    )
                    .found("nothing"));
                }
                let issuer = config.issuer.trim().trim_end_matches('/').to_owned();
                check_url("issuer", &issuer)?;
                let metadata = check_url(
                    "issuer",
                    &format!("{issuer}/.well-known/openid-configuration"),
                )?;
                (Source::Discovery { issuer, metadata }, "issuer")
            }
            (url, false) => (Source::Url(check_url("jwks_url", url)?), "jwks_url"),
            (_, true) => {
                return Err(invalid(
                    "jwks_url",
                    "no jwks_url when discovery = true (set one of them)",
                ));
            }
        };
        if config.jwks_refresh_min_interval.is_zero() {
            return Err(invalid("jwks_refresh_min_interval", "a duration > 0"));
        }
        if config.jwks_timeout.is_zero() {
            return Err(invalid("jwks_timeout", "a duration > 0"));
        }
        let https = match &source {
            Source::Url(target)
            | Source::Discovery {
                metadata: target, ..
            } => target.is_https(),
        };
        let key = format!("security.auth.jwt.{key}");
        let http = Fetcher::new(
            config.jwks_ca_file.as_deref(),
            https.then_some(key.as_str()),
            config.jwks_timeout,
            super::fetch::proxy_matcher(env),
        )?;
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
        let target = match &self.source {
            Source::Url(target) => target.clone(),
            Source::Discovery { issuer, metadata } => {
                let known = self
                    .fetched
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .jwks_uri
                    .clone();
                match known {
                    Some(target) => target,
                    None => {
                        let target = self.discover(issuer, metadata).await?;
                        self.fetched
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .jwks_uri = Some(target.clone());
                        target
                    }
                }
            }
        };
        let url = target.as_str().to_owned();
        let set: JwkSet = self.get_json(&target).await?;
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
    async fn discover(&self, issuer: &str, metadata: &Target) -> Result<Target, FetchError> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: String,
        }
        let found: Metadata = self.get_json(metadata).await?;
        let document = |what: String| FetchError::Document {
            url: metadata.as_str().to_owned(),
            what,
        };
        if found.issuer.trim_end_matches('/') != issuer {
            return Err(document(format!(
                "names issuer `{}`, not the configured `{issuer}`",
                found.issuer
            )));
        }
        Target::parse(&found.jwks_uri).map_err(|e| document(format!("jwks_uri: {e}")))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        target: &Target,
    ) -> Result<T, FetchError> {
        let url = target.as_str();
        let bytes = self
            .http
            .get(target)
            .await
            .map_err(|source| FetchError::Get {
                url: url.to_owned(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|e| FetchError::Document {
            url: url.to_owned(),
            what: format!("not the expected JSON: {e}"),
        })
    }
}

/// An error of `security.auth.jwt.<key>` (the host adds the layer).
fn invalid(key: &str, expected: &str) -> InvalidValue {
    InvalidValue::new(format!("security.auth.jwt.{key}"), expected)
}

/// An absolute `http://` or `https://` URL.
fn check_url(key: &str, url: &str) -> Result<Target, InvalidValue> {
    Target::parse(url)
        .map_err(|found| invalid(key, "an absolute http:// or https:// URL").found(found))
}

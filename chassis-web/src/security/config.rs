//! The `[security]` configuration section.

use std::path::PathBuf;
use std::time::Duration;

use chassis_core::Secret;
use serde::{Deserialize, Deserializer, Serialize};

/// The `security` section: authentication, limits, CORS and headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// `[security.auth]`.
    pub auth: AuthConfig,
    /// `[security.rate_limit]`.
    pub rate_limit: RateLimitConfig,
    /// `[security.concurrency]`.
    pub concurrency: ConcurrencyConfig,
    /// `[security.cors]`.
    pub cors: CorsConfig,
    /// `[security.headers]`.
    pub headers: HeadersConfig,
    /// Proxies (IP addresses or CIDR blocks, `10.0.0.0/8`) whose
    /// `X-Forwarded-For` names the client: the per-client rate limit of
    /// anonymous requests then counts the rightmost address in it that is not
    /// one of them. Empty (the default): the peer address is the client and
    /// the header is ignored, since anyone can send it.
    pub trusted_proxies: Vec<String>,
}

/// `[security.auth]`: who may call the service's routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// On by default: every route outside [`AuthConfig::allow`] needs an API
    /// key or a bearer token.
    pub enabled: bool,
    /// Paths reachable without credentials (exact matches, or prefixes when
    /// they end in `/*`).
    pub allow: Vec<String>,
    /// Header carrying an API key.
    pub api_key_header: String,
    /// Accepted API keys; a list or one comma-separated value (so
    /// `CHASSIS__SECURITY__AUTH__API_KEYS_FILE` can name a mounted file).
    #[serde(deserialize_with = "secrets_list")]
    pub api_keys: Vec<Secret>,
    /// Bearer tokens (JWT); off while [`JwtConfig::algorithm`] is empty.
    pub jwt: JwtConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: [
                "/health/live",
                "/health/ready",
                "/metrics",
                "/openapi.json",
                "/asyncapi.json",
                "/docs/*",
            ]
            .map(String::from)
            .to_vec(),
            api_key_header: "x-api-key".into(),
            api_keys: Vec::new(),
            jwt: JwtConfig::default(),
        }
    }
}

/// `[security.auth.jwt]`: bearer-token validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// `HS256`, `RS256` or `ES256`; empty disables bearer tokens.
    pub algorithm: String,
    /// HS256 shared secret.
    pub secret: Secret,
    /// RS256/ES256 public key, PEM text.
    pub public_key_pem: String,
    /// RS256/ES256 keys as a JWKS document on disk (selected by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// RS256/ES256 keys as the issuer's JWKS document at this `https://`
    /// (or `http://`) URL (selected by `kid`; feature `jwks`), fetched at
    /// start-up, again for a `kid` not held and when older than
    /// [`JwtConfig::jwks_max_age`].
    pub jwks_url: String,
    /// Find the JWKS by OpenID Connect discovery: `jwks_uri` of
    /// `<issuer>/.well-known/openid-configuration` (feature `jwks`).
    pub discovery: bool,
    /// Fewest time between two fetches of the JWKS, however many tokens name
    /// unknown keys.
    #[serde(with = "chassis_core::duration")]
    pub jwks_refresh_min_interval: Duration,
    /// Keys older than this are fetched again (a withdrawn key stops being
    /// accepted).
    #[serde(with = "chassis_core::duration")]
    pub jwks_max_age: Duration,
    /// Longest time one fetch of the JWKS (or discovery document) may take.
    #[serde(with = "chassis_core::duration")]
    pub jwks_timeout: Duration,
    /// CA certificates (PEM) trusted for `https://` fetches of the JWKS and
    /// discovery documents, besides the system's (a private CA). The
    /// system's roots are those of `SSL_CERT_FILE` / `SSL_CERT_DIR` when
    /// set, else the platform's store.
    pub jwks_ca_file: Option<PathBuf>,
    /// Required `iss`; empty accepts any issuer.
    pub issuer: String,
    /// Required `aud`; empty accepts any audience.
    pub audience: String,
    /// Clock skew tolerated for `exp` and `nbf`.
    #[serde(with = "chassis_core::duration")]
    pub leeway: Duration,
    /// A scope the token must grant (`scope` claim, space-separated);
    /// tokens without it are answered 403. Empty: no scope needed.
    pub required_scope: String,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithm: String::new(),
            secret: Secret::default(),
            public_key_pem: String::new(),
            jwks_file: None,
            jwks_url: String::new(),
            discovery: false,
            jwks_refresh_min_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(3600),
            jwks_timeout: Duration::from_secs(5),
            jwks_ca_file: None,
            issuer: String::new(),
            audience: String::new(),
            leeway: Duration::from_secs(30),
            required_scope: String::new(),
        }
    }
}

/// `[security.rate_limit]`: a token bucket per client (API key, token
/// subject, or peer address when anonymous).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// On by default.
    pub enabled: bool,
    /// Sustained requests per second per client.
    pub per_second: u32,
    /// Requests a client may send at once above the sustained rate.
    pub burst: u32,
    /// Most clients tracked; above it, idle buckets are dropped.
    pub max_clients: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_second: 100,
            burst: 200,
            max_clients: 100_000,
        }
    }
}

/// `[security.concurrency]`: most requests in flight at once (503 above).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConcurrencyConfig {
    /// On by default.
    pub enabled: bool,
    /// Most requests handled at the same time.
    pub max_in_flight: usize,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_in_flight: 1024,
        }
    }
}

/// `[security.cors]`: closed (no origin allowed) by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to call from a browser (`https://shop.example`);
    /// `*` allows any origin.
    pub allowed_origins: Vec<String>,
    /// Methods allowed in cross-origin requests.
    pub allowed_methods: Vec<String>,
    /// Request headers allowed in cross-origin requests.
    pub allowed_headers: Vec<String>,
    /// How long browsers may cache a preflight answer.
    #[serde(with = "chassis_core::duration")]
    pub max_age: Duration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "POST", "PUT", "DELETE"].map(String::from).to_vec(),
            allowed_headers: [
                "content-type",
                "authorization",
                "x-api-key",
                chassis_core::CORRELATION_ID_HEADER,
            ]
            .map(String::from)
            .to_vec(),
            max_age: Duration::from_secs(600),
        }
    }
}

/// `[security.headers]`: hardening headers on every response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadersConfig {
    /// `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` and
    /// `Cache-Control: no-store` on authenticated responses.
    pub enabled: bool,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// A list of secrets, or one value split on commas (environment variables
/// and mounted files hold a single string).
fn secrets_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Secret>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let values = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(joined) => joined.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(list) => list,
    };
    Ok(values
        .into_iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .map(Secret::new)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_come_as_a_list_or_comma_separated() {
        let from_list: AuthConfig =
            serde_json::from_value(serde_json::json!({ "api_keys": ["a", " b "] })).unwrap();
        let from_text: AuthConfig =
            serde_json::from_value(serde_json::json!({ "api_keys": "a, b,\n" })).unwrap();
        assert_eq!(from_list.api_keys, vec![Secret::new("a"), Secret::new("b")]);
        assert_eq!(from_text.api_keys, from_list.api_keys);
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_print_config() {
        let mut config = SecurityConfig::default();
        config.auth.api_keys = vec![Secret::new("api-key-value")];
        config.auth.jwt.secret = Secret::new("jwt-secret-value");
        let shown = format!("{config:?}{}", serde_json::to_string(&config).unwrap());
        assert!(!shown.contains("api-key-value"), "{shown}");
        assert!(!shown.contains("jwt-secret-value"), "{shown}");
        assert!(shown.contains(chassis_core::REDACTED));
    }

    #[test]
    fn defaults_are_closed() {
        let config = SecurityConfig::default();
        assert!(config.auth.enabled && config.rate_limit.enabled && config.concurrency.enabled);
        assert!(config.cors.allowed_origins.is_empty());
        assert!(config.auth.allow.contains(&"/health/ready".to_owned()));
    }
}

//! Credential checks: API keys (constant-time) and JWT bearer tokens.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use chassis_core::Secret;
use chassis_core::config::InvalidValue;
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};
use http::request::Parts;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use subtle::ConstantTimeEq;

use super::config::{AuthConfig, JwtConfig};
use crate::problem::Problem;

/// The authenticated caller of a request, for handlers:
///
/// ```
/// use chassis_web::security::Principal;
/// async fn whoami(principal: Principal) -> String {
///     principal.id
/// }
/// ```
///
/// Without a principal (authentication off, or an allow-listed route) the
/// extractor answers 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `api-key:<n>` (the position of the key in the configuration, never the
    /// key), or the token's `sub`.
    pub id: String,
    /// Scopes granted by the token (`scope` claim); empty for API keys.
    pub scopes: Vec<String>,
    /// The bearer token the caller presented (`None` for API keys): what a
    /// typed client forwards to the next service on the caller's behalf
    /// (chassis-client's `CallContext::with_bearer_token`). Redacted in
    /// `Debug`.
    pub bearer_token: Option<Secret>,
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            Problem::new(http::StatusCode::UNAUTHORIZED)
                .with_detail("this route has no authenticated caller (security.auth)")
        })
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 401: no or invalid credentials; the detail says which.
    Unauthenticated(&'static str),
    /// 403: valid token without the required scope.
    Forbidden,
}

#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

enum Keys {
    One(DecodingKey),
    /// Keys of a JWKS file by `kid`.
    ByKid(HashMap<String, DecodingKey>),
    /// Keys of the issuer's JWKS, fetched over HTTP.
    #[cfg(feature = "jwks")]
    Remote(std::sync::Arc<super::jwks::RemoteKeys>),
}

struct Jwt {
    keys: Keys,
    validation: Validation,
    required_scope: Option<String>,
}

/// Checks the credentials of a request against the configuration.
pub(crate) struct Authenticator {
    header: HeaderName,
    /// Key bytes; compared in constant time against every entry.
    api_keys: Vec<Vec<u8>>,
    /// The principal of each key, built once.
    key_principals: Vec<Principal>,
    jwt: Option<Jwt>,
}

impl Authenticator {
    /// Fails when no credential is configured, or a key cannot be read.
    /// `env`: where the JWKS fetch reads its proxy variables.
    pub(crate) fn build(
        config: &AuthConfig,
        env: super::EnvVars<'_>,
    ) -> Result<Self, InvalidValue> {
        let header = HeaderName::try_from(config.api_key_header.as_str()).map_err(|_| {
            InvalidValue::new("security.auth.api_key_header", "a header name")
                .found(format!("`{}`", config.api_key_header))
        })?;
        let api_keys: Vec<Vec<u8>> = config
            .api_keys
            .iter()
            .map(|k| k.expose().as_bytes().to_vec())
            .collect();
        let jwt = if config.jwt.algorithm.is_empty() {
            None
        } else {
            Some(build_jwt(&config.jwt, env)?)
        };
        if api_keys.is_empty() && jwt.is_none() {
            return Err(InvalidValue::new(
                "security.auth.enabled",
                "false, or a credential: security.auth.api_keys \
                 (CHASSIS__SECURITY__AUTH__API_KEYS or CHASSIS__SECURITY__AUTH__API_KEYS_FILE) \
                 or security.auth.jwt.algorithm with its key",
            )
            .found("true and no credential"));
        }
        let key_principals = (0..api_keys.len())
            .map(|index| Principal {
                id: format!("api-key:{index}"),
                scopes: Vec::new(),
                bearer_token: None,
            })
            .collect();
        Ok(Self {
            header,
            api_keys,
            key_principals,
            jwt,
        })
    }

    /// The caller of a request (with the index of its API key, if it used
    /// one), or why it is refused.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Principal, Option<usize>), Refusal> {
        if let Some(given) = headers.get(&self.header) {
            let index = self.api_key(given.as_bytes())?;
            return Ok((self.key_principals[index].clone(), Some(index)));
        }
        let Some(bearer) = bearer_token(headers) else {
            return Err(Refusal::Unauthenticated("credentials are required"));
        };
        let Some(jwt) = &self.jwt else {
            return Err(Refusal::Unauthenticated("bearer tokens are not accepted"));
        };
        Ok((jwt.check(bearer)?, None))
    }

    fn api_key(&self, given: &[u8]) -> Result<usize, Refusal> {
        // Every key is compared, so the time does not tell which one matched.
        let mut found = None;
        for (index, key) in self.api_keys.iter().enumerate() {
            if bool::from(key.as_slice().ct_eq(given)) {
                found = Some(index);
            }
        }
        found.ok_or(Refusal::Unauthenticated("the API key is not valid"))
    }

    /// Whether bearer tokens are accepted (for `WWW-Authenticate`).
    pub(crate) fn accepts_bearer(&self) -> bool {
        self.jwt.is_some()
    }

    /// The remote key set, when bearer tokens are checked against one.
    #[cfg(feature = "jwks")]
    pub(crate) fn remote_keys(&self) -> Option<&std::sync::Arc<super::jwks::RemoteKeys>> {
        match &self.jwt.as_ref()?.keys {
            Keys::Remote(remote) => Some(remote),
            _ => None,
        }
    }

    /// The remote key set, when this request's bearer token should wait for
    /// it to be fetched (unknown `kid`, or keys too old; see
    /// [`super::jwks::RemoteKeys::wants_refresh`]).
    #[cfg(feature = "jwks")]
    pub(crate) fn wants_keys(
        &self,
        headers: &HeaderMap,
    ) -> Option<&std::sync::Arc<super::jwks::RemoteKeys>> {
        let remote = self.remote_keys()?;
        if headers.contains_key(&self.header) {
            return None;
        }
        let token = bearer_token(headers)?;
        let kid = jsonwebtoken::decode_header(token).ok()?.kid;
        remote
            .wants_refresh(kid.as_deref(), std::time::Instant::now())
            .then_some(remote)
    }

    /// The API key header name (for `WWW-Authenticate`).
    pub(crate) fn api_key_header(&self) -> &str {
        self.header.as_str()
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

fn build_jwt(config: &JwtConfig, env: super::EnvVars<'_>) -> Result<Jwt, InvalidValue> {
    let algorithm = match config.algorithm.to_ascii_uppercase().as_str() {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        _ => {
            return Err(jwt_key("algorithm", "HS256, RS256 or ES256")
                .found(format!("`{}`", config.algorithm)));
        }
    };
    let keys = match algorithm {
        Algorithm::HS256 => {
            if config.secret.expose().len() < 32 {
                return Err(jwt_key(
                    "secret",
                    "an HS256 secret of at least 32 bytes (security.auth.jwt.secret or \
                     CHASSIS__SECURITY__AUTH__JWT__SECRET_FILE)",
                )
                .found(format!("{} bytes", config.secret.expose().len())));
            }
            Keys::One(DecodingKey::from_secret(config.secret.expose().as_bytes()))
        }
        _ => public_keys(config, algorithm, env)?,
    };
    let mut validation = Validation::new(algorithm);
    validation.leeway = config.leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    if !config.issuer.is_empty() {
        validation.set_issuer(&[&config.issuer]);
    }
    if config.audience.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&[&config.audience]);
    }
    Ok(Jwt {
        keys,
        validation,
        required_scope: Some(config.required_scope.clone()).filter(|s| !s.is_empty()),
    })
}

/// An error of `security.auth.jwt.<key>` (the host adds the layer).
fn jwt_key(key: &str, expected: &str) -> InvalidValue {
    InvalidValue::new(format!("security.auth.jwt.{key}"), expected)
}

fn public_keys(
    config: &JwtConfig,
    algorithm: Algorithm,
    env: super::EnvVars<'_>,
) -> Result<Keys, InvalidValue> {
    let remote_key = if config.discovery {
        Some("discovery")
    } else {
        Some("jwks_url").filter(|_| !config.jwks_url.trim().is_empty())
    };
    if let Some(remote_key) = remote_key
        && (config.jwks_file.is_some() || !config.public_key_pem.trim().is_empty())
    {
        return Err(jwt_key(
            remote_key,
            "one source of keys: jwks_url, discovery, jwks_file or public_key_pem",
        )
        .found(format!(
            "{remote_key} and {}",
            if config.jwks_file.is_some() {
                "jwks_file"
            } else {
                "public_key_pem"
            }
        )));
    }
    #[cfg(feature = "jwks")]
    if let Some(remote) = super::jwks::RemoteKeys::new(config, env)? {
        return Ok(Keys::Remote(std::sync::Arc::new(remote)));
    }
    #[cfg(not(feature = "jwks"))]
    let _ = env;
    #[cfg(not(feature = "jwks"))]
    if let Some(remote_key) = remote_key {
        return Err(jwt_key(
            remote_key,
            "keys from a file or PEM: fetching them from the issuer (jwks_url, discovery) is \
             not compiled in; enable the `jwks` feature of chassis-web, or use jwks_file",
        ));
    }
    if let Some(path) = &config.jwks_file {
        let expected = "a readable JWKS document (JSON)";
        let text = std::fs::read_to_string(path).map_err(|e| {
            jwt_key("jwks_file", expected).found(format!("`{}` ({e})", path.display()))
        })?;
        let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
            jwt_key("jwks_file", expected).found(format!("`{}` ({e})", path.display()))
        })?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            keys.insert(kid.clone(), key);
        }
        if keys.is_empty() {
            return Err(
                jwt_key("jwks_file", "a JWKS with a usable key that has a `kid`")
                    .found(format!("`{}` (no such key)", path.display())),
            );
        }
        return Ok(Keys::ByKid(keys));
    }
    if config.public_key_pem.trim().is_empty() {
        return Err(jwt_key(
            "algorithm",
            "an algorithm with its keys: public_key_pem, jwks_file, jwks_url or discovery",
        )
        .found(format!("{algorithm:?} and no key")));
    }
    let pem = config.public_key_pem.as_bytes();
    let key = match algorithm {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        _ => DecodingKey::from_ec_pem(pem),
    }
    .map_err(|e| {
        jwt_key(
            "public_key_pem",
            &format!("a {algorithm:?} public key (PEM)"),
        )
        .found(format!("something else ({e})"))
    })?;
    Ok(Keys::One(key))
}

/// The key a token names by its `kid`.
fn key_by_kid<'k>(
    keys: &'k HashMap<String, DecodingKey>,
    token: &str,
) -> Result<&'k DecodingKey, Refusal> {
    let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
    kid.and_then(|kid| keys.get(&kid))
        .ok_or(Refusal::Unauthenticated(
            "the token names no known key (kid)",
        ))
}

impl Jwt {
    fn check(&self, token: &str) -> Result<Principal, Refusal> {
        use jsonwebtoken::errors::ErrorKind;
        #[cfg(feature = "jwks")]
        let snapshot;
        let key = match &self.keys {
            Keys::One(key) => key,
            Keys::ByKid(keys) => key_by_kid(keys, token)?,
            #[cfg(feature = "jwks")]
            Keys::Remote(remote) => {
                snapshot = remote.keys();
                key_by_kid(&snapshot, token)?
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
            Refusal::Unauthenticated(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidAudience => "the token is for another audience",
                ErrorKind::InvalidIssuer => "the token is from another issuer",
                ErrorKind::InvalidSignature => "the token signature is not valid",
                ErrorKind::InvalidAlgorithm => "the token uses another algorithm",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                _ => "the token is not valid",
            })
        })?;
        let scopes: Vec<String> = data
            .claims
            .scope
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if let Some(required) = &self.required_scope
            && !scopes.iter().any(|s| s == required)
        {
            return Err(Refusal::Forbidden);
        }
        Ok(Principal {
            id: data.claims.sub.unwrap_or_else(|| "jwt".to_owned()),
            scopes,
            bearer_token: Some(Secret::new(token)),
        })
    }
}

//! Credential checks: API keys (constant-time) and, with the `jwt` feature,
//! bearer tokens (`super::jwt`).

use axum::extract::FromRequestParts;
use chassis_core::Secret;
use chassis_core::config::InvalidValue;
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};
use http::request::Parts;
use subtle::ConstantTimeEq;

use super::config::AuthConfig;
#[cfg(feature = "jwt")]
use super::jwt::{Jwt, build_jwt};
use crate::problem::Problem;

/// Without the `jwt` feature no bearer token is ever accepted.
#[cfg(not(feature = "jwt"))]
enum Jwt {}

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
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    Forbidden,
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
            Some(jwt(config, env)?)
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
        #[cfg(feature = "jwt")]
        if let Some(jwt) = &self.jwt {
            return Ok((jwt.check(bearer)?, None));
        }
        #[cfg(not(feature = "jwt"))]
        let _ = bearer;
        Err(Refusal::Unauthenticated("bearer tokens are not accepted"))
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
            super::jwt::Keys::Remote(remote) => Some(remote),
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
        let kid = super::jwt::token_kid(token);
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

#[cfg(feature = "jwt")]
fn jwt(config: &AuthConfig, env: super::EnvVars<'_>) -> Result<Jwt, InvalidValue> {
    build_jwt(&config.jwt, env)
}

/// A service built without the `jwt` feature refuses a JWT configuration at
/// start-up rather than ignoring it.
#[cfg(not(feature = "jwt"))]
fn jwt(config: &AuthConfig, _: super::EnvVars<'_>) -> Result<Jwt, InvalidValue> {
    Err(InvalidValue::new(
        "security.auth.jwt.algorithm",
        "empty: bearer tokens (JWT) are not compiled into this service; enable the `jwt` \
         feature of chassis-web (a generated service: its own `jwt` feature)",
    )
    .found(format!("`{}`", config.jwt.algorithm)))
}

#[cfg(all(test, not(feature = "jwt")))]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_configuration_without_the_feature_is_refused_by_key() {
        let mut config = AuthConfig::default();
        config.jwt.algorithm = "RS256".into();
        config.api_keys = vec![Secret::new("k")];
        let err = Authenticator::build(&config, None).err().expect("refused");
        let text = err.to_string();
        assert!(text.contains("security.auth.jwt.algorithm"), "{text}");
        assert!(text.contains("`jwt` feature"), "{text}");
        assert!(text.contains("`RS256`"), "{text}");
    }
}

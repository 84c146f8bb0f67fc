//! Bearer tokens (JWT, feature `jwt`): the keys from configuration, a file
//! or the issuer, and the check of each token.

use std::collections::HashMap;

use chassis_core::Secret;
use chassis_core::config::InvalidValue;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::auth::{Principal, Refusal};
use super::config::JwtConfig;

#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Where a token's key comes from.
pub(super) enum Keys {
    /// The one key of `secret` or `public_key_pem`.
    One(DecodingKey),
    /// Keys of a JWKS file by `kid`.
    ByKid(HashMap<String, DecodingKey>),
    /// Keys of the issuer's JWKS, fetched over HTTP.
    #[cfg(feature = "jwks")]
    Remote(std::sync::Arc<super::jwks::RemoteKeys>),
}

/// Bearer-token validation: the keys, the rules, the scope a token needs.
pub(super) struct Jwt {
    pub(super) keys: Keys,
    validation: Validation,
    required_scope: Option<String>,
}

/// Reads `security.auth.jwt`: the algorithm, its keys and the claims rules.
pub(super) fn build_jwt(config: &JwtConfig, env: super::EnvVars<'_>) -> Result<Jwt, InvalidValue> {
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
pub(super) fn jwt_key(key: &str, expected: &str) -> InvalidValue {
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
    token_kid(token)
        .and_then(|kid| keys.get(&kid))
        .ok_or(Refusal::Unauthenticated(
            "the token names no known key (kid)",
        ))
}

impl Jwt {
    /// The caller a token names, or why it is refused.
    pub(super) fn check(&self, token: &str) -> Result<Principal, Refusal> {
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

/// The `kid` a token's header names, if it can be read.
pub(super) fn token_kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

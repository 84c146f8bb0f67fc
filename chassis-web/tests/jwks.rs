//! Bearer tokens checked against the issuer's keys fetched over HTTP
//! (`security.auth.jwt.jwks_url` / `discovery`), with a local issuer (an
//! axum server) that rotates its key.
#![cfg(feature = "jwks")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chassis_web::security::Principal;
use chassis_web::{RunningService, StartupError};
use common::{TempDir, client, isolated};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

const RSA_PRIVATE: &str = include_str!("keys/rsa_private.pem");
const RSA_OTHER_PRIVATE: &str = include_str!("keys/rsa_other_private.pem");

/// A token issuer: OpenID Connect metadata and a JWKS that can change.
#[derive(Clone, Default)]
struct Issuer {
    url: Arc<Mutex<String>>,
    keys: Arc<Mutex<JwkSet>>,
    discoveries: Arc<AtomicUsize>,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start() -> Self {
        let issuer = Issuer::default();
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(issuer): State<Issuer>| async move {
                    issuer.discoveries.fetch_add(1, Ordering::SeqCst);
                    let url = issuer.url();
                    axum::Json(json!({ "issuer": url, "jwks_uri": format!("{url}/keys") }))
                }),
            )
            .route(
                "/keys",
                get(|State(issuer): State<Issuer>| async move {
                    issuer.fetches.fetch_add(1, Ordering::SeqCst);
                    let keys = issuer.keys.lock().unwrap().clone();
                    axum::Json(keys)
                }),
            )
            .with_state(issuer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *issuer.url.lock().unwrap() = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        issuer
    }

    fn url(&self) -> String {
        self.url.lock().unwrap().clone()
    }

    /// Publishes exactly these keys (`kid`, private key PEM).
    fn publish(&self, keys: &[(&str, &str)]) {
        let keys = keys
            .iter()
            .map(|(kid, pem)| {
                let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
                let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
                jwk.common.key_id = Some((*kid).into());
                jwk
            })
            .collect();
        *self.keys.lock().unwrap() = JwkSet { keys };
    }

    fn token(&self, kid: &str, pem: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let claims = json!({ "sub": "user-7", "iss": self.url(), "exp": now + 300 });
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.discoveries.load(Ordering::SeqCst),
            self.fetches.load(Ordering::SeqCst),
        )
    }
}

async fn try_start(dir: &TempDir, jwt: &[(&str, Value)]) -> Result<RunningService, StartupError> {
    let mut builder = isolated("jwks-test", dir)
        .config("security.auth.enabled", true)
        .config("security.auth.jwt.algorithm", "RS256")
        .routes(|_| {
            Router::new().route(
                "/whoami",
                get(|principal: Principal| async move { principal.id }),
            )
        });
    for (key, value) in jwt {
        let key = format!("security.auth.jwt.{key}");
        builder = match value {
            Value::Bool(b) => builder.config(&key, *b),
            Value::String(s) => builder.config(&key, s.as_str()),
            other => panic!("unsupported setting {other}"),
        };
    }
    builder.start().await
}

async fn call(service: &RunningService, token: &str) -> StatusCode {
    client()
        .get(format!("{}/whoami", service.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn discovered_keys_follow_a_rotation_without_a_refetch_storm() {
    let issuer = Issuer::start().await;
    issuer.publish(&[("k1", RSA_PRIVATE)]);
    let dir = TempDir::new();
    let service = try_start(
        &dir,
        &[
            ("discovery", json!(true)),
            ("issuer", json!(issuer.url())),
            ("jwks_refresh_min_interval", json!("3s")),
        ],
    )
    .await
    .unwrap();
    // Fetched at start-up: discovery, then the key set.
    assert_eq!(issuer.counts(), (1, 1));
    let k1 = issuer.token("k1", RSA_PRIVATE);
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    assert_eq!(issuer.counts(), (1, 1), "served from the keys held");

    // The issuer rotates: k2 replaces k1.
    issuer.publish(&[("k2", RSA_OTHER_PRIVATE)]);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // A burst of tokens naming keys nobody has: one fetch, not fifty.
    let bogus: Vec<_> = (0..50)
        .map(|i| issuer.token(&format!("made-up-{i}"), RSA_OTHER_PRIVATE))
        .collect();
    let answers = futures::future::join_all(bogus.iter().map(|t| call(&service, t))).await;
    assert!(answers.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    assert_eq!(issuer.counts(), (1, 2), "one refetch for the whole burst");
    // That fetch brought k2: tokens of the new key pass, the old key's fail.
    let k2 = issuer.token("k2", RSA_OTHER_PRIVATE);
    assert_eq!(call(&service, &k2).await, StatusCode::OK);
    assert_eq!(call(&service, &k1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.counts(), (1, 2), "within the interval: no fetch");
    // A token signed by a key the JWKS does not hold under that kid fails
    // its signature check, whatever it names.
    let forged = issuer.token("k2", RSA_PRIVATE);
    assert_eq!(call(&service, &forged).await, StatusCode::UNAUTHORIZED);
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_jwks_url_is_fetched_on_an_unknown_kid_and_when_the_issuer_was_down_at_start() {
    let issuer = Issuer::start().await;
    // Nothing usable at start-up: the service starts, tokens wait for keys.
    issuer.publish(&[]);
    let dir = TempDir::new();
    let service = try_start(
        &dir,
        &[
            ("jwks_url", json!(format!("{}/keys", issuer.url()))),
            ("jwks_refresh_min_interval", json!("2s")),
        ],
    )
    .await
    .unwrap();
    // The failed fetch happened before `start` returned.
    let started = Instant::now();
    assert_eq!(issuer.counts(), (0, 1));
    issuer.publish(&[("k1", RSA_PRIVATE)]);
    let k1 = issuer.token("k1", RSA_PRIVATE);
    // Too soon after the failed fetch: refused, not fetched (on a machine
    // slow enough to take the whole interval, a fetch is allowed again).
    let status = call(&service, &k1).await;
    if started.elapsed() < Duration::from_millis(1900) {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(issuer.counts(), (0, 1));
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    assert_eq!(
        issuer.counts(),
        (0, 2),
        "one more fetch, for the unknown kid"
    );

    // Rotation with both keys published for a while (the usual overlap).
    issuer.publish(&[("k1", RSA_PRIVATE), ("k2", RSA_OTHER_PRIVATE)]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let k2 = issuer.token("k2", RSA_OTHER_PRIVATE);
    assert_eq!(call(&service, &k2).await, StatusCode::OK);
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    assert_eq!(issuer.counts(), (0, 3), "one fetch for k2, none for k1");
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn old_keys_are_fetched_again_after_their_max_age() {
    let issuer = Issuer::start().await;
    issuer.publish(&[("k1", RSA_PRIVATE)]);
    let dir = TempDir::new();
    let service = try_start(
        &dir,
        &[
            ("jwks_url", json!(format!("{}/keys", issuer.url()))),
            ("jwks_refresh_min_interval", json!("100ms")),
            ("jwks_max_age", json!("2s")),
        ],
    )
    .await
    .unwrap();
    let k1 = issuer.token("k1", RSA_PRIVATE);
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    // The issuer withdraws k1 (compromised); once the keys held are older
    // than the max age, the next request fetches them and k1 is refused.
    issuer.publish(&[("k2", RSA_OTHER_PRIVATE)]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(call(&service, &k1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.counts(), (0, 2));
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn remote_key_settings_are_checked_at_start_up() {
    let dir = TempDir::new();
    for (settings, expected) in [
        (
            vec![("jwks_url", json!("https://issuer.example/keys"))],
            "security.auth.jwt.jwks_url: `https://issuer.example/keys` needs TLS",
        ),
        (
            vec![("jwks_url", json!("not a url"))],
            "security.auth.jwt.jwks_url: `not a url` is not an absolute URL",
        ),
        (
            vec![("discovery", json!(true))],
            "security.auth.jwt.discovery: OpenID Connect discovery needs security.auth.jwt.issuer",
        ),
        (
            vec![
                ("discovery", json!(true)),
                ("issuer", json!("http://i")),
                ("jwks_url", json!("http://i/keys")),
            ],
            "security.auth.jwt.jwks_url: set either jwks_url or discovery = true, not both",
        ),
        (
            vec![
                ("jwks_url", json!("http://i/keys")),
                ("public_key_pem", json!("x")),
            ],
            "security.auth.jwt: set one source of keys",
        ),
    ] {
        let err = try_start(&dir, &settings).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{settings:?}: {err}");
    }
}

//! Authentication, limits, CORS and headers of the edge (`[security]`).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use chassis_web::security::Principal;
use chassis_web::{RunningService, ServiceHostBuilder, StartupError};
use common::{TempDir, client, isolated};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY_A: &str = "key-a-0123456789";
const KEY_B: &str = "key-b-9876543210";
const HS_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!!";
const RSA_PRIVATE: &str = include_str!("keys/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("keys/rsa_public.pem");
const RSA_OTHER_PRIVATE: &str = include_str!("keys/rsa_other_private.pem");
const EC_PRIVATE: &str = include_str!("keys/ec_private.pem");

fn routes(builder: ServiceHostBuilder) -> ServiceHostBuilder {
    builder.routes(|_| {
        Router::new()
            .route(
                "/orders",
                get(|principal: Principal| async move { principal.id }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    "slow"
                }),
            )
    })
}

/// A service with authentication on and the given extra settings.
async fn start(dir: &TempDir, settings: &[(&str, Value)]) -> RunningService {
    try_start(dir, settings).await.unwrap()
}

async fn try_start(
    dir: &TempDir,
    settings: &[(&str, Value)],
) -> Result<RunningService, StartupError> {
    let mut builder = routes(isolated("security-test", dir)).config("security.auth.enabled", true);
    for (key, value) in settings {
        builder = match value {
            Value::Bool(b) => builder.config(key, *b),
            Value::Number(n) => builder.config(key, n.as_i64().unwrap()),
            Value::String(s) => builder.config(key, s.as_str()),
            Value::Array(items) => builder.config(
                key,
                items
                    .iter()
                    .map(|i| i.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>(),
            ),
            other => panic!("unsupported setting {other}"),
        };
    }
    builder.start().await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(overrides: Value) -> Value {
    let mut claims = json!({
        "sub": "user-7",
        "iss": "https://issuer.test",
        "aud": "orders",
        "exp": now() + 300,
        "nbf": now() - 10,
        "scope": "orders:read",
    });
    for (k, v) in overrides.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn hs256(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn jwt_settings(algorithm: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("security.auth.jwt.algorithm", json!(algorithm)),
        ("security.auth.jwt.issuer", json!("https://issuer.test")),
        ("security.auth.jwt.audience", json!("orders")),
        ("security.auth.jwt.leeway", json!("5s")),
    ]
}

async fn get_with(
    service: &RunningService,
    path: &str,
    header: Option<(&str, String)>,
) -> reqwest::Response {
    let mut request = client().get(format!("{}{path}", service.base_url()));
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

async fn bearer(service: &RunningService, token: String) -> reqwest::Response {
    get_with(
        service,
        "/orders",
        Some(("authorization", format!("Bearer {token}"))),
    )
    .await
}

/// A 401 problem with a challenge; returns its detail.
async fn assert_unauthorized(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], 401);
    body["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn start_up_fails_with_the_key_path_when_no_credential_is_configured() {
    let dir = TempDir::new();
    let err = try_start(&dir, &[]).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StartupError::Security(_)), "{message}");
    assert!(message.contains("security.auth.api_keys"), "{message}");
    assert!(message.contains("security.auth.jwt.algorithm"), "{message}");

    let short = [
        ("security.auth.jwt.algorithm", json!("HS256")),
        ("security.auth.jwt.secret", json!("short")),
    ];
    let message = try_start(&dir, &short).await.unwrap_err().to_string();
    assert!(message.contains("security.auth.jwt.secret"), "{message}");
}

#[tokio::test]
async fn api_keys_are_checked_and_allow_listed_paths_are_open() {
    let dir = TempDir::new();
    let service = start(
        &dir,
        &[("security.auth.api_keys", json!(format!("{KEY_A}, {KEY_B}")))],
    )
    .await;

    let detail = assert_unauthorized(get_with(&service, "/orders", None).await).await;
    assert_eq!(detail, "credentials are required");
    let wrong = get_with(&service, "/orders", Some(("x-api-key", "nope".into()))).await;
    assert_eq!(assert_unauthorized(wrong).await, "the API key is not valid");

    for (index, key) in [KEY_A, KEY_B].into_iter().enumerate() {
        let ok = get_with(&service, "/orders", Some(("x-api-key", key.into()))).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["cache-control"], "no-store");
        assert_eq!(ok.headers()["x-content-type-options"], "nosniff");
        assert_eq!(ok.headers()["x-frame-options"], "DENY");
        assert_eq!(ok.text().await.unwrap(), format!("api-key:{index}"));
    }

    let live = get_with(&service, "/health/live", None).await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["x-content-type-options"], "nosniff");
    assert!(!live.headers().contains_key("cache-control"));
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_api_key_header_is_configurable() {
    let dir = TempDir::new();
    let service = start(
        &dir,
        &[
            ("security.auth.api_keys", json!(KEY_A)),
            ("security.auth.api_key_header", json!("x-service-key")),
        ],
    )
    .await;
    let ok = get_with(&service, "/orders", Some(("x-service-key", KEY_A.into()))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let old = get_with(&service, "/orders", Some(("x-api-key", KEY_A.into()))).await;
    assert_unauthorized(old).await;
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn api_keys_are_read_from_a_mounted_file() {
    let dir = TempDir::new();
    let file = dir.write("api-keys", &format!("{KEY_A},{KEY_B}\n"));
    let service = routes(isolated("security-file", &dir))
        .config("security.auth.enabled", true)
        .env_vars([(
            "CHASSIS__SECURITY__AUTH__API_KEYS_FILE".to_owned(),
            file.display().to_string(),
        )])
        .start()
        .await
        .unwrap();
    let ok = get_with(&service, "/orders", Some(("x-api-key", KEY_B.into()))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn hs256_tokens_are_validated() {
    let dir = TempDir::new();
    let mut settings = jwt_settings("HS256");
    settings.push(("security.auth.jwt.secret", json!(HS_SECRET)));
    let service = start(&dir, &settings).await;

    let ok = bearer(&service, hs256(&claims(json!({})), HS_SECRET)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "user-7");
    // Within the leeway.
    let just_expired = claims(json!({ "exp": now() - 2 }));
    assert_eq!(
        bearer(&service, hs256(&just_expired, HS_SECRET))
            .await
            .status(),
        StatusCode::OK
    );

    let refused = [
        (
            claims(json!({ "exp": now() - 60 })),
            HS_SECRET,
            "the token has expired",
        ),
        (
            claims(json!({ "nbf": now() + 60 })),
            HS_SECRET,
            "the token is not valid yet",
        ),
        (
            claims(json!({ "aud": "billing" })),
            HS_SECRET,
            "the token is for another audience",
        ),
        (
            claims(json!({ "iss": "https://evil.test" })),
            HS_SECRET,
            "the token is from another issuer",
        ),
        (
            claims(json!({})),
            "another-secret-of-at-least-32-bytes!!!",
            "the token signature is not valid",
        ),
    ];
    for (claims, secret, expected) in refused {
        let response = bearer(&service, hs256(&claims, secret)).await;
        let www = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(www.contains("error=\"invalid_token\""), "{www}");
        assert_eq!(assert_unauthorized(response).await, expected);
    }
    let garbage = bearer(&service, "not.a.token".into()).await;
    assert_unauthorized(garbage).await;
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn rs256_tokens_are_validated_with_a_pem_key() {
    let dir = TempDir::new();
    let mut settings = jwt_settings("RS256");
    settings.push(("security.auth.jwt.public_key_pem", json!(RSA_PUBLIC)));
    let service = start(&dir, &settings).await;
    let sign = |pem: &str, claims: &Value| {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
    };

    let ok = bearer(&service, sign(RSA_PRIVATE, &claims(json!({})))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let other_key = bearer(&service, sign(RSA_OTHER_PRIVATE, &claims(json!({})))).await;
    assert_eq!(
        assert_unauthorized(other_key).await,
        "the token signature is not valid"
    );
    let expired = bearer(
        &service,
        sign(RSA_PRIVATE, &claims(json!({ "exp": now() - 60 }))),
    )
    .await;
    assert_eq!(assert_unauthorized(expired).await, "the token has expired");
    // An HS256 token "signed" with the public key must not pass (algorithm confusion).
    let confused = bearer(&service, hs256(&claims(json!({})), RSA_PUBLIC)).await;
    assert_unauthorized(confused).await;
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn es256_tokens_are_validated_with_a_jwks_file() {
    let dir = TempDir::new();
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let jwks = dir.write(
        "jwks.json",
        &serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap(),
    );
    let mut settings = jwt_settings("ES256");
    let jwks = jwks.display().to_string();
    settings.push(("security.auth.jwt.jwks_file", json!(jwks)));
    settings.push(("security.auth.jwt.required_scope", json!("orders:read")));
    let service = start(&dir, &settings).await;
    let sign = |kid: &str, claims: &Value| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    };

    let ok = bearer(&service, sign("k1", &claims(json!({})))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let unknown_kid = bearer(&service, sign("k2", &claims(json!({})))).await;
    assert_eq!(
        assert_unauthorized(unknown_kid).await,
        "the token names no known key (kid)"
    );
    let wrong_audience = bearer(&service, sign("k1", &claims(json!({ "aud": "x" })))).await;
    assert_unauthorized(wrong_audience).await;

    let no_scope = bearer(
        &service,
        sign("k1", &claims(json!({ "scope": "orders:write" }))),
    )
    .await;
    assert_eq!(no_scope.status(), StatusCode::FORBIDDEN);
    assert!(
        no_scope.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    assert_eq!(
        no_scope.headers()["content-type"],
        "application/problem+json"
    );
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_and_recovers() {
    let dir = TempDir::new();
    let service = start(
        &dir,
        &[
            ("security.auth.api_keys", json!(format!("{KEY_A},{KEY_B}"))),
            ("security.rate_limit.per_second", json!(2)),
            ("security.rate_limit.burst", json!(2)),
        ],
    )
    .await;
    let call = |key: &str| get_with(&service, "/orders", Some(("x-api-key", key.into())));
    assert_eq!(call(KEY_A).await.status(), StatusCode::OK);
    assert_eq!(call(KEY_A).await.status(), StatusCode::OK);
    let limited = call(KEY_A).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    // Per client: the other key still has its tokens.
    assert_eq!(call(KEY_B).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(call(KEY_A).await.status(), StatusCode::OK);
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn anonymous_clients_are_rate_limited_by_address_and_recover() {
    let dir = TempDir::new();
    let service = start(
        &dir,
        &[
            ("security.auth.api_keys", json!(KEY_A)),
            ("security.rate_limit.per_second", json!(2)),
            ("security.rate_limit.burst", json!(2)),
        ],
    )
    .await;
    // An allow-listed path: no credentials, so the client is its address.
    let live = || get_with(&service, "/health/live", None);
    assert_eq!(live().await.status(), StatusCode::OK);
    assert_eq!(live().await.status(), StatusCode::OK);
    let limited = live().await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(limited.headers()["x-content-type-options"], "nosniff");
    assert!(limited.headers().contains_key("x-correlation-id"));
    // Unknown paths count against the same address (checked before routing).
    assert_eq!(
        get_with(&service, "/nowhere", None).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // An authenticated client from the same address has its own bucket.
    let keyed = get_with(&service, "/orders", Some(("x-api-key", KEY_A.into()))).await;
    assert_eq!(keyed.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(live().await.status(), StatusCode::OK);
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let dir = TempDir::new();
    let limited = [
        ("security.auth.api_keys", json!(KEY_A)),
        ("security.rate_limit.per_second", json!(1)),
        ("security.rate_limit.burst", json!(2)),
    ];
    let from = |service: &RunningService, forwarded: &'static str| {
        let url = format!("{}/health/live", service.base_url());
        async move {
            client()
                .get(url)
                .header("x-forwarded-for", forwarded)
                .send()
                .await
                .unwrap()
                .status()
        }
    };

    // The test's connections come from 127.0.0.1: make it the ingress.
    let mut settings = limited.to_vec();
    settings.push((
        "security.trusted_proxies",
        json!(["10.0.0.0/8", "127.0.0.1/32"]),
    ));
    let service = start(&dir, &settings).await;
    assert_eq!(from(&service, "203.0.113.1").await, StatusCode::OK);
    assert_eq!(from(&service, "203.0.113.1").await, StatusCode::OK);
    assert_eq!(
        from(&service, "203.0.113.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same ingress has its own bucket...
    assert_eq!(from(&service, "203.0.113.2").await, StatusCode::OK);
    // ...and a client cannot escape its own by forging entries on the left.
    assert_eq!(
        from(&service, "198.51.100.77, 203.0.113.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Hops through further trusted proxies are skipped.
    assert_eq!(
        from(&service, "203.0.113.1, 10.2.3.4").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    service.shutdown().await.unwrap();

    // Without trusted proxies the header is ignored: every request is the peer.
    let dir = TempDir::new();
    let service = start(&dir, &limited).await;
    assert_eq!(from(&service, "203.0.113.1").await, StatusCode::OK);
    assert_eq!(from(&service, "203.0.113.2").await, StatusCode::OK);
    assert_eq!(
        from(&service, "203.0.113.3").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    service.shutdown().await.unwrap();

    // A bad entry stops start-up with the key path.
    let dir = TempDir::new();
    let mut settings = limited.to_vec();
    settings.push(("security.trusted_proxies", json!(["10.0.0.0/40"])));
    let err = try_start(&dir, &settings).await.unwrap_err().to_string();
    assert!(
        err.contains("security.trusted_proxies") && err.contains("`10.0.0.0/40`"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_paths_need_credentials_too() {
    let dir = TempDir::new();
    let service = start(&dir, &[("security.auth.api_keys", json!(KEY_A))]).await;
    // Refused before routing: an anonymous client cannot probe which paths exist.
    assert_unauthorized(get_with(&service, "/nowhere", None).await).await;
    let found = get_with(&service, "/nowhere", Some(("x-api-key", KEY_A.into()))).await;
    assert_eq!(found.status(), StatusCode::NOT_FOUND);
    assert_eq!(found.headers()["x-content-type-options"], "nosniff");
    // Refusals are answered before routing: counted under route `unmatched`.
    let metrics = get_with(&service, "/metrics", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_server_requests_total{")
                && l.contains("service=\"security-test\"")
                && l.contains("route=\"unmatched\"")
                && l.contains("status=\"401\"")),
        "{metrics}"
    );
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn rate_limit_and_auth_have_off_switches() {
    let dir = TempDir::new();
    let service = start(
        &dir,
        &[
            ("security.auth.enabled", json!(false)),
            ("security.rate_limit.enabled", json!(false)),
            ("security.headers.enabled", json!(false)),
        ],
    )
    .await;
    for _ in 0..5 {
        let response = get_with(&service, "/slow", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key("x-frame-options"));
    }
    // Without authentication there is no principal to extract.
    assert_eq!(
        get_with(&service, "/orders", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_concurrency_limit_answers_503() {
    let dir = TempDir::new();
    let service = start(
        &dir,
        &[
            ("security.auth.enabled", json!(false)),
            ("security.concurrency.max_in_flight", json!(1)),
        ],
    )
    .await;
    let (first, second) = tokio::join!(get_with(&service, "/slow", None), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        get_with(&service, "/slow", None).await
    });
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.headers()["retry-after"], "1");
    assert_eq!(second.headers()["content-type"], "application/problem+json");
    // The permit is released with the response.
    assert_eq!(
        get_with(&service, "/slow", None).await.status(),
        StatusCode::OK
    );
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn cors_is_closed_by_default_and_configurable() {
    let dir = TempDir::new();
    let closed = start(&dir, &[("security.auth.api_keys", json!(KEY_A))]).await;
    let preflight = |service: &RunningService, origin: &str, method: &str| {
        client()
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/orders", service.base_url()),
            )
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "x-api-key")
            .send()
    };
    let denied = preflight(&closed, "https://shop.test", "GET")
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert!(!denied.headers().contains_key("access-control-allow-origin"));
    closed.shutdown().await.unwrap();

    let open = start(
        &dir,
        &[
            ("security.auth.api_keys", json!(KEY_A)),
            (
                "security.cors.allowed_origins",
                json!(["https://shop.test"]),
            ),
        ],
    )
    .await;
    let allowed = preflight(&open, "https://shop.test", "GET").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.test"
    );
    assert!(
        allowed.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-api-key")
    );
    let other_origin = preflight(&open, "https://evil.test", "GET").await.unwrap();
    assert_eq!(other_origin.status(), StatusCode::FORBIDDEN);
    let other_method = preflight(&open, "https://shop.test", "PATCH")
        .await
        .unwrap();
    assert_eq!(other_method.status(), StatusCode::FORBIDDEN);

    let simple = client()
        .get(format!("{}/orders", open.base_url()))
        .header("origin", "https://shop.test")
        .header("x-api-key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "https://shop.test"
    );
    open.shutdown().await.unwrap();
}

#[test]
fn print_config_redacts_api_keys_and_the_jwt_secret() {
    let dir = TempDir::new();
    let keys = dir.write("keys", &format!("{KEY_A},{KEY_B}"));
    let text = chassis_web::ConfigLoader::new()
        .config_dir(dir.path())
        .env_vars([
            (
                "CHASSIS__SECURITY__AUTH__API_KEYS_FILE",
                keys.display().to_string(),
            ),
            ("CHASSIS__SECURITY__AUTH__JWT__SECRET", HS_SECRET.to_owned()),
        ])
        .default_value("service.name", "print-config-test")
        .load()
        .unwrap()
        .render();
    assert!(
        text.contains("security.auth.jwt.secret = \"***\""),
        "{text}"
    );
    assert!(text.contains("security.auth.api_keys"), "{text}");
    for leaked in [KEY_A, KEY_B, HS_SECRET] {
        assert!(!text.contains(leaked), "{leaked} leaked:\n{text}");
    }
}

/// A host reading only `dir`'s files and `vars` (no override in code for
/// `[security]`), and its start-up error.
async fn start_error(dir: &TempDir, vars: &[(&str, String)]) -> String {
    let err = chassis_web::ServiceHost::builder("security-layers")
        .config_dir(dir.path())
        .env_vars(vars.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .config("http.host", "127.0.0.1")
        .config("http.port", 0)
        .install_logging(false)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartupError::Security(_)), "{err}");
    err.to_string()
}

#[tokio::test]
async fn security_errors_name_the_key_the_expectation_and_the_file_it_came_from() {
    for (toml, expected) in [
        (
            "[security]\ntrusted_proxies = [\"10.0.0.0/40\"]\n",
            "security.trusted_proxies: expected IP addresses or CIDR blocks (`10.0.0.0/8`, \
             `fd00::/8`), found `10.0.0.0/40` (from ",
        ),
        (
            "[security.rate_limit]\nper_second = 0\n",
            "security.rate_limit.per_second: expected an integer >= 1 \
             (or security.rate_limit.enabled = false) (from ",
        ),
        (
            "[security.cors]\nallowed_origins = [\"https://shop.example\"]\n\
             allowed_methods = [\"GET\", \"NOT A METHOD\"]\n",
            "security.cors.allowed_methods: expected HTTP methods, found `NOT A METHOD` (from ",
        ),
        (
            "[security.auth.jwt]\nalgorithm = \"RS256\"\n",
            "security.auth.jwt.algorithm: expected an algorithm with its keys: public_key_pem, \
             jwks_file, jwks_url or discovery, found RS256 and no key (from ",
        ),
    ] {
        let dir = TempDir::new();
        let file = dir.write(
            "default.toml",
            &format!("[security.auth]\napi_keys = [\"{KEY_A}\"]\n{toml}"),
        );
        let err = start_error(&dir, &[]).await;
        // The file as the loader names it (relative to the working directory).
        assert!(
            err.starts_with(expected) && err.ends_with("default.toml)"),
            "{}: {err}",
            file.display()
        );
    }
}

#[tokio::test]
async fn security_errors_name_the_variable_or_the_default_they_came_from() {
    let dir = TempDir::new();
    let short = dir.write("jwt-secret", "short\n");
    let api_key = ("CHASSIS__SECURITY__AUTH__API_KEYS", KEY_A.to_owned());
    let cases = [
        (
            vec![
                api_key.clone(),
                ("CHASSIS__SECURITY__RATE_LIMIT__BURST", "0".to_owned()),
            ],
            "security.rate_limit.burst: expected an integer >= 1 (or security.rate_limit.enabled \
             = false) (from env CHASSIS__SECURITY__RATE_LIMIT__BURST)"
                .to_owned(),
        ),
        (
            vec![
                api_key.clone(),
                (
                    "CHASSIS__SECURITY__CONCURRENCY__MAX_IN_FLIGHT",
                    "0".to_owned(),
                ),
            ],
            "security.concurrency.max_in_flight: expected an integer >= 1 (or \
             security.concurrency.enabled = false) (from env \
             CHASSIS__SECURITY__CONCURRENCY__MAX_IN_FLIGHT)"
                .to_owned(),
        ),
        (
            vec![(
                "CHASSIS__SECURITY__AUTH__API_KEY_HEADER",
                "x api key".to_owned(),
            )],
            "security.auth.api_key_header: expected a header name, found `x api key` \
             (from env CHASSIS__SECURITY__AUTH__API_KEY_HEADER)"
                .to_owned(),
        ),
        (
            vec![
                (
                    "CHASSIS__SECURITY__AUTH__JWT__ALGORITHM",
                    "HS256".to_owned(),
                ),
                (
                    "CHASSIS__SECURITY__AUTH__JWT__SECRET_FILE",
                    short.display().to_string(),
                ),
            ],
            format!(
                "security.auth.jwt.secret: expected an HS256 secret of at least 32 bytes \
                 (security.auth.jwt.secret or CHASSIS__SECURITY__AUTH__JWT__SECRET_FILE), \
                 found 5 bytes (from file {} (via CHASSIS__SECURITY__AUTH__JWT__SECRET_FILE))",
                short.display()
            ),
        ),
        (
            vec![],
            "security.auth.enabled: expected false, or a credential: security.auth.api_keys \
             (CHASSIS__SECURITY__AUTH__API_KEYS or CHASSIS__SECURITY__AUTH__API_KEYS_FILE) or \
             security.auth.jwt.algorithm with its key, found true and no credential \
             (from built-in default)"
                .to_owned(),
        ),
    ];
    for (vars, expected) in cases {
        let err = start_error(&dir, &vars).await;
        assert!(err.starts_with(&expected), "{vars:?}:\n{err}\n{expected}");
    }
    // The OS error sits between the file and the layer.
    let missing = dir.path().join("missing.json");
    let vars = [
        (
            "CHASSIS__SECURITY__AUTH__JWT__ALGORITHM",
            "ES256".to_owned(),
        ),
        (
            "CHASSIS__SECURITY__AUTH__JWT__JWKS_FILE",
            missing.display().to_string(),
        ),
    ];
    let err = start_error(&dir, &vars).await;
    assert!(
        err.starts_with(&format!(
            "security.auth.jwt.jwks_file: expected a readable JWKS document (JSON), found `{}` (",
            missing.display()
        )) && err.ends_with("(from env CHASSIS__SECURITY__AUTH__JWT__JWKS_FILE)"),
        "{err}"
    );
}

//! Secrets (API keys, the JWT secret, a database password) never reach the
//! logs: not at start-up, not when a request brings a wrong or a right key.
//! Own test binary: it installs the global subscriber.

mod common;

use axum::Router;
use axum::routing::get;
use common::{Capture, TempDir, client, isolated};

const API_KEY: &str = "ak-live-5f1c0ffee5ecret";
const WRONG_KEY: &str = "ak-wrong-7b1d00dle";
const JWT_SECRET: &str = "jwt-secret-9a8b7c6d5e4f3a2b1c0d9e8f";
const DB_PASSWORD: &str = "db-pa55w0rd-quux";

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let capture = Capture::default();
    let layer = capture.json_layer("trace");
    let dir = TempDir::new();
    let password_file = dir.write("db-password", DB_PASSWORD);
    let service = isolated("secret-log-test", &dir)
        .install_logging(true)
        .config("logging.provider", "console")
        .config("logging.level", "trace")
        .config("security.auth.enabled", true)
        .config("security.auth.api_keys", API_KEY)
        .config("security.auth.jwt.algorithm", "HS256")
        .config("security.auth.jwt.secret", JWT_SECRET)
        .env_vars([(
            "CHASSIS__STORAGE__POSTGRES__PASSWORD_FILE".to_owned(),
            password_file.display().to_string(),
        )])
        .log_layer(layer)
        .routes(|ctx| {
            // The configuration really holds the secrets.
            let chassis = ctx.chassis();
            assert_eq!(chassis.security.auth.api_keys[0].expose(), API_KEY);
            let password: chassis_core::Secret = ctx.section("storage.postgres.password").unwrap();
            assert_eq!(password.expose(), DB_PASSWORD);
            tracing::info!(config = ?chassis, ?password, "effective configuration");
            Router::new().route("/orders", get(|| async { "ok" }))
        })
        .start()
        .await
        .unwrap();
    let url = format!("{}/orders", service.base_url());
    let wrong = client()
        .get(&url)
        .header("x-api-key", WRONG_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let bearer = client()
        .get(&url)
        .header("authorization", format!("Bearer {JWT_SECRET}"))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 401);
    let right = client()
        .get(&url)
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    service.shutdown().await.unwrap();

    let text = capture.text();
    // The capture did see the start-up, the refusals and the requests.
    assert!(text.contains("effective configuration"), "{text}");
    assert!(text.contains("request refused"), "{text}");
    assert!(text.contains("request completed"), "{text}");
    for secret in [API_KEY, WRONG_KEY, JWT_SECRET, DB_PASSWORD] {
        assert!(!text.contains(secret), "`{secret}` was logged:\n{text}");
    }
}

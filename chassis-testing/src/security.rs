//! Checks that a service's routes are closed without credentials.

use chassis_web::{RunningService, ServiceHostBuilder, StartupError};

use crate::openapi_operations;

/// `service` on a free loopback port, on the in-memory providers, with
/// authentication on (API key [`TEST_API_KEY`]).
async fn start_secured(service: ServiceHostBuilder) -> RunningService {
    let storage = service.embedded_storage_provider();
    service
        .config("http.host", "127.0.0.1")
        .config("http.port", 0_i64)
        .config("storage.provider", storage)
        .config("messaging.provider", "inmemory")
        .config("security.auth.enabled", true)
        .config("security.auth.api_keys", TEST_API_KEY)
        .args(Vec::<String>::new())
        .install_logging(false)
        .start()
        .await
        .unwrap_or_else(|e| panic!("the service did not start: {e}"))
}

/// The `/openapi.json` of `service` started with authentication on, as
/// production runs it (what [`crate::assert_edge_documented`] checks).
pub async fn openapi_document(service: ServiceHostBuilder) -> serde_json::Value {
    served_document(service, "/openapi.json").await
}

/// The JSON `service`, started with authentication on (and the in-memory
/// bus), serves at `path` to a client without credentials; panics unless
/// it answers 200.
pub(crate) async fn served_document(service: ServiceHostBuilder, path: &str) -> serde_json::Value {
    let service = start_secured(service).await;
    let response = reqwest::get(format!("{}{path}", service.base_url()))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(
        response.status(),
        200,
        "{path} must be served without credentials"
    );
    let doc = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
    service.shutdown().await.expect("clean shutdown");
    doc
}

/// The API key [`assert_routes_require_credentials`] configures.
pub const TEST_API_KEY: &str = "chassis-testing-api-key";

/// Starts `service` with authentication on (API key [`TEST_API_KEY`]) and
/// calls every operation of its `/openapi.json`: without credentials and with
/// a wrong key each must answer 401 problem+json with `WWW-Authenticate`;
/// with the key none may answer 401 or 403. `/openapi.json` itself must be
/// reachable without credentials (the default allow-list). Returns the
/// operations checked; panics naming the first route that is open.
pub async fn assert_routes_require_credentials(
    service: ServiceHostBuilder,
) -> Vec<(String, String)> {
    let service = start_secured(service).await;
    let client = reqwest::Client::new();
    let base = service.base_url();
    let doc = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(doc.status(), 200, "/openapi.json must be allow-listed");
    let doc: serde_json::Value = doc.json().await.expect("/openapi.json is JSON");
    let operations = openapi_operations(&doc);
    assert!(!operations.is_empty(), "/openapi.json lists no operation");
    for (method, path) in &operations {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let call = |key: Option<&str>| {
            let mut request = client.request(method.clone(), format!("{base}{path}"));
            if let Some(key) = key {
                request = request.header("x-api-key", key);
            }
            request.send()
        };
        for key in [None, Some("wrong-key")] {
            let response = call(key).await.expect("request");
            assert_eq!(
                response.status(),
                401,
                "{method} {path} with key {key:?} is open"
            );
            assert!(
                response.headers().contains_key("www-authenticate"),
                "{method} {path}: 401 without WWW-Authenticate"
            );
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{method} {path}"
            );
        }
        let status = call(Some(TEST_API_KEY)).await.expect("request").status();
        assert!(
            status != 401 && status != 403,
            "{method} {path} refuses the valid key: {status}"
        );
    }
    service.shutdown().await.expect("shutdown");
    operations
}

/// Starts `service` in the `production` environment (its
/// `config/production.toml`, in-memory providers, no credential set) and
/// expects start-up to fail because authentication is on without a key.
pub async fn assert_production_requires_credentials(service: ServiceHostBuilder) {
    let started = service
        .environment("production")
        .env_vars(Vec::<(String, String)>::new())
        .config("http.port", 0_i64)
        // Only `[security]` of the production file is under test here.
        .config("messaging.provider", "inmemory")
        .config("storage.provider", "inmemory")
        .args(Vec::<String>::new())
        .install_logging(false)
        .start()
        .await;
    let Err(err) = started else {
        panic!("production must not start without a credential");
    };
    assert!(matches!(err, StartupError::Security(_)), "{err}");
    assert!(err.to_string().contains("security.auth.api_keys"), "{err}");
}

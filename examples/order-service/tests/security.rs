//! With authentication on, every route of the service's OpenAPI document
//! answers 401 without credentials (routes added later are covered too), and
//! the production configuration turns authentication on.

use chassis_web::StartupError;

#[tokio::test]
async fn every_documented_route_requires_credentials() {
    let checked = chassis_testing::assert_routes_require_credentials(order_service::host()).await;
    assert!(checked.len() >= 2, "{checked:?}");
}

#[tokio::test]
async fn production_configuration_requires_a_credential() {
    let err = order_service::host()
        .environment("production")
        .env_vars(Vec::<(String, String)>::new())
        .config("http.port", 0_i64)
        // Only `[security]` of config/production.toml is under test here.
        .config("messaging.provider", "inmemory")
        .config("storage.provider", "inmemory")
        .args(Vec::<String>::new())
        .install_logging(false)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartupError::Security(_)), "{err}");
    assert!(err.to_string().contains("security.auth.api_keys"), "{err}");
}

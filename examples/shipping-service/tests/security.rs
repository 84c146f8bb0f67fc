//! With authentication on, every route of the service's OpenAPI document
//! answers 401 without credentials (routes added later are covered too), and
//! the production configuration turns authentication on.

#[tokio::test]
async fn every_documented_route_requires_credentials() {
    let checked =
        chassis_testing::assert_routes_require_credentials(shipping_service::host()).await;
    assert!(checked.len() >= 2, "{checked:?}");
}

#[tokio::test]
async fn production_configuration_requires_a_credential() {
    chassis_testing::assert_production_requires_credentials(shipping_service::host()).await;
}

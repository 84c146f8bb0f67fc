//! The typed client against the order service with authentication on, the
//! way production runs it: a missing or wrong credential is a typed
//! [`ClientError::Unauthorized`], an API key or a bearer token from the
//! client's configuration is accepted, and a service in the middle forwards
//! its caller's bearer token.

use std::time::{SystemTime, UNIX_EPOCH};

use chassis_testing::{InProcess, TestBus};
use chassis_web::axum::Router;
use chassis_web::axum::extract::{Path, State};
use chassis_web::axum::routing::get;
use chassis_web::security::Principal;
use chassis_web::{RunningService, ServiceHost, ServiceHostBuilder};
use order_service_client::{CallContext, ClientConfig, ClientError, OrderServiceClient};
use serde_json::json;
use uuid::Uuid;

const KEY: &str = "order-key-0123456789";
const SECRET: &str = "a-shared-hs256-secret-of-32-bytes-or-more";

/// Authentication on with an API key and HS256 bearer tokens.
fn secured(builder: ServiceHostBuilder) -> ServiceHostBuilder {
    builder
        .in_process()
        .config("storage.provider", "inmemory")
        .config("security.auth.enabled", true)
        .config("security.auth.api_keys", KEY)
        .config("security.auth.jwt.algorithm", "HS256")
        .config("security.auth.jwt.secret", SECRET)
}

async fn order_service(bus: &TestBus) -> RunningService {
    secured(order_service::host().event_bus(bus.bus()))
        .start()
        .await
        .unwrap()
}

fn token(subject: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": subject, "exp": now + 300 }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn client(service: &RunningService, auth: &[(&str, &str)]) -> OrderServiceClient {
    let mut config = ClientConfig::new(service.base_url());
    for (key, value) in auth {
        match *key {
            "api_key" => config.auth.api_key = (*value).into(),
            "bearer_token" => config.auth.bearer_token = (*value).into(),
            "forward_bearer" => config.auth.forward_bearer = *value == "true",
            other => panic!("no setting {other}"),
        }
    }
    OrderServiceClient::new(&config).unwrap()
}

#[tokio::test]
async fn a_client_without_credentials_gets_a_typed_unauthorized_error() {
    let bus = TestBus::in_memory();
    let service = order_service(&bus).await;
    for orders in [
        client(&service, &[]),
        client(&service, &[("api_key", "wrong-key")]),
    ] {
        let err = orders.get_order(Uuid::now_v7()).await.unwrap_err();
        assert!(err.is_unauthorized(), "{err}");
        match &err {
            ClientError::Unauthorized {
                challenge, problem, ..
            } => {
                let challenge = challenge.as_deref().unwrap();
                assert!(challenge.contains("Bearer") && challenge.contains("ApiKey"));
                assert_eq!(problem.as_ref().unwrap().status, Some(401));
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
        assert!(!err.to_string().contains("wrong-key"), "{err}");
    }
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_with_an_api_key_or_a_bearer_token_is_served() {
    let bus = TestBus::in_memory();
    let service = order_service(&bus).await;
    let bearer = token("checkout");
    for orders in [
        client(&service, &[("api_key", KEY)]),
        client(&service, &[("bearer_token", &bearer)]),
    ] {
        // Authenticated: the lookup of an unknown order is a plain 404.
        assert_eq!(orders.get_order(Uuid::now_v7()).await.unwrap(), None);
    }
    // The credential never shows in the client's debug output.
    let shown = format!("{:?}", client(&service, &[("api_key", KEY)]));
    assert!(!shown.contains(KEY), "{shown}");
    service.shutdown().await.unwrap();
}

/// A service in front of the order service: its handler calls the order
/// service with `orders`, in the context of its own caller.
async fn front(bus: &TestBus, orders: OrderServiceClient) -> RunningService {
    async fn lookup(
        principal: Principal,
        State(orders): State<OrderServiceClient>,
        Path(id): Path<Uuid>,
    ) -> String {
        let orders = orders
            .with_context(CallContext::current().with_bearer_token(principal.bearer_token.clone()));
        match orders.get_order(id).await {
            Ok(found) => format!("found: {}", found.is_some()),
            Err(e) => format!("refused: {:?}", e.status()),
        }
    }
    // A service of its own: not the order service's `config/` folder.
    let config_dir = std::env::temp_dir().join("client-auth-front-has-no-config");
    std::fs::create_dir_all(&config_dir).unwrap();
    secured(
        ServiceHost::builder("front")
            .config_dir(config_dir)
            .event_bus(bus.bus()),
    )
    .routes(move |_| {
        Router::new()
            .route("/lookup/{id}", get(lookup))
            .with_state(orders.clone())
    })
    .start()
    .await
    .unwrap()
}

#[tokio::test]
async fn a_service_in_the_middle_forwards_its_callers_bearer_token() {
    let bus = TestBus::in_memory();
    let service = order_service(&bus).await;
    let user = token("ada");
    let via = |front: &RunningService| {
        let url = format!("{}/lookup/{}", front.base_url(), Uuid::now_v7());
        let user = user.clone();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(user)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };

    // Forwarding on, no credential of its own: only the user's token can
    // have been accepted.
    let forwarding = front(&bus, client(&service, &[("forward_bearer", "true")])).await;
    assert_eq!(via(&forwarding).await, "found: false");
    forwarding.shutdown().await.unwrap();

    // Forwarding wins over the client's own credential (a wrong key here).
    let both = client(
        &service,
        &[("forward_bearer", "true"), ("api_key", "wrong")],
    );
    let forwarding = front(&bus, both).await;
    assert_eq!(via(&forwarding).await, "found: false");
    forwarding.shutdown().await.unwrap();

    // Off by default: the user's token does not travel on.
    let keeping = front(&bus, client(&service, &[])).await;
    assert_eq!(via(&keeping).await, "refused: Some(401)");
    keeping.shutdown().await.unwrap();

    // Without a token to forward, the client's own credential is sent.
    let own = client(&service, &[("forward_bearer", "true"), ("api_key", KEY)]);
    assert_eq!(own.get_order(Uuid::now_v7()).await.unwrap(), None);
    service.shutdown().await.unwrap();
}

#[test]
fn client_credentials_come_from_secret_files_and_are_redacted_in_print_config() {
    let dir = std::env::temp_dir().join(format!("client-auth-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("orders-api-key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let loaded = chassis_web::ConfigLoader::new()
        .config_dir(&dir)
        .environment("none")
        .env_vars([
            (
                "CHASSIS__CLIENTS__ORDERS__BASE_URL",
                "http://orders:8080".to_owned(),
            ),
            (
                "CHASSIS__CLIENTS__ORDERS__AUTH__API_KEY_FILE",
                key_file.display().to_string(),
            ),
            (
                "CHASSIS__CLIENTS__SHIPPING__AUTH__BEARER_TOKEN",
                "service-token-value".to_owned(),
            ),
        ])
        .default_value("service.name", "front")
        .load()
        .unwrap();
    let orders: ClientConfig = loaded.section("clients.orders").unwrap();
    assert_eq!(
        orders.auth.api_key.expose(),
        KEY,
        "read from the file, trimmed"
    );
    assert_eq!(orders.base_url, "http://orders:8080");
    let shipping: ClientConfig = loaded.section("clients.shipping").unwrap();
    assert_eq!(shipping.auth.bearer_token.expose(), "service-token-value");

    let text = loaded.render();
    assert!(
        text.contains("clients.orders.auth.api_key = \"***\""),
        "{text}"
    );
    assert!(
        text.contains("clients.shipping.auth.bearer_token = \"***\""),
        "{text}"
    );
    for leaked in [KEY, "service-token-value"] {
        assert!(!text.contains(leaked), "{leaked} leaked:\n{text}");
    }
    // And the section as the service holds it shows no secret either.
    let shown = format!("{orders:?} {}", serde_json::to_string(&orders).unwrap());
    assert!(!shown.contains(KEY), "{shown}");
    std::fs::remove_dir_all(&dir).unwrap();
}

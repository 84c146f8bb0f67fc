//! The service end to end in one process, on the in-memory bus and a private
//! SQLite database (its tables need SQL; gone at shutdown):
//! HTTP in, command, outbox, relay, bus, inbox handler, read model out —
//! through the chassis test harness (`chassis_testing`) and the typed HTTP
//! client (`chassis_client`).

use chassis_client::{ClientConfig, HttpClient};
use chassis_testing::TestBus;
use chassis_domain::IntegrationEvent;
use chassis_web::RunningService;
use serde_json::{Value, json};
use {{crate_name}}::api::{CreateItemRequest, ItemView, StatsView};
use {{crate_name}}::events::ItemCreated;

/// The service on a free loopback port with an in-memory test bus, and a
/// client for it.
async fn start() -> (RunningService, TestBus, HttpClient) {
    let bus = TestBus::in_memory();
    let service = chassis_testing::start({{crate_name}}::host(), &bus).await;
    let client = HttpClient::new(&ClientConfig::new(service.base_url())).expect("a client");
    (service, bus, client)
}

#[tokio::test]
async fn a_created_item_is_stored_and_counted_through_its_event() {
    let (service, bus, client) = start().await;

    let created = client
        .post::<_, ItemView>(
            "/items",
            &CreateItemRequest {
                name: " lamp ".into(),
            },
        )
        .await
        .expect("created");
    assert_eq!(created.status, 201);
    assert_eq!(created.body.name, "lamp");
    let location = created.location.expect("a Location header");
    assert_eq!(location, format!("/items/{}", created.body.id));

    let item = client
        .get::<ItemView>(&location, &[])
        .await
        .expect("the item");
    assert_eq!(item.body, created.body);

    // ItemCreated goes outbox → relay → bus → inbox handler → ItemStats.
    bus.wait_until("ItemCreated handled", |handled| {
        handled
            .iter()
            .find(|h| h.event_type == ItemCreated::EVENT_TYPE && h.outcome.is_ok())
            .map(|_| ())
    })
    .await;
    let stats = client
        .get::<StatsView>("/stats", &[])
        .await
        .expect("stats");
    assert_eq!(stats.body.items_created, 1);

    service.shutdown().await.expect("clean shutdown");
    bus.shutdown().await.expect("the test bus drains");
}

#[tokio::test]
async fn errors_are_problems_naming_what_is_wrong() {
    let (service, bus, client) = start().await;

    let empty = client
        .post::<_, Value>("/items", &json!({"name": ""}))
        .await
        .expect_err("an empty name is refused");
    assert!(empty.is_validation(), "{empty}");
    assert!(empty.problem().is_some_and(|p| p.mentions("name")), "{empty}");

    let unknown = client
        .post::<_, Value>("/items", &json!({"title": "x"}))
        .await
        .expect_err("a body without a name is refused");
    assert!(unknown.is_validation(), "{unknown}");

    let missing = client
        .get::<Value>("/items/00000000-0000-7000-8000-000000000000", &[])
        .await
        .expect_err("no such item");
    assert!(missing.is_not_found(), "{missing}");

    service.shutdown().await.expect("clean shutdown");
    bus.shutdown().await.expect("the test bus drains");
}

#[tokio::test]
async fn health_endpoints_and_the_healthcheck_probe_see_a_ready_service() {
    let (service, bus, client) = start().await;

    for probe in ["/health/live", "/health/ready"] {
        let answer = client.get::<Value>(probe, &[]).await;
        assert!(answer.is_ok(), "{probe}: {answer:?}");
    }
    let addr = service.local_addr();
    tokio::task::spawn_blocking(move || chassis_web::probe::probe(addr))
        .await
        .unwrap()
        .expect("the --healthcheck probe passes");

    service.shutdown().await.expect("clean shutdown");
    bus.shutdown().await.expect("the test bus drains");
}

/// `/openapi.json` documents every answer of the chassis's edge (with
/// authentication on, as in production) and states the name rule the
/// domain enforces. `scripts/openapi-test` runs generated requests against
/// it.
#[tokio::test]
async fn the_openapi_document_tells_what_the_service_answers() {
    let doc = chassis_testing::openapi_document({{crate_name}}::host()).await;
    let checked = chassis_testing::assert_edge_documented(&doc);
    assert_eq!(checked.len(), 3, "{checked:?}");
    let name = &doc["components"]["schemas"]["CreateItemRequest"]["properties"]["name"];
    assert_eq!(name["minLength"], 1);
    assert_eq!(name["maxLength"], {{crate_name}}::domain::MAX_NAME_CHARS);
    assert_eq!(name["pattern"], chassis_domain::text::NOT_BLANK_PATTERN);
}

/// `/asyncapi.json` (served without credentials) lists the event the
/// service publishes and receives, with its payload schema;
/// `chassis_testing::asyncapi::check_contracts` checks it against the
/// documents of the services it talks to.
#[tokio::test]
async fn the_asyncapi_document_lists_the_events() {
    let doc = chassis_testing::asyncapi::asyncapi_document({{crate_name}}::host()).await;
    let id = ItemCreated::EVENT_TYPE.replace('.', "_");
    assert_eq!(doc["operations"][format!("send_{id}")]["action"], "send");
    assert_eq!(doc["operations"][format!("receive_{id}")]["action"], "receive");
    let payload = &doc["components"]["messages"][&id]["payload"]["schema"];
    assert_eq!(payload["properties"]["item_id"]["format"], "uuid");
    chassis_testing::asyncapi::check_contracts(&[&doc]);
}

//! The service end to end in one process, on the in-memory bus and store:
//! HTTP in, command, outbox, relay, bus, inbox handler, read model out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chassis_web::RunningService;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 exchange (`Connection: close`): status and JSON body.
async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the service");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).expect("a JSON body")
    };
    (status, body)
}

async fn start() -> RunningService {
    {{crate_name}}::host()
        .config("http.port", 0)
        .config("messaging.provider", "inmemory")
        .config("storage.provider", "inmemory")
        .install_logging(false)
        .start()
        .await
        .expect("the service starts on the in-memory providers")
}

#[tokio::test]
async fn a_created_item_is_stored_and_counted_through_its_event() {
    let service = start().await;
    let addr = service.local_addr();

    let (status, created) = call(addr, "POST", "/items", Some(json!({"name": " lamp "}))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "lamp");
    let id = created["id"].as_str().expect("an id").to_owned();

    let (status, item) = call(addr, "GET", &format!("/items/{id}"), None).await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item, created);

    // ItemCreated goes outbox → relay → bus → inbox handler → ItemStats.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, stats) = call(addr, "GET", "/stats", None).await;
        assert_eq!(status, 200, "{stats}");
        if stats["items_created"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ItemCreated not counted within 10 s: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn errors_are_problems_naming_what_is_wrong() {
    let service = start().await;
    let addr = service.local_addr();

    let (status, problem) = call(addr, "POST", "/items", Some(json!({"name": ""}))).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "name", "{problem}");

    let (status, problem) = call(addr, "POST", "/items", Some(json!({"title": "x"}))).await;
    assert_eq!(status, 422, "{problem}");

    let missing = "00000000-0000-7000-8000-000000000000";
    let (status, problem) = call(addr, "GET", &format!("/items/{missing}"), None).await;
    assert_eq!(status, 404, "{problem}");

    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn health_endpoints_and_the_healthcheck_probe_see_a_ready_service() {
    let service = start().await;
    let addr = service.local_addr();

    assert_eq!(call(addr, "GET", "/health/live", None).await.0, 200);
    assert_eq!(call(addr, "GET", "/health/ready", None).await.0, 200);
    let probe = tokio::task::spawn_blocking(move || chassis_web::healthcheck::probe(addr));
    probe
        .await
        .unwrap()
        .expect("the --healthcheck probe passes");

    service.shutdown().await.expect("clean shutdown");
}

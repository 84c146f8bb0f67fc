//! The store's series at `/metrics` (checked with a real parser): the
//! PostgreSQL pool's connections, waiting and timed-out acquires, acquire
//! wait times, and the
//! outbox relay's write → publish delay. Needs PostgreSQL on 127.0.0.1:5432
//! (database `test`, user `postgres`, trust) and fails without it; a schema
//! of its own, dropped at the end. Own test binary: the host installs the
//! process' metrics recorder.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use chassis_domain::UnitOfWork;
use chassis_storage::Persistence;
use common::{TempDir, client, isolated};
use messaging_abstractions::{Envelope, Handlers, IntegrationEvent, Subscription};
use prometheus_parse::{Sample, Scrape, Value};
use serde::{Deserialize, Serialize};
use storage_abstractions::{StorageConfig, StorageError, Store};
use storage_postgres::{PostgresConfig, PostgresStore};
use tokio::sync::mpsc;

const SERVICE: &str = "pool-test";
const MAX_CONNECTIONS: u32 = 3;

#[derive(Debug, Serialize, Deserialize)]
struct Placed {
    n: u32,
}

impl IntegrationEvent for Placed {
    const EVENT_TYPE: &'static str = "test.placed.v1";
}

fn storage_config() -> StorageConfig {
    let mut config = StorageConfig {
        provider: "postgres".into(),
        ..StorageConfig::default()
    };
    config.outbox.poll_interval = Duration::from_millis(50);
    config
}

fn postgres_config(schema: &str) -> PostgresConfig {
    PostgresConfig {
        url: "postgres://postgres@127.0.0.1:5432/test".into(),
        schema: schema.into(),
        max_connections: MAX_CONNECTIONS,
        min_connections: 0,
        acquire_timeout: Duration::from_millis(300),
        ..PostgresConfig::default()
    }
}

/// Drops the test's schema, pass or fail.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                "postgres://postgres@127.0.0.1:5432/test",
                "-c",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0),
            ])
            .output();
    }
}

fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition format")
}

fn series<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> &'a Sample {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} {labels:?} in {:#?}",
        scrape.samples
    );
    found[0]
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match series(scrape, name, labels).value {
        Value::Gauge(v) | Value::Counter(v) => v,
        ref other => panic!("{name}: not a gauge or counter: {other:?}"),
    }
}

/// `db_client_connection_wait_time_seconds`: all waits, and those ≤ 250 ms.
fn wait_time(scrape: &Scrape, labels: &[(&str, &str)]) -> (f64, f64) {
    let Value::Histogram(buckets) =
        &series(scrape, "db_client_connection_wait_time_seconds", labels).value
    else {
        panic!("db_client_connection_wait_time_seconds: not a histogram");
    };
    let count = |le: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == le)
            .map_or(0.0, |b| b.count)
    };
    (count(f64::INFINITY), count(0.25))
}

async fn metrics(base: &str) -> Scrape {
    let response = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    scrape(&response.text().await.unwrap())
}

/// `POST /placed/{n}`: one unit of work writing one event to the outbox.
fn routes(storage: Persistence) -> Router {
    Router::new().route(
        "/placed/{n}",
        post(move |axum::extract::Path(n): axum::extract::Path<u32>| {
            let storage = storage.clone();
            async move {
                let mut uow = storage
                    .begin(chassis_web::current_message_context())
                    .await
                    .unwrap();
                let envelope = Envelope::for_event(&Placed { n }).unwrap();
                uow.enqueue(&n.to_string(), vec![envelope]).await.unwrap();
                uow.commit().await.unwrap();
                "placed"
            }
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pool_and_relay_delay_are_exported() {
    let schema = Schema(format!(
        "metrics_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    let config = storage_config();
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(&postgres_config(&schema.0))
            .await
            .unwrap(),
    );
    let (handled_tx, mut handled) = mpsc::unbounded_channel();
    let dir = TempDir::new();
    let relay_config = config.clone();
    let routes_config = config.clone();
    let service = isolated(SERVICE, &dir)
        .store(store.clone())
        .on_start(move |ctx| async move {
            let handlers = Handlers::new().on_fn(move |placed: Placed, _| {
                let handled = handled_tx.clone();
                async move {
                    let _ = handled.send(placed.n);
                    Ok(())
                }
            });
            ctx.bus()
                .subscribe(Subscription::new("pool-test-consumer", handlers))
                .await?;
            let relay =
                Persistence::new(ctx.store().clone(), relay_config).start_relay(ctx.bus().clone());
            let stopping = ctx.shutdown_signal();
            ctx.spawn("outbox-relay", async move {
                stopping.stopping().await;
                relay.shutdown().await?;
                Ok(())
            });
            Ok(())
        })
        .routes(move |ctx| routes(Persistence::new(ctx.store().clone(), routes_config.clone())))
        .start()
        .await
        .unwrap();
    let base = service.base_url();
    let labels = [("service", SERVICE), ("provider", "postgres")];

    // Three units of work; the relay publishes their events.
    for n in 1..=3 {
        let response = client()
            .post(format!("{base}/placed/{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let n = tokio::time::timeout(Duration::from_secs(10), handled.recv())
            .await
            .expect("the relay publishes the outbox")
            .unwrap();
        seen.push(n);
    }
    // The delay is recorded when the relay marks the batch sent, just after
    // the publish the consumer saw: wait for all three.
    let s = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let s = metrics(&base).await;
            let delay = s
                .samples
                .iter()
                .find(|x| x.metric == "outbox_relay_delay_seconds")
                .map(|x| match &x.value {
                    Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
                    other => panic!("outbox_relay_delay_seconds: not a histogram: {other:?}"),
                });
            if delay == Some(3.0) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("three relay delays recorded");
    let delay = series(&s, "outbox_relay_delay_seconds", &[("service", SERVICE)]);
    let Value::Histogram(buckets) = &delay.value else {
        unreachable!()
    };
    // Every delay is a real one: within the 10 s bucket, and the sum is
    // positive (written before published).
    let within_10s = buckets.iter().find(|b| b.less_than == 10.0).unwrap();
    assert_eq!(within_10s.count, 3.0, "{buckets:?}");
    let sum = match series(
        &s,
        "outbox_relay_delay_seconds_sum",
        &[("service", SERVICE)],
    )
    .value
    {
        Value::Untyped(v) | Value::Counter(v) | Value::Gauge(v) => v,
        ref other => panic!("{other:?}"),
    };
    assert!(sum > 0.0 && sum < 30.0, "sum {sum}");

    // The pool: its size and three acquires for the three units of work.
    assert_eq!(
        value(&s, "db_client_connection_max", &labels),
        f64::from(MAX_CONNECTIONS)
    );
    assert!(value(&s, "db_client_connection_acquires_total", &labels) >= 3.0);
    let (waits, _) = wait_time(&s, &labels);
    assert!(waits >= 3.0, "{waits} acquire waits recorded");
    assert_eq!(
        value(&s, "db_client_connection_pending_requests", &labels),
        0.0
    );
    assert_eq!(
        value(&s, "db_client_connection_timeouts_total", &labels),
        0.0
    );
    let used = |s: &Scrape| {
        value(
            s,
            "db_client_connection_count",
            &[labels[0], labels[1], ("state", "used")],
        )
    };
    let idle = |s: &Scrape| {
        value(
            s,
            "db_client_connection_count",
            &[labels[0], labels[1], ("state", "idle")],
        )
    };
    assert!(used(&s) + idle(&s) <= f64::from(MAX_CONNECTIONS));

    // Every connection lent out (sampled at scrape time, no refresh delay);
    // one more unit of work waits, then gives up after the acquire timeout.
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        held.push(store.begin().await.unwrap());
    }
    let s = metrics(&base).await;
    assert_eq!(used(&s), f64::from(MAX_CONNECTIONS));
    assert_eq!(idle(&s), 0.0);
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { store.begin().await.map(drop) })
    };
    let s = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let s = metrics(&base).await;
            if value(&s, "db_client_connection_pending_requests", &labels) >= 1.0 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the unit of work waits for a connection");
    assert_eq!(
        value(&s, "db_client_connection_timeouts_total", &labels),
        0.0
    );
    let error = waiting.await.unwrap().expect_err("no connection to be had");
    assert!(matches!(error, StorageError::Unavailable(_)), "{error}");
    let s = metrics(&base).await;
    assert!(value(&s, "db_client_connection_timeouts_total", &labels) >= 1.0);
    // The timed-out acquire waited the acquire timeout (300 ms).
    let (waits, within_250ms) = wait_time(&s, &labels);
    assert!(
        waits > within_250ms,
        "no wait above 250 ms: {waits} / {within_250ms}"
    );
    assert_eq!(
        value(&s, "db_client_connection_pending_requests", &labels),
        0.0
    );

    // Given back: idle again.
    drop(held);
    let s = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let s = metrics(&base).await;
            if used(&s) == 0.0 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("connections return to the pool");
    assert!(idle(&s) >= 1.0);

    service.shutdown().await.unwrap();
    store.shutdown().await;
}

#[tokio::test]
async fn the_in_memory_store_has_no_pool_series() {
    let dir = TempDir::new();
    let service = isolated("no-pool-test", &dir).start().await.unwrap();
    let s = metrics(&service.base_url()).await;
    assert!(
        !s.samples
            .iter()
            .any(|x| x.metric.starts_with("db_client_connection")
                && x.labels.get("service") == Some("no-pool-test")),
        "{:#?}",
        s.samples
    );
    service.shutdown().await.unwrap();
}

/// Every series the Grafana dashboard (docs/grafana-dashboard.json) queries
/// is one the host exports.
#[test]
fn the_dashboard_queries_only_exported_series() {
    use chassis_web::telemetry::names;
    let exported = [
        names::HTTP_REQUESTS,
        names::HTTP_DURATION,
        names::BUS_PUBLISHED,
        names::BUS_PUBLISH_FAILED,
        names::BUS_CONSUMED,
        names::BUS_FAILED,
        names::BUS_RETRIED,
        names::BUS_DEAD_LETTERED,
        names::BUS_HANDLER_DURATION,
        names::OUTBOX_PENDING,
        names::OUTBOX_QUARANTINED,
        names::OUTBOX_LAG,
        names::OUTBOX_RELAY_DELAY,
        names::DB_POOL_CONNECTIONS,
        names::DB_POOL_MAX,
        names::DB_POOL_PENDING,
        names::DB_POOL_ACQUIRES,
        names::DB_POOL_TIMEOUTS,
        names::DB_POOL_WAIT,
        names::SERVICE_INFO,
    ];
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            // A series is an identifier right before its `{` selector.
            for (at, _) in expr.match_indices('{') {
                let name: String = expr[..at]
                    .chars()
                    .rev()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                if !name.is_empty() {
                    queried.push(name);
                }
            }
        }
    }
    assert!(queried.len() > 10, "{queried:?}");
    for name in &queried {
        let base = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(
            exported.contains(&base),
            "the dashboard queries `{name}`, which is not exported"
        );
    }
    for name in [
        names::OUTBOX_RELAY_DELAY,
        names::DB_POOL_CONNECTIONS,
        names::DB_POOL_PENDING,
    ] {
        assert!(
            queried.iter().any(|q| q.starts_with(name)),
            "no dashboard panel shows `{name}`"
        );
    }
}

//! Transactions/s of the unit of work a command performs with the outbox:
//! read one record, update it, append one outbox message, commit — against
//! the real PostgreSQL server.
//!
//! ```text
//! cargo bench -p storage-postgres --bench outbox_commit
//! STORAGE_BENCH_URL=postgres://postgres@127.0.0.1:5432/test \
//! STORAGE_BENCH_SECONDS=5 STORAGE_BENCH_CONCURRENCY=1,4,16 \
//!   cargo bench -p storage-postgres --bench outbox_commit
//! ```
//!
//! Each worker updates records of its own (no conflicts), so the figure is
//! the store's throughput, not contention. Runs in a fresh schema, dropped
//! at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{Connection, PgConnection};
use storage_abstractions::{OutboxMessage, Record, Store};
use storage_postgres::{PostgresConfig, PostgresStore};
use uuid::Uuid;

const RECORDS_PER_WORKER: usize = 16;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn one_command(store: &PostgresStore, id: &str) {
    let mut tx = store.begin().await.expect("begin");
    let mut record = tx.get("accounts", id).await.expect("get").expect("seeded");
    let n = record.data["n"].as_u64().unwrap_or(0) + 1;
    record.data["n"] = json!(n);
    tx.update(record.next_version()).await.expect("update");
    tx.append_outbox(vec![OutboxMessage {
        id: Uuid::new_v4(),
        ordering_key: id.to_owned(),
        event_type: "account.changed.v1".into(),
        body: format!("{{\"id\":\"{id}\",\"n\":{n}}}").into_bytes(),
    }])
    .await
    .expect("append");
    tx.commit().await.expect("commit");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn run(url: &str, concurrency: usize, seconds: u64) {
    let schema = format!("bench_{}", Uuid::new_v4().simple());
    let config = PostgresConfig {
        url: url.into(),
        schema: schema.clone(),
        max_connections: u32::try_from(concurrency).unwrap_or(u32::MAX),
        ..PostgresConfig::default()
    };
    let store = Arc::new(
        PostgresStore::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} is required: {e}")),
    );
    let mut tx = store.begin().await.unwrap();
    for worker in 0..concurrency {
        for r in 0..RECORDS_PER_WORKER {
            tx.insert(Record::new(
                "accounts",
                format!("w{worker}-{r}"),
                json!({"n": 0}),
            ))
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let id = format!("w{worker}-{}", i % RECORDS_PER_WORKER);
                let t = Instant::now();
                one_command(&store, &id).await;
                latencies.push(t.elapsed());
                i += 1;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let backlog = store.outbox().backlog().await.unwrap();
    assert_eq!(
        backlog.pending,
        latencies.len() as u64,
        "one outbox row per commit"
    );
    println!(
        "concurrency {concurrency:>3}: {:>7.0} tx/s  ({} commits in {:.1?}; latency p50 {:.2?} p99 {:.2?})",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies.len(),
        elapsed,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
    store.shutdown().await;
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and
    // only wants to know the binary builds and starts.
    let benching = std::env::args().any(|a| a == "--bench");
    let url = env_or(
        "STORAGE_BENCH_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let seconds: u64 = env_or("STORAGE_BENCH_SECONDS", if benching { "5" } else { "1" })
        .parse()
        .expect("STORAGE_BENCH_SECONDS: expected whole seconds");
    let levels: Vec<usize> = env_or(
        "STORAGE_BENCH_CONCURRENCY",
        if benching { "1,4,16" } else { "2" },
    )
    .split(',')
    .map(|s| {
        s.trim()
            .parse()
            .expect("STORAGE_BENCH_CONCURRENCY: expected e.g. 1,4,16")
    })
    .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("update one record + append one outbox message + commit, PostgreSQL ({url})");
    for concurrency in levels {
        runtime.block_on(run(&url, concurrency, seconds));
    }
}

//! Behaviour specific to the PostgreSQL provider: migrations, connecting,
//! the single active relay, cross-instance wake-up, health.

mod common;

use std::time::{Duration, Instant};

use chassis_core::HealthStatus;
use storage_abstractions::{OutboxMessage, Record, Store};
use storage_postgres::{PostgresConfig, PostgresError, PostgresStore, migrate};
use uuid::Uuid;

fn message(key: &str) -> OutboxMessage {
    OutboxMessage {
        id: Uuid::new_v4(),
        ordering_key: key.into(),
        event_type: "thing.v1".into(),
        body: b"{}".to_vec(),
    }
}

async fn append(store: &PostgresStore, messages: Vec<OutboxMessage>) {
    let mut tx = store.begin().await.unwrap();
    tx.append_outbox(messages).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn migrations_apply_once_into_the_configured_schema() {
    let schema = common::TestSchema::new();
    // Two replicas starting at once both succeed; the migration runs once.
    let (a, b) = tokio::join!(common::connect(&schema), common::connect(&schema));
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM chassis_migrations ORDER BY version")
            .fetch_all(a.pool())
            .await
            .unwrap();
    let expected: Vec<i64> = migrate::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(versions, expected);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(schema.as_str())
    .fetch_all(a.pool())
    .await
    .unwrap();
    assert_eq!(
        tables,
        ["chassis_migrations", "inbox", "outbox", "records"],
        "everything lives in the configured schema"
    );
    a.shutdown().await;
    b.shutdown().await;
    // A restart finds nothing to do and the data intact.
    let c = common::connect(&schema).await;
    let mut tx = c.begin().await.unwrap();
    tx.insert(Record::new("orders", "o-1", serde_json::json!({})))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    c.shutdown().await;
}

#[tokio::test]
async fn without_migrations_a_missing_schema_fails_at_use_not_silently() {
    let schema = common::TestSchema::new();
    let mut config = common::config(&schema);
    config.run_migrations = false;
    let store = PostgresStore::connect(&config).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let error = tx.get("orders", "o-1").await.unwrap_err();
    assert!(error.to_string().contains("records"), "{error}");
    drop(tx);
    store.shutdown().await;
}

#[tokio::test]
async fn connect_errors_are_precise() {
    let mut config = common::config("unreachable");
    config.url = "postgres://postgres@127.0.0.1:1/test".into();
    config.retry_attempts = 1;
    config.acquire_timeout = Duration::from_secs(1);
    match PostgresStore::connect(&config).await {
        Err(PostgresError::Connect { target, .. }) => assert_eq!(target, "127.0.0.1:1/test"),
        other => panic!("expected Connect error, got {other:?}"),
    }

    let config = PostgresConfig {
        max_connections: 0,
        ..PostgresConfig::default()
    };
    let error = PostgresStore::connect(&config).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("storage.postgres.max_connections"),
        "{error}"
    );

    let mut config = common::config("x");
    config.url = "postgres://127.0.0.1:notaport/test".into();
    let error = PostgresStore::connect(&config).await.unwrap_err();
    assert!(matches!(error, PostgresError::InvalidUrl(_)), "{error:?}");
}

#[tokio::test]
async fn statement_timeout_applies_and_surfaces_as_unavailable() {
    let schema = common::TestSchema::new();
    let mut config = common::config(&schema);
    config.statement_timeout = Duration::from_millis(200);
    let store = PostgresStore::connect(&config).await.unwrap();
    let started = Instant::now();
    let error = sqlx::query("SELECT pg_sleep(5)")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "timeout not applied"
    );
    assert!(error.to_string().contains("statement timeout"), "{error}");
    store.shutdown().await;
}

#[tokio::test]
async fn only_one_instance_relays_at_a_time() {
    let schema = common::TestSchema::new();
    let first = common::connect(&schema).await;
    let second = common::connect(&schema).await;
    append(&first, vec![message("a"), message("b")]).await;

    let batch = first.outbox().fetch_pending(10).await.unwrap();
    assert_eq!(batch.len(), 2);
    assert!(first.postgres_outbox().is_active_relay().await);
    assert!(
        second.outbox().fetch_pending(10).await.unwrap().is_empty(),
        "a standby instance gets nothing while the other relays"
    );
    assert!(!second.postgres_outbox().is_active_relay().await);
    // Both still see the backlog (for readiness).
    assert_eq!(second.outbox().backlog().await.unwrap().pending, 2);

    // The first relayed one message, then stopped mid-batch.
    first
        .outbox()
        .mark_sent(&[batch[0].sequence])
        .await
        .unwrap();
    first.shutdown().await;
    let taken_over = second.outbox().fetch_pending(10).await.unwrap();
    assert_eq!(
        taken_over.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [batch[1].sequence],
        "the next instance continues with what was not sent"
    );
    assert!(second.postgres_outbox().is_active_relay().await);
    second.shutdown().await;
}

#[tokio::test]
async fn a_commit_in_another_instance_wakes_the_relay() {
    let schema = common::TestSchema::new();
    let relay = common::connect(&schema).await;
    let writer = common::connect(&schema).await;
    let outbox = relay.outbox();
    let waiter = tokio::spawn(async move {
        // Drain a permit from start-up, if any, then wait long.
        outbox.wait_for_new(Duration::from_millis(50)).await;
        let started = Instant::now();
        outbox.wait_for_new(Duration::from_secs(30)).await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&writer, vec![message("a")]).await;
    let waited = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .expect("NOTIFY must wake the other instance")
        .unwrap();
    assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
    assert_eq!(relay.outbox().fetch_pending(10).await.unwrap().len(), 1);
    relay.shutdown().await;
    writer.shutdown().await;
}

/// Whether a NOTIFY arrives on `listener` within `wait`.
async fn notified(listener: &mut sqlx::postgres::PgListener, wait: Duration) -> bool {
    tokio::time::timeout(wait, listener.recv())
        .await
        .is_ok_and(|n| n.is_ok())
}

#[tokio::test]
async fn the_store_holding_the_relay_lock_sends_no_notify() {
    let schema = common::TestSchema::new();
    let store = common::connect(&schema).await;
    let mut listener = sqlx::postgres::PgListener::connect(common::URL)
        .await
        .unwrap();
    listener
        .listen(&storage_postgres::notify_channel(&schema))
        .await
        .unwrap();
    // Not the active relay (nothing fetched yet): its commits NOTIFY.
    append(&store, vec![message("a")]).await;
    assert!(
        notified(&mut listener, Duration::from_secs(10)).await,
        "a store without the relay lock NOTIFYs"
    );
    // Its relay takes the lock: its own relay is woken in process, no NOTIFY.
    assert_eq!(store.outbox().fetch_pending(10).await.unwrap().len(), 1);
    assert!(store.postgres_outbox().is_active_relay().await);
    let outbox = store.outbox();
    outbox.wait_for_new(Duration::ZERO).await; // a permit left, if any
    append(&store, vec![message("b")]).await;
    let started = Instant::now();
    outbox.wait_for_new(Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the commit wakes the local relay"
    );
    assert!(
        !notified(&mut listener, Duration::from_millis(500)).await,
        "no NOTIFY while holding the relay lock"
    );
    // Another instance (a standby) still NOTIFYs after its commits.
    let standby = common::connect(&schema).await;
    assert!(standby.outbox().fetch_pending(10).await.unwrap().is_empty());
    assert!(!standby.postgres_outbox().is_active_relay().await);
    append(&standby, vec![message("c")]).await;
    assert!(
        notified(&mut listener, Duration::from_secs(10)).await,
        "a standby NOTIFYs"
    );
    store.shutdown().await;
    standby.shutdown().await;
}

#[tokio::test]
async fn health_turns_unhealthy_after_shutdown() {
    let schema = common::TestSchema::new();
    let store = common::connect(&schema).await;
    let checks = store.health_checks();
    assert_eq!(checks[0].name(), "storage.postgres");
    assert_eq!(checks[0].check().await, HealthStatus::Healthy);
    store.shutdown().await;
    store.shutdown().await; // idempotent
    assert!(matches!(
        checks[0].check().await,
        HealthStatus::Unhealthy(_)
    ));
    assert!(matches!(
        store.begin().await,
        Err(storage_abstractions::StorageError::Unavailable(_))
    ));
}

/// Terminates every server session of the store in `schema`.
async fn kill_sessions(admin: &PostgresStore, schema: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(format!("chassis:{schema}"))
    .fetch_one(admin.pool())
    .await
    .unwrap()
}

/// Idle connections released a moment ago are handed out untested (no
/// round trip before each unit of work); when the server has dropped them,
/// the first failure makes the pool test every connection idle since then,
/// so the retry of `begin` gets a live one instead of the next dead one.
#[tokio::test]
async fn units_of_work_succeed_right_after_the_server_drops_idle_connections() {
    let schema = common::TestSchema::new();
    let store = common::connect(&schema).await; // a pool of 3
    let admin_schema = common::TestSchema::new();
    let admin = common::connect(&admin_schema).await;
    // Three connections, all idle and tested on release a moment ago.
    let (a, b, c) = tokio::join!(store.begin(), store.begin(), store.begin());
    for tx in [a, b, c] {
        tx.unwrap().commit().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(kill_sessions(&admin, &schema).await >= 3);
    // Long enough for the backends to be gone, far less than the 1 s after
    // which an idle connection is tested anyway.
    tokio::time::sleep(Duration::from_millis(200)).await;

    for n in 0..6 {
        let mut tx = store.begin().await.unwrap();
        tx.insert(Record::new(
            "orders",
            format!("o-{n}"),
            serde_json::json!({}),
        ))
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    for s in [&store, &admin] {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn recovers_when_the_server_drops_every_connection() {
    let schema = common::TestSchema::new();
    let store = common::connect(&schema).await;
    let admin_schema = common::TestSchema::new();
    let admin = common::connect(&admin_schema).await;
    append(&store, vec![message("a")]).await;
    assert_eq!(store.outbox().fetch_pending(10).await.unwrap().len(), 1);
    assert!(store.postgres_outbox().is_active_relay().await);

    // Pool, relay-lock, LISTEN and NOTIFY connections all go.
    assert!(kill_sessions(&admin, &schema).await >= 3);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The relay reconnects, takes the lock again and sees the row.
    let pending = store.outbox().fetch_pending(10).await.unwrap();
    assert_eq!(pending.len(), 1, "the relay recovered");
    assert!(store.postgres_outbox().is_active_relay().await);
    // Units of work get fresh connections.
    let mut tx = store.begin().await.unwrap();
    tx.insert(Record::new("orders", "o-1", serde_json::json!({})))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The listener reconnects: a commit elsewhere still wakes the relay.
    let writer = common::connect(&schema).await;
    let outbox = store.outbox();
    let mut woken = false;
    for _ in 0..10 {
        outbox.wait_for_new(Duration::from_millis(10)).await; // drain permits
        let waiter = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                outbox.wait_for_new(Duration::from_secs(5)).await;
                started.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        append(&writer, vec![message("b")]).await;
        if waiter.await.unwrap() < Duration::from_secs(4) {
            woken = true;
            break;
        }
    }
    assert!(
        woken,
        "NOTIFY wake-ups resume after the listener reconnects"
    );
    for s in [&store, &writer, &admin] {
        s.shutdown().await;
    }
}

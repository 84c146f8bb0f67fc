//! The relational cases: a service's own tables, migrated by the store and
//! written through the unit of work's transaction with `storage-sql`. Every
//! provider with SQL passes them (`Store::has_sql`).

use std::sync::Arc;

use serde_json::json;
use sqlx::types::time::OffsetDateTime;
use storage_abstractions::{Migration, MigrationError, OutboxMessage, StorageError, Store};
use storage_sql::Sql;
use uuid::Uuid;

use crate::{Case, CaseFuture};

pub(crate) fn all() -> Vec<Case> {
    vec![
        case!(relational_rollback_leaves_neither_row_nor_outbox),
        case!(relational_commit_makes_rows_outbox_and_inbox_visible_together),
        case!(relational_uncommitted_rows_invisible_to_others),
        case!(relational_types_round_trip),
        case!(relational_migrations_apply_once_and_fail_whole),
    ]
}

/// One table for both databases: the column types every provider reads.
const MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "samples",
        "CREATE TABLE samples (
             id    uuid             PRIMARY KEY,
             at    timestamptz      NOT NULL,
             n     bigint           NOT NULL,
             label text             NOT NULL,
             doc   jsonb            NOT NULL,
             flag  boolean          NOT NULL,
             ratio double precision NOT NULL,
             note  text
         );
         CREATE INDEX samples_at ON samples (at);",
    ),
    Migration::new(
        2,
        "parcels",
        "CREATE TABLE parcels (
             id       text   PRIMARY KEY,
             order_id text   NOT NULL,
             weight_g bigint NOT NULL
         );
         CREATE INDEX parcels_order ON parcels (order_id);",
    ),
];

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct Sample {
    id: Uuid,
    at: OffsetDateTime,
    n: i64,
    label: String,
    doc: serde_json::Value,
    flag: bool,
    ratio: f64,
    note: Option<String>,
}

async fn migrated(store: &Arc<dyn Store>) {
    assert!(store.has_sql(), "a relational provider says it has SQL");
    store
        .apply_migrations(MIGRATIONS)
        .await
        .expect("apply the service's migrations");
}

fn message(key: &str) -> OutboxMessage {
    OutboxMessage {
        id: Uuid::new_v4(),
        ordering_key: key.to_owned(),
        event_type: "parcel.added.v1".to_owned(),
        body: b"{}".to_vec(),
    }
}

async fn add_parcel(tx: &mut dyn storage_abstractions::Transaction, id: &str, weight: i64) {
    let inserted = Sql::of(tx)
        .expect("a SQL connection")
        .query("INSERT INTO parcels (id, order_id, weight_g) VALUES ($1, $2, $3)")
        .bind(id)
        .bind("o-1")
        .bind(weight)
        .execute()
        .await
        .expect("insert a parcel");
    assert_eq!(inserted, 1);
}

async fn parcels(store: &Arc<dyn Store>) -> i64 {
    let mut tx = store.begin().await.expect("begin");
    let count = Sql::of(tx.as_mut())
        .unwrap()
        .query("SELECT count(*) FROM parcels")
        .fetch_scalar::<i64>()
        .await
        .expect("count parcels");
    tx.rollback().await.expect("rollback");
    count
}

async fn relational_rollback_leaves_neither_row_nor_outbox(store: Arc<dyn Store>) {
    migrated(&store).await;
    let mark = Uuid::new_v4();
    for finish in ["rollback", "drop", "failed statement"] {
        let mut tx = store.begin().await.expect("begin");
        assert!(tx.mark_inbox("billing", mark).await.unwrap());
        add_parcel(tx.as_mut(), "p-1", 1200).await;
        tx.append_outbox(vec![message("p-1")]).await.unwrap();
        match finish {
            "rollback" => tx.rollback().await.expect("rollback"),
            "drop" => drop(tx),
            _ => {
                // A duplicate key fails the unit of work as a conflict.
                let again = Sql::of(tx.as_mut())
                    .unwrap()
                    .query("INSERT INTO parcels (id, order_id, weight_g) VALUES ($1, $2, $3)")
                    .bind("p-1")
                    .bind("o-1")
                    .bind(1)
                    .execute()
                    .await;
                assert!(
                    matches!(again, Err(StorageError::Conflict { .. })),
                    "a unique violation is a conflict: {again:?}"
                );
                tx.rollback().await.expect("rollback");
            }
        }
        assert_eq!(parcels(&store).await, 0, "{finish}: no row");
        let outbox = store.outbox();
        assert!(
            outbox.fetch_pending(10).await.unwrap().is_empty(),
            "{finish}: no outbox message"
        );
    }
    // The inbox mark went with them.
    let mut tx = store.begin().await.unwrap();
    assert!(tx.mark_inbox("billing", mark).await.unwrap());
    tx.rollback().await.unwrap();
}

async fn relational_commit_makes_rows_outbox_and_inbox_visible_together(store: Arc<dyn Store>) {
    migrated(&store).await;
    let mark = Uuid::new_v4();
    let sent = message("p-1");
    let mut tx = store.begin().await.expect("begin");
    assert!(tx.mark_inbox("billing", mark).await.unwrap());
    add_parcel(tx.as_mut(), "p-1", 1200).await;
    add_parcel(tx.as_mut(), "p-2", 800).await;
    tx.append_outbox(vec![sent.clone()]).await.unwrap();
    // A document record in the same unit of work, too.
    tx.insert(storage_abstractions::Record::new(
        "orders",
        "o-1",
        json!({"parcels": 2}),
    ))
    .await
    .unwrap();
    tx.commit().await.expect("commit");

    assert_eq!(parcels(&store).await, 2);
    let pending = store.outbox().fetch_pending(10).await.unwrap();
    assert_eq!(
        pending.iter().map(|r| &r.message).collect::<Vec<_>>(),
        [&sent]
    );
    let mut tx = store.begin().await.unwrap();
    assert!(!tx.mark_inbox("billing", mark).await.unwrap(), "marked");
    assert!(tx.get("orders", "o-1").await.unwrap().is_some());
    // Aggregates and ordering are plain SQL. PostgreSQL's sum of bigint is
    // numeric: CAST keeps one Rust type on both.
    let mut sql = Sql::of(tx.as_mut()).unwrap();
    let total: i64 = sql
        .query("SELECT CAST(sum(weight_g) AS bigint) FROM parcels WHERE order_id = $1")
        .bind("o-1")
        .fetch_scalar()
        .await
        .unwrap();
    assert_eq!(total, 2000);
    let lightest: Option<String> = sql
        .query("SELECT id FROM parcels ORDER BY weight_g LIMIT 1")
        .fetch_scalar_optional()
        .await
        .unwrap();
    assert_eq!(lightest.as_deref(), Some("p-2"));
    tx.rollback().await.unwrap();
}

async fn relational_uncommitted_rows_invisible_to_others(store: Arc<dyn Store>) {
    migrated(&store).await;
    let mut writer = store.begin().await.expect("begin");
    add_parcel(writer.as_mut(), "p-1", 1200).await;
    let own: i64 = Sql::of(writer.as_mut())
        .unwrap()
        .query("SELECT count(*) FROM parcels")
        .fetch_scalar()
        .await
        .unwrap();
    assert_eq!(own, 1, "the writer sees its own row");
    assert_eq!(parcels(&store).await, 0, "others do not, before commit");
    writer.commit().await.expect("commit");
    assert_eq!(parcels(&store).await, 1);
}

async fn relational_types_round_trip(store: Arc<dyn Store>) {
    migrated(&store).await;
    let at = |nanos: i128| OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap();
    let samples = [
        Sample {
            id: Uuid::new_v4(),
            at: at(1_700_000_000_123_456_000),
            n: i64::MAX,
            label: "Grüße, 世界 ✓".to_owned(),
            doc: json!({"lines": [1, 2.5, null], "nested": {"ok": true}, "text": "a\"b"}),
            flag: true,
            ratio: 0.1,
            note: Some(String::new()),
        },
        Sample {
            id: Uuid::nil(),
            at: at(-86_400_000_000_000),
            n: i64::MIN,
            label: String::new(),
            doc: json!([]),
            flag: false,
            ratio: -1.5e300,
            note: None,
        },
    ];
    let mut tx = store.begin().await.unwrap();
    let mut sql = Sql::of(tx.as_mut()).unwrap();
    for s in &samples {
        sql.query(
            "INSERT INTO samples (id, at, n, label, doc, flag, ratio, note)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(s.id)
        .bind(s.at)
        .bind(s.n)
        .bind(s.label.as_str())
        .bind(&s.doc)
        .bind(s.flag)
        .bind(s.ratio)
        .bind(s.note.clone())
        .execute()
        .await
        .expect("insert a sample");
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let mut sql = Sql::of(tx.as_mut()).unwrap();
    let read: Vec<Sample> = sql
        .query("SELECT id, at, n, label, doc, flag, ratio, note FROM samples ORDER BY at")
        .fetch_all()
        .await
        .expect("read samples");
    assert_eq!(read, [samples[1].clone(), samples[0].clone()]);
    // Parameters compare with stored values of each type.
    let by_id: Option<Sample> = sql
        .query("SELECT id, at, n, label, doc, flag, ratio, note FROM samples WHERE id = $1")
        .bind(samples[0].id)
        .fetch_optional()
        .await
        .unwrap();
    assert_eq!(by_id.as_ref(), Some(&samples[0]));
    let later: i64 = sql
        .query("SELECT count(*) FROM samples WHERE at > $1 AND note IS NULL")
        .bind(at(0))
        .fetch_scalar()
        .await
        .unwrap();
    assert_eq!(later, 0);
    let missing: Option<Sample> = sql
        .query("SELECT id, at, n, label, doc, flag, ratio, note FROM samples WHERE id = $1")
        .bind(Uuid::new_v4())
        .fetch_optional()
        .await
        .unwrap();
    assert_eq!(missing, None);
    tx.rollback().await.unwrap();
}

async fn relational_migrations_apply_once_and_fail_whole(store: Arc<dyn Store>) {
    assert_eq!(store.apply_migrations(MIGRATIONS).await.unwrap(), [1, 2]);
    assert_eq!(
        store.apply_migrations(MIGRATIONS).await.unwrap(),
        Vec::<i64>::new(),
        "applied once"
    );
    // A migration whose second statement fails: nothing of it stays.
    let broken = [
        MIGRATIONS[0],
        MIGRATIONS[1],
        Migration::new(
            3,
            "half",
            "CREATE TABLE half (id bigint); INSERT INTO no_such_table VALUES (1);",
        ),
    ];
    match store.apply_migrations(&broken).await {
        Err(MigrationError::Failed {
            version: 3,
            name: "half",
            error,
        }) => assert!(error.contains("no_such_table"), "names the error: {error}"),
        other => panic!("expected migration 3 to fail, got {other:?}"),
    }
    let mut tx = store.begin().await.unwrap();
    let half = Sql::of(tx.as_mut())
        .unwrap()
        .query("SELECT count(*) FROM half")
        .fetch_scalar::<i64>()
        .await;
    assert!(
        half.is_err(),
        "the failed migration left no table: {half:?}"
    );
    tx.rollback().await.unwrap();
    // Fixed, it applies; the earlier ones are not run again.
    let fixed = [
        MIGRATIONS[0],
        MIGRATIONS[1],
        Migration::new(3, "half", "CREATE TABLE half (id bigint)"),
    ];
    assert_eq!(store.apply_migrations(&fixed).await.unwrap(), [3]);
    // Versions out of order are refused before anything runs.
    assert!(matches!(
        store
            .apply_migrations(&[MIGRATIONS[1], MIGRATIONS[0]])
            .await,
        Err(MigrationError::Invalid(_))
    ));
    assert_eq!(parcels(&store).await, 0, "the store still works");
}

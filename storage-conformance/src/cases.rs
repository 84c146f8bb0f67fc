//! The cases. Each gets a fresh, empty store and panics on misbehaviour.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use storage_abstractions::{
    IndexEntry, OutboxMessage, Query, Record, RecordWrite, StorageError, Store, Transaction,
    sortable,
};
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::{Case, CaseFuture};

pub(crate) fn all() -> Vec<Case> {
    vec![
        case!(crud_round_trip),
        case!(insert_of_existing_id_conflicts),
        case!(stale_update_and_delete_conflict),
        case!(invalid_requests_are_rejected),
        case!(concurrent_updates_exactly_one_wins),
        case!(concurrent_increments_are_not_lost),
        case!(own_writes_visible_others_not),
        case!(rollback_discards),
        case!(drop_discards),
        case!(query_filters_and_pagination),
        case!(index_entries_multi_valued),
        case!(query_range_filters),
        case!(outbox_order_and_content),
        case!(write_with_outbox_is_both_or_neither),
        case!(outbox_out_of_order_commits_never_skipped),
        case!(outbox_failure_quarantine_release_purge),
        case!(outbox_backlog_figures),
        case!(outbox_wait_for_new_wakes_on_commit),
        case!(outbox_keeps_a_wake_up_for_a_commit_while_nobody_waits),
        case!(inbox_deduplicates),
        case!(inbox_concurrent_race_one_wins),
        case!(health_checks_healthy),
    ]
}

async fn begin(store: &Arc<dyn Store>) -> Box<dyn Transaction> {
    store.begin().await.expect("begin a transaction")
}

/// Inserts and commits `records`.
async fn seed(store: &Arc<dyn Store>, records: Vec<Record>) {
    let mut tx = begin(store).await;
    for record in records {
        tx.insert(record).await.expect("insert");
    }
    tx.commit().await.expect("commit");
}

async fn read(store: &Arc<dyn Store>, collection: &str, id: &str) -> Option<Record> {
    let mut tx = begin(store).await;
    let record = tx.get(collection, id).await.expect("get");
    tx.rollback().await.expect("rollback");
    record
}

fn message(key: &str, n: u32) -> OutboxMessage {
    OutboxMessage {
        id: Uuid::new_v4(),
        ordering_key: key.to_owned(),
        event_type: "thing.happened.v1".to_owned(),
        body: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

async fn append(store: &Arc<dyn Store>, messages: Vec<OutboxMessage>) {
    let mut tx = begin(store).await;
    tx.append_outbox(messages).await.expect("append_outbox");
    tx.commit().await.expect("commit");
}

fn assert_conflict(result: Result<(), StorageError>, expected: u64, actual: u64, what: &str) {
    match result {
        Err(StorageError::Conflict {
            expected: e,
            actual: a,
            ..
        }) => assert_eq!(
            (e, a),
            (expected, actual),
            "{what}: conflict versions (expected, actual)"
        ),
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

async fn crud_round_trip(store: Arc<dyn Store>) {
    let record = Record::new("orders", "o-1", json!({"total": 12, "lines": [1, 2]}))
        .with_index("customer", "c-1")
        .with_index("status", "open");
    seed(&store, vec![record.clone()]).await;
    assert_eq!(read(&store, "orders", "o-1").await, Some(record.clone()));
    assert_eq!(read(&store, "orders", "missing").await, None);
    assert_eq!(
        read(&store, "other", "o-1").await,
        None,
        "collections are separate"
    );

    let mut updated = record.clone().next_version();
    updated.data["total"] = json!(20);
    updated.index = vec![IndexEntry {
        key: "status".into(),
        value: "paid".into(),
    }];
    let mut tx = begin(&store).await;
    tx.update(updated.clone()).await.expect("update");
    tx.commit().await.expect("commit");
    let stored = read(&store, "orders", "o-1").await.expect("still there");
    assert_eq!(stored, updated);
    assert_eq!(stored.version, 2);

    let mut tx = begin(&store).await;
    let missing = Record::new("orders", "nope", json!({})).next_version();
    assert!(
        matches!(tx.update(missing).await, Err(StorageError::NotFound { .. })),
        "update of a missing record is NotFound"
    );
    assert!(
        matches!(
            tx.delete("orders", "nope", 1).await,
            Err(StorageError::NotFound { .. })
        ),
        "delete of a missing record is NotFound"
    );
    tx.delete("orders", "o-1", 2).await.expect("delete");
    assert_eq!(tx.get("orders", "o-1").await.unwrap(), None);
    tx.commit().await.expect("commit");
    assert_eq!(read(&store, "orders", "o-1").await, None);

    // The id is free again after a delete.
    seed(
        &store,
        vec![Record::new("orders", "o-1", json!({"again": true}))],
    )
    .await;
    let again = read(&store, "orders", "o-1").await.unwrap();
    assert_eq!((again.version, again.data), (1, json!({"again": true})));
}

async fn insert_of_existing_id_conflicts(store: Arc<dyn Store>) {
    seed(&store, vec![Record::new("orders", "o-1", json!({"a": 1}))]).await;
    let mut tx = begin(&store).await;
    let result = tx
        .insert(Record::new("orders", "o-1", json!({"a": 2})))
        .await;
    assert_conflict(result, 0, 1, "insert of a committed id");
    // The transaction stays usable after a conflict.
    tx.insert(Record::new("orders", "o-2", json!({})))
        .await
        .expect("insert");
    let result = tx.insert(Record::new("orders", "o-2", json!({}))).await;
    assert_conflict(
        result,
        0,
        1,
        "insert of an id inserted in the same transaction",
    );
    tx.commit().await.expect("commit");
    assert_eq!(
        read(&store, "orders", "o-1").await.unwrap().data,
        json!({"a": 1})
    );
    assert!(read(&store, "orders", "o-2").await.is_some());
}

async fn stale_update_and_delete_conflict(store: Arc<dyn Store>) {
    let record = Record::new("orders", "o-1", json!({"n": 1}));
    seed(&store, vec![record.clone()]).await;
    let mut tx = begin(&store).await;
    tx.update(record.clone().next_version())
        .await
        .expect("update to 2");
    tx.commit().await.expect("commit");

    let mut tx = begin(&store).await;
    // Based on version 1, but the store has 2.
    let result = tx.update(record.clone().next_version()).await;
    assert_conflict(result, 1, 2, "stale update");
    let result = tx.delete("orders", "o-1", 1).await;
    assert_conflict(result, 1, 2, "stale delete");
    // Jumping ahead is a conflict too.
    let result = tx
        .update(record.next_version().next_version().next_version())
        .await;
    assert_conflict(result, 3, 2, "update from a version never stored");
    tx.rollback().await.expect("rollback");
    assert_eq!(read(&store, "orders", "o-1").await.unwrap().version, 2);
}

async fn invalid_requests_are_rejected(store: Arc<dyn Store>) {
    let mut tx = begin(&store).await;
    let invalid = |r: Result<(), StorageError>, what: &str| {
        assert!(
            matches!(r, Err(StorageError::Invalid(_))),
            "{what}: expected Invalid, got {r:?}"
        );
    };
    invalid(
        tx.insert(Record::new("Bad-Name", "x", json!({}))).await,
        "bad collection name",
    );
    invalid(
        tx.insert(Record::new("orders", "x", json!({})).next_version())
            .await,
        "insert at version 2",
    );
    invalid(
        tx.update(Record::new("orders", "x", json!({}))).await,
        "update to version 1",
    );
    let r = tx.query(&Query::all("orders").page(0, 0)).await;
    assert!(matches!(r, Err(StorageError::Invalid(_))), "limit 0: {r:?}");
    let r = tx.query(&Query::all("orders").page(0, 1001)).await;
    assert!(
        matches!(r, Err(StorageError::Invalid(_))),
        "limit 1001: {r:?}"
    );
    tx.rollback().await.expect("rollback");
}

async fn concurrent_updates_exactly_one_wins(store: Arc<dyn Store>) {
    seed(
        &store,
        vec![Record::new("accounts", "a-1", json!({"owner": "none"}))],
    )
    .await;
    let barrier = Arc::new(Barrier::new(2));
    let mut tasks = Vec::new();
    for owner in ["alice", "bob"] {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = store.begin().await.expect("begin");
            let mut record = tx.get("accounts", "a-1").await.unwrap().unwrap();
            // Both have read version 1 before either writes.
            barrier.wait().await;
            record.data["owner"] = json!(owner);
            let result = match tx.update(record.next_version()).await {
                Ok(()) => tx.commit().await,
                Err(e) => Err(e),
            };
            (owner, result)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (owner, result) = task.await.expect("task");
        match result {
            Ok(()) => winners.push(owner),
            Err(StorageError::Conflict { .. }) => {}
            Err(other) => panic!("loser must see Conflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one wins: {winners:?}");
    let stored = read(&store, "accounts", "a-1").await.unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.data["owner"], json!(winners[0]));

    // Both have written before either commits: an update, and an insert of
    // the same new id. A provider may make the second writer wait for the
    // first to finish (row locks) or fail it at commit; one must lose.
    let mut first = begin(&store).await;
    first
        .update(
            Record::new("accounts", "a-1", json!({"owner": "carol"}))
                .next_version()
                .next_version(),
        )
        .await
        .unwrap();
    first
        .insert(Record::new("accounts", "a-2", json!({"owner": "carol"})))
        .await
        .unwrap();
    let second = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.expect("begin");
            let update = tx
                .update(
                    Record::new("accounts", "a-1", json!({"owner": "dave"}))
                        .next_version()
                        .next_version(),
                )
                .await;
            let insert = tx
                .insert(Record::new("accounts", "a-2", json!({"owner": "dave"})))
                .await;
            match update.and(insert) {
                Ok(()) => tx.commit().await,
                Err(e) => Err(e),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = first.commit().await;
    let second = second.await.unwrap();
    let winner = match (&first, &second) {
        (Ok(()), Err(StorageError::Conflict { .. })) => "carol",
        (Err(StorageError::Conflict { .. }), Ok(())) => "dave",
        other => panic!("exactly one commit must win, the other see Conflict: {other:?}"),
    };
    for id in ["a-1", "a-2"] {
        let stored = read(&store, "accounts", id).await.unwrap();
        assert_eq!(
            stored.data["owner"],
            json!(winner),
            "{id} written by the winner only"
        );
    }
}

async fn concurrent_increments_are_not_lost(store: Arc<dyn Store>) {
    seed(&store, vec![Record::new("counters", "c", json!({"n": 0}))]).await;
    const TASKS: u64 = 4;
    const EACH: u64 = 5;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            for _ in 0..EACH {
                loop {
                    let mut tx = store.begin().await.expect("begin");
                    let mut record = tx.get("counters", "c").await.unwrap().unwrap();
                    record.data["n"] = json!(record.data["n"].as_u64().unwrap() + 1);
                    tokio::task::yield_now().await;
                    let result = match tx.update(record.next_version()).await {
                        Ok(()) => tx.commit().await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => break,
                        Err(StorageError::Conflict { .. }) => conflicts += 1,
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                    assert!(conflicts < 1000, "no progress");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let stored = read(&store, "counters", "c").await.unwrap();
    assert_eq!(stored.data["n"], json!(TASKS * EACH), "no increment lost");
    assert_eq!(stored.version, 1 + TASKS * EACH);
}

async fn own_writes_visible_others_not(store: Arc<dyn Store>) {
    seed(&store, vec![Record::new("items", "old", json!({"v": 1}))]).await;
    let mut writer = begin(&store).await;
    writer
        .insert(Record::new("items", "new", json!({"v": 1})).with_index("k", "x"))
        .await
        .unwrap();
    writer
        .update(Record::new("items", "old", json!({"v": 2})).next_version())
        .await
        .unwrap();
    // The writer sees its own writes, in get and in query.
    assert!(writer.get("items", "new").await.unwrap().is_some());
    assert_eq!(
        writer.get("items", "old").await.unwrap().unwrap().version,
        2
    );
    let page = writer
        .query(&Query::all("items").filter("k", "x"))
        .await
        .unwrap();
    assert_eq!(page.total, 1);

    // Another transaction sees the committed state only.
    let mut reader = begin(&store).await;
    assert_eq!(reader.get("items", "new").await.unwrap(), None);
    assert_eq!(
        reader.get("items", "old").await.unwrap().unwrap().version,
        1
    );
    assert_eq!(reader.query(&Query::all("items")).await.unwrap().total, 1);
    reader.rollback().await.unwrap();

    writer.commit().await.unwrap();
    assert!(read(&store, "items", "new").await.is_some());
    assert_eq!(read(&store, "items", "old").await.unwrap().version, 2);
}

/// Writes a record, an outbox message and an inbox mark in a transaction
/// that `finish` then discards.
async fn discard_case(store: Arc<dyn Store>, finish: fn(Box<dyn Transaction>) -> CaseFuture) {
    seed(&store, vec![Record::new("items", "kept", json!({"v": 1}))]).await;
    let message_id = Uuid::new_v4();
    let mut tx = begin(&store).await;
    tx.insert(Record::new("items", "gone", json!({})))
        .await
        .unwrap();
    tx.update(Record::new("items", "kept", json!({"v": 2})).next_version())
        .await
        .unwrap();
    tx.delete("items", "kept", 2).await.unwrap();
    tx.append_outbox(vec![message("k", 1)]).await.unwrap();
    assert!(tx.mark_inbox("consumer", message_id).await.unwrap());
    finish(tx).await;

    assert_eq!(read(&store, "items", "gone").await, None);
    assert_eq!(read(&store, "items", "kept").await.unwrap().version, 1);
    let outbox = store.outbox();
    assert!(outbox.fetch_pending(10).await.unwrap().is_empty());
    assert_eq!(outbox.backlog().await.unwrap().pending, 0);
    // Nothing is locked or reserved by the discarded transaction.
    let mut tx = begin(&store).await;
    assert!(tx.mark_inbox("consumer", message_id).await.unwrap());
    tx.insert(Record::new("items", "gone", json!({})))
        .await
        .unwrap();
    tx.update(Record::new("items", "kept", json!({"v": 3})).next_version())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn rollback_discards(store: Arc<dyn Store>) {
    discard_case(store, |tx| {
        Box::pin(async move { tx.rollback().await.expect("rollback") })
    })
    .await;
}

async fn drop_discards(store: Arc<dyn Store>) {
    discard_case(store, |tx| Box::pin(async move { drop(tx) })).await;
}

async fn query_filters_and_pagination(store: Arc<dyn Store>) {
    let records: Vec<Record> = (0..7)
        .map(|i| {
            Record::new("orders", format!("o-{i}"), json!({ "i": i }))
                .with_index("status", if i % 2 == 0 { "open" } else { "closed" })
                .with_index("customer", if i < 4 { "c-1" } else { "c-2" })
        })
        .collect();
    // Inserted one per transaction, in order; ids are not in sort order of
    // anything but insertion.
    for record in &records {
        seed(&store, vec![record.clone()]).await;
    }
    seed(
        &store,
        vec![Record::new("other", "o-0", json!({})).with_index("status", "open")],
    )
    .await;
    let ids = |page: &storage_abstractions::Page<Record>| -> Vec<String> {
        page.items.iter().map(|r| r.id.clone()).collect()
    };
    let mut tx = begin(&store).await;

    let page = tx.query(&Query::all("orders")).await.unwrap();
    assert_eq!(page.total, 7);
    assert_eq!(
        ids(&page),
        ["o-0", "o-1", "o-2", "o-3", "o-4", "o-5", "o-6"]
    );
    assert_eq!(page.items[3], records[3], "query returns whole records");

    let open = Query::all("orders").filter("status", "open");
    let page = tx.query(&open).await.unwrap();
    assert_eq!(
        (page.total, ids(&page)),
        (
            4,
            vec!["o-0".into(), "o-2".into(), "o-4".into(), "o-6".into()]
        )
    );

    let both = open.clone().filter("customer", "c-1");
    let page = tx.query(&both).await.unwrap();
    assert_eq!(
        (page.total, ids(&page)),
        (2, vec!["o-0".into(), "o-2".into()])
    );

    let page = tx.query(&open.clone().page(1, 2)).await.unwrap();
    assert_eq!(page.total, 4, "total counts every match, not the page");
    assert_eq!(ids(&page), ["o-2", "o-4"]);
    assert_eq!((page.page.offset, page.page.limit), (1, 2));

    let page = tx.query(&open.clone().page(3, 10)).await.unwrap();
    assert_eq!((page.total, ids(&page)), (4, vec!["o-6".into()]));
    let page = tx.query(&open.clone().page(10, 10)).await.unwrap();
    assert_eq!((page.total, page.items.len()), (4, 0));

    let none = Query::all("orders").filter("status", "lost");
    assert_eq!(tx.query(&none).await.unwrap().total, 0);
    assert_eq!(tx.query(&Query::all("empty")).await.unwrap().total, 0);

    // An update keeps a record's place; the new index applies.
    let mut first = records[0].clone().next_version();
    first.index = vec![IndexEntry {
        key: "status".into(),
        value: "closed".into(),
    }];
    tx.update(first).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = begin(&store).await;
    let page = tx
        .query(&Query::all("orders").filter("status", "closed"))
        .await
        .unwrap();
    assert_eq!(ids(&page), ["o-0", "o-1", "o-3", "o-5"]);
    let page = tx.query(&Query::all("orders").page(0, 2)).await.unwrap();
    assert_eq!(ids(&page), ["o-0", "o-1"]);
    tx.rollback().await.unwrap();
}

async fn index_entries_multi_valued(store: Arc<dyn Store>) {
    let package = Record::new("packages", "p-1", json!({"weight": 3}))
        .with_index("order_id", "o-1")
        .with_index("order_id", "o-2")
        .with_index("order_id", "o-3")
        .with_index("state", "open");
    seed(
        &store,
        vec![
            package.clone(),
            Record::new("packages", "p-2", json!({})).with_index("order_id", "o-2"),
        ],
    )
    .await;
    assert_eq!(
        read(&store, "packages", "p-1").await.unwrap().index,
        package.index,
        "entries kept in order, repeated keys included"
    );
    let mut tx = begin(&store).await;
    for (order, expected) in [
        ("o-1", vec!["p-1"]),
        ("o-2", vec!["p-1", "p-2"]),
        ("o-4", vec![]),
    ] {
        let page = tx
            .query(&Query::all("packages").filter("order_id", order))
            .await
            .unwrap();
        let ids: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, expected, "packages of {order}");
    }
    // Two filters on the same key: both values must be present.
    let both = Query::all("packages")
        .filter("order_id", "o-1")
        .filter("order_id", "o-3");
    assert_eq!(tx.query(&both).await.unwrap().total, 1);
    let mut moved = package.next_version();
    moved.index.retain(|e| e.value != "o-2");
    tx.update(moved).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = begin(&store).await;
    let page = tx
        .query(&Query::all("packages").filter("order_id", "o-2"))
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["p-2"]
    );
    tx.rollback().await.unwrap();
}

async fn query_range_filters(store: Arc<dyn Store>) {
    // A due-list: timers with a zero-padded deadline, one timer without.
    let timer = |id: &str, kind: &str, due: Option<u64>| {
        let record = Record::new("timers", id, json!({})).with_index("kind", kind);
        match due {
            Some(due) => record.with_index("due", sortable(due)),
            None => record,
        }
    };
    seed(
        &store,
        vec![
            timer("t-9", "saga", Some(9)),
            timer("t-100", "saga", Some(100)),
            timer("t-10", "job", Some(10)),
            timer("t-none", "saga", None),
            timer("t-50", "saga", Some(50)),
        ],
    )
    .await;
    let mut tx = begin(&store).await;
    let ids = |page: storage_abstractions::Page<Record>| {
        page.items.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    // Numbers compare as numbers once padded (9 < 10 < 50 < 100), in
    // insertion order, records without the key never match.
    let due = Query::all("timers").at_most("due", sortable(50));
    assert_eq!(ids(tx.query(&due).await.unwrap()), ["t-9", "t-10", "t-50"]);
    let saga_due = due.clone().filter("kind", "saga");
    let page = tx.query(&saga_due).await.unwrap();
    assert_eq!(page.total, 2, "range and equality filters together");
    assert_eq!(ids(page), ["t-9", "t-50"]);
    let window = Query::all("timers")
        .at_least("due", sortable(10))
        .at_most("due", sortable(99));
    assert_eq!(ids(tx.query(&window).await.unwrap()), ["t-10", "t-50"]);
    assert_eq!(
        tx.query(&Query::all("timers").at_least("due", sortable(101)))
            .await
            .unwrap()
            .total,
        0
    );
    // Paging counts what the ranges select, not the whole collection.
    let page = tx.query(&due.clone().page(1, 1)).await.unwrap();
    assert_eq!((page.total, ids(page)), (3, vec!["t-10".to_owned()]));
    tx.rollback().await.unwrap();
    // Bounds are byte-wise: "b" > "B" > "A", whatever the database's collation.
    seed(
        &store,
        ["A", "B", "b"]
            .into_iter()
            .map(|v| Record::new("letters", v, json!({})).with_index("v", v))
            .collect(),
    )
    .await;
    let mut tx = begin(&store).await;
    let upper = Query::all("letters").at_most("v", "B");
    assert_eq!(ids(tx.query(&upper).await.unwrap()), ["A", "B"]);
    tx.rollback().await.unwrap();
}

async fn outbox_order_and_content(store: Arc<dyn Store>) {
    let first = vec![message("a", 1), message("b", 1), message("a", 2)];
    let second = vec![message("b", 2), message("a", 3)];
    append(&store, first.clone()).await;
    append(&store, second.clone()).await;
    let outbox = store.outbox();
    let pending = outbox.fetch_pending(100).await.unwrap();
    let written: Vec<OutboxMessage> = first.into_iter().chain(second).collect();
    assert_eq!(
        pending
            .iter()
            .map(|r| r.message.clone())
            .collect::<Vec<_>>(),
        written,
        "messages come back whole, in the order written"
    );
    assert!(
        pending.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "sequence increases"
    );
    assert!(
        pending
            .iter()
            .all(|r| r.attempts == 0 && r.last_error.is_none())
    );

    let limited = outbox.fetch_pending(2).await.unwrap();
    assert_eq!(
        limited,
        pending[..2].to_vec(),
        "limit takes the lowest sequences"
    );

    outbox
        .mark_sent(&[pending[0].sequence, pending[2].sequence])
        .await
        .unwrap();
    // Marking twice is harmless (a relay may retry).
    outbox.mark_sent(&[pending[0].sequence]).await.unwrap();
    let rest = outbox.fetch_pending(100).await.unwrap();
    assert_eq!(
        rest.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [
            pending[1].sequence,
            pending[3].sequence,
            pending[4].sequence
        ]
    );
    // New messages get higher sequences than everything before.
    append(&store, vec![message("c", 1)]).await;
    let rest = outbox.fetch_pending(100).await.unwrap();
    assert!(rest.last().unwrap().sequence > pending[4].sequence);
}

/// A record write with its messages: both commit, in the order written;
/// when the write fails (conflict, missing record) nothing is appended and
/// the transaction stays usable.
async fn write_with_outbox_is_both_or_neither(store: Arc<dyn Store>) {
    let pending = async |store: &Arc<dyn Store>| {
        let records = store.outbox().fetch_pending(100).await.unwrap();
        records.into_iter().map(|r| r.message).collect::<Vec<_>>()
    };
    let record = Record::new("things", "t-1", json!({"n": 1})).with_index("kind", "a");
    let placed = vec![message("t-1", 1), message("t-1", 2)];
    let mut tx = begin(&store).await;
    tx.write_with_outbox(RecordWrite::Insert(record.clone()), placed.clone())
        .await
        .expect("insert with messages");
    tx.commit().await.unwrap();
    assert_eq!(read(&store, "things", "t-1").await, Some(record.clone()));
    assert_eq!(pending(&store).await, placed, "both messages, in order");

    // Failed writes append nothing; what follows in the transaction commits.
    let mut tx = begin(&store).await;
    assert_conflict(
        tx.write_with_outbox(RecordWrite::Insert(record.clone()), vec![message("x", 1)])
            .await,
        0,
        1,
        "insert of an existing id",
    );
    let stale = Record {
        version: 3,
        ..record.clone()
    };
    assert_conflict(
        tx.write_with_outbox(RecordWrite::Update(stale), vec![message("x", 2)])
            .await,
        2,
        1,
        "stale update",
    );
    let missing = RecordWrite::Delete {
        collection: "things".into(),
        id: "t-404".into(),
        expected_version: 1,
    };
    assert!(
        matches!(
            tx.write_with_outbox(missing, vec![message("x", 3)]).await,
            Err(StorageError::NotFound { .. })
        ),
        "delete of a missing record"
    );
    let updated = Record {
        data: json!({"n": 2}),
        ..record.clone()
    }
    .next_version();
    let changed = vec![message("t-1", 3)];
    tx.write_with_outbox(RecordWrite::Update(updated.clone()), changed.clone())
        .await
        .expect("update with a message after failed writes");
    tx.commit().await.unwrap();
    assert_eq!(read(&store, "things", "t-1").await, Some(updated));
    let all: Vec<_> = placed.iter().chain(&changed).cloned().collect();
    assert_eq!(pending(&store).await, all, "nothing of the failed writes");

    // A delete with its message, and a write without messages.
    let mut tx = begin(&store).await;
    let removed = vec![message("t-1", 4)];
    let delete = RecordWrite::Delete {
        collection: "things".into(),
        id: "t-1".into(),
        expected_version: 2,
    };
    tx.write_with_outbox(delete, removed.clone())
        .await
        .expect("delete with a message");
    tx.write_with_outbox(
        RecordWrite::Insert(Record::new("things", "t-2", json!({}))),
        Vec::new(),
    )
    .await
    .expect("insert without messages");
    tx.commit().await.unwrap();
    assert_eq!(read(&store, "things", "t-1").await, None);
    assert!(read(&store, "things", "t-2").await.is_some());
    let all: Vec<_> = all.into_iter().chain(removed).collect();
    assert_eq!(pending(&store).await, all);

    // Rolled back: neither.
    let mut tx = begin(&store).await;
    tx.write_with_outbox(
        RecordWrite::Insert(Record::new("things", "t-3", json!({}))),
        vec![message("t-3", 1)],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(read(&store, "things", "t-3").await, None);
    assert_eq!(pending(&store).await, all);
}

async fn outbox_out_of_order_commits_never_skipped(store: Arc<dyn Store>) {
    let outbox = store.outbox();
    let a = message("a", 1);
    let b = message("b", 1);
    let mut tx_a = begin(&store).await;
    tx_a.append_outbox(vec![a.clone()]).await.unwrap();
    let mut tx_b = begin(&store).await;
    tx_b.append_outbox(vec![b.clone()]).await.unwrap();
    tx_b.commit().await.unwrap();

    // A relay sees and sends B while A is still open.
    let seen = outbox.fetch_pending(100).await.unwrap();
    assert_eq!(
        seen.iter().map(|r| r.message.id).collect::<Vec<_>>(),
        [b.id]
    );
    outbox.mark_sent(&[seen[0].sequence]).await.unwrap();

    tx_a.commit().await.unwrap();
    // A must still be found, whatever its sequence relative to B.
    let seen = outbox.fetch_pending(100).await.unwrap();
    assert_eq!(
        seen.iter().map(|r| r.message.id).collect::<Vec<_>>(),
        [a.id],
        "A was skipped"
    );

    // With both pending, they come in sequence order.
    let c = message("c", 1);
    let d = message("d", 1);
    let mut tx_c = begin(&store).await;
    tx_c.append_outbox(vec![c.clone()]).await.unwrap();
    let mut tx_d = begin(&store).await;
    tx_d.append_outbox(vec![d.clone()]).await.unwrap();
    tx_d.commit().await.unwrap();
    tx_c.commit().await.unwrap();
    let seen = outbox.fetch_pending(100).await.unwrap();
    let ids: Vec<Uuid> = seen.iter().map(|r| r.message.id).collect();
    assert_eq!(ids.len(), 3, "A, C and D pending: {seen:?}");
    assert!(ids.contains(&c.id) && ids.contains(&d.id));
    assert!(
        seen.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "in sequence order"
    );
}

async fn outbox_failure_quarantine_release_purge(store: Arc<dyn Store>) {
    append(
        &store,
        vec![message("a", 1), message("a", 2), message("b", 1)],
    )
    .await;
    let outbox = store.outbox();
    let pending = outbox.fetch_pending(10).await.unwrap();
    let (one, two, three) = (
        pending[0].sequence,
        pending[1].sequence,
        pending[2].sequence,
    );

    outbox
        .record_failure(one, "broker down", false)
        .await
        .unwrap();
    outbox
        .record_failure(one, "broker still down", false)
        .await
        .unwrap();
    let again = outbox.fetch_pending(10).await.unwrap();
    assert_eq!(again[0].sequence, one, "a failed message stays first");
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].last_error.as_deref(), Some("broker still down"));

    outbox
        .record_failure(two, "cannot encode", true)
        .await
        .unwrap();
    let again = outbox.fetch_pending(10).await.unwrap();
    assert_eq!(
        again.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [one, three]
    );
    let quarantined = outbox.quarantined().await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].sequence, two);
    assert_eq!(quarantined[0].message, pending[1].message);
    assert_eq!(quarantined[0].last_error.as_deref(), Some("cannot encode"));
    assert_eq!(outbox.backlog().await.unwrap().quarantined, 1);

    assert!(
        outbox.release(two).await.unwrap(),
        "release of a quarantined message"
    );
    assert!(
        !outbox.release(two).await.unwrap(),
        "release of a queued message"
    );
    assert!(outbox.quarantined().await.unwrap().is_empty());
    let again = outbox.fetch_pending(10).await.unwrap();
    assert_eq!(
        again.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [one, two, three]
    );
    assert_eq!(
        again[1].attempts, 0,
        "a released message gets its attempts back"
    );

    assert!(matches!(
        outbox.record_failure(i64::MAX, "x", false).await,
        Err(StorageError::NotFound { .. })
    ));

    outbox.mark_sent(&[one, two]).await.unwrap();
    assert_eq!(
        outbox.purge_sent(Duration::from_secs(3600)).await.unwrap(),
        0,
        "too young"
    );
    assert_eq!(outbox.purge_sent(Duration::ZERO).await.unwrap(), 2);
    assert_eq!(outbox.purge_sent(Duration::ZERO).await.unwrap(), 0);
    let again = outbox.fetch_pending(10).await.unwrap();
    assert_eq!(
        again.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [three],
        "unsent kept"
    );
}

async fn outbox_backlog_figures(store: Arc<dyn Store>) {
    let outbox = store.outbox();
    let empty = outbox.backlog().await.unwrap();
    assert_eq!(
        (empty.pending, empty.quarantined, empty.oldest_pending_age),
        (0, 0, None)
    );

    append(
        &store,
        vec![message("a", 1), message("a", 2), message("a", 3)],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let backlog = outbox.backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.quarantined), (3, 0));
    let age = backlog
        .oldest_pending_age
        .expect("an age while messages wait");
    assert!(age >= Duration::from_millis(10), "age {age:?}");
    assert!(age < Duration::from_secs(60), "age {age:?}");

    let pending = outbox.fetch_pending(10).await.unwrap();
    outbox
        .record_failure(pending[0].sequence, "bad", true)
        .await
        .unwrap();
    outbox.mark_sent(&[pending[1].sequence]).await.unwrap();
    let backlog = outbox.backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.quarantined), (1, 1));
    outbox.mark_sent(&[pending[2].sequence]).await.unwrap();
    let backlog = outbox.backlog().await.unwrap();
    assert_eq!(
        (
            backlog.pending,
            backlog.quarantined,
            backlog.oldest_pending_age
        ),
        (0, 1, None)
    );
}

async fn outbox_wait_for_new_wakes_on_commit(store: Arc<dyn Store>) {
    let outbox = store.outbox();
    // Without commits it returns at the latest after the timeout.
    let started = Instant::now();
    outbox.wait_for_new(Duration::from_millis(100)).await;
    assert!(started.elapsed() < Duration::from_secs(10));

    let long = Duration::from_secs(30);
    let waiter = {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            // Drain a permit left by an earlier wake-up, if any.
            outbox.wait_for_new(Duration::from_millis(50)).await;
            let started = Instant::now();
            outbox.wait_for_new(long).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&store, vec![message("a", 1)]).await;
    let waited = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .expect("a commit must wake the waiter well before its 30 s timeout")
        .unwrap();
    assert!(waited < Duration::from_secs(10), "woken after {waited:?}");
}

async fn outbox_keeps_a_wake_up_for_a_commit_while_nobody_waits(store: Arc<dyn Store>) {
    let outbox = store.outbox();
    // Takes a wake-up kept from before, if any, without waiting.
    let started = Instant::now();
    outbox.wait_for_new(Duration::ZERO).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // The relay does not fetch again after a batch that emptied the outbox:
    // a commit made meanwhile must end its next wait at once.
    append(&store, vec![message("a", 1)]).await;
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(15),
        outbox.wait_for_new(Duration::from_secs(30)),
    )
    .await
    .expect("a commit made while nobody waited must end the next wait at once");
    assert!(started.elapsed() < Duration::from_secs(10));
}

async fn inbox_deduplicates(store: Arc<dyn Store>) {
    let id = Uuid::new_v4();
    let mut tx = begin(&store).await;
    assert!(
        tx.mark_inbox("billing", id).await.unwrap(),
        "first delivery"
    );
    assert!(
        !tx.mark_inbox("billing", id).await.unwrap(),
        "twice in one transaction"
    );
    tx.commit().await.unwrap();

    let mut tx = begin(&store).await;
    assert!(!tx.mark_inbox("billing", id).await.unwrap(), "redelivery");
    assert!(
        tx.mark_inbox("shipping", id).await.unwrap(),
        "another consumer"
    );
    assert!(
        tx.mark_inbox("billing", Uuid::new_v4()).await.unwrap(),
        "another message"
    );
    tx.commit().await.unwrap();

    let outbox = store.outbox();
    assert_eq!(
        outbox.purge_inbox(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(outbox.purge_inbox(Duration::ZERO).await.unwrap(), 3);
    let mut tx = begin(&store).await;
    assert!(
        tx.mark_inbox("billing", id).await.unwrap(),
        "forgotten after purge"
    );
    tx.rollback().await.unwrap();
}

async fn inbox_concurrent_race_one_wins(store: Arc<dyn Store>) {
    // Two deliveries of one message handled at the same time: each writes a
    // record of its own in the same transaction as its inbox mark.
    let id = Uuid::new_v4();
    let deliver = |store: Arc<dyn Store>, name: &'static str| async move {
        let mut tx = store.begin().await.expect("begin");
        if !tx.mark_inbox("billing", id).await.expect("mark_inbox") {
            tx.rollback().await.expect("rollback");
            return false;
        }
        tx.insert(Record::new("effects", name, json!({})))
            .await
            .expect("insert");
        match tx.commit().await {
            Ok(()) => true,
            Err(StorageError::Conflict { .. }) => false,
            Err(other) => panic!("a losing delivery must see Conflict, got {other:?}"),
        }
    };
    let first = tokio::spawn(deliver(store.clone(), "first"));
    let second = tokio::spawn(deliver(store.clone(), "second"));
    let first = first.await.unwrap();
    let second = second.await.unwrap();
    assert!(
        first ^ second,
        "exactly one delivery takes effect: {first} {second}"
    );
    let mut tx = begin(&store).await;
    let effects = tx.query(&Query::all("effects")).await.unwrap();
    assert_eq!(effects.total, 1, "the loser's writes are discarded");
    tx.rollback().await.unwrap();

    // The same race with both transactions open before either commits.
    let id = Uuid::new_v4();
    let mut one = begin(&store).await;
    assert!(one.mark_inbox("audit", id).await.unwrap());
    let other = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.expect("begin");
            match tx.mark_inbox("audit", id).await.expect("mark_inbox") {
                false => false,
                true => match tx.commit().await {
                    Ok(()) => true,
                    Err(StorageError::Conflict { .. }) => false,
                    Err(other) => panic!("expected Conflict, got {other:?}"),
                },
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let one_won = match one.commit().await {
        Ok(()) => true,
        Err(StorageError::Conflict { .. }) => false,
        Err(other) => panic!("expected Conflict, got {other:?}"),
    };
    let other_won = other.await.unwrap();
    assert!(
        one_won ^ other_won,
        "exactly one commit marks the message: {one_won} {other_won}"
    );
}

async fn health_checks_healthy(store: Arc<dyn Store>) {
    let checks = store.health_checks();
    assert!(!checks.is_empty(), "a provider reports at least one check");
    for check in checks {
        let status = check.check().await;
        assert_eq!(
            status,
            chassis_core::HealthStatus::Healthy,
            "{} on a working store",
            check.name()
        );
        assert!(
            check.name().starts_with("storage."),
            "name {}",
            check.name()
        );
    }
}

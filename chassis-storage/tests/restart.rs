//! Kill after commit: a service process commits a unit of work (a counter
//! and its event in the outbox) and is killed (SIGKILL) before its relay
//! ran. Restarted on the same database, the relay publishes the event once;
//! restarted again, it publishes nothing. On a SQLite file and on
//! PostgreSQL.
//!
//! The "service process" is this test binary run again with
//! `--ignored --exact child_commits_then_waits_to_be_killed` and
//! `CHASSIS_RESTART_CHILD` naming the database: that ignored test is the
//! child's entry point, not a test of its own.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chassis_domain::{CommandPipeline, MessageContext};
use chassis_storage::{Persistence, Repository};
use messaging_abstractions::MessagingConfig;
use messaging_inmemory::InMemoryBus;
use storage_abstractions::{OutboxConfig, StorageConfig, Store};
use storage_postgres::{PostgresConfig, PostgresStore};
use storage_sqlite::{SqliteConfig, SqliteStore};

use common::doubles::TestBus;
use common::model::{Counter, Increment, IncrementHandler};

const CHILD_ENV: &str = "CHASSIS_RESTART_CHILD";
const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Opens the store `target` names: `sqlite:<file>` or `postgres:<schema>`.
async fn open(target: &str) -> Arc<dyn Store> {
    match target.split_once(':') {
        Some(("sqlite", path)) => {
            let config = SqliteConfig {
                path: Some(path.into()),
                ..SqliteConfig::default()
            };
            Arc::new(SqliteStore::open(&config).await.expect("open the file"))
        }
        Some(("postgres", schema)) => {
            let config = PostgresConfig {
                url: POSTGRES_URL.into(),
                schema: schema.to_owned(),
                ..PostgresConfig::default()
            };
            Arc::new(
                PostgresStore::connect(&config)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {POSTGRES_URL} is required: {e}")),
            )
        }
        _ => panic!("unknown target {target}"),
    }
}

fn storage(store: &Arc<dyn Store>) -> Persistence {
    Persistence::new(
        store.clone(),
        StorageConfig {
            outbox: OutboxConfig {
                poll_interval: Duration::from_millis(100),
                ..OutboxConfig::default()
            },
            ..StorageConfig::default()
        },
    )
}

#[test]
#[ignore = "the child process of the kill-after-commit tests, which start it"]
fn child_commits_then_waits_to_be_killed() {
    let target = std::env::var(CHILD_ENV).expect("started by the kill-after-commit tests");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = open(&target).await;
        // No relay in this process: the event stays in the outbox.
        let pipeline = CommandPipeline::new().with_unit_of_work(Arc::new(storage(&store)));
        pipeline
            .execute(
                &IncrementHandler,
                Increment::new("c-1"),
                MessageContext::default(),
            )
            .await
            .expect("the command commits");
        println!("committed");
        std::future::pending::<()>().await;
    });
}

/// Runs the child on `target` until it has committed, then kills it.
fn commit_in_a_child_and_kill_it(target: &str) {
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--ignored",
            "--exact",
            "child_commits_then_waits_to_be_killed",
            "--nocapture",
        ])
        .env(CHILD_ENV, target)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("piped");
    let committed = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == "committed");
    child.kill().expect("kill the child");
    let status = child.wait().expect("reap the child");
    assert!(
        committed,
        "the child committed before it was killed ({status})"
    );
}

async fn restart_relays_once(target: &str) {
    let target_owned = target.to_owned();
    tokio::task::spawn_blocking(move || commit_in_a_child_and_kill_it(&target_owned))
        .await
        .expect("child");

    // First restart: the committed counter is there, its event waits.
    let store = open(target).await;
    let storage = storage(&store);
    let mut uow = storage.begin(MessageContext::default()).await.unwrap();
    let counter = Repository::<Counter>::new()
        .load(&mut uow, &"c-1".to_owned())
        .await
        .expect("the committed counter survived the kill");
    uow.rollback().await.unwrap();
    assert_eq!(counter.value, 1);
    assert_eq!(store.outbox().backlog().await.unwrap().pending, 1);
    let bus = TestBus::new(InMemoryBus::new(&MessagingConfig::default()));
    let relay = storage.start_relay(bus.clone());
    bus.wait_for("the event relayed", common::TIMEOUT, |b| {
        !b.published().is_empty()
    })
    .await;
    // A few more polls: nothing is relayed twice.
    tokio::time::sleep(Duration::from_millis(400)).await;
    relay.shutdown().await.unwrap();
    assert_eq!(bus.published().len(), 1, "relayed once");
    assert_eq!(bus.increments()[0].value, 1);
    store.shutdown().await;

    // Second restart: nothing left to relay.
    let store = open(target).await;
    let bus = TestBus::new(InMemoryBus::new(&MessagingConfig::default()));
    let relay = crate::storage(&store).start_relay(bus.clone());
    tokio::time::sleep(Duration::from_millis(400)).await;
    relay.shutdown().await.unwrap();
    assert!(bus.published().is_empty(), "not relayed again");
    assert_eq!(store.outbox().backlog().await.unwrap().pending, 0);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_kill_after_commit_relays_once() {
    let dir = std::env::temp_dir().join(format!("chassis-restart-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = format!("sqlite:{}", dir.join("service.db").display());
    restart_relays_once(&target).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_after_commit_relays_once() {
    let schema = format!("restart_{}", uuid::Uuid::new_v4().simple());
    restart_relays_once(&format!("postgres:{schema}")).await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(POSTGRES_URL)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

//! Commands/s with the transactional outbox on PostgreSQL, and the relay lag
//! (commit → publish observed on the in-memory bus), p50/p99.
//!
//! Needs the PostgreSQL at 127.0.0.1:5432 (user `postgres`, database `test`);
//! works in a fresh schema dropped at the end.
//!
//! ```text
//! cargo bench -p chassis-storage --bench outbox
//! BENCH_TASKS=32 BENCH_SECONDS=10 cargo bench -p chassis-storage --bench outbox
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chassis_domain::{
    AggregateRoot, Changes, Command, CommandContext, CommandHandler, CommandPipeline, DomainError,
    Entity, IntegrationEvent, MessageContext,
};
use chassis_storage::{Persistence, Repository};
use messaging_abstractions::{EventBus, Handlers, MessagingConfig, Subscription};
use messaging_inmemory::InMemoryBus;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use storage_abstractions::{OutboxConfig, StorageConfig, Store};
use storage_postgres::{PostgresConfig, PostgresStore};

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Serialize, Deserialize)]
struct AccountChanged {
    account_id: String,
    version: u64,
    balance: i64,
    /// Brings the payload to ~200 bytes, like a typical event.
    note: String,
}

impl IntegrationEvent for AccountChanged {
    const EVENT_TYPE: &'static str = "bench.account.changed.v1";
}

#[derive(Debug, Serialize, Deserialize)]
struct Account {
    id: String,
    balance: i64,
    #[serde(skip)]
    changes: Changes<()>,
}

impl Entity for Account {
    type Id = String;
    fn id(&self) -> &String {
        &self.id
    }
}

impl AggregateRoot for Account {
    const COLLECTION: &'static str = "accounts";
    type DomainEvent = ();
    fn changes(&self) -> &Changes<()> {
        &self.changes
    }
    fn changes_mut(&mut self) -> &mut Changes<()> {
        &mut self.changes
    }
}

struct Deposit {
    account: String,
}

impl Command for Deposit {
    const NAME: &'static str = "bench.deposit";
    type Output = u64;
}

struct DepositHandler;

#[async_trait]
impl CommandHandler<Deposit> for DepositHandler {
    async fn handle(&self, c: Deposit, cx: &mut CommandContext) -> Result<u64, DomainError> {
        let accounts = Repository::<Account>::new();
        let uow = cx.unit_of_work()?;
        let mut account = accounts.get(uow, &c.account).await?.unwrap_or(Account {
            id: c.account.clone(),
            balance: 0,
            changes: Changes::default(),
        });
        account.balance += 10;
        let next = account.version() + 1;
        let event = AccountChanged {
            account_id: account.id.clone(),
            version: next,
            balance: account.balance,
            note: "x".repeat(120),
        };
        account.changes_mut().publish(event);
        accounts.save(uow, &mut account).await?;
        Ok(next)
    }
}

/// Commit instants by (account, version), and publish-observed instants.
#[derive(Default)]
struct LagProbe {
    committed: Mutex<HashMap<(String, u64), Instant>>,
    observed: Mutex<HashMap<(String, u64), Instant>>,
}

impl LagProbe {
    fn lags(&self) -> Vec<Duration> {
        let committed = self.committed.lock();
        let observed = self.observed.lock();
        let mut lags: Vec<Duration> = committed
            .iter()
            .filter_map(|(k, c)| observed.get(k).map(|o| o.saturating_duration_since(*c)))
            .collect();
        lags.sort();
        lags
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `tasks` workers for `duration`, each depositing into its own
/// accounts; `pace` limits each worker to one command per interval.
async fn phase(
    pipeline: &CommandPipeline,
    probe: &Arc<LagProbe>,
    tag: &str,
    tasks: u64,
    duration: Duration,
    pace: Option<Duration>,
) -> (u64, u64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let conflicts = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for t in 0..tasks {
        let (pipeline, probe, stop, conflicts) = (
            pipeline.clone(),
            probe.clone(),
            stop.clone(),
            conflicts.clone(),
        );
        let tag = tag.to_owned();
        workers.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut ticker = pace.map(|every| {
                let mut ticker = tokio::time::interval(every);
                // After a stall, keep the pace instead of catching up in a burst.
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker
            });
            while !stop.load(Ordering::Relaxed) {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                // 8 accounts per worker: loads hit existing rows after warm-up.
                let account = format!("{tag}-{t}-{}", done % 8);
                match pipeline
                    .execute(
                        &DepositHandler,
                        Deposit {
                            account: account.clone(),
                        },
                        MessageContext::default(),
                    )
                    .await
                {
                    Ok(version) => {
                        probe
                            .committed
                            .lock()
                            .insert((account, version), Instant::now());
                        done += 1;
                    }
                    Err(e) if e.is_retryable() => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("command failed: {e}"),
                }
            }
            done
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        total += w.await.expect("worker");
    }
    (total, conflicts.load(Ordering::Relaxed), started.elapsed())
}

async fn wait_observed(probe: &LagProbe, deadline: Duration) {
    let until = Instant::now() + deadline;
    loop {
        let (c, o) = (probe.committed.lock().len(), probe.observed.lock().len());
        if o >= c || Instant::now() > until {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(title: &str, probe: &LagProbe) {
    let lags = probe.lags();
    println!(
        "{title}: relay lag commit -> publish observed: n={} p50={:.2?} p99={:.2?} max={:.2?}",
        lags.len(),
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or_default()
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // Without `--bench` (`cargo test --benches`, CI): a smoke run of seconds.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let tasks = env_or("BENCH_TASKS", if smoke { 2 } else { 16 });
    let seconds = env_or("BENCH_SECONDS", if smoke { 1 } else { 5 });
    let schema = format!("chassis_bench_{}", uuid::Uuid::new_v4().simple());
    let postgres = PostgresConfig {
        url: URL.into(),
        schema: schema.clone(),
        max_connections: (tasks as u32 + 4).max(8),
        ..PostgresConfig::default()
    };
    let config = StorageConfig {
        provider: "postgres".into(),
        outbox: OutboxConfig {
            batch_size: 500,
            ..OutboxConfig::default()
        },
        ..StorageConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(&postgres)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {URL} is required: {e}")),
    );
    let storage = Persistence::new(store.clone(), config.clone());
    let bus = InMemoryBus::new(&MessagingConfig::default());
    let probe = Arc::new(LagProbe::default());
    let observer = probe.clone();
    bus.subscribe(Subscription::new(
        "bench-observer",
        Handlers::new().on_fn(move |event: AccountChanged, _| {
            let observer = observer.clone();
            async move {
                observer
                    .observed
                    .lock()
                    .entry((event.account_id, event.version))
                    .or_insert_with(Instant::now);
                Ok(())
            }
        }),
    ))
    .await
    .expect("subscribe");
    let relay = storage.start_relay(Arc::new(bus.clone()));
    let pipeline = CommandPipeline::new().with_unit_of_work(Arc::new(storage.clone()));

    println!(
        "chassis-storage outbox bench: PostgreSQL, {tasks} concurrent tasks, {seconds}s per phase"
    );
    let (done, conflicts, elapsed) = phase(
        &pipeline,
        &probe,
        "load",
        tasks,
        Duration::from_secs(seconds),
        None,
    )
    .await;
    println!(
        "saturated: {done} commands in {elapsed:.2?} = {:.0} commands/s (each: load-or-create, change, save + 1 outbox event, commit); {conflicts} retryable errors",
        done as f64 / elapsed.as_secs_f64()
    );
    wait_observed(&probe, Duration::from_secs(60)).await;
    report("saturated", &probe);

    // The observer writes into the one probe: start the paced phase afresh.
    probe.committed.lock().clear();
    probe.observed.lock().clear();
    let rate_tasks = 4;
    let (done, _, elapsed) = phase(
        &pipeline,
        &probe,
        "paced",
        rate_tasks,
        Duration::from_secs(seconds),
        Some(Duration::from_millis(20)),
    )
    .await;
    wait_observed(&probe, Duration::from_secs(60)).await;
    println!(
        "paced: {done} commands in {elapsed:.2?} = {:.0} commands/s",
        done as f64 / elapsed.as_secs_f64()
    );
    report("paced", &probe);

    let stats = relay.shutdown().await.expect("relay stops");
    println!("relay: {stats:?}");
    bus.shutdown().await.expect("bus stops");
    store.shutdown().await;
    let mut conn = sqlx::PgConnection::connect(URL).await.expect("connect");
    // Generated from a uuid above: safe to inline.
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(&mut conn)
        .await
        .expect("drop the bench schema");
}

//! SIGTERM while message handlers are mid-flight: a real process (this test
//! binary re-run as a service) stops in the documented order — HTTP,
//! consumers (in-flight handlers finish), background tasks, the outbox
//! relay's last flush, the bus, the store — so every event those handlers
//! wrote to the outbox is published before the process exits, and no row is
//! left in the outbox. On the in-memory bus and on RabbitMQ, both over
//! PostgreSQL (whose outbox outlives the process, so the test can read it).
#![cfg(feature = "postgres")]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use chassis_domain::messaging::Delivery;
use chassis_domain::{DomainError, UnitOfWork};
use chassis_storage::InboxHandler;
use chassis_web::ServiceHost;
use messaging_abstractions::{Envelope, EventBusExt, Handlers, IntegrationEvent, Subscription};
use serde::{Deserialize, Serialize};

/// Set in the child process: the provider of its bus.
const CHILD: &str = "CHASSIS_WEB_FLUSH_CHILD";
const SERVICE: &str = "flush-test";
/// Work messages the child sends itself (more than `messaging.concurrency`,
/// so some wait in the queue when the signal comes).
const WORK: u32 = 12;
/// How long each handler works before it writes its event.
const HANDLER_TIME: Duration = Duration::from_millis(1500);
const STARTED: &str = "flush-handler-started ";

#[derive(Debug, Serialize, Deserialize)]
struct Work {
    n: u32,
}

impl IntegrationEvent for Work {
    const EVENT_TYPE: &'static str = "flush.work.v1";
}

/// What each handler raises, through the outbox.
#[derive(Debug, Serialize, Deserialize)]
struct Done {
    n: u32,
}

impl IntegrationEvent for Done {
    const EVENT_TYPE: &'static str = "flush.done.v1";

    fn partition_key(&self) -> Option<String> {
        Some(format!("done-{}", self.n))
    }
}

struct Worker;

#[async_trait]
impl InboxHandler<Work> for Worker {
    async fn handle(
        &self,
        work: Work,
        _delivery: &Delivery,
        uow: &mut dyn UnitOfWork,
    ) -> Result<(), DomainError> {
        println!("{STARTED}{}", work.n);
        tokio::time::sleep(HANDLER_TIME).await;
        let done = Done { n: work.n };
        let envelope =
            Envelope::for_event(&done).map_err(|e| DomainError::internal(e.to_string()))?;
        uow.enqueue(&format!("done-{}", work.n), vec![envelope])
            .await
    }
}

/// The child: a service whose handlers write `Done` to the outbox; it sends
/// itself the work once started, and runs until SIGTERM.
fn child_main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(
        ServiceHost::builder(SERVICE)
            .args(Vec::<String>::new())
            .on_start(|ctx| async move {
                let inbox = ctx.persistence().inbox("worker");
                ctx.bus()
                    .subscribe(Subscription::new(
                        "worker",
                        Handlers::new().on(inbox.handler(Worker)),
                    ))
                    .await?;
                ctx.start_outbox_relay();
                for n in 0..WORK {
                    ctx.bus().publish_event(&Work { n }).await?;
                }
                Ok(())
            })
            .run(),
    )
}

/// What the child did and left.
struct Outcome {
    /// The `n` of every handler that started.
    started: BTreeSet<u32>,
    /// The `n` of every `Done` in the outbox marked sent.
    sent: BTreeSet<u32>,
    /// Outbox rows not sent.
    unsent: i64,
}

/// Runs `test` as the child with `vars`, sends SIGTERM once `handlers`
/// handlers are mid-flight, and reads the outbox after it exited.
fn sigterm_mid_flight(test: &str, schema: &str, vars: &[(&str, &str)]) -> Outcome {
    let dir = common::TempDir::new();
    let mut command = common::child_command(test, CHILD, &dir);
    command
        .env("CHASSIS__HTTP__SHUTDOWN_DELAY", "200ms")
        .env("CHASSIS__HTTP__SHUTDOWN_TIMEOUT", "20s")
        .env("CHASSIS__STORAGE__PROVIDER", "postgres")
        .env("CHASSIS__STORAGE__POSTGRES__URL", POSTGRES)
        .env("CHASSIS__STORAGE__POSTGRES__SCHEMA", schema)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("the child starts");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut started = BTreeSet::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix(STARTED) {
                started.insert(n.trim().parse::<u32>().expect("a handler number"));
                let _ = lines_tx.send(());
            }
        }
        started
    });
    // Several handlers mid-flight (each works HANDLER_TIME), then SIGTERM.
    for _ in 0..4 {
        lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the child's handlers start");
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = child.wait().expect("the child exits");
    let started = reader.join().expect("stdout read to the end");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "the child exited with {status}: {stderr}");
    let rows = psql(&format!(
        "select ordering_key, sent_at is not null from \"{schema}\".outbox"
    ));
    let mut sent = BTreeSet::new();
    let mut unsent = 0;
    for row in rows.lines().filter(|l| !l.is_empty()) {
        let (key, is_sent) = row.split_once('|').expect("two columns");
        let n = key
            .strip_prefix("done-")
            .expect("only Done events")
            .parse()
            .unwrap();
        if is_sent == "t" {
            sent.insert(n);
        } else {
            unsent += 1;
        }
    }
    psql(&format!("drop schema \"{schema}\" cascade"));
    Outcome {
        started,
        sent,
        unsent,
    }
}

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-qAtc",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn schema() -> String {
    format!("flush_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn check(outcome: &Outcome) {
    assert!(
        outcome.started.len() >= 4,
        "handlers were mid-flight: {:?}",
        outcome.started
    );
    assert_eq!(
        outcome.unsent, 0,
        "rows left in the outbox after SIGTERM (published ones: {:?}, handlers started: {:?})",
        outcome.sent, outcome.started
    );
    assert_eq!(
        outcome.sent, outcome.started,
        "every handler that started finished and its event was published before exit"
    );
}

#[test]
fn sigterm_flushes_the_outbox_on_the_in_memory_bus() {
    if std::env::var_os(CHILD).is_some() {
        std::process::exit(i32::from(child_main() != ExitCode::SUCCESS));
    }
    let outcome = sigterm_mid_flight(
        "sigterm_flushes_the_outbox_on_the_in_memory_bus",
        &schema(),
        &[("CHASSIS__MESSAGING__PROVIDER", "inmemory")],
    );
    check(&outcome);
}

#[cfg(feature = "rabbitmq")]
#[test]
fn sigterm_flushes_the_outbox_on_rabbitmq() {
    use std::sync::{Arc, Mutex};

    if std::env::var_os(CHILD).is_some() {
        std::process::exit(i32::from(child_main() != ExitCode::SUCCESS));
    }
    let vhost = chassis_testing::rabbitmq::Vhost::new("flush");
    let url = vhost.amqp_url();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The audit group, declared before the child publishes, receives every
    // `Done` the child's relay publishes.
    let received: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    let audit = runtime.block_on(async {
        let config = messaging_abstractions::MessagingConfig {
            provider: "rabbitmq".into(),
            ..Default::default()
        };
        let source = chassis_core::config::JsonSource::new(
            serde_json::json!({"messaging": {"rabbitmq": {"url": url}}}),
        );
        let bus = messaging_init::build(&config, &source, "flush-audit")
            .await
            .expect("the audit bus connects");
        let received = received.clone();
        bus.subscribe(Subscription::new(
            "audit",
            Handlers::new().on_fn(move |done: Done, _| {
                let received = received.clone();
                async move {
                    received.lock().unwrap().insert(done.n);
                    Ok(())
                }
            }),
        ))
        .await
        .expect("the audit group subscribes");
        bus
    });
    let outcome = sigterm_mid_flight(
        "sigterm_flushes_the_outbox_on_rabbitmq",
        &schema(),
        &[
            ("CHASSIS__MESSAGING__PROVIDER", "rabbitmq"),
            ("CHASSIS__MESSAGING__RABBITMQ__URL", url.as_str()),
        ],
    );
    check(&outcome);
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while *received.lock().unwrap() != outcome.sent && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        audit.shutdown().await.expect("the audit bus stops");
    });
    assert_eq!(
        *received.lock().unwrap(),
        outcome.sent,
        "every event marked sent reached RabbitMQ"
    );
}

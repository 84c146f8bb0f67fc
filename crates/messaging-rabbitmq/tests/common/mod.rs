//! Shared helpers of the RabbitMQ integration tests.
//!
//! Every test runs against the real broker on 127.0.0.1:5672 (guest/guest)
//! and fails when it is not there. Isolation: each test gets a vhost of its
//! own (`rabbitmqctl add_vhost`), deleted when the test ends, pass or fail.
//!
//! The broker-restart test stops the whole broker application for a few
//! seconds. All tests of this crate take a cross-process file lock: shared
//! by ordinary tests, exclusive by the restart test, so it never runs while
//! another test of this crate (in any test binary or process) is talking to
//! the broker.

#![allow(dead_code, unreachable_pub)]

use std::fs::{File, OpenOptions};
use std::process::Command;
use std::time::Duration;

use messaging_abstractions::{MessagingConfig, QueueType, RetryPolicy};
use uuid::Uuid;

/// The lock file every test of this crate takes.
const LOCK_PATH: &str = "/tmp/chassis-messaging-rabbitmq-tests.lock";

/// Held for the whole test: shared or exclusive access to the broker.
pub struct BrokerLock(File);

impl BrokerLock {
    fn open() -> File {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .expect("cannot open the broker lock file")
    }

    /// Ordinary tests: many at once.
    pub fn shared() -> Self {
        let file = Self::open();
        file.lock_shared().expect("cannot take the broker lock");
        Self(file)
    }

    /// The broker-restart test: alone.
    pub fn exclusive() -> Self {
        let file = Self::open();
        file.lock().expect("cannot take the broker lock");
        Self(file)
    }
}

/// Runs `rabbitmqctl` with `args`; panics with its output when it fails.
pub fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("cannot run rabbitmqctl (is RabbitMQ installed on this machine?)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A vhost of its own for one test, deleted on drop (with everything in it).
pub struct Vhost {
    pub name: String,
    _lock: BrokerLock,
}

impl Vhost {
    pub fn new() -> Self {
        Self::with_lock(BrokerLock::shared())
    }

    pub fn with_lock(lock: BrokerLock) -> Self {
        let name = format!(
            "chassis-test-{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        rabbitmqctl(&["add_vhost", &name]);
        let vhost = Self { name, _lock: lock };
        vhost.allow_guest();
        vhost
    }

    /// Gives user `guest` every permission on this vhost.
    pub fn allow_guest(&self) {
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &self.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
    }

    /// Takes every permission of user `guest` on this vhost away: new
    /// connections are refused.
    pub fn deny_guest(&self) {
        rabbitmqctl(&["clear_permissions", "-p", &self.name, "guest"]);
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// A test config for this vhost: fast retries, small batches.
    pub fn config(&self, queue_type: QueueType) -> MessagingConfig {
        let mut config = MessagingConfig {
            provider: "rabbitmq".into(),
            prefetch: 16,
            concurrency: 4,
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
                multiplier: 2.0,
            },
            ..MessagingConfig::default()
        };
        config.rabbitmq.url = self.url().into();
        config.rabbitmq.exchange = "test.events".into();
        config.rabbitmq.queue_type = queue_type;
        config.rabbitmq.reconnect_initial_backoff = Duration::from_millis(100);
        config.rabbitmq.reconnect_max_backoff = Duration::from_secs(1);
        config.validate().expect("test config is valid");
        config
    }

    /// Closes every client connection to this vhost (as a crashing or
    /// partitioned network would), leaving the broker and other vhosts alone.
    pub fn close_connections(&self) {
        rabbitmqctl(&[
            "close_all_connections",
            "-p",
            &self.name,
            "test closes the connection",
        ]);
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let out = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!(
                "warning: could not delete test vhost {}: {out:?}",
                self.name
            );
        }
    }
}

/// A raw handler from an async closure.
pub struct FnHandler<F>(pub F);

#[async_trait::async_trait]
impl<F, Fut> messaging_abstractions::MessageHandler for FnHandler<F>
where
    F: Fn(messaging_abstractions::Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), messaging_abstractions::HandlerError>>
        + Send
        + 'static,
{
    async fn handle(
        &self,
        delivery: &messaging_abstractions::Delivery,
    ) -> Result<(), messaging_abstractions::HandlerError> {
        (self.0)(delivery.clone()).await
    }
}

/// Handlers taking `event_type` with `f`.
pub fn on<F, Fut>(event_type: &str, f: F) -> messaging_abstractions::Handlers
where
    F: Fn(messaging_abstractions::Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), messaging_abstractions::HandlerError>>
        + Send
        + 'static,
{
    messaging_abstractions::Handlers::new().on_raw(event_type, std::sync::Arc::new(FnHandler(f)))
}

/// A small JSON envelope of `event_type` carrying `n`.
pub fn envelope(event_type: &str, n: u64) -> messaging_abstractions::Envelope {
    messaging_abstractions::Envelope::new(
        event_type,
        messaging_abstractions::JSON_CONTENT_TYPE,
        format!("{{\"n\":{n}}}").into_bytes(),
    )
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not seen within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `store` until the dead letter of `message_id` in `group` shows up.
pub async fn dead_letter(
    store: &std::sync::Arc<dyn messaging_abstractions::DeadLetterStore>,
    group: &str,
    message_id: Uuid,
    timeout: Duration,
) -> messaging_abstractions::DeadLetter {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(letter) = store
            .list(Some(group))
            .await
            .into_iter()
            .find(|l| l.envelope.message_id == message_id)
        {
            return letter;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {message_id} not dead-lettered in group {group} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The queues the chassis declares for `group` under `config` (the group
/// queue, its dead-letter queue and its delay queues).
pub fn group_queues(config: &MessagingConfig, group: &str) -> Vec<String> {
    let exchange = &config.rabbitmq.exchange;
    let mut queues = vec![
        format!("{exchange}.{group}"),
        format!("{exchange}.{group}.dlq"),
    ];
    let retry = &config.retry;
    for attempt in 1..retry.max_attempts {
        if let Some(wait) = retry.backoff(attempt) {
            let queue = format!("{exchange}.{group}.retry.{}ms", wait.as_millis().max(1));
            if !queues.contains(&queue) {
                queues.push(queue);
            }
        }
    }
    queues
}

/// Subscribes `group` to `event_type` with a handler that records the id of
/// every message it handles, in order.
pub async fn subscribe_recording(
    bus: &dyn messaging_abstractions::EventBus,
    group: &str,
    event_type: &str,
) -> std::sync::Arc<parking_lot::Mutex<Vec<Uuid>>> {
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = seen.clone();
    bus.subscribe(messaging_abstractions::Subscription::new(
        group,
        on(event_type, move |d| {
            let log = log.clone();
            async move {
                log.lock().push(d.envelope.message_id);
                Ok(())
            }
        }),
    ))
    .await
    .unwrap();
    seen
}

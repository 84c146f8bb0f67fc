//! The conformance suite every event bus provider of the service chassis must
//! pass, runnable with one call.
//!
//! A provider implements [`BusFactory`] (how to open another bus instance to
//! the broker under test, with which config) and calls [`run`] from one of its
//! tests. The suite checks every promise of the
//! [`EventBus`] port, one case after the other:
//!
//! | case | promise |
//! |---|---|
//! | `publish_subscribe` | a subscribed group receives every message published, intact |
//! | `fan_out` | two groups subscribed to one event type both receive every message |
//! | `competing_consumers` | two instances in one group share the messages; each is handled once |
//! | `envelope_fields` | every [`Envelope`] field and free header survives (timestamp to the millisecond); unset optional fields stay unset |
//! | `retry_then_dead_letter` | a retryable failure is retried `retry.max_attempts` times with backoff, then dead-lettered with the reason and attempt count; a replayed dead letter is delivered again |
//! | `permanent_failure` | a permanent failure is dead-lettered at once |
//! | `malformed_payload` | an undecodable payload is dead-lettered at once, without retries |
//! | `no_loss` | with failing handlers, every message is eventually handled or dead-lettered |
//! | `shutdown_drains` | shutdown waits for in-flight handlers, acknowledges their messages and refuses new work; it is idempotent |
//! | `stop_consuming_keeps_publishing` | `stop_consuming` waits for in-flight handlers and stops taking messages, while publishing still works (the outbox relay's last flush); it is idempotent and a later shutdown does not wait again |
//! | `per_key_order` | messages of one partition key are handled one after the other, in publish order, with any `concurrency` |
//! | `request_response` | a typed request is answered with the typed response; the responder sees the request's correlation, trace, reply address and deadline; the answer carries `chassis-in-reply-to`, the same correlation and trace, the request as cause; the request is acknowledged once |
//! | `request_no_responder` | a request nobody subscribed to fails with [`RequestError::NoResponder`] at once, not at its timeout |
//! | `request_timeout` | a responder that is too slow gives [`RequestError::Timeout`] after the timeout, never a hang; its late answer is dropped (the next request gets its own) and its handling still succeeds |
//! | `request_failure` | a responder failing permanently answers [`RequestError::Failed`] with kind and reason, and the request is dead-lettered with the reason |
//! | `request_expired` | a request past its deadline when delivered is acknowledged without calling the responder: the requester times out, nothing is dead-lettered |
//! | `request_duplicate` | a request delivered twice is answered twice without failing; the requester drops the second answer; a second reply by hand is accepted |
//! | `request_concurrent` | 24 concurrent requests from two requesters to two responder instances are each matched to their own answer |
//!
//! [`run`] **panics** on the first broken promise, with the case name and what
//! was expected (so a provider's test fails with a readable message), and
//! returns a [`Report`] of the passed cases otherwise. Every run uses fresh
//! group and event type names (`conf-<run id>-…`), so runs against a shared
//! broker, in parallel or one after another, never see each other's
//! messages. Waits are bounded by [`SuiteOptions::timeout`] (a safety net
//! that fails clearly, never a sleep standing in for synchronisation).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use async_trait::async_trait;
//! use messaging_abstractions::{EventBus, MessagingConfig};
//! use messaging_conformance::{BusFactory, ConnectError};
//! use messaging_inmemory::InMemoryBus;
//!
//! /// Every `connect` opens another connection to the same broker.
//! struct Factory {
//!     broker: InMemoryBus,
//! }
//!
//! #[async_trait]
//! impl BusFactory for Factory {
//!     fn config(&self) -> MessagingConfig {
//!         self.broker.config().clone()
//!     }
//!     async fn connect(&self) -> Result<Arc<dyn EventBus>, ConnectError> {
//!         Ok(Arc::new(self.broker.clone()))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let mut config = MessagingConfig::default();
//! config.retry.max_attempts = 3;
//! config.retry.initial_backoff = Duration::from_millis(10);
//! let broker = InMemoryBus::new(&config);
//! let report = messaging_conformance::run(Factory { broker }).await;
//! assert_eq!(report.passed.len(), 18);
//! # }
//! ```
//!
//! The request cases use the real [`Responders`] and build requests as
//! [`RequestClient`] does, under the run's own request type.
//!
//! [`EventBus`]: messaging_abstractions::EventBus
//! [`Envelope`]: messaging_abstractions::Envelope
//! [`Responders`]: messaging_abstractions::Responders
//! [`RequestClient`]: messaging_abstractions::RequestClient
//! [`RequestError::NoResponder`]: messaging_abstractions::RequestError::NoResponder
//! [`RequestError::Timeout`]: messaging_abstractions::RequestError::Timeout
//! [`RequestError::Failed`]: messaging_abstractions::RequestError::Failed

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use messaging_abstractions::{DeadLetterStore, EventBus, MessagingConfig};

mod cases;
mod probe;

/// Why [`BusFactory::connect`] could not open a bus instance.
pub type ConnectError = Box<dyn std::error::Error + Send + Sync>;

/// How the suite reaches the provider under test.
#[async_trait]
pub trait BusFactory: Send + Sync {
    /// The config every instance is created with. The suite reads the retry
    /// policy and prefetch from it to size its checks. Use a short backoff
    /// (tens of milliseconds) and `retry.max_attempts` of 2–5 to keep the
    /// suite fast; `max_attempts` must be at least 2.
    fn config(&self) -> MessagingConfig;

    /// Opens a new, independent bus instance on the broker under test: all
    /// instances reach the same queues (as several replicas of a service
    /// do), and one instance's `shutdown` leaves the others running.
    async fn connect(&self) -> Result<Arc<dyn EventBus>, ConnectError>;

    /// Where the suite reads (and replays) the dead letters of `bus`. The
    /// default is [`EventBus::dead_letters`]; a provider whose bus does not
    /// list its dead letters returns an adapter here (for example a
    /// [`DeadLetterStore`] that reads the broker's dead-letter queue).
    fn dead_letters(&self, bus: &Arc<dyn EventBus>) -> Option<Arc<dyn DeadLetterStore>> {
        bus.dead_letters()
    }

    /// Removes what a case created on the broker (queues of these groups,
    /// their dead-letter queues, bindings of these event types). Called after
    /// every case, passed or failed. The default does nothing, which suits a
    /// broker that lives only as long as the test.
    async fn cleanup(&self, groups: &[String], event_types: &[String]) {
        let _ = (groups, event_types);
    }
}

/// Settings of a suite run.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Longest wait for any single expectation (a delivery, a dead letter,
    /// a shutdown); retry waits add the configured backoffs on top.
    pub timeout: Duration,
    /// How long the suite watches for something that must *not* happen
    /// (shutdown returning while a handler still runs).
    pub quiet_period: Duration,
    /// Interval between two reads of the dead-letter store (a broker's DLQ
    /// cannot notify).
    pub poll_interval: Duration,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            quiet_period: Duration::from_millis(200),
            poll_interval: Duration::from_millis(20),
        }
    }
}

/// The cases a run passed, with how long each took.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `(case name, duration)` in the order they ran.
    pub passed: Vec<(&'static str, Duration)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "messaging conformance: {} case(s) passed",
            self.passed.len()
        )?;
        for (name, took) in &self.passed {
            writeln!(f, "  ok {name} ({took:?})")?;
        }
        Ok(())
    }
}

/// Runs every case with [`SuiteOptions::default`]. Panics on the first
/// broken promise; returns what passed.
pub async fn run<F: BusFactory>(factory: F) -> Report {
    run_with(factory, SuiteOptions::default()).await
}

/// Runs every case with `options`. Panics on the first broken promise.
pub async fn run_with<F: BusFactory>(factory: F, options: SuiteOptions) -> Report {
    let config = factory.config();
    assert!(
        config.retry.max_attempts >= 2,
        "messaging conformance: the factory's config must allow retries \
         (retry.max_attempts >= 2, got {})",
        config.retry.max_attempts
    );
    cases::run_all(&factory, &config, &options).await
}

//! The conformance suite every storage provider of the service chassis must
//! pass.
//!
//! A provider's integration test supplies a [`StoreFactory`] that creates a
//! fresh, empty, isolated store per case (the PostgreSQL provider creates a
//! schema of its own) and calls [`run`]. Each case runs in its own task on
//! its own store, a few at a time; a failing case does not hide the others:
//! [`run`] panics at the end with the list of every failed case.
//!
//! ```no_run
//! use std::sync::Arc;
//! use storage_abstractions::Store;
//! use storage_conformance::StoreFactory;
//!
//! struct Factory;
//!
//! #[async_trait::async_trait]
//! impl StoreFactory for Factory {
//!     async fn create(&self) -> Arc<dyn Store> {
//!         unimplemented_store()
//!     }
//! }
//! # fn unimplemented_store() -> Arc<dyn Store> { panic!("a provider goes here") }
//!
//! # async fn test() {
//! storage_conformance::run(Factory).await;
//! # }
//! ```

/// A [`Case`] named after the async fn that runs it.
macro_rules! case {
    ($name:ident) => {
        Case {
            name: stringify!($name),
            run: |store| -> CaseFuture { Box::pin($name(store)) },
        }
    };
}

mod cases;
#[cfg(feature = "sql")]
mod relational;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use storage_abstractions::Store;
use tokio::sync::Semaphore;

/// Longest a single case may take before it counts as hung (a lost wake-up
/// or a lock that is never released).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Cases run at the same time (each holds a pool of connections).
pub const PARALLEL_CASES: usize = 4;

/// Makes the stores the suite runs on.
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// A fresh, empty store that shares no data with any other store this
    /// factory made. Panics if the provider cannot be reached (a missing
    /// server is a failure, never a skip).
    async fn create(&self) -> Arc<dyn Store>;

    /// Releases what [`StoreFactory::create`] made (drops a schema, ...).
    /// Called once per store after its case, also when the case failed.
    async fn dispose(&self, store: Arc<dyn Store>) {
        store.shutdown().await;
    }
}

/// The future of one case.
pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One named case of the suite. It panics when the provider misbehaves.
#[derive(Clone, Copy)]
pub struct Case {
    /// Stable name, e.g. `outbox_out_of_order_commits_never_skipped`.
    pub name: &'static str,
    /// Runs the case on a fresh store.
    pub run: fn(Arc<dyn Store>) -> CaseFuture,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

/// Every case of the suite.
pub fn cases() -> Vec<Case> {
    cases::all()
}

/// The relational cases (feature `sql`, through `postgres` / `sqlite`): a
/// service's own tables and migrations in the unit of work, for providers
/// with SQL. Run them with [`run_cases`] next to [`run`].
#[cfg(feature = "sql")]
pub fn relational_cases() -> Vec<Case> {
    relational::all()
}

/// Runs every case, each on a fresh store from `factory`, and panics listing
/// every failed case. Must be called inside a tokio runtime.
pub async fn run<F: StoreFactory>(factory: F) {
    run_cases(factory, &cases()).await;
}

/// Runs the given cases (e.g. a subset while debugging a provider).
pub async fn run_cases<F: StoreFactory>(factory: F, cases: &[Case]) {
    let factory = Arc::new(factory);
    let permits = Arc::new(Semaphore::new(PARALLEL_CASES));
    let mut tasks = Vec::new();
    for case in cases.iter().copied() {
        let factory = factory.clone();
        let permits = permits.clone();
        tasks.push((
            case.name,
            tokio::spawn(async move {
                let _permit = permits.acquire().await.expect("semaphore never closed");
                let started = std::time::Instant::now();
                let store = factory.create().await;
                let created = started.elapsed();
                let outcome =
                    tokio::time::timeout(CASE_TIMEOUT, tokio::spawn((case.run)(store.clone())))
                        .await;
                factory.dispose(store).await;
                // Shown with --nocapture: where a slow provider spends time.
                eprintln!(
                    "storage conformance case {}: store ready in {created:?}, done in {:?}",
                    case.name,
                    started.elapsed()
                );
                match outcome {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(join)) => Err(panic_message(join)),
                    Err(_) => Err(format!("did not finish within {CASE_TIMEOUT:?}")),
                }
            }),
        ));
    }
    let mut failures = Vec::new();
    for (name, task) in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => failures.push(format!("{name}: {reason}")),
            Err(join) => failures.push(format!("{name}: {}", panic_message(join))),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} storage conformance cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn panic_message(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return join.to_string();
    }
    let payload = join.into_panic();
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else {
        "panicked".to_owned()
    }
}

//! The shared storage conformance suite on PostgreSQL (real server, one
//! fresh schema per case).

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_storage_conformance_suite() {
    storage_conformance::run(common::FreshSchemas::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_relational_cases() {
    storage_conformance::run_cases(
        common::FreshSchemas::default(),
        &storage_conformance::relational_cases(),
    )
    .await;
}

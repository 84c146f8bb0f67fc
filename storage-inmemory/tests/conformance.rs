//! The shared storage conformance suite on the in-memory provider.

use std::sync::Arc;

use storage_abstractions::Store;
use storage_conformance::StoreFactory;
use storage_inmemory::InMemoryStore;

struct Fresh;

#[async_trait::async_trait]
impl StoreFactory for Fresh {
    async fn create(&self) -> Arc<dyn Store> {
        Arc::new(InMemoryStore::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inmemory_passes_the_storage_conformance_suite() {
    storage_conformance::run(Fresh).await;
}

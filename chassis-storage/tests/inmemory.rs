//! The outbox, inbox and repository scenarios on the in-memory store.

mod common;

use std::sync::Arc;

use storage_inmemory::InMemoryStore;

async fn fixture() -> common::Fixture {
    common::Fixture {
        store: Arc::new(InMemoryStore::new()),
        cleanup: Box::pin(async {}),
    }
}

outbox_suite!(fixture);

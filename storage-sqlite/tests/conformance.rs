//! The shared storage conformance suite (and its relational cases) on
//! SQLite: a private database (the default), and a file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use storage_abstractions::Store;
use storage_conformance::StoreFactory;
use storage_sqlite::{SqliteConfig, SqliteStore};

/// Each store with a private database (the default).
struct InMemory;

#[async_trait::async_trait]
impl StoreFactory for InMemory {
    async fn create(&self) -> Arc<dyn Store> {
        Arc::new(
            SqliteStore::open(&SqliteConfig::default())
                .await
                .expect("open a private database"),
        )
    }
}

/// Each store in a new file under the system's temp directory, deleted
/// after its case.
#[derive(Default)]
struct InFiles {
    paths: std::sync::Mutex<HashMap<usize, PathBuf>>,
}

fn key(store: &Arc<dyn Store>) -> usize {
    Arc::as_ptr(store).cast::<()>() as usize
}

#[async_trait::async_trait]
impl StoreFactory for InFiles {
    async fn create(&self) -> Arc<dyn Store> {
        let path =
            std::env::temp_dir().join(format!("chassis-{}.db", uuid::Uuid::new_v4().simple()));
        let config = SqliteConfig {
            path: Some(path.clone()),
            ..SqliteConfig::default()
        };
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&config).await.expect("open a file"));
        self.paths.lock().unwrap().insert(key(&store), path);
        store
    }

    async fn dispose(&self, store: Arc<dyn Store>) {
        store.shutdown().await;
        let path = self.paths.lock().unwrap().remove(&key(&store));
        for suffix in ["", "-wal", "-shm"] {
            if let Some(path) = &path {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                let _ = std::fs::remove_file(name);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_private_passes_the_storage_conformance_suite() {
    storage_conformance::run(InMemory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_a_file_passes_the_storage_conformance_suite() {
    storage_conformance::run(InFiles::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_relational_cases() {
    let cases = storage_conformance::relational_cases();
    storage_conformance::run_cases(InMemory, &cases).await;
    storage_conformance::run_cases(InFiles::default(), &cases).await;
}

//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use chassis_web::{ServiceHost, ServiceHostBuilder};

/// A fresh, empty directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("chassis-web-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A builder isolated from the machine: no config files, no process
/// variables, loopback on an ephemeral port, no global subscriber.
pub fn isolated(name: &str, dir: &TempDir) -> ServiceHostBuilder {
    ServiceHost::builder(name)
        .config_dir(dir.path())
        .env_vars(Vec::<(String, String)>::new())
        .config("http.host", "127.0.0.1")
        .config("http.port", 0)
        // Authentication has its own tests (`security.rs`).
        .config("security.auth.enabled", false)
        .install_logging(false)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

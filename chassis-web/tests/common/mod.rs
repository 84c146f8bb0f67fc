//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chassis_web::{ServiceHost, ServiceHostBuilder};
use tracing_subscriber::fmt::MakeWriter;

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

/// This test binary run again as a child process that runs only `test`,
/// with the variable `marker` set (the test then plays the child) and the
/// machine-independent settings: configuration from `dir`, loopback on a
/// free port, no colours, authentication off.
pub fn child_command(test: &str, marker: &str, dir: &TempDir) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(marker, "1")
        .env("CHASSIS_CONFIG_DIR", dir.path())
        .env("CHASSIS__HTTP__HOST", "127.0.0.1")
        .env("CHASSIS__HTTP__PORT", "0")
        .env("CHASSIS__LOGGING__ANSI", "false")
        .env("CHASSIS__SECURITY__AUTH__ENABLED", "false");
    command
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// A log writer keeping every line in memory.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// A console layer writing JSON lines at `level` into this capture,
    /// with the host's log context (what `ServiceHost::log_layer` takes).
    pub fn json_layer(&self, level: &str) -> logging_init::BoxedLayer {
        let config = logging_abstractions::LoggingConfig {
            format: logging_abstractions::LogFormat::Json,
            level: level.into(),
            ..Default::default()
        };
        logging_console::layer_with_writer(&config, None, self.clone(), chassis_web::log_context())
            .unwrap()
    }
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

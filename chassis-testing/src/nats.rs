//! Tests that stop and start a NATS server: a `nats-server` of the test's
//! own (the local binary, JetStream on, its own port and store directory),
//! so stopping it never disturbs the shared server on 127.0.0.1:4222 or
//! another test. The process is killed and its directory removed on drop.
//!
//! ```no_run
//! use chassis_testing::nats::NatsServer;
//!
//! let mut server = NatsServer::start(); // JetStream, file store of its own
//! let url = server.url();               // nats://127.0.0.1:<free port>
//! // ... connect to `url`, start work ...
//! server.stop();                        // SIGTERM, waits for the exit
//! server.start_again();                 // same port, same store
//! ```
//!
//! With the feature `nats`, [`StreamPrefix`] gives a test a subject prefix
//! of its own on a shared server (`messaging.nats.subject_prefix`: every
//! stream the provider makes starts with it) and deletes those streams when
//! the test ends, pass or fail.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Where Debian's package installs the server.
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A `nats-server -js` process owned by one test.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    store: PathBuf,
    process: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free port with a store directory of its own;
    /// panics when it does not accept connections within 10 s.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("cannot find a free port")
            .port();
        let store = std::env::temp_dir().join(format!(
            "chassis-nats-test-{}",
            &Uuid::new_v4().simple().to_string()[..12]
        ));
        let mut server = Self {
            port,
            store,
            process: None,
        };
        server.start_again();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again (same port, same store); waits until it
    /// accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "the server is already running");
        let child = Command::new(NATS_SERVER)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run nats-server (is it installed? `apt-get install nats-server`)");
        self.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server on port {} did not accept connections within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGTERM: it closes its store cleanly) and waits
    /// for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.process.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// The shared local server with JetStream.
pub const LOCAL_URL: &str = "nats://127.0.0.1:4222";

/// A subject prefix of one test on a NATS server: the provider names its
/// streams `<prefix>_...`, so the test's streams (and their consumers) are
/// its own; they are deleted on drop, pass or fail.
#[cfg(feature = "nats")]
#[derive(Debug)]
pub struct StreamPrefix {
    /// The prefix: `t_<what>_<8 hex digits>`.
    pub name: String,
    url: String,
}

#[cfg(feature = "nats")]
impl StreamPrefix {
    /// A fresh prefix naming `what`, on the server at `url`.
    pub fn on(what: &str, url: &str) -> Self {
        Self {
            name: format!("t_{what}_{}", &Uuid::new_v4().simple().to_string()[..8]),
            url: url.to_owned(),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Deletes every stream of this prefix (and so their consumers); panics
    /// when the server refuses.
    pub async fn delete_streams(&self) {
        use futures::TryStreamExt;
        let client = async_nats::connect(&self.url)
            .await
            .expect("cleanup: connect");
        let js = async_nats::jetstream::new(client);
        let names: Vec<String> = js
            .stream_names()
            .try_collect()
            .await
            .expect("cleanup: stream names");
        let own = format!("{}_", self.name);
        for name in names.into_iter().filter(|n| n.starts_with(&own)) {
            js.delete_stream(&name)
                .await
                .unwrap_or_else(|e| panic!("cleanup: delete stream {name}: {e}"));
        }
    }
}

#[cfg(feature = "nats")]
impl Drop for StreamPrefix {
    fn drop(&mut self) {
        // Best effort, also when the test panics: a runtime of its own on
        // another thread (the test's runtime may be gone or busy).
        let name = std::mem::take(&mut self.name);
        let url = std::mem::take(&mut self.url);
        let shown = name.clone();
        let cleaned = std::thread::spawn(move || {
            let prefix = StreamPrefix { name, url };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), prefix.delete_streams()).await;
            });
            // Deleted (or given up on) already: no second attempt.
            std::mem::forget(prefix);
        })
        .join();
        if cleaned.is_err() {
            eprintln!("warning: could not delete the streams of prefix {shown}");
        }
    }
}

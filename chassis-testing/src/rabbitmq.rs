//! Tests against the real local RabbitMQ broker (127.0.0.1:5672,
//! guest/guest), driven through `rabbitmqctl`: a vhost of its own per test,
//! a cross-process lock so a test that stops the broker never runs while
//! another broker test talks to it, and a guard that always starts the
//! broker again.
//!
//! Every broker test of the workspace (the provider's and the examples')
//! takes [`BrokerLock`] through its [`Vhost`]: shared by ordinary tests,
//! exclusive by the tests that stop the broker.
//!
//! ```no_run
//! use chassis_testing::rabbitmq::{BrokerStopped, Vhost};
//!
//! let vhost = Vhost::exclusive("restart-test"); // alone on the broker
//! let url = vhost.amqp_url();
//! // ... connect to `url`, start work ...
//! let broker_down = BrokerStopped::stop_app();
//! // ... observe the outage ...
//! broker_down.start_again(); // also happens on drop, even when a test panics
//! ```

use std::fs::{File, OpenOptions};
use std::process::Command;

use uuid::Uuid;

/// The lock file every broker test of the workspace takes.
pub const BROKER_LOCK_PATH: &str = "/tmp/chassis-messaging-rabbitmq-tests.lock";

/// Held for the whole test: shared or exclusive use of the broker.
#[derive(Debug)]
pub struct BrokerLock {
    // Held, never read: the lock lasts as long as the open file.
    _file: File,
}

impl BrokerLock {
    fn open() -> File {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(BROKER_LOCK_PATH)
            .expect("cannot open the broker lock file")
    }

    /// Ordinary tests: many at once.
    pub fn shared() -> Self {
        let file = Self::open();
        file.lock_shared().expect("cannot take the broker lock");
        Self { _file: file }
    }

    /// A test that stops the broker: alone.
    pub fn exclusive() -> Self {
        let file = Self::open();
        file.lock().expect("cannot take the broker lock");
        Self { _file: file }
    }
}

/// Runs `rabbitmqctl` with `args` and returns what it printed; panics with
/// its output when it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
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
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A vhost of one test, user `guest` allowed, deleted with everything in it
/// on drop, pass or fail. Holds the [`BrokerLock`] meanwhile.
#[derive(Debug)]
pub struct Vhost {
    /// The vhost's name (`<prefix>-<random>`).
    pub name: String,
    _lock: BrokerLock,
}

impl Vhost {
    /// A vhost named after `prefix`, the broker lock shared.
    pub fn new(prefix: &str) -> Self {
        Self::with_lock(prefix, BrokerLock::shared())
    }

    /// A vhost holding the broker lock exclusively: for a test that stops
    /// the broker (no other broker test runs meanwhile).
    pub fn exclusive(prefix: &str) -> Self {
        Self::with_lock(prefix, BrokerLock::exclusive())
    }

    /// A vhost holding `lock`.
    pub fn with_lock(prefix: &str, lock: BrokerLock) -> Self {
        Self::create(prefix, lock, &[])
    }

    /// A vhost whose queues are of `queue_type` (`quorum`, `classic`,
    /// `stream`) unless declared otherwise, as operators set it with
    /// `add_vhost --default-queue-type`; the broker lock shared.
    pub fn with_default_queue_type(prefix: &str, queue_type: &str) -> Self {
        Self::create(
            prefix,
            BrokerLock::shared(),
            &["--default-queue-type", queue_type],
        )
    }

    fn create(prefix: &str, lock: BrokerLock, options: &[&str]) -> Self {
        let name = format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let mut args = vec!["add_vhost", name.as_str()];
        args.extend_from_slice(options);
        rabbitmqctl(&args);
        let vhost = Self { name, _lock: lock };
        vhost.allow_guest();
        vhost
    }

    /// `amqp://guest:guest@127.0.0.1:5672/<vhost>`.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
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

/// The broker application stopped (`rabbitmqctl stop_app`) until
/// [`start_again`](Self::start_again) or drop, which starts it and waits
/// until it serves — also when the test panics. Take
/// [`Vhost::exclusive`] first.
#[derive(Debug)]
#[must_use = "the broker starts again when the guard is dropped"]
pub struct BrokerStopped {
    running: bool,
}

impl BrokerStopped {
    /// Stops the broker application.
    pub fn stop_app() -> Self {
        // The guard exists before the stop, so a half-done stop is undone too.
        let guard = Self { running: false };
        rabbitmqctl(&["stop_app"]);
        guard
    }

    /// Starts the broker application and waits until it serves; panics when
    /// it does not.
    pub fn start_again(mut self) {
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup", "--timeout", "60"]);
        self.running = true;
    }
}

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        if self.running {
            return;
        }
        // Never panic here (the test may be unwinding); report instead.
        for _ in 0..3 {
            let started = Command::new("rabbitmqctl").arg("start_app").status();
            let ready = Command::new("rabbitmqctl")
                .args(["await_startup", "--timeout", "60"])
                .status();
            if matches!((started, ready), (Ok(s), Ok(r)) if s.success() && r.success()) {
                return;
            }
        }
        eprintln!(
            "error: could not start the RabbitMQ application again; run `rabbitmqctl start_app`"
        );
    }
}

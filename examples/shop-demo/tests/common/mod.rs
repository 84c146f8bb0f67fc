//! Helpers shared by the shop-demo tests.

#![allow(dead_code, unreachable_pub)]

use std::fs::{File, OpenOptions};
use std::process::Command;

use uuid::Uuid;

/// The lock file the RabbitMQ provider's tests share
/// (crates/messaging-rabbitmq/tests/common): its broker-restart test takes it
/// exclusively, every other broker test shared.
const BROKER_LOCK: &str = "/tmp/chassis-messaging-rabbitmq-tests.lock";

/// Runs `program` with `args`; panics with its output when it fails.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A RabbitMQ vhost of one test on the local broker (127.0.0.1:5672,
/// guest/guest), deleted on drop, pass or fail; holds the broker lock
/// shared meanwhile, so the broker-restart test never runs during it.
pub struct Vhost {
    pub name: String,
    _lock: File,
}

impl Vhost {
    pub fn new(prefix: &str) -> Self {
        Self::with_lock(prefix, false)
    }

    /// A vhost holding the broker lock exclusively: for a test that stops
    /// the broker (no other broker test runs meanwhile).
    pub fn exclusive(prefix: &str) -> Self {
        Self::with_lock(prefix, true)
    }

    fn with_lock(prefix: &str, exclusive: bool) -> Self {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(BROKER_LOCK)
            .expect("cannot open the broker lock file");
        if exclusive {
            lock.lock().expect("cannot take the broker lock");
        } else {
            lock.lock_shared().expect("cannot take the broker lock");
        }
        let name = format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..12]);
        run("rabbitmqctl", &["add_vhost", &name]);
        let vhost = Self { name, _lock: lock };
        run(
            "rabbitmqctl",
            &[
                "set_permissions",
                "-p",
                &vhost.name,
                "guest",
                ".*",
                ".*",
                ".*",
            ],
        );
        vhost
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

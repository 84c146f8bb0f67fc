//! Waking relays when outbox rows commit.
//!
//! In this process a commit wakes waiters directly. Other processes (the
//! replica holding the relay lock) hear a `NOTIFY` that a background task
//! sends after commit on a connection of its own. Requests arriving while
//! one is in flight fold into a single next one, so writers never wait for
//! it and the server sees at most one NOTIFY per round trip. (A NOTIFY inside
//! the writing transaction would hold a database-wide lock through every
//! commit and halve throughput under concurrency.) Wake-ups are hints: a
//! lost one costs at most the relay's poll interval.
//!
//! **No NOTIFY while this store's own relay holds the relay lock.** Then the
//! relay that publishes the rows is woken directly; other replicas' relays
//! would only fetch an empty batch. A replica that takes the lock over later
//! (this process stopped or lost its lock connection) finds the rows on its
//! first fetch, at the latest after its poll interval — as it finds rows
//! committed before it started. While it does not hold the lock (a standby,
//! or before its relay's first fetch) a store NOTIFYs after each commit
//! burst as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct Wakeup {
    local: Notify,
    remote: Notify,
    /// The payload of this store's NOTIFYs. The listener hears its own
    /// store's NOTIFYs too: those are ignored, the commit already woke the
    /// local waiters (waking them again cost the relay one empty fetch per
    /// batch).
    origin: String,
    /// Whether this store's relay holds the relay lock (see the module
    /// docs); kept by the outbox whenever its lock state changes.
    leading: AtomicBool,
}

impl Default for Wakeup {
    fn default() -> Self {
        Self {
            local: Notify::new(),
            remote: Notify::new(),
            origin: uuid::Uuid::new_v4().simple().to_string(),
            leading: AtomicBool::new(false),
        }
    }
}

impl Wakeup {
    /// Outbox rows were committed (or released) by this process.
    pub(crate) fn committed(&self) {
        self.wake_local();
        // The relay of these rows is ours while we hold the lock: woken above.
        if !self.leading.load(Ordering::Acquire) {
            self.remote.notify_one();
        }
    }

    /// Records whether this store's relay holds the relay lock now.
    pub(crate) fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Release);
    }

    /// Wakes every waiter now and leaves a permit for one arriving between
    /// two waits (spurious wake-ups are allowed).
    pub(crate) fn wake_local(&self) {
        self.local.notify_waiters();
        self.local.notify_one();
    }

    pub(crate) async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.local.notified()).await;
    }

    /// Sends a coalesced NOTIFY on `channel` for each burst of commits.
    pub(crate) async fn announce(
        self: std::sync::Arc<Self>,
        options: PgConnectOptions,
        channel: String,
    ) {
        let mut conn: Option<PgConnection> = None;
        loop {
            self.remote.notified().await;
            for attempt in 1..=3u32 {
                match notify_once(&mut conn, &options, &channel, &self.origin).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, attempt, "cannot send the outbox NOTIFY; reconnecting");
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                    }
                }
            }
        }
    }

    /// Wakes local waiters on every notification; on a lost connection too
    /// (a notification may have been missed) while it reconnects.
    pub(crate) async fn listen(self: std::sync::Arc<Self>, mut listener: PgListener) {
        let mut pause = Duration::from_millis(100);
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    pause = Duration::from_millis(100);
                    if notification.payload() != self.origin {
                        self.wake_local();
                    }
                }
                Ok(None) => {
                    tracing::warn!("outbox listener lost its connection; reconnecting");
                    self.wake_local();
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(%error, "outbox listener failed; retrying in {pause:?}");
                    self.wake_local();
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

async fn notify_once(
    conn: &mut Option<PgConnection>,
    options: &PgConnectOptions,
    channel: &str,
    origin: &str,
) -> Result<(), sqlx::Error> {
    if conn.is_none() {
        *conn = Some(options.connect().await?);
    }
    let conn = conn.as_mut().expect("connected above");
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(origin)
        .execute(conn)
        .await?;
    Ok(())
}

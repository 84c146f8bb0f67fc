//! The non-blocking stdout writer of the console provider.
//!
//! Writing a line straight to stdout blocks the writing thread — a request
//! being served — whenever the reader of the pipe (a container runtime, a
//! log shipper) is slower than the service. Here a line is handed to a
//! bounded queue instead, and one background thread writes the queue to
//! stdout. When the queue is full, INFO and more verbose lines are dropped
//! and counted ([`dropped_lines`]; the host reports the count as a metric),
//! while WARN and ERROR lines wait for room: those are rare and must not be
//! lost.
//!
//! There is one queue per process, as there is one stdout: lines from every
//! layer writing to stdout (several hosts in one process) keep their order.
//! The thread starts with the first line written.

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Lines the queue holds before INFO lines are dropped.
const QUEUE_LINES: usize = 16 * 1024;

/// The queue and its counters.
struct Queue {
    sender: SyncSender<Vec<u8>>,
    /// Lines handed to the queue.
    queued: AtomicU64,
    /// Lines the thread has written to stdout (or failed to).
    written: AtomicU64,
    dropped: AtomicU64,
    /// Failed writes to stdout (closed pipe): counted once, not retried.
    failed: AtomicU64,
}

static QUEUE: OnceLock<Queue> = OnceLock::new();

fn queue() -> &'static Queue {
    QUEUE.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        // If the thread cannot be spawned, lines are written by the callers
        // (see `StdoutLine::write`), so logging still works.
        let spawned = std::thread::Builder::new()
            .name("log-stdout".to_owned())
            .spawn(move || drain(&receiver));
        if spawned.is_err() {
            eprintln!("logging-console: cannot start the stdout writer thread; writing inline");
        }
        Queue {
            sender,
            queued: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(u64::from(spawned.is_err())),
        }
    })
}

/// How long the writer thread naps between batches while lines keep coming.
const NAP: Duration = Duration::from_millis(2);
/// Empty naps in a row after which the thread waits on the queue instead.
const IDLE_NAPS: u32 = 50;

/// The writer thread: writes everything queued in one buffered batch and
/// flushes once. While lines keep coming it naps between batches instead of
/// waiting on the queue: a writer waiting on the queue must be woken by the
/// sender — a system call on the request's thread for every line. Only
/// after `IDLE_NAPS` empty naps does it wait on the queue (an idle service
/// costs no wake-ups).
fn drain(receiver: &Receiver<Vec<u8>>) {
    let stdout = std::io::stdout();
    let mut empty_naps = 0;
    loop {
        let first = match receiver.try_recv() {
            Ok(line) => line,
            Err(TryRecvError::Empty) if empty_naps < IDLE_NAPS => {
                empty_naps += 1;
                std::thread::sleep(NAP);
                continue;
            }
            Err(TryRecvError::Empty) => match receiver.recv() {
                Ok(line) => line,
                Err(_) => return,
            },
            Err(TryRecvError::Disconnected) => return,
        };
        empty_naps = 0;
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
        let mut batch = 1u64;
        let mut ok = out.write_all(&first).is_ok();
        while let Ok(line) = receiver.try_recv() {
            ok &= out.write_all(&line).is_ok();
            batch += 1;
        }
        ok &= out.flush().is_ok();
        drop(out);
        let queue = queue();
        if !ok {
            queue.failed.fetch_add(1, Ordering::Relaxed);
        }
        queue.written.fetch_add(batch, Ordering::Release);
    }
}

/// The console provider's stdout as a `MakeWriter`: each line goes through
/// the queue (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NonBlockingStdout;

impl<'a> MakeWriter<'a> for NonBlockingStdout {
    type Writer = StdoutLine;

    fn make_writer(&'a self) -> StdoutLine {
        StdoutLine { lossless: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> StdoutLine {
        // `Level` orders by verbosity: ERROR < WARN < INFO.
        StdoutLine {
            lossless: *meta.level() <= Level::WARN,
        }
    }
}

/// One line on its way to the queue. The fmt layer writes each event with
/// one `write_all` of the whole formatted line.
#[derive(Debug)]
pub(crate) struct StdoutLine {
    lossless: bool,
}

impl std::io::Write for StdoutLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let queue = queue();
        let line = buf.to_vec();
        let sent = if self.lossless {
            queue.sender.send(line).map_err(|e| e.0)
        } else {
            match queue.sender.try_send(line) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => {
                    queue.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(buf.len());
                }
                Err(TrySendError::Disconnected(line)) => Err(line),
            }
        };
        match sent {
            Ok(()) => {
                queue.queued.fetch_add(1, Ordering::Release);
            }
            // No writer thread: write inline rather than lose the line.
            Err(line) => {
                let _ = std::io::stdout().lock().write_all(&line);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lines the console provider dropped because stdout could not keep up
/// (the queue was full), since the process started.
pub fn dropped_lines() -> u64 {
    QUEUE.get().map_or(0, |q| q.dropped.load(Ordering::Relaxed))
}

/// Waits until every line queued so far is written to stdout, at most
/// `timeout`; `false` if some were still queued then. A host calls it last
/// in its shutdown, so the final lines are not lost when the process exits.
pub fn flush(timeout: Duration) -> bool {
    let Some(queue) = QUEUE.get() else {
        return true;
    };
    let target = queue.queued.load(Ordering::Acquire);
    let deadline = Instant::now() + timeout;
    while queue.written.load(Ordering::Acquire) < target {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_and_flush_waits_for_them() {
        let before = queue().written.load(Ordering::Acquire);
        let mut line = NonBlockingStdout.make_writer();
        for _ in 0..3 {
            line.write_all(b"logging-console stdout test line\n")
                .unwrap();
        }
        assert!(flush(Duration::from_secs(5)));
        assert!(queue().written.load(Ordering::Acquire) >= before + 3);
        assert_eq!(dropped_lines(), 0);
    }
}

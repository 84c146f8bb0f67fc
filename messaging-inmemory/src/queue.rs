//! A bounded multi-producer, multi-consumer FIFO: one per consumer group.
//!
//! Consumers of one group (all subscriptions of the group, on any connection)
//! wait on the same queue in arrival order, so the messages are shared among
//! them as a broker shares a queue among its consumers. Each message taken
//! gets its [`Turn`] in its partition key's line while the queue is locked,
//! so the messages of one key are handled in queue order however many
//! workers take them.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use messaging_abstractions::{KeyOrder, Turn};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A message waiting in a group's queue.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    /// The encoded envelope (shared by every group the message was routed to).
    pub(crate) frame: Bytes,
    /// Which delivery this will be (1 = first).
    pub(crate) attempt: u32,
    /// The envelope's partition key.
    pub(crate) key: Option<Arc<str>>,
}

/// A message a worker took, with its place in its key's line: the worker
/// waits for [`Turn::wait`] before handling it and drops the turn after.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) item: Queued,
    pub(crate) turn: Turn,
}

pub(crate) struct BoundedQueue {
    items: Mutex<VecDeque<Queued>>,
    capacity: usize,
    /// Waiting publishers are woken once the queue is down to this length,
    /// not on every pop: a full queue then costs one wake per batch of
    /// room, not one per message.
    low_water: usize,
    /// Wakes one waiting consumer. Signalled when a push makes the queue
    /// non-empty and when a consumer leaves messages behind, so that busy
    /// queues cost no wake per message while idle consumers never miss one.
    ready: Notify,
    /// Wakes one waiting publisher.
    space: Notify,
    /// The lines of the partition keys of messages taken and not done.
    order: KeyOrder,
    /// Messages taken by a worker and not yet started (waiting for their
    /// turn or behind others of the worker's batch). Changed under the
    /// `items` lock when taken, so a message is always counted somewhere.
    taken: AtomicUsize,
}

impl BoundedQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            capacity,
            low_water: capacity - (capacity / 4).max(1),
            ready: Notify::new(),
            space: Notify::new(),
            order: KeyOrder::default(),
            taken: AtomicUsize::new(0),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Messages not started yet: in the queue, or taken by a worker that
    /// has not started them.
    pub(crate) fn waiting(&self) -> usize {
        let items = self.items.lock();
        items.len() + self.taken.load(Ordering::Acquire)
    }

    /// A taken message is starting; the caller counted it as in flight first.
    pub(crate) fn started(&self) {
        self.taken.fetch_sub(1, Ordering::AcqRel);
    }

    fn try_push(&self, item: Queued) -> Result<(), Queued> {
        let was_empty = {
            let mut items = self.items.lock();
            if items.len() >= self.capacity {
                return Err(item);
            }
            items.push_back(item);
            items.len() == 1
        };
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Appends `item`, waiting up to `timeout` for room; gives the item back
    /// when the queue stayed full.
    pub(crate) async fn push(&self, item: Queued, timeout: Duration) -> Result<(), Queued> {
        let mut item = match self.try_push(item) {
            Ok(()) => return Ok(()),
            Err(item) => item,
        };
        let deadline = Instant::now() + timeout;
        loop {
            // Register interest before checking, so a pop in between is not missed.
            let mut space = pin!(self.space.notified());
            space.as_mut().enable();
            item = match self.try_push(item) {
                Ok(()) => return Ok(()),
                Err(item) => item,
            };
            if tokio::time::timeout_at(deadline, space).await.is_err() {
                return self.try_push(item);
            }
        }
    }

    /// Appends `item` even when the queue is full. Used for retries: the
    /// message was already accepted once, and a retry must never wait for a
    /// publisher (which may itself wait for this very consumer).
    pub(crate) fn push_overflow(&self, item: Queued) {
        let was_empty = {
            let mut items = self.items.lock();
            items.push_back(item);
            items.len() == 1
        };
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Puts messages a consumer took but did not start back at the head, in
    /// their order (a closing consumer's unacknowledged messages).
    pub(crate) fn requeue_front(&self, returned: impl DoubleEndedIterator<Item = Taken>) {
        {
            let mut items = self.items.lock();
            for taken in returned.rev() {
                items.push_front(taken.item);
                self.taken.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.ready.notify_one();
    }

    /// Moves up to `max` of the oldest items into `out`, but no more than a
    /// `1 / share` part of the queue, so that a short queue is spread over
    /// the `share` workers of a consumer instead of waiting behind one of
    /// them; returns how many it took.
    fn try_take(&self, max: usize, share: usize, out: &mut Vec<Taken>) -> usize {
        let (taken, left) = {
            let mut items = self.items.lock();
            let taken = max.min((items.len() / share).max(1)).min(items.len());
            self.taken.fetch_add(taken, Ordering::AcqRel);
            out.extend(items.drain(..taken).map(|item| Taken {
                turn: self.order.enter(item.key.as_deref()),
                item,
            }));
            (taken, items.len())
        };
        if taken > 0 {
            if left > 0 {
                // Hand the rest to another idle consumer.
                self.ready.notify_one();
            }
            if left <= self.low_water {
                self.space.notify_one();
            }
        }
        taken
    }

    /// Takes between 1 and `max` of the oldest items into `out` (see
    /// `try_take` for `share`), waiting for one. Cancel-safe: items are only
    /// taken in the poll that returns.
    pub(crate) async fn take(&self, max: usize, share: usize, out: &mut Vec<Taken>) {
        loop {
            let mut ready = pin!(self.ready.notified());
            ready.as_mut().enable();
            if self.try_take(max, share, out) > 0 {
                return;
            }
            ready.await;
        }
    }

    /// Takes the oldest item, waiting for one.
    #[cfg(test)]
    pub(crate) async fn pop(&self) -> Queued {
        let mut out = Vec::with_capacity(1);
        self.take(1, 1, &mut out).await;
        self.started();
        out.remove(0).item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u8) -> Queued {
        Queued {
            frame: Bytes::from(vec![n]),
            attempt: 1,
            key: None,
        }
    }

    #[tokio::test]
    async fn a_taken_message_waits_until_started() {
        let q = BoundedQueue::new(4);
        for n in 1..=3 {
            q.push(item(n), Duration::ZERO).await.unwrap();
        }
        let mut out = Vec::new();
        q.take(2, 1, &mut out).await;
        assert_eq!((out.len(), q.waiting()), (2, 3));
        q.started();
        let mut rest = out.drain(1..);
        q.requeue_front(&mut rest);
        drop(rest);
        assert_eq!(q.waiting(), 2);
        assert_eq!(q.pop().await.frame[0], 2);
        assert_eq!(q.waiting(), 1);
    }

    #[tokio::test]
    async fn fifo_and_backpressure() {
        let q = BoundedQueue::new(2);
        q.push(item(1), Duration::ZERO).await.unwrap();
        q.push(item(2), Duration::ZERO).await.unwrap();
        let refused = q.push(item(3), Duration::from_millis(5)).await.unwrap_err();
        assert_eq!(refused.frame[0], 3);
        assert_eq!(q.pop().await.frame[0], 1);
        q.push(item(3), Duration::ZERO).await.unwrap();
        q.push_overflow(item(4));
        assert_eq!(q.waiting(), 3);
        let mut batch = Vec::new();
        q.take(2, 1, &mut batch).await;
        assert_eq!(
            batch.iter().map(|t| t.item.frame[0]).collect::<Vec<_>>(),
            [2, 3]
        );
        q.requeue_front(batch.into_iter());
        for n in 2..=4 {
            assert_eq!(q.pop().await.frame[0], n);
        }
    }

    #[tokio::test]
    async fn a_short_queue_is_shared_among_workers() {
        let q = BoundedQueue::new(100);
        for n in 0..10 {
            q.push(item(n), Duration::ZERO).await.unwrap();
        }
        let mut taken = Vec::new();
        q.take(8, 3, &mut taken).await;
        assert_eq!(taken.len(), 3, "10 items over 3 workers");
        taken.clear();
        q.take(8, 3, &mut taken).await;
        assert_eq!(taken.len(), 2);
        taken.clear();
        q.take(8, 1, &mut taken).await;
        assert_eq!(taken.len(), 5, "all that is left");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_publisher_resumes_when_a_consumer_pops() {
        let q = std::sync::Arc::new(BoundedQueue::new(1));
        q.push(item(1), Duration::ZERO).await.unwrap();
        let publisher = {
            let q = q.clone();
            tokio::spawn(async move { q.push(item(2), Duration::from_secs(30)).await })
        };
        assert_eq!(q.pop().await.frame[0], 1);
        publisher.await.unwrap().unwrap();
        assert_eq!(q.pop().await.frame[0], 2);
    }
}

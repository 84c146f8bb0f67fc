//! A bounded multi-producer, multi-consumer FIFO: one per consumer group.
//!
//! Consumers of one group (all subscriptions of the group, on any connection)
//! wait on the same queue in arrival order, so the messages are shared among
//! them as a broker shares a queue among its consumers.

use std::collections::VecDeque;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
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
}

pub(crate) struct BoundedQueue {
    items: Mutex<VecDeque<Queued>>,
    capacity: usize,
    /// Signalled once per pushed item: wakes one waiting consumer.
    ready: Notify,
    /// Signalled once per popped item: wakes one waiting publisher.
    space: Notify,
}

impl BoundedQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            capacity,
            ready: Notify::new(),
            space: Notify::new(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.items.lock().len()
    }

    fn try_push(&self, item: Queued) -> Result<(), Queued> {
        {
            let mut items = self.items.lock();
            if items.len() >= self.capacity {
                return Err(item);
            }
            items.push_back(item);
        }
        self.ready.notify_one();
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
        self.items.lock().push_back(item);
        self.ready.notify_one();
    }

    fn try_pop(&self) -> Option<Queued> {
        let item = self.items.lock().pop_front();
        if item.is_some() {
            self.space.notify_one();
        }
        item
    }

    /// Takes the oldest item, waiting for one. Cancel-safe: an item is only
    /// taken in the poll that returns it.
    pub(crate) async fn pop(&self) -> Queued {
        loop {
            let mut ready = pin!(self.ready.notified());
            ready.as_mut().enable();
            if let Some(item) = self.try_pop() {
                return item;
            }
            ready.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u8) -> Queued {
        Queued {
            frame: Bytes::from(vec![n]),
            attempt: 1,
        }
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
        assert_eq!(q.len(), 3);
        for n in 2..=4 {
            assert_eq!(q.pop().await.frame[0], n);
        }
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

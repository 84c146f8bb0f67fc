//! [`KeyOrder`]: handles messages that share a partition key one after the
//! other, in arrival order, while a consumer runs several handlers at once.
//!
//! Every provider with `concurrency > 1` keeps this promise (a broker queue
//! delivers in order; handlers running side by side would not), so it lives
//! here once rather than in each provider.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Per partition key, the completion signal of the newest message with that
/// key. A consumer calls [`KeyOrder::enter`] in arrival order (before it
/// spawns the handler) and the handler awaits [`Turn::wait`] before it
/// starts; dropping the [`Turn`] (handled, or given back unhandled) lets the
/// next message of the key go. Messages without a key never wait.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use messaging_abstractions::KeyOrder;
///
/// let order = KeyOrder::default();
/// let first = order.enter(Some("order-1"));
/// let mut second = order.enter(Some("order-1"));
/// let mut other = order.enter(Some("order-2"));
/// // `second` waits for `first`; `other` never waits.
/// other.wait().await;
/// drop(first);
/// second.wait().await;
/// # }
/// ```
#[derive(Debug, Default, Clone)]
pub struct KeyOrder {
    inner: Arc<Chains>,
}

#[derive(Debug, Default)]
struct Chains {
    tails: Mutex<HashMap<String, (u64, oneshot::Receiver<()>)>>,
    sequence: AtomicU64,
}

/// One message's place in its key's line; see [`KeyOrder`].
#[derive(Debug)]
pub struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    mine: Option<Mine>,
}

#[derive(Debug)]
struct Mine {
    chains: Arc<Chains>,
    key: String,
    sequence: u64,
    /// Dropped when this message is done: wakes the next one of the key.
    _done: oneshot::Sender<()>,
}

impl KeyOrder {
    /// Takes the next place in the line of `key` (`None`: no line). Call it
    /// in the order the messages arrived.
    pub fn enter(&self, key: Option<&str>) -> Turn {
        let Some(key) = key else {
            return Turn {
                previous: None,
                mine: None,
            };
        };
        let sequence = self.inner.sequence.fetch_add(1, Ordering::Relaxed);
        let (done, rx) = oneshot::channel();
        let previous = self
            .inner
            .tails
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(key.to_owned(), (sequence, rx))
            .map(|(_, rx)| rx);
        Turn {
            previous,
            mine: Some(Mine {
                chains: self.inner.clone(),
                key: key.to_owned(),
                sequence,
                _done: done,
            }),
        }
    }

    /// How many keys have a message waiting or running (for tests and
    /// metrics; keys are forgotten once their last message is done).
    pub fn keys_in_use(&self) -> usize {
        self.inner
            .tails
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }
}

impl Turn {
    /// Completes once every earlier message of the key is done.
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // An error means the previous turn was dropped: done as well.
            let _ = previous.await;
        }
    }
}

impl Drop for Turn {
    /// A turn given back before its wait completed (the message went back to
    /// the queue unhandled) still holds the later messages of its key until
    /// the earlier ones are done.
    fn drop(&mut self) {
        if let (Some(previous), Some(mine)) = (self.previous.take(), self.mine.take())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = previous.await;
                drop(mine);
            });
        }
    }
}

impl Drop for Mine {
    fn drop(&mut self) {
        let mut tails = self
            .chains
            .tails
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // Forget the key unless a later message of it took the tail.
        if tails
            .get(&self.key)
            .is_some_and(|(sequence, _)| *sequence == self.sequence)
        {
            tails.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn ready(turn: &mut Turn) -> bool {
        tokio::time::timeout(Duration::from_millis(20), turn.wait())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_key_waits_for_its_earlier_messages_only() {
        let order = KeyOrder::default();
        let mut a1 = order.enter(Some("a"));
        let mut a2 = order.enter(Some("a"));
        let mut a3 = order.enter(Some("a"));
        let mut b1 = order.enter(Some("b"));
        let mut none = order.enter(None);
        assert!(ready(&mut a1).await);
        assert!(ready(&mut b1).await);
        assert!(ready(&mut none).await);
        assert!(!ready(&mut a2).await, "a2 must wait for a1");
        drop(a1);
        assert!(ready(&mut a2).await);
        assert!(!ready(&mut a3).await, "a3 must wait for a2");
        drop(a2);
        assert!(ready(&mut a3).await);
        assert_eq!(order.keys_in_use(), 2);
        drop((a3, b1));
        assert_eq!(order.keys_in_use(), 0, "done keys are forgotten");
    }

    #[tokio::test]
    async fn a_turn_given_back_unstarted_lets_the_next_go() {
        let order = KeyOrder::default();
        let a1 = order.enter(Some("a"));
        let a2 = order.enter(Some("a"));
        let mut a3 = order.enter(Some("a"));
        drop(a2);
        assert!(!ready(&mut a3).await, "a3 still waits for a1 through a2");
        drop(a1);
        assert!(ready(&mut a3).await);
    }
}

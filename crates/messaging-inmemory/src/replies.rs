//! Request/response: each connection has an inbox (its reply address) with
//! the table of its pending requests; the broker routes replies to inboxes.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use messaging_abstractions::request::IN_REPLY_TO_HEADER;
use messaging_abstractions::{Envelope, PublishError, RequestError};
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::wire;

/// What a waiting requester receives.
pub(crate) type Answer = Result<Envelope, RequestError>;

/// The reply address of one connection and its pending requests, keyed by
/// the request's `message_id`.
pub(crate) struct Inbox {
    pub(crate) address: String,
    /// `None` once the connection is shut down: replies are unroutable.
    pending: Mutex<Option<HashMap<Uuid, oneshot::Sender<Answer>>>>,
}

impl Inbox {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            address: format!("inmemory-reply.{}", Uuid::new_v4().simple()),
            pending: Mutex::new(Some(HashMap::new())),
        })
    }

    /// Registers request `id` as waiting; the guard removes it again when the
    /// requester stops waiting (answer, timeout, error or cancellation).
    pub(crate) fn wait_for(
        self: &Arc<Self>,
        id: Uuid,
    ) -> Result<(oneshot::Receiver<Answer>, PendingGuard), RequestError> {
        let mut pending = self.pending.lock();
        let Some(table) = pending.as_mut() else {
            return Err(RequestError::ShutDown);
        };
        if table.contains_key(&id) {
            // Two waiters for one id could not both be answered.
            return Err(RequestError::Publish(PublishError::Rejected {
                message_id: id,
                reason: "a request with this message_id is already waiting for its answer".into(),
            }));
        }
        let (tx, rx) = oneshot::channel();
        table.insert(id, tx);
        Ok((
            rx,
            PendingGuard {
                inbox: Arc::downgrade(self),
                id,
            },
        ))
    }

    /// Hands `reply` to the requester waiting for request `id`. `Ok(false)`
    /// when nobody waits for it any more (late or duplicate reply: dropped);
    /// `Err` when the inbox is closed.
    fn resolve(&self, id: Uuid, reply: Envelope) -> Result<bool, ()> {
        let mut pending = self.pending.lock();
        let table = pending.as_mut().ok_or(())?;
        Ok(match table.remove(&id) {
            // A requester that gave up in the meantime dropped its receiver.
            Some(tx) => tx.send(Ok(reply)).is_ok(),
            None => false,
        })
    }

    /// Closes the inbox: every pending request fails with `ShutDown`, later
    /// replies are unroutable.
    pub(crate) fn close(&self) {
        let table = self.pending.lock().take();
        for (_, tx) in table.into_iter().flatten() {
            let _ = tx.send(Err(RequestError::ShutDown));
        }
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.pending.lock().as_ref().map_or(0, HashMap::len)
    }
}

/// Removes a pending request from its inbox when dropped.
pub(crate) struct PendingGuard {
    inbox: Weak<Inbox>,
    id: Uuid,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Some(inbox) = self.inbox.upgrade()
            && let Some(table) = inbox.pending.lock().as_mut()
        {
            table.remove(&self.id);
        }
    }
}

/// The broker's directory of reply addresses. Weak: a dropped connection's
/// address stops resolving by itself.
#[derive(Default)]
pub(crate) struct Inboxes {
    by_address: RwLock<HashMap<String, Weak<Inbox>>>,
}

impl Inboxes {
    pub(crate) fn register(&self, inbox: &Arc<Inbox>) {
        let mut map = self.by_address.write();
        // Forget the addresses of connections dropped without shutdown.
        map.retain(|_, weak| weak.strong_count() > 0);
        map.insert(inbox.address.clone(), Arc::downgrade(inbox));
    }

    pub(crate) fn unregister(&self, address: &str) {
        self.by_address.write().remove(address);
    }

    /// Sends `reply` (answering `request`) to the address in `address`, through
    /// the wire format like every message. A missing or closed address is
    /// [`PublishError::Unroutable`]; a reply nobody waits for any more is
    /// dropped (logged at DEBUG), as a broker delivers it to a queue whose
    /// consumer ignores it.
    pub(crate) fn deliver(
        &self,
        address: &str,
        request: &Envelope,
        mut reply: Envelope,
    ) -> Result<(), PublishError> {
        let unroutable = |reply: &Envelope| PublishError::Unroutable {
            message_id: reply.message_id,
            event_type: reply.event_type.clone(),
        };
        let Some(inbox) = self.by_address.read().get(address).and_then(Weak::upgrade) else {
            return Err(unroutable(&reply));
        };
        let in_reply_to = reply
            .headers
            .entry(IN_REPLY_TO_HEADER.to_owned())
            .or_insert_with(|| request.message_id.to_string());
        let Ok(id) = in_reply_to.parse::<Uuid>() else {
            let in_reply_to = in_reply_to.clone();
            return Err(PublishError::Rejected {
                message_id: reply.message_id,
                reason: format!("`{IN_REPLY_TO_HEADER}` is not a message id: {in_reply_to:?}"),
            });
        };
        let received = wire::decode(&wire::encode(&reply)).map_err(|e| PublishError::Rejected {
            message_id: reply.message_id,
            reason: e.to_string(),
        })?;
        match inbox.resolve(id, received) {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::debug!(
                    request_id = %id,
                    event_type = %reply.event_type,
                    "reply to a request nobody waits for any more (late or duplicate): dropped"
                );
                Ok(())
            }
            Err(()) => Err(unroutable(&reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Envelope {
        Envelope::new("t.ask.v1", "application/json", b"{}".to_vec())
    }

    #[tokio::test]
    async fn replies_reach_their_waiter_once_and_late_ones_are_dropped() {
        let inboxes = Inboxes::default();
        let inbox = Inbox::new();
        inboxes.register(&inbox);
        let req = request();
        let (rx, guard) = inbox.wait_for(req.message_id).unwrap();
        assert!(matches!(
            inbox.wait_for(req.message_id),
            Err(RequestError::Publish(_))
        ));
        let reply = Envelope::new("t.answer.v1", "application/json", b"{\"n\":1}".to_vec());
        inboxes
            .deliver(&inbox.address, &req, reply.clone())
            .unwrap();
        let got = rx.await.unwrap().unwrap();
        assert_eq!(got.payload, reply.payload);
        assert_eq!(
            got.headers.get(IN_REPLY_TO_HEADER),
            Some(&req.message_id.to_string())
        );
        // A second (duplicate) reply is accepted and dropped.
        inboxes
            .deliver(&inbox.address, &req, reply.clone())
            .unwrap();
        drop(guard);
        assert_eq!(inbox.waiting(), 0);

        // A guard dropped before any answer (timeout) leaves nothing behind.
        let other = request();
        let (_rx, guard) = inbox.wait_for(other.message_id).unwrap();
        assert_eq!(inbox.waiting(), 1);
        drop(guard);
        assert_eq!(inbox.waiting(), 0);
    }

    #[tokio::test]
    async fn closing_fails_waiters_and_makes_the_address_unroutable() {
        let inboxes = Inboxes::default();
        let inbox = Inbox::new();
        inboxes.register(&inbox);
        let req = request();
        let (rx, _guard) = inbox.wait_for(req.message_id).unwrap();
        inbox.close();
        assert!(matches!(rx.await.unwrap(), Err(RequestError::ShutDown)));
        let reply = Envelope::new("t.answer.v1", "application/json", b"{}".to_vec());
        assert!(matches!(
            inboxes.deliver(&inbox.address, &req, reply.clone()),
            Err(PublishError::Unroutable { .. })
        ));
        assert!(matches!(
            inbox.wait_for(Uuid::new_v4()),
            Err(RequestError::ShutDown)
        ));
        // A dropped connection's address is gone too.
        let gone = Inbox::new();
        inboxes.register(&gone);
        let address = gone.address.clone();
        drop(gone);
        assert!(matches!(
            inboxes.deliver(&address, &req, reply),
            Err(PublishError::Unroutable { .. })
        ));
    }
}

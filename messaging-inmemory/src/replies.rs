//! Request/response: each connection has an inbox (its reply address) with
//! the table of its pending requests; the broker routes replies to inboxes.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use messaging_abstractions::request::{IN_REPLY_TO_HEADER, PendingRequests};
use messaging_abstractions::{Envelope, PublishError, RequestError};
use parking_lot::RwLock;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::wire;

pub(crate) use messaging_abstractions::request::{Answer, PendingGuard};

/// The reply address of one connection and its pending requests.
pub(crate) struct Inbox {
    pub(crate) address: String,
    pending: Arc<PendingRequests>,
}

impl Inbox {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            address: format!("inmemory-reply.{}", Uuid::new_v4().simple()),
            pending: PendingRequests::new(),
        })
    }

    /// Registers request `id` as waiting (see [`PendingRequests::wait_for`]);
    /// a shut-down connection takes no requests.
    pub(crate) fn wait_for(
        &self,
        id: Uuid,
    ) -> Result<(oneshot::Receiver<Answer>, PendingGuard), RequestError> {
        self.pending.wait_for(id)?.ok_or(RequestError::ShutDown)
    }

    /// Closes the inbox: every pending request fails with `ShutDown`, later
    /// replies are unroutable.
    pub(crate) fn close(&self) {
        self.pending.close(|| RequestError::ShutDown);
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.pending.waiting()
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
        match inbox.pending.resolve(id, received) {
            Some(true) => Ok(()),
            Some(false) => {
                tracing::debug!(
                    request_id = %id,
                    event_type = %reply.event_type,
                    "reply to a request nobody waits for any more (late or duplicate): dropped"
                );
                Ok(())
            }
            None => Err(unroutable(&reply)),
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

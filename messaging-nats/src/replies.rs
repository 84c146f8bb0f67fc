//! Request/response: the bus' reply inbox and its pending requests.
//!
//! Requests travel through JetStream like events (to the responder group's
//! durable consumer); answers do not need to outlive the requester, so they
//! go over core NATS to an inbox subject (`_INBOX.<random>`) the bus
//! subscribes to on its first request: the reply address. The client
//! subscribes again by itself after a reconnection, but answers sent while
//! the connection was down are lost, so requests waiting when it drops fail
//! at once with `RequestError::Interrupted`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use messaging_abstractions::RequestError;
use messaging_abstractions::request::{IN_REPLY_TO_HEADER, PendingRequests};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::codec;
use crate::shared::{Link, Shared};
use crate::topology::Names;

/// How long a group found answering a request type is trusted without
/// asking the server again.
const RESPONDER_CACHE: Duration = Duration::from_secs(5);

/// The reply inbox of a bus.
pub(crate) struct Inbox {
    /// The subject answers go to.
    pub(crate) address: String,
    /// Replaced by a fresh table when the connection drops.
    pending: Mutex<Arc<PendingRequests>>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl Inbox {
    pub(crate) fn pending(&self) -> Arc<PendingRequests> {
        self.pending.lock().clone()
    }

    /// Fails every waiting request; with `shutdown`, later ones too.
    fn interrupt(&self, shutdown: bool) {
        let old = if shutdown {
            self.pending.lock().clone()
        } else {
            std::mem::replace(&mut *self.pending.lock(), PendingRequests::new())
        };
        let waiting = if shutdown {
            old.close(|| RequestError::ShutDown)
        } else {
            old.close(|| RequestError::Interrupted {
                request_type: String::new(),
                reason: "connection to NATS lost while waiting".into(),
            })
        };
        if waiting > 0 {
            warn!(inbox = %self.address, waiting, shutdown, "failing the requests waiting for an answer");
        }
    }

    fn resolve(&self, message: &async_nats::Message) {
        let reply = match codec::decode(message.headers.as_ref(), &message.payload) {
            Ok(reply) => reply,
            Err(reason) => {
                warn!(inbox = %self.address, %reason, "undecodable answer: dropped");
                return;
            }
        };
        let Some(id) = reply
            .headers
            .get(IN_REPLY_TO_HEADER)
            .and_then(|v| v.parse::<Uuid>().ok())
        else {
            warn!(inbox = %self.address, message_id = %reply.message_id, "answer without a valid `{IN_REPLY_TO_HEADER}`: dropped");
            return;
        };
        if self.pending().resolve(id, reply) != Some(true) {
            debug!(request_id = %id, "answer nobody waits for any more (late or duplicate): dropped");
        }
    }
}

/// The inbox (made on demand) and what is known of responders.
pub(crate) struct Replies {
    shared: Arc<Shared>,
    inbox: tokio::sync::Mutex<Option<Arc<Inbox>>>,
    responders: Mutex<HashMap<String, Instant>>,
}

impl Replies {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            inbox: tokio::sync::Mutex::new(None),
            responders: Mutex::new(HashMap::new()),
        }
    }

    /// The bus' inbox, subscribing on first use.
    pub(crate) async fn inbox(&self) -> Result<Arc<Inbox>, String> {
        let mut current = self.inbox.lock().await;
        if let Some(inbox) = current.as_ref() {
            return Ok(inbox.clone());
        }
        let address = self.shared.client.new_inbox();
        let mut subscriber = self
            .shared
            .client
            .subscribe(address.clone())
            .await
            .map_err(|e| format!("cannot subscribe to the reply inbox: {e}"))?;
        let inbox = Arc::new(Inbox {
            address,
            pending: Mutex::new(PendingRequests::new()),
            reader: Mutex::new(None),
        });
        let mut link = self.shared.link.clone();
        let reading = inbox.clone();
        let reader = tokio::spawn(async move {
            loop {
                tokio::select! {
                    next = subscriber.next() => match next {
                        Some(message) => reading.resolve(&message),
                        None => break,
                    },
                    changed = link.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        if *link.borrow_and_update() == Link::Down {
                            reading.interrupt(false);
                        }
                    }
                }
            }
        });
        *inbox.reader.lock() = Some(reader);
        *current = Some(inbox.clone());
        Ok(inbox)
    }

    /// Whether a group's consumer takes `event_type` (a durable consumer
    /// filtering on its subject exists).
    pub(crate) async fn has_responder(&self, event_type: &str) -> Result<bool, String> {
        let subject = self.shared.names.subject(event_type);
        if self
            .responders
            .lock()
            .get(&subject)
            .is_some_and(|seen| seen.elapsed() < RESPONDER_CACHE)
        {
            return Ok(true);
        }
        let name = self.shared.names.stream(Names::namespace(event_type));
        let stream = match self.shared.js.get_stream(&name).await {
            Ok(stream) => stream,
            Err(e) if crate::is_stream_not_found(&e) => return Ok(false),
            Err(e) => return Err(format!("cannot open stream `{name}`: {e}")),
        };
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|e| format!("cannot list the consumers of `{name}`: {e}"))?;
            if info.config.filter_subject == subject {
                self.responders.lock().insert(subject, Instant::now());
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// At shutdown: fails waiting requests and refuses new ones.
    pub(crate) async fn close(&self) {
        if let Some(inbox) = self.inbox.lock().await.as_ref() {
            inbox.interrupt(true);
            if let Some(reader) = inbox.reader.lock().take() {
                reader.abort();
            }
        }
    }
}

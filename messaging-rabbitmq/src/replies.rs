//! Request/response: the reply queue of a bus and its pending requests.
//!
//! Each bus declares, on first request and again on every new connection, an
//! exclusive, auto-delete, server-named queue (`amq.gen-…`): its name is the
//! reply address requests carry in `chassis-reply-to`. Responders publish
//! their answer through the default exchange with that name as routing key,
//! `mandatory`, so a requester that is gone (queue deleted with its
//! connection) is reported as unroutable. A consumer without acks reads the
//! queue and hands each answer to the request waiting for it (matched on
//! `chassis-in-reply-to`, the request's `message_id`).
//!
//! When the connection is lost, the reply queue goes with it: every request
//! still waiting fails at once with `RequestError::Interrupted` (whether it
//! was handled is unknown), and the next request declares a new reply queue
//! on the new connection. At shutdown they fail with `ShutDown`.

use std::sync::Arc;

use futures::StreamExt;
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Consumer};
use messaging_abstractions::RequestError;
use messaging_abstractions::request::{IN_REPLY_TO_HEADER, PendingRequests};
use tokio::sync::oneshot;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::codec;
use crate::link::{Link, LinkState, Shared};

pub(crate) use messaging_abstractions::request::{Answer, PendingGuard};

/// The reply queue of one connection (link generation) and the requests
/// waiting on it.
pub(crate) struct ReplyQueue {
    generation: u64,
    /// The queue's server-assigned name: the reply address.
    pub(crate) address: String,
    /// Closed once the queue is gone: no request can wait on it any more.
    pending: Arc<PendingRequests>,
}

impl ReplyQueue {
    /// Registers request `id` as waiting; `None` when this queue is already
    /// gone (the caller asks for the current one again).
    pub(crate) fn wait_for(
        &self,
        id: Uuid,
    ) -> Result<Option<(oneshot::Receiver<Answer>, PendingGuard)>, RequestError> {
        self.pending.wait_for(id)
    }

    /// Fails every waiting request with `error()` and refuses new ones.
    fn close(&self, error: impl Fn() -> RequestError) {
        let waiting = self.pending.close(error);
        if waiting > 0 {
            warn!(
                reply_queue = %self.address,
                waiting,
                "reply queue gone; failing the requests waiting on it"
            );
        }
    }

    /// Hands an answer to its requester; late and duplicate answers are
    /// dropped.
    fn resolve(&self, delivery: &AmqpDelivery) {
        let reply = match codec::decode(
            &delivery.properties,
            delivery.routing_key.as_str(),
            &delivery.data,
        ) {
            Ok(reply) => reply,
            Err(reason) => {
                warn!(reply_queue = %self.address, %reason, "undecodable message in the reply queue: dropped");
                return;
            }
        };
        let Some(id) = reply
            .headers
            .get(IN_REPLY_TO_HEADER)
            .and_then(|v| v.parse::<Uuid>().ok())
        else {
            warn!(reply_queue = %self.address, message_id = %reply.message_id, "reply without a valid `{IN_REPLY_TO_HEADER}`: dropped");
            return;
        };
        match self.pending.resolve(id, reply) {
            Some(true) => {}
            _ => debug!(
                request_id = %id,
                "reply to a request nobody waits for any more (late or duplicate): dropped"
            ),
        }
    }
}

/// The bus' reply queue, declared on demand for the current connection.
pub(crate) struct Replies {
    shared: Arc<Shared>,
    current: tokio::sync::Mutex<Option<Arc<ReplyQueue>>>,
}

impl Replies {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The reply queue of `link`, declaring it (and starting its consumer)
    /// if this link has none yet.
    pub(crate) async fn queue_for(&self, link: &Arc<Link>) -> Result<Arc<ReplyQueue>, String> {
        let mut current = self.current.lock().await;
        if let Some(queue) = current.as_ref()
            && queue.generation == link.generation
            && queue.pending.is_open()
        {
            return Ok(queue.clone());
        }
        let (channel, consumer, address) =
            declare(link, &self.shared.service).await.map_err(|e| {
                link.report_failure();
                format!("cannot declare the reply queue: {e}")
            })?;
        let queue = Arc::new(ReplyQueue {
            generation: link.generation,
            address,
            pending: PendingRequests::new(),
        });
        debug!(reply_queue = %queue.address, generation = link.generation, "reply queue declared");
        tokio::spawn(consume(
            self.shared.clone(),
            queue.clone(),
            channel,
            consumer,
        ));
        *current = Some(queue.clone());
        Ok(queue)
    }
}

/// Declares an exclusive, auto-delete, server-named queue on a channel of
/// its own and consumes it without acks (an answer is only worth anything
/// now; the queue dies with the connection anyway).
async fn declare(link: &Link, service: &str) -> Result<(Channel, Consumer, String), lapin::Error> {
    let channel = link.connection.create_channel().await?;
    let queue = channel
        .queue_declare(
            ShortString::from(""),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let address = queue.name().as_str().to_owned();
    let tag = ShortString::try_new(format!("{service}.replies.{}", Uuid::new_v4()))
        .unwrap_or_else(|_| Uuid::new_v4().to_string().into());
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            tag,
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer, address))
}

/// Reads answers until the queue's connection is gone or the bus shuts down,
/// then fails the requests still waiting on it.
async fn consume(
    shared: Arc<Shared>,
    queue: Arc<ReplyQueue>,
    channel: Channel,
    mut consumer: Consumer,
) {
    let mut state = shared.watch();
    let ended = loop {
        let gone = match &*state.borrow_and_update() {
            LinkState::Up(link) if link.generation == queue.generation => None,
            LinkState::Up(_) => Some(Some("connection replaced".to_owned())),
            LinkState::Down { error, .. } => Some(Some(error.clone())),
            LinkState::Closed => Some(None),
        };
        if let Some(reason) = gone {
            break reason;
        }
        tokio::select! {
            next = consumer.next() => match next {
                Some(Ok(delivery)) => queue.resolve(&delivery),
                Some(Err(e)) => break Some(format!("reply consumer failed: {e}")),
                None => break Some("reply consumer cancelled".to_owned()),
            },
            changed = state.changed() => {
                if changed.is_err() {
                    break None;
                }
            }
        }
    };
    // Shutdown marks the link closed before it closes the connection, so a
    // consumer that ended in between was ended by the shutdown.
    let ended = ended.filter(|_| !matches!(*state.borrow(), LinkState::Closed));
    match ended {
        // The requester fills in its request type.
        Some(reason) => queue.close(|| RequestError::Interrupted {
            request_type: String::new(),
            reason: format!("connection to RabbitMQ lost while waiting: {reason}"),
        }),
        None => queue.close(|| RequestError::ShutDown),
    }
    crate::link::close_channel(&channel, "reply queue done").await;
}

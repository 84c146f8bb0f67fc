//! One subscription: a durable pull consumer per event type it handles, and
//! what happens to each delivery (ack, delayed redelivery, dead letter).

use std::future::Future as _;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::pull::{Config as PullConfig, Stream as Messages};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use messaging_abstractions::{
    Delivery, Envelope, FailureKind, HandlerError, Handlers, KeyOrder, SubscribeError,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tracing::{debug, error, warn};
use uuid::Uuid;

use crate::codec::{self, Failure};
use crate::shared::Shared;
use crate::topology::Names;

/// How long one pull request waits on the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// Idle heartbeat asked of the server for each pull: a lost server is
/// noticed within two of them.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);
/// First pause before attaching again after a failure; doubles up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// A subscription at run time: shared by the consumers of its event types.
pub(crate) struct GroupConsumer {
    shared: Arc<Shared>,
    group: String,
    handlers: Handlers,
    /// One permit per handler allowed to run at once.
    permits: Arc<Semaphore>,
    /// Messages of one partition key are handled one after the other.
    order: KeyOrder,
}

/// One event type's consumer, attached.
pub(crate) struct Attached {
    event_type: String,
    messages: Messages,
}

impl GroupConsumer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        group: String,
        handlers: Handlers,
    ) -> Result<Self, SubscribeError> {
        for event_type in handlers.event_types() {
            Names::check_event_type(event_type).map_err(SubscribeError::Invalid)?;
        }
        let concurrency = shared.messaging.concurrency;
        Ok(Self {
            shared,
            group,
            handlers,
            permits: Arc::new(Semaphore::new(concurrency)),
            order: KeyOrder::default(),
        })
    }

    pub(crate) fn event_types(&self) -> Vec<String> {
        self.handlers.event_types().map(str::to_owned).collect()
    }

    /// Makes the stream and the group's durable consumer for `event_type`
    /// (or finds them) and starts pulling.
    async fn attach(&self, event_type: &str) -> Result<Attached, String> {
        let shared = &self.shared;
        let namespace = Names::namespace(event_type);
        shared.ensure_events_stream(namespace).await?;
        let stream_name = shared.names.stream(namespace);
        let stream = shared
            .js
            .get_stream_no_info(&stream_name)
            .await
            .map_err(|e| {
                shared.forget_stream(&stream_name);
                format!("cannot open stream `{stream_name}`: {e}")
            })?;
        let name = shared.names.consumer(&self.group, event_type);
        let config = PullConfig {
            durable_name: Some(name.clone()),
            description: Some(format!("group `{}`, event type `{event_type}`", self.group)),
            // A group created now starts with what is published from now
            // on, as a queue bound now would.
            deliver_policy: DeliverPolicy::New,
            ack_policy: AckPolicy::Explicit,
            ack_wait: shared.nats.ack_wait,
            // The chassis counts attempts and dead-letters; the server never
            // gives up on a message silently.
            max_deliver: -1,
            filter_subject: shared.names.subject(event_type),
            max_ack_pending: i64::from(shared.nats.max_ack_pending),
            num_replicas: 0,
            ..PullConfig::default()
        };
        let consumer = stream
            .get_or_create_consumer(&name, config)
            .await
            .map_err(|e| {
                shared.forget_stream(&stream_name);
                format!("cannot create or find consumer `{name}` on `{stream_name}`: {e}")
            })?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(usize::from(shared.messaging.prefetch))
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| format!("cannot pull from consumer `{name}`: {e}"))?;
        Ok(Attached {
            event_type: event_type.to_owned(),
            messages,
        })
    }

    /// Attaches every event type's consumer: the subscription fails when
    /// one cannot be made.
    pub(crate) async fn attach_all(&self) -> Result<Vec<Attached>, SubscribeError> {
        let mut attached = Vec::new();
        for event_type in self.event_types() {
            attached.push(
                self.attach(&event_type)
                    .await
                    .map_err(SubscribeError::Unavailable)?,
            );
        }
        Ok(attached)
    }

    /// Consumes one event type until shutdown, attaching again whenever the
    /// pull fails (server restarted, consumer deleted, ...).
    pub(crate) async fn run(self: Arc<Self>, first: Attached) {
        let event_type = first.event_type.clone();
        let mut current = Some(first);
        let mut failures = 0u32;
        let mut stop = self.shared.stop.subscribe();
        loop {
            let attached = match current.take() {
                Some(attached) => attached,
                None => match self.attach(&event_type).await {
                    Ok(attached) => {
                        debug!(group = %self.group, %event_type, "consumer attached again");
                        failures = 0;
                        attached
                    }
                    Err(e) => {
                        failures += 1;
                        warn!(group = %self.group, %event_type, error = %e, "cannot resume consuming; retrying");
                        if self.pause(failures).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            match self.consume(attached.messages, &mut stop).await {
                None => return,
                Some(reason) => {
                    failures += 1;
                    warn!(group = %self.group, %event_type, %reason, "consumer interrupted; attaching again");
                    if self.pause(failures).await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits before another attach; `true` when shutdown began meanwhile.
    async fn pause(&self, failures: u32) -> bool {
        let wait = FIRST_PAUSE
            .saturating_mul(1 << failures.saturating_sub(1).min(8))
            .min(MAX_PAUSE);
        let mut stop = self.shared.stop.subscribe();
        tokio::select! {
            () = tokio::time::sleep(wait) => self.shared.is_stopping(),
            _ = stop.wait_for(|s| *s) => true,
        }
    }

    /// Takes messages while a handler slot is free. `None` at shutdown,
    /// `Some(why)` when the pull failed.
    async fn consume(
        self: &Arc<Self>,
        mut messages: Messages,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<String> {
        loop {
            // The fast paths (a free slot, a message already pulled) skip
            // the selects: each would register and drop a waiter on the
            // stop signal per message.
            if *stop.borrow() {
                break;
            }
            let permit = match self.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(TryAcquireError::Closed) => break,
                Err(TryAcquireError::NoPermits) => tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    permit = self.permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                },
            };
            let next = match messages.next().now_or_never() {
                Some(next) => next,
                None => tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    next = messages.next() => next,
                },
            };
            match next {
                Some(Ok(message)) => self.spawn_handler(message, permit),
                Some(Err(e)) => return Some(e.to_string()),
                None => return Some("the pull ended".into()),
            }
        }
        // Messages pulled but not started go back at once rather than after
        // `ack_wait`.
        while let Some(Some(Ok(message))) = messages.next().now_or_never() {
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
        None
    }

    fn spawn_handler(self: &Arc<Self>, message: Message, permit: OwnedSemaphorePermit) {
        let decoded = codec::decode(message.headers.as_ref(), &message.payload);
        // Messages of one partition key in arrival order.
        let key = decoded
            .as_ref()
            .ok()
            .and_then(|e| e.partition_key.as_deref());
        let mut turn = self.order.enter(key);
        let this = self.clone();
        // Boxed: the task then holds a pointer, not the whole state machine,
        // which tokio would copy when spawning and again when it completes.
        tokio::spawn(Box::pin(async move {
            turn.wait().await;
            this.process(message, decoded).await;
            drop(turn);
            drop(permit);
        }));
    }

    /// Handles one delivery and settles it.
    async fn process(&self, message: Message, decoded: Result<Envelope, String>) {
        let attempt = message
            .info()
            .ok()
            .and_then(|info| u32::try_from(info.delivered).ok())
            .unwrap_or(1)
            .max(1);
        let event_type = self
            .shared
            .names
            .event_type(message.subject.as_str())
            .unwrap_or(message.subject.as_str());
        if let Some(target) = codec::replay_group(message.headers.as_ref())
            && target != self.group
        {
            // A dead letter replayed to another group of this subject.
            return settle(&message, AckKind::Ack, &self.group).await;
        }
        let retry = &self.shared.messaging.retry;
        let limit = self.shared.nats.delivery_limit.max(retry.max_attempts);
        if attempt > limit {
            let reason = format!(
                "delivery limit of {limit} exceeded: delivered {attempt} times without being \
                 settled (does the handler crash the process?)"
            );
            let failure = Failure::new(
                &self.group,
                event_type,
                FailureKind::Retryable,
                &reason,
                attempt,
            );
            return self.dead_letter_boxed(&message, &failure).await;
        }
        let envelope = match decoded {
            Ok(envelope) => envelope,
            Err(reason) => {
                let failure = Failure::new(
                    &self.group,
                    event_type,
                    FailureKind::Undecodable,
                    &reason,
                    attempt,
                );
                return self.dead_letter_boxed(&message, &failure).await;
            }
        };
        let message_id = envelope.message_id;
        let delivery = Delivery {
            envelope,
            group: self.group.clone(),
            attempt,
        };
        let result = self.dispatch(&message, &delivery).await;
        match result {
            Ok(()) => settle(&message, AckKind::Ack, &self.group).await,
            Err(e) => {
                let wait = match e.kind {
                    FailureKind::Retryable => retry.backoff(attempt),
                    _ => None,
                };
                match wait {
                    Some(wait) => {
                        warn!(group = %self.group, %message_id, attempt, retry_in = ?wait, reason = %e.reason, "handler failed; retrying later");
                        settle(&message, AckKind::Nak(Some(wait)), &self.group).await;
                    }
                    None => {
                        let failure =
                            Failure::new(&self.group, event_type, e.kind, &e.reason, attempt);
                        self.dead_letter_boxed(&message, &failure).await;
                    }
                }
            }
        }
    }

    /// Runs the handler, telling the server it is still at work every third
    /// of `ack_wait` so a long handler is not redelivered meanwhile. A panic
    /// is a retryable failure.
    async fn dispatch(&self, message: &Message, delivery: &Delivery) -> Result<(), HandlerError> {
        let handling = AssertUnwindSafe(self.handlers.dispatch(delivery)).catch_unwind();
        let mut handling = std::pin::pin!(handling);
        // Most handlers finish in their first poll: no progress timer for
        // them (a timer per message is a timer-wheel entry and an
        // allocation).
        let first = std::future::poll_fn(|cx| Poll::Ready(handling.as_mut().poll(cx))).await;
        let outcome = match first {
            Poll::Ready(outcome) => outcome,
            // Boxed: the timer and the progress ack would otherwise make
            // every message's task larger (memory per message in flight,
            // and the copy into its box).
            Poll::Pending => {
                Box::pin(async {
                    let period = self.shared.nats.ack_wait / 3;
                    let mut progress =
                        tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    loop {
                        tokio::select! {
                            outcome = &mut handling => break outcome,
                            _ = progress.tick() => {
                                let _ = message.ack_with(AckKind::Progress).await;
                            }
                        }
                    }
                })
                .await
            }
        };
        outcome.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(HandlerError::retryable(format!("handler panicked: {what}")))
        })
    }

    /// [`Self::dead_letter`] on the heap: the rare path's large future
    /// stays out of every message's task (see the progress timer).
    async fn dead_letter_boxed(&self, message: &Message, failure: &Failure) {
        Box::pin(self.dead_letter(message, failure)).await;
    }

    /// Copies the message to the dead-letter stream with the failure, then
    /// acknowledges it; when the copy cannot be stored, the message comes
    /// back later instead.
    async fn dead_letter(&self, message: &Message, failure: &Failure) {
        let shared = &self.shared;
        if !shared.messaging.dead_letter.enabled {
            error!(group = %self.group, kind = %failure.kind, reason = %failure.reason, attempts = failure.attempts,
                "message dropped: handling failed and dead-lettering is disabled");
            return settle(message, AckKind::Ack, &self.group).await;
        }
        error!(group = %self.group, kind = %failure.kind, reason = %failure.reason, attempts = failure.attempts,
            dead_letter_id = %failure.id, "message dead-lettered");
        let stored = match shared.ensure_dead_letter_stream().await {
            Ok(()) => shared
                .send_acked(
                    shared.names.dead_letter_subject(&self.group),
                    codec::for_dead_letter(message.headers.as_ref(), failure),
                    Bytes::clone(&message.payload),
                )
                .await
                .map_err(|e| shared.publish_error(e, Uuid::nil()).to_string()),
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => settle(message, AckKind::Ack, &self.group).await,
            Err(e) => {
                warn!(group = %self.group, error = %e, "cannot store the dead letter; the message will come back");
                settle(message, AckKind::Nak(Some(MAX_PAUSE)), &self.group).await;
            }
        }
    }

    /// Waits until no handler runs; the count of those still running after
    /// `grace`.
    pub(crate) async fn drain(&self, grace: Duration) -> usize {
        let all = u32::try_from(self.shared.messaging.concurrency).unwrap_or(u32::MAX);
        match tokio::time::timeout(grace, self.permits.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => self.shared.messaging.concurrency - self.permits.available_permits(),
        }
    }
}

async fn settle(message: &Message, kind: AckKind, group: &str) {
    if let Err(e) = message.ack_with(kind).await {
        // Not settled: the server delivers it again after `ack_wait`.
        warn!(%group, error = %e, "acknowledgement failed; the message will be redelivered");
    }
}

//! One subscription: its topology, its consumer on the group's queue, and
//! what happens to each delivery (ack, delayed retry, dead letter).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer};
use messaging_abstractions::{
    Delivery, Durability, FailureKind, HandlerError, Handlers, KeyOrder, SubscribeError,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{error, warn};
use uuid::Uuid;

use crate::codec::{self, Failure, Headers};
use crate::link::{Link, SendError, Shared};
use crate::topology;
use crate::{QueueType, RabbitMqConfig};

/// A subscription at run time.
pub(crate) struct GroupConsumer {
    shared: Arc<Shared>,
    group: String,
    queue: String,
    /// The provider's settings as this group's queues use them: a transient
    /// group's main queue is classic whatever `queue_type` says.
    rabbit: RabbitMqConfig,
    /// Whether the main queue survives a broker restart.
    durable: bool,
    handlers: Handlers,
    /// One permit per handler allowed to run at once.
    permits: Arc<Semaphore>,
    /// Messages of one partition key are handled one after the other.
    order: KeyOrder,
}

/// How a consumer stopped.
enum Stopped {
    Shutdown,
    /// The channel or connection ended; attach again.
    Lost,
}

fn is_precondition(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 406)
}

impl GroupConsumer {
    /// Checks the subscription's names.
    pub(crate) fn new(
        shared: Arc<Shared>,
        group: String,
        handlers: Handlers,
        durability: Durability,
    ) -> Result<Self, SubscribeError> {
        shared
            .names
            .check_group(&group, &shared.config.retry)
            .map_err(SubscribeError::Invalid)?;
        if let Some(long) = handlers
            .event_types()
            .find(|t| t.len() > topology::MAX_NAME_LEN)
        {
            return Err(SubscribeError::Invalid(format!(
                "event type `{long}` is longer than {} bytes and cannot be an AMQP routing key",
                topology::MAX_NAME_LEN
            )));
        }
        let concurrency = shared.config.concurrency;
        // Requests live seconds: a replicated, disk-backed quorum queue costs
        // them latency and broker CPU for a durability they cannot use.
        let durable = durability != Durability::Transient;
        let mut rabbit = shared.rabbit.clone();
        if !durable {
            rabbit.queue_type = QueueType::Classic;
        }
        Ok(Self {
            queue: shared.names.group_queue(&group),
            rabbit,
            durable,
            shared,
            group,
            handlers,
            permits: Arc::new(Semaphore::new(concurrency)),
            order: KeyOrder::default(),
        })
    }

    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    /// Declares the group's queues and bindings, then starts consuming with
    /// the configured prefetch on a channel of its own.
    pub(crate) async fn attach(&self, link: &Link) -> Result<(Channel, Consumer), SubscribeError> {
        let map = |e: lapin::Error| {
            if is_precondition(&e) {
                SubscribeError::Invalid(format!(
                    "the broker refused the topology of group `{}` (a queue exists with other \
                     arguments? delete it or align `messaging.rabbitmq`): {e}",
                    self.group
                ))
            } else {
                SubscribeError::Unavailable(e.to_string())
            }
        };
        let channel = link.connection.create_channel().await.map_err(map)?;
        self.declare(&channel).await.map_err(map)?;
        channel
            .basic_qos(self.shared.config.prefetch, BasicQosOptions::default())
            .await
            .map_err(map)?;
        let tag = format!("{}.{}.{}", self.shared.service, self.group, Uuid::new_v4());
        let tag = ShortString::try_new(tag).unwrap_or_else(|_| Uuid::new_v4().to_string().into());
        let consumer = channel
            .basic_consume(
                ShortString::from(self.queue.as_str()),
                tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(map)?;
        Ok((channel, consumer))
    }

    async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let names = &self.shared.names;
        let rabbit = &self.rabbit;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let dlq = names.dead_letter_queue(&self.group);
        channel
            .queue_declare(
                dlq.as_str().into(),
                durable,
                topology::dead_letter_queue_args(rabbit),
            )
            .await?;
        channel
            .queue_bind(
                dlq.as_str().into(),
                names.dead_letter_exchange().as_str().into(),
                self.group.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let main = QueueDeclareOptions {
            durable: self.durable,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(
                self.queue.as_str().into(),
                main,
                topology::group_queue_args(names, &self.group, rabbit),
            )
            .await?;
        for event_type in self.handlers.event_types() {
            channel
                .queue_bind(
                    self.queue.as_str().into(),
                    names.events_exchange().into(),
                    event_type.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        for delay_ms in topology::retry_delays_ms(&self.shared.config.retry) {
            channel
                .queue_declare(
                    names.retry_queue(&self.group, delay_ms).as_str().into(),
                    main,
                    topology::retry_queue_args(names, &self.group, delay_ms, rabbit),
                )
                .await?;
        }
        Ok(())
    }

    /// Consumes until shutdown, re-attaching to every new link. Returns the
    /// number of handlers still running when the drain deadline passed.
    pub(crate) async fn run(self: Arc<Self>, first: (Arc<Link>, Channel, Consumer)) -> usize {
        let mut current = Some(first);
        let mut after = 0;
        let mut failures = 0;
        let mut stop = self.shared.stop_consuming.subscribe();
        loop {
            let (link, channel, consumer) = match current.take() {
                Some(attached) => attached,
                None => {
                    // Shutdown may begin while the broker is away.
                    let link = tokio::select! {
                        link = self.shared.wait_link(None, after) => link,
                        _ = stop.wait_for(|s| *s) => break,
                    };
                    let Ok(link) = link else { break };
                    match self.attach(&link).await {
                        Ok((channel, consumer)) => {
                            failures = 0;
                            (link, channel, consumer)
                        }
                        Err(e) => {
                            warn!(group = %self.group, error = %e, "cannot resume consuming; retrying");
                            after = link.generation - 1;
                            failures += 1;
                            if self.pause(failures).await {
                                break;
                            }
                            continue;
                        }
                    }
                }
            };
            match self.consume(&link, &channel, consumer).await {
                Stopped::Shutdown => {
                    let still_running = self.drain().await;
                    // Unacked prefetched messages go back to the queue.
                    crate::link::close_channel(&channel, "consumer stopped").await;
                    return still_running;
                }
                Stopped::Lost => {
                    if link.connection.status().connected() {
                        // The broker cancelled us (queue deleted?) or the
                        // channel failed: attach again on the same link.
                        crate::link::close_channel(&channel, "re-attaching").await;
                        after = link.generation - 1;
                        failures += 1;
                        if self.pause(failures).await {
                            break;
                        }
                    } else {
                        after = link.generation;
                        failures = 0;
                    }
                }
            }
        }
        self.drain().await
    }

    /// Waits before another attach (exponential backoff over the reconnect
    /// settings); `true` when shutdown began meanwhile.
    async fn pause(&self, failures: u32) -> bool {
        let rabbit = &self.shared.rabbit;
        let wait = rabbit
            .reconnect_initial_backoff
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
            .min(rabbit.reconnect_max_backoff);
        let mut stop = self.shared.stop_consuming.subscribe();
        tokio::select! {
            () = tokio::time::sleep(wait) => self.shared.is_stopping(),
            _ = stop.wait_for(|s| *s) => true,
        }
    }

    /// Waits until no handler runs; the count of those still running at the
    /// drain deadline (`Shared::begin_stop`).
    async fn drain(&self) -> usize {
        let all = u32::try_from(self.shared.config.concurrency).unwrap_or(u32::MAX);
        let grace = self.shared.drain_left();
        match tokio::time::timeout(grace, self.permits.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => self.shared.config.concurrency - self.permits.available_permits(),
        }
    }

    async fn consume(
        self: &Arc<Self>,
        link: &Arc<Link>,
        channel: &Channel,
        mut consumer: Consumer,
    ) -> Stopped {
        let mut stop = self.shared.stop_consuming.subscribe();
        loop {
            let permit = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                permit = self.permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let next = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => self.spawn_handler(link.clone(), delivery, permit),
                Some(Err(e)) => {
                    warn!(group = %self.group, error = %e, "consumer failed");
                    return Stopped::Lost;
                }
                None => {
                    warn!(group = %self.group, "consumer cancelled");
                    return Stopped::Lost;
                }
            }
        }
        // Bounded like a settlement: on a connection that is dying unnoticed
        // the cancel-ok may never come, and shutdown has a budget.
        let cancel = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default());
        if let Err(e) = settle_within(crate::link::CLOSE_TIMEOUT, cancel).await {
            warn!(group = %self.group, error = %e, "cancelling the consumer failed; closing its channel");
        }
        Stopped::Shutdown
    }

    fn spawn_handler(
        self: &Arc<Self>,
        link: Arc<Link>,
        delivery: AmqpDelivery,
        permit: OwnedSemaphorePermit,
    ) {
        // Messages of one partition key in arrival order.
        let key = codec::partition_key(&delivery.properties);
        let mut turn = self.order.enter(key.as_deref());
        let this = self.clone();
        tokio::spawn(async move {
            turn.wait().await;
            this.process(&link, delivery).await;
            drop(turn);
            drop(permit);
        });
    }

    /// Handles one delivery and settles it.
    async fn process(&self, link: &Link, delivery: AmqpDelivery) {
        let props = &delivery.properties;
        let headers = Headers::of(props);
        let rabbit = &self.rabbit;
        let lost_deliveries = match rabbit.queue_type {
            QueueType::Quorum => headers.count(codec::H_DELIVERY_COUNT),
            QueueType::Classic => headers.count(codec::H_REDELIVERIES),
        };
        let attempt = headers.count(codec::H_ATTEMPTS) + lost_deliveries + 1;

        if rabbit.queue_type == QueueType::Classic && delivery.redelivered {
            let prior = headers.count(codec::H_ATTEMPTS);
            return self
                .count_redelivery(link, &delivery, prior, lost_deliveries + 1)
                .await;
        }

        let envelope = match codec::decode(props, delivery.routing_key.as_str(), &delivery.data) {
            Ok(envelope) => envelope,
            Err(reason) => {
                let failure = Failure {
                    kind: FailureKind::Undecodable,
                    reason: &reason,
                    attempts: attempt,
                };
                return self.dead_letter(link, &delivery, &failure).await;
            }
        };
        let message_id = envelope.message_id;
        let handled = Delivery {
            envelope,
            group: self.group.clone(),
            attempt,
        };
        let result = AssertUnwindSafe(self.handlers.dispatch(&handled))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(HandlerError::retryable(format!("handler panicked: {what}")))
            });
        match result {
            Ok(()) => ack(&delivery, &self.group).await,
            Err(e) => {
                let failure = Failure {
                    kind: e.kind,
                    reason: &e.reason,
                    attempts: attempt,
                };
                let wait = if e.is_retryable() {
                    self.shared.config.retry.backoff(attempt)
                } else {
                    None
                };
                match wait {
                    Some(wait) => {
                        warn!(group = %self.group, %message_id, attempt, retry_in = ?wait, reason = %e.reason, "handler failed; retrying later");
                        self.retry_later(link, &delivery, wait, &failure).await;
                    }
                    None => self.dead_letter(link, &delivery, &failure).await,
                }
            }
        }
    }

    /// Classic queues have no delivery limit: a message delivered again
    /// without having been settled (its consumer died) is put back with a
    /// counter, and dead-lettered once the counter reaches the limit.
    async fn count_redelivery(
        &self,
        link: &Link,
        delivery: &AmqpDelivery,
        prior_attempts: u32,
        redeliveries: u32,
    ) {
        let limit = self.rabbit.delivery_limit;
        // Same rule as the quorum `x-delivery-limit`: dead-letter once a
        // message came back unsettled more than `limit` times.
        if redeliveries > limit {
            let reason = format!(
                "delivery limit of {limit} exceeded: delivered {} times without being settled \
                 (does the handler crash the process?)",
                redeliveries + 1
            );
            let failure = Failure {
                kind: FailureKind::Retryable,
                reason: &reason,
                attempts: prior_attempts + redeliveries + 1,
            };
            return self.dead_letter(link, delivery, &failure).await;
        }
        let props = codec::for_redelivery(&delivery.properties, redeliveries);
        self.republish(link, delivery, "", &self.queue, props).await;
    }

    async fn retry_later(
        &self,
        link: &Link,
        delivery: &AmqpDelivery,
        wait: Duration,
        failure: &Failure<'_>,
    ) {
        let queue = self
            .shared
            .names
            .retry_queue(&self.group, topology::duration_ms(wait).max(1));
        let props = codec::for_retry(&delivery.properties, failure);
        match self.send(link, delivery, "", &queue, props).await {
            Ok(()) => ack(delivery, &self.group).await,
            Err(SendError::Link(e)) => {
                // The delivery cannot be settled on a lost link either: the
                // broker gives it back after the reconnection.
                warn!(group = %self.group, error = %e, "cannot schedule retry; the message will be redelivered");
            }
            Err(e) => {
                error!(group = %self.group, delay_queue = %queue, error = %e, "cannot schedule retry; dead-lettering instead");
                self.dead_letter(link, delivery, failure).await;
            }
        }
    }

    async fn dead_letter(&self, link: &Link, delivery: &AmqpDelivery, failure: &Failure<'_>) {
        let message_id = delivery.properties.message_id().clone();
        if !self.shared.config.dead_letter.enabled {
            error!(group = %self.group, ?message_id, kind = failure.kind.as_str(), reason = failure.reason, attempts = failure.attempts,
                "message dropped: handling failed and dead-lettering is disabled");
            return ack(delivery, &self.group).await;
        }
        error!(group = %self.group, ?message_id, kind = failure.kind.as_str(), reason = failure.reason, attempts = failure.attempts,
            "message dead-lettered");
        let props = codec::for_dead_letter(&delivery.properties, &self.group, failure);
        let dlx = self.shared.names.dead_letter_exchange();
        self.republish(link, delivery, &dlx, &self.group, props)
            .await;
    }

    /// Publishes a copy, then acks the original; on failure the original is
    /// left to the broker (lost link) or requeued after a pause.
    async fn republish(
        &self,
        link: &Link,
        delivery: &AmqpDelivery,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
    ) {
        match self
            .send(link, delivery, exchange, routing_key, props)
            .await
        {
            Ok(()) => ack(delivery, &self.group).await,
            Err(SendError::Link(e)) => {
                warn!(group = %self.group, error = %e, "cannot move message; it will be redelivered");
            }
            Err(e) => {
                error!(group = %self.group, exchange, routing_key, error = %e, "cannot move message; requeueing it");
                tokio::time::sleep(self.shared.rabbit.reconnect_initial_backoff).await;
                let requeue = BasicNackOptions {
                    multiple: false,
                    requeue: true,
                };
                nack(delivery, requeue, &self.group).await;
            }
        }
    }

    async fn send(
        &self,
        link: &Link,
        delivery: &AmqpDelivery,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
    ) -> Result<(), SendError> {
        // Queue and group names were checked against the AMQP limit on subscribe.
        let routing_key = ShortString::from(routing_key);
        let result = link
            .send_confirmed(
                exchange,
                routing_key,
                &delivery.data,
                props,
                self.shared.rabbit.confirm_timeout,
            )
            .await;
        if let Err(SendError::Link(_)) = &result {
            link.report_failure();
        }
        result
    }
}

/// How long settling a delivery (ack, nack) may take. lapin drops the
/// settlement of a delivery whose channel is closing without ever answering
/// it, so an unbounded wait would hold the handler's permit, and with it
/// shutdown's drain, forever; what is not settled the broker redelivers.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

async fn ack(delivery: &AmqpDelivery, group: &str) {
    settle("ack", delivery.ack(BasicAckOptions::default()), group).await;
}

async fn nack(delivery: &AmqpDelivery, options: BasicNackOptions, group: &str) {
    settle("nack", delivery.nack(options), group).await;
}

/// Waits for `settlement` up to [`SETTLE_TIMEOUT`]; a failure only warns:
/// the channel is gone and the broker redelivers the message.
async fn settle(
    what: &str,
    settlement: impl std::future::Future<Output = Result<bool, lapin::Error>>,
    group: &str,
) {
    if let Err(e) = settle_within(SETTLE_TIMEOUT, settlement).await {
        warn!(%group, error = %e, "{what} failed; the message will be redelivered");
    }
}

/// Why a settlement did not reach the broker.
#[derive(Debug, thiserror::Error)]
enum SettleError {
    #[error(transparent)]
    Channel(#[from] lapin::Error),
    #[error("no answer within {0:?} (the channel is closing)")]
    Timeout(Duration),
}

/// Waits for a settlement (or another answer of the broker), at most `limit`.
async fn settle_within<T>(
    limit: Duration,
    settlement: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, SettleError> {
    match tokio::time::timeout(limit, settlement).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(SettleError::Timeout(limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_settlement_that_never_answers_ends_at_the_limit() {
        // What lapin does with an ack on a closing channel: no answer, ever.
        let never = std::future::pending::<Result<bool, lapin::Error>>();
        let limit = Duration::from_millis(20);
        // An outer bound, so a broken limit fails the test instead of hanging it.
        let result = tokio::time::timeout(Duration::from_secs(10), settle_within(limit, never))
            .await
            .expect("settle_within returned at its limit");
        assert!(matches!(result, Err(SettleError::Timeout(t)) if t == limit));
    }

    #[tokio::test]
    async fn an_answered_settlement_passes_its_result_through() {
        let acked = settle_within(SETTLE_TIMEOUT, async { Ok::<_, lapin::Error>(true) }).await;
        assert!(matches!(acked, Ok(true)));
        let failed = settle_within(SETTLE_TIMEOUT, async {
            Err::<bool, _>(lapin::Error::from(lapin::ErrorKind::InvalidChannel(7)))
        })
        .await;
        assert!(matches!(failed, Err(SettleError::Channel(_))), "{failed:?}");
    }
}

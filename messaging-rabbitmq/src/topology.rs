//! Names and arguments of everything the chassis declares on the broker.
//!
//! Kept free of I/O so the naming rules and queue arguments are unit tested.

use std::collections::BTreeSet;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use messaging_abstractions::RetryPolicy;

use crate::{QueueType, RabbitMqConfig};

/// AMQP names (exchanges, queues, routing keys) are short strings.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// The names derived from the configured exchange and a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    exchange: String,
}

impl Names {
    pub(crate) fn new(exchange: &str) -> Self {
        Self {
            exchange: exchange.to_owned(),
        }
    }

    /// The durable topic exchange integration events are published to.
    pub(crate) fn events_exchange(&self) -> &str {
        &self.exchange
    }

    /// The durable direct exchange dead letters go through (routing key = group).
    pub(crate) fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.exchange)
    }

    /// The group's durable queue.
    pub(crate) fn group_queue(&self, group: &str) -> String {
        format!("{}.{group}", self.exchange)
    }

    /// The group's dead-letter queue.
    pub(crate) fn dead_letter_queue(&self, group: &str) -> String {
        format!("{}.{group}.dlq", self.exchange)
    }

    /// The group's delay queue for one backoff value.
    pub(crate) fn retry_queue(&self, group: &str, delay_ms: u64) -> String {
        format!("{}.{group}.retry.{delay_ms}ms", self.exchange)
    }

    /// Checks that every name derived for `group` fits an AMQP short string.
    pub(crate) fn check_group(&self, group: &str, retry: &RetryPolicy) -> Result<(), String> {
        let longest = retry_delays_ms(retry)
            .into_iter()
            .map(|ms| self.retry_queue(group, ms))
            .chain([self.dead_letter_queue(group), self.group_queue(group)])
            .max_by_key(String::len)
            .unwrap_or_default();
        if longest.len() > MAX_NAME_LEN {
            return Err(format!(
                "queue name `{longest}` is {} bytes long; AMQP allows at most {MAX_NAME_LEN} \
                 (shorten the group or `messaging.rabbitmq.exchange`)",
                longest.len()
            ));
        }
        Ok(())
    }
}

/// The distinct waits of a retry policy, in milliseconds: one delay queue each.
pub(crate) fn retry_delays_ms(retry: &RetryPolicy) -> BTreeSet<u64> {
    (1..retry.max_attempts)
        .filter_map(|attempt| retry.backoff(attempt))
        .map(|wait| duration_ms(wait).max(1))
        .collect()
}

/// Milliseconds of a wait, saturating.
pub(crate) fn duration_ms(wait: std::time::Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
}

fn short(s: &str) -> ShortString {
    // Every caller passes names checked by `Names::check_group` or fixed keys.
    ShortString::from(s)
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn queue_type_arg(args: &mut FieldTable, queue_type: QueueType) {
    let name = match queue_type {
        QueueType::Quorum => "quorum",
        QueueType::Classic => "classic",
    };
    args.insert(short("x-queue-type"), long(name));
}

/// Arguments of a group's main queue: queue type, dead-lettering to the
/// dead-letter exchange under the group's routing key, and (quorum) the
/// broker-side delivery limit.
pub(crate) fn group_queue_args(names: &Names, group: &str, config: &RabbitMqConfig) -> FieldTable {
    let mut args = FieldTable::default();
    queue_type_arg(&mut args, config.queue_type);
    args.insert(
        short("x-dead-letter-exchange"),
        long(&names.dead_letter_exchange()),
    );
    args.insert(short("x-dead-letter-routing-key"), long(group));
    if config.queue_type == QueueType::Quorum {
        args.insert(
            short("x-delivery-limit"),
            AMQPValue::LongLongInt(i64::from(config.delivery_limit)),
        );
        at_least_once_dead_lettering(&mut args);
    }
    args
}

/// Quorum queues dead-letter at most once unless told otherwise; at-least-once
/// needs `reject-publish` overflow.
fn at_least_once_dead_lettering(args: &mut FieldTable) {
    args.insert(short("x-dead-letter-strategy"), long("at-least-once"));
    args.insert(short("x-overflow"), long("reject-publish"));
}

/// Arguments of a group's dead-letter queue (same type as the main queue, no
/// limit: listing it requeues messages).
pub(crate) fn dead_letter_queue_args(config: &RabbitMqConfig) -> FieldTable {
    let mut args = FieldTable::default();
    queue_type_arg(&mut args, config.queue_type);
    args
}

/// Arguments of a delay queue: every message waits `delay_ms` (one TTL per
/// queue, so expiry is FIFO-exact), then is dead-lettered through the default
/// exchange straight back to the group's queue.
pub(crate) fn retry_queue_args(
    names: &Names,
    group: &str,
    delay_ms: u64,
    config: &RabbitMqConfig,
) -> FieldTable {
    let mut args = FieldTable::default();
    queue_type_arg(&mut args, config.queue_type);
    args.insert(
        short("x-message-ttl"),
        AMQPValue::LongLongInt(i64::try_from(delay_ms).unwrap_or(i64::MAX)),
    );
    args.insert(short("x-dead-letter-exchange"), long(""));
    args.insert(
        short("x-dead-letter-routing-key"),
        long(&names.group_queue(group)),
    );
    if config.queue_type == QueueType::Quorum {
        at_least_once_dead_lettering(&mut args);
    }
    args
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn text(args: &FieldTable, key: &str) -> String {
        match args.inner().get(key) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("{key}: expected a long string, got {other:?}"),
        }
    }

    #[test]
    fn names_follow_the_documented_scheme() {
        let n = Names::new("chassis.events");
        assert_eq!(n.events_exchange(), "chassis.events");
        assert_eq!(n.dead_letter_exchange(), "chassis.events.dlx");
        assert_eq!(n.group_queue("shipping"), "chassis.events.shipping");
        assert_eq!(
            n.dead_letter_queue("shipping"),
            "chassis.events.shipping.dlq"
        );
        assert_eq!(
            n.retry_queue("shipping", 200),
            "chassis.events.shipping.retry.200ms"
        );
    }

    #[test]
    fn one_delay_queue_per_distinct_backoff() {
        let p = RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            multiplier: 2.0,
        };
        // Waits after attempts 1..=5: 100, 200, 400, 400, 400.
        assert_eq!(
            retry_delays_ms(&p).into_iter().collect::<Vec<_>>(),
            vec![100, 200, 400]
        );
        let none = RetryPolicy {
            max_attempts: 1,
            ..p
        };
        assert!(retry_delays_ms(&none).is_empty());
    }

    #[test]
    fn overlong_names_are_refused() {
        let n = Names::new(&"e".repeat(240));
        let err = n
            .check_group("shipping", &RetryPolicy::default())
            .unwrap_err();
        assert!(err.contains("at most 255"), "{err}");
        assert!(
            Names::new("ok")
                .check_group("shipping", &RetryPolicy::default())
                .is_ok()
        );
    }

    #[test]
    fn quorum_queue_has_delivery_limit_and_dead_letter_route() {
        let n = Names::new("ev");
        let config = RabbitMqConfig {
            delivery_limit: 7,
            ..RabbitMqConfig::default()
        };
        let args = group_queue_args(&n, "g", &config);
        assert_eq!(text(&args, "x-queue-type"), "quorum");
        assert_eq!(text(&args, "x-dead-letter-exchange"), "ev.dlx");
        assert_eq!(text(&args, "x-dead-letter-routing-key"), "g");
        assert_eq!(
            args.inner().get("x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(7))
        );
        let classic = RabbitMqConfig {
            queue_type: QueueType::Classic,
            ..config
        };
        let args = group_queue_args(&n, "g", &classic);
        assert_eq!(text(&args, "x-queue-type"), "classic");
        assert!(!args.contains_key("x-delivery-limit"));
    }

    #[test]
    fn retry_queue_dead_letters_back_to_the_group_queue() {
        let n = Names::new("ev");
        let args = retry_queue_args(&n, "g", 250, &RabbitMqConfig::default());
        assert_eq!(
            args.inner().get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(250))
        );
        assert_eq!(text(&args, "x-dead-letter-exchange"), "");
        assert_eq!(text(&args, "x-dead-letter-routing-key"), "ev.g");
    }
}

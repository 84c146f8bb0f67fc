//! The provider's connection: one AMQP connection plus a confirm-mode
//! publishing channel (a [`Link`]), replaced by a supervisor task whenever it
//! is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chassis_core::{HealthCheck, HealthStatus};
use futures::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Event, ExchangeKind,
    PublisherConfirm,
};
use messaging_abstractions::MessagingConfig;

use crate::RabbitMqConfig;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::error::RabbitMqError;
use crate::topology::Names;

/// How long one connection attempt (TCP + AMQP handshake + setup) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat asked for when the URL does not say: a silently dead peer is
/// noticed within two intervals.
const DEFAULT_HEARTBEAT_SECS: u16 = 10;
/// How often the supervisor also looks at the connection and channel state
/// (a safety net next to the connection's error events).
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// How long closing a lost or finished connection may take: the close
/// handshake of a connection whose peer went away can wait for an answer
/// that never comes, and the supervisor must go on reconnecting.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the rest of the provider sees of the connection.
#[derive(Clone)]
pub(crate) enum LinkState {
    /// Connected; publish and consume through this link.
    Up(Arc<Link>),
    /// Lost or not yet back; `error` says why.
    Down { since: Instant, error: String },
    /// Shut down for good.
    Closed,
}

/// State shared by the bus, its consumers, its dead-letter store and the
/// supervisor.
pub(crate) struct Shared {
    pub(crate) config: MessagingConfig,
    /// The provider's own section.
    pub(crate) rabbit: RabbitMqConfig,
    pub(crate) names: Names,
    pub(crate) service: String,
    uri: AMQPUri,
    endpoint: String,
    state: watch::Sender<LinkState>,
    /// Set when consumers must stop (shutdown has begun).
    pub(crate) stop_consuming: watch::Sender<bool>,
    /// Until when stopping consumers wait for their in-flight handlers; set
    /// with `stop_consuming`.
    drain_until: Mutex<Option<Instant>>,
    generations: AtomicU64,
    blocked: Mutex<Option<String>>,
}

/// One live connection and its publishing channel.
pub(crate) struct Link {
    pub(crate) generation: u64,
    pub(crate) connection: Connection,
    publisher: Channel,
    failed: Notify,
}

/// Why a message could not be published on a link.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection or channel failed: try again on the next link.
    Link(String),
    /// `mandatory` returned it: no queue is bound for its routing key.
    Unroutable,
    /// The broker answered `basic.nack`.
    Nacked,
    /// No confirm within the configured time.
    Timeout(Duration),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Link(e) => write!(f, "connection lost: {e}"),
            Self::Unroutable => f.write_str("unroutable (returned by the broker)"),
            Self::Nacked => f.write_str("refused by the broker (basic.nack)"),
            Self::Timeout(t) => write!(f, "no confirm within {t:?}"),
        }
    }
}

/// Why no link could be had.
#[derive(Debug)]
pub(crate) enum NoLink {
    /// Not connected within the wait; the last connection error.
    Unavailable(String),
    /// The bus is shut down.
    Closed,
}

impl Shared {
    /// Parses the URL and fills in the heartbeat and connection timeout when
    /// the URL does not set them.
    pub(crate) fn new(
        config: &MessagingConfig,
        rabbit: &RabbitMqConfig,
        service: &str,
    ) -> Result<Self, RabbitMqError> {
        config.validate().map_err(RabbitMqError::InvalidConfig)?;
        let mut uri = rabbit.validate().map_err(RabbitMqError::InvalidConfig)?;
        uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECS);
        uri.query
            .connection_timeout
            .get_or_insert(crate::topology::duration_ms(CONNECT_TIMEOUT));
        let endpoint = format!(
            "{}:{}/{}",
            uri.authority.host, uri.authority.port, uri.vhost
        );
        let (state, _) = watch::channel(LinkState::Down {
            since: Instant::now(),
            error: "not connected yet".into(),
        });
        Ok(Self {
            config: config.clone(),
            rabbit: rabbit.clone(),
            names: Names::new(&rabbit.exchange),
            service: service.to_owned(),
            uri,
            endpoint,
            state,
            stop_consuming: watch::channel(false).0,
            drain_until: Mutex::new(None),
            generations: AtomicU64::new(0),
            blocked: Mutex::new(None),
        })
    }

    /// Opens a connection, its publishing channel in confirm mode, and
    /// declares both exchanges.
    pub(crate) async fn open_link(&self) -> Result<Arc<Link>, RabbitMqError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.open_link_untimed()).await {
            Ok(result) => result,
            Err(_) => Err(RabbitMqError::ConnectTimeout {
                endpoint: self.endpoint.clone(),
                waited: CONNECT_TIMEOUT,
            }),
        }
    }

    async fn open_link_untimed(&self) -> Result<Arc<Link>, RabbitMqError> {
        let connect_error = |source| RabbitMqError::Connect {
            endpoint: self.endpoint.clone(),
            source,
        };
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.service.as_str()))
            .with_client_property(
                ShortString::from("product"),
                LongString::from("rust service chassis"),
            );
        let connection = Connection::connect_uri(self.uri.clone(), properties)
            .await
            .map_err(connect_error)?;
        let publisher = connection.create_channel().await.map_err(connect_error)?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(connect_error)?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for (name, kind) in [
            (self.names.events_exchange().to_owned(), ExchangeKind::Topic),
            (self.names.dead_letter_exchange(), ExchangeKind::Direct),
        ] {
            publisher
                .exchange_declare(
                    ShortString::from(name.as_str()),
                    kind,
                    durable,
                    FieldTable::default(),
                )
                .await
                .map_err(|source| RabbitMqError::Topology { name, source })?;
        }
        Ok(Arc::new(Link {
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            connection,
            publisher,
            failed: Notify::new(),
        }))
    }

    pub(crate) fn set_up(&self, link: Arc<Link>) {
        *self.blocked.lock() = None;
        self.state.send_replace(LinkState::Up(link));
    }

    pub(crate) fn set_closed(&self) {
        self.state.send_replace(LinkState::Closed);
    }

    /// Follows the connection state (up, down, closed).
    pub(crate) fn watch(&self) -> watch::Receiver<LinkState> {
        self.state.subscribe()
    }

    pub(crate) fn current(&self) -> LinkState {
        self.state.borrow().clone()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *self.stop_consuming.borrow()
    }

    /// Tells consumers to stop, giving their in-flight handlers `grace`
    /// (the first call's deadline holds).
    pub(crate) fn begin_stop(&self, grace: Duration) {
        self.drain_until
            .lock()
            .get_or_insert_with(|| Instant::now() + grace);
        self.stop_consuming.send_replace(true);
    }

    /// How long stopping consumers still wait for their handlers.
    pub(crate) fn drain_left(&self) -> Duration {
        self.drain_until.lock().map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(Instant::now())
        })
    }

    /// Waits for a link newer than generation `after` (0: any), up to
    /// `deadline` (`None`: as long as it takes).
    pub(crate) async fn wait_link(
        &self,
        deadline: Option<tokio::time::Instant>,
        after: u64,
    ) -> Result<Arc<Link>, NoLink> {
        let mut rx = self.state.subscribe();
        loop {
            let last_error = match &*rx.borrow_and_update() {
                LinkState::Up(link) if link.generation > after => return Ok(link.clone()),
                LinkState::Up(_) => "connection lost, reconnecting".to_owned(),
                LinkState::Down { error, .. } => error.clone(),
                LinkState::Closed => return Err(NoLink::Closed),
            };
            let changed = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(changed) => changed,
                    Err(_) => return Err(NoLink::Unavailable(last_error)),
                },
                None => rx.changed().await,
            };
            if changed.is_err() {
                return Err(NoLink::Closed);
            }
        }
    }

    /// Keeps a link up until shutdown: waits for the current one to fail,
    /// then reconnects with exponential backoff (with jitter), re-declares
    /// the exchanges and publishes the new link; consumers re-attach to it.
    pub(crate) async fn supervise(self: Arc<Self>, mut link: Arc<Link>) {
        let mut closed = self.state.subscribe();
        loop {
            let reason = tokio::select! {
                reason = self.watch_link(&link) => reason,
                () = wait_closed(&mut closed) => break,
            };
            warn!(endpoint = %self.endpoint, %reason, "RabbitMQ connection lost; reconnecting");
            self.state.send_replace(LinkState::Down {
                since: Instant::now(),
                error: reason,
            });
            // Best effort: make sure every channel of the old link ends.
            close_bounded(&link, 320, "reconnecting").await;
            let mut backoff = self.rabbit.reconnect_initial_backoff;
            link = loop {
                match self.open_link().await {
                    Ok(new) => break new,
                    Err(e) => {
                        warn!(endpoint = %self.endpoint, error = %e, retry_in = ?backoff, "RabbitMQ reconnection failed");
                        if let LinkState::Closed = self.current() {
                            return;
                        }
                        self.state.send_replace(LinkState::Down {
                            since: self.down_since(),
                            error: e.to_string(),
                        });
                        tokio::select! {
                            () = tokio::time::sleep(jitter(backoff)) => {}
                            () = wait_closed(&mut closed) => return,
                        }
                        backoff = (backoff * 2).min(self.rabbit.reconnect_max_backoff);
                    }
                }
            };
            if let LinkState::Closed = self.current() {
                close_bounded(&link, 200, "shutdown").await;
                return;
            }
            info!(endpoint = %self.endpoint, generation = link.generation, "RabbitMQ connection restored");
            self.set_up(link.clone());
        }
    }

    fn down_since(&self) -> Instant {
        match &*self.state.borrow() {
            LinkState::Down { since, .. } => *since,
            _ => Instant::now(),
        }
    }

    /// Returns why `link` is no longer usable.
    async fn watch_link(&self, link: &Link) -> String {
        let mut events = link.connection.events_listener();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    // A channel-level (soft) error closes that channel only;
                    // its owner handles it.
                    Some(Event::Error(e))
                        if e.is_amqp_soft_error() && link.connection.status().connected() => {}
                    Some(Event::Error(e)) => return e.to_string(),
                    Some(Event::ConnectionBlocked(reason)) => *self.blocked.lock() = Some(reason),
                    Some(Event::ConnectionUnblocked) => *self.blocked.lock() = None,
                    Some(_) => {}
                    None => return "connection event stream ended".into(),
                },
                () = link.failed.notified() => return "a channel of the connection failed".into(),
                _ = tick.tick() => {
                    if !link.connection.status().connected() {
                        return "connection is no longer open".into();
                    }
                    if !link.publisher.status().connected() {
                        return "publishing channel is no longer open".into();
                    }
                }
            }
        }
    }

    pub(crate) fn health(&self) -> HealthStatus {
        match self.current() {
            LinkState::Up(link) if link.connection.status().connected() => {
                match self.blocked.lock().clone() {
                    Some(reason) => HealthStatus::Degraded(format!(
                        "RabbitMQ at {} blocks publishing: {reason}",
                        self.endpoint
                    )),
                    None => HealthStatus::Healthy,
                }
            }
            LinkState::Up(_) => HealthStatus::Unhealthy(format!(
                "connection to RabbitMQ at {} lost, reconnecting",
                self.endpoint
            )),
            LinkState::Down { since, error } => HealthStatus::Unhealthy(format!(
                "not connected to RabbitMQ at {} for {:.1}s: {error}",
                self.endpoint,
                since.elapsed().as_secs_f64()
            )),
            LinkState::Closed => HealthStatus::Unhealthy("event bus is shut down".into()),
        }
    }
}

/// Closes `link`'s connection, giving up after [`CLOSE_TIMEOUT`].
async fn close_bounded(link: &Link, code: u16, reason: &str) {
    let close = link.connection.close(code, ShortString::from(reason));
    if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
        warn!(
            generation = link.generation,
            "closing the old RabbitMQ connection timed out; dropping it"
        );
    }
}

/// Closes `channel`, giving up after [`CLOSE_TIMEOUT`] (its connection may
/// be gone without the channel knowing yet).
pub(crate) async fn close_channel(channel: &Channel, reason: &str) {
    let close = channel.close(200, ShortString::from(reason));
    if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
        warn!(reason, "closing a RabbitMQ channel timed out; dropping it");
    }
}

async fn wait_closed(rx: &mut watch::Receiver<LinkState>) {
    loop {
        if matches!(*rx.borrow_and_update(), LinkState::Closed) {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// ±20 % so a fleet of services does not reconnect in lockstep.
fn jitter(wait: Duration) -> Duration {
    let random = uuid::Uuid::new_v4().as_u128() % 401;
    let factor = 0.8 + (random as f64) / 1000.0;
    wait.mul_f64(factor)
}

impl Link {
    /// Tells the supervisor this link failed (a user saw an error on it).
    pub(crate) fn report_failure(&self) {
        self.failed.notify_one();
    }

    /// Sends one persistent, `mandatory` message; the returned future
    /// resolves with the broker's confirm.
    pub(crate) async fn send(
        &self,
        exchange: &str,
        routing_key: ShortString,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<PublisherConfirm, SendError> {
        self.publisher
            .basic_publish(
                ShortString::from(exchange),
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                payload,
                properties,
            )
            .await
            .map_err(|e| SendError::Link(e.to_string()))
    }

    /// Sends one message and waits for its confirm.
    pub(crate) async fn send_confirmed(
        &self,
        exchange: &str,
        routing_key: ShortString,
        payload: &[u8],
        properties: BasicProperties,
        confirm_timeout: Duration,
    ) -> Result<(), SendError> {
        let confirm = self
            .send(exchange, routing_key, payload, properties)
            .await?;
        settle(confirm, confirm_timeout).await
    }
}

/// Waits for a confirm: `Ok` only for a plain `basic.ack`.
pub(crate) async fn settle(
    confirm: PublisherConfirm,
    confirm_timeout: Duration,
) -> Result<(), SendError> {
    match tokio::time::timeout(confirm_timeout, confirm).await {
        Err(_) => Err(SendError::Timeout(confirm_timeout)),
        Ok(Err(e)) => Err(SendError::Link(e.to_string())),
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)))) => {
            Err(SendError::Unroutable)
        }
        Ok(Ok(Confirmation::Nack(None))) => Err(SendError::Nacked),
        Ok(Ok(Confirmation::NotRequested)) => Err(SendError::Link(
            "publisher confirms are not enabled on the channel".into(),
        )),
    }
}

/// The readiness check of the provider (`messaging.rabbitmq`).
pub(crate) struct RabbitMqHealth(pub(crate) Arc<Shared>);

#[async_trait]
impl HealthCheck for RabbitMqHealth {
    fn name(&self) -> &str {
        "messaging.rabbitmq"
    }

    async fn check(&self) -> HealthStatus {
        self.0.health()
    }
}

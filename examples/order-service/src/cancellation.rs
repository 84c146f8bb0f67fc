//! Order cancellation: a saga (`chassis_domain::saga`) between the order
//! and the shipping service.
//!
//! 1. `POST /orders/{id}/cancel` marks the order `cancelling` and starts the
//!    saga in the same unit of work; the saga writes
//!    `order.cancellation_requested.v1` to the outbox and sets a deadline
//!    (`cancellation.answer_timeout`). Answer: 202 with the order.
//! 2. Shipping takes the order's units out of its open packages and answers
//!    `shipping.shipment_cancelled.v1` → the order is `cancelled`; or, when
//!    a package of the order was already sent, it answers
//!    `shipping.shipment_cancellation_refused.v1` → the saga compensates:
//!    the order becomes `cancellation_refused` with shipping's reason and
//!    goes on as a complete order.
//! 3. No answer by the deadline: the request is sent again (shipping handles
//!    it idempotently), up to `cancellation.max_attempts` requests in all.
//!    Then the saga gives up and compensates: the order becomes
//!    `cancellation_refused` ("shipping did not answer ...") and
//!    `order.cancellation_withdrawn.v1` tells shipping to put back any unit
//!    it released for a request it handled late, and to refuse the requests
//!    still on their way.
//!
//! Every step is one unit of work (order, saga state, outbox, inbox mark);
//! a duplicated answer has no second effect.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chassis_domain::messaging::{Handlers, Subscription};
use chassis_domain::saga::{Saga, SagaConfig, SagaContext, SagaRunner, SagaStep};
use chassis_domain::{Command, CommandContext, CommandHandler, DomainError, UnitOfWork};
use chassis_storage::{Persistence, Repository};
use chassis_web::axum::extract::{Path, State};
use chassis_web::axum::http::StatusCode;
use chassis_web::{BoxError, Json, Problem, ServiceContext, current_message_context};
use order_service_client::cancellation::{OrderCancellationRequested, OrderCancellationWithdrawn};
use order_service_client::dto::OrderView;
use serde::{Deserialize, Serialize};
use shipping_service_client::cancellation::{ShipmentCancellationRefused, ShipmentCancelled};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::app::Orders;
use crate::domain::Order;
use crate::integration::order_view;

/// The `[cancellation]` section of the configuration.
///
/// ```toml
/// [cancellation]
/// answer_timeout = "30s"        # wait this long for shipping's answer...
/// max_attempts = 3              # ...this many requests in all, then give up
/// timeout_poll_interval = "1s"  # how often due deadlines are looked for
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CancellationConfig {
    /// How long to wait for shipping's answer to one request.
    #[serde(with = "chassis_core::duration")]
    pub answer_timeout: Duration,
    /// Requests sent in all (the first and the re-sends) before giving up.
    pub max_attempts: u32,
    /// How often the timeout scheduler looks for due cancellations.
    #[serde(with = "chassis_core::duration")]
    pub timeout_poll_interval: Duration,
}

impl Default for CancellationConfig {
    fn default() -> Self {
        Self {
            answer_timeout: Duration::from_secs(30),
            max_attempts: 3,
            timeout_poll_interval: Duration::from_secs(1),
        }
    }
}

impl CancellationConfig {
    /// Reads and checks the `[cancellation]` section.
    pub fn from_context(ctx: &ServiceContext) -> Result<Self, BoxError> {
        let config: Self = ctx.section("cancellation")?;
        if config.max_attempts == 0 {
            return Err("cancellation.max_attempts: expected an integer >= 1".into());
        }
        if config.timeout_poll_interval.is_zero() {
            return Err("cancellation.timeout_poll_interval: expected a duration > 0".into());
        }
        Ok(config)
    }
}

/// The state of one cancellation (saga id: the order id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationState {
    /// Requests sent so far.
    pub attempts: u32,
    /// When the customer asked.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// Whether compensation must tell shipping to put units back: set when
    /// the saga gives up without an answer (shipping may still act on a
    /// request); not when shipping refused (it changed nothing).
    pub withdraw: bool,
}

/// The order cancellation saga.
#[derive(Debug, Clone)]
pub struct OrderCancellation {
    config: CancellationConfig,
}

impl OrderCancellation {
    /// The saga with these timeouts.
    pub fn new(config: CancellationConfig) -> Self {
        Self { config }
    }
}

fn order_id(cx: &SagaContext<'_>) -> Result<Uuid, DomainError> {
    cx.saga_id().parse().map_err(|e| {
        DomainError::internal(format!(
            "saga id `{}` is not an order id: {e}",
            cx.saga_id()
        ))
    })
}

async fn change_order(
    cx: &mut SagaContext<'_>,
    f: impl FnOnce(&mut Order, OffsetDateTime) -> Result<(), DomainError> + Send,
) -> Result<(), DomainError> {
    let id = order_id(cx)?;
    let now = OffsetDateTime::from(cx.now());
    let orders = Repository::<Order>::new();
    let uow = cx.unit_of_work();
    let mut order = orders.load(uow, &id).await?;
    f(&mut order, now)?;
    orders.update(uow, &mut order).await?;
    Ok(())
}

async fn send_request(
    cx: &mut SagaContext<'_>,
    state: &CancellationState,
    timeout: Duration,
) -> Result<(), DomainError> {
    let request = OrderCancellationRequested {
        order_id: order_id(cx)?,
        attempt: state.attempts,
        requested_at: state.requested_at,
    };
    cx.send(&request).await?;
    cx.schedule_timeout(timeout);
    Ok(())
}

#[async_trait]
impl Saga for OrderCancellation {
    const NAME: &'static str = "order_cancellation";
    type State = CancellationState;
    /// When the customer asked.
    type Input = OffsetDateTime;

    async fn start(
        &self,
        requested_at: OffsetDateTime,
        cx: &mut SagaContext<'_>,
    ) -> Result<CancellationState, DomainError> {
        let state = CancellationState {
            attempts: 1,
            requested_at,
            withdraw: false,
        };
        send_request(cx, &state, self.config.answer_timeout).await?;
        Ok(state)
    }

    async fn on_timeout(
        &self,
        state: &mut CancellationState,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        if state.attempts >= self.config.max_attempts {
            state.withdraw = true;
            cx.compensate(format!(
                "shipping did not answer {} cancellation request(s) within {:?} each; \
                 the cancellation was withdrawn",
                state.attempts, self.config.answer_timeout
            ));
            return Ok(());
        }
        state.attempts += 1;
        tracing::info!(
            order_id = cx.saga_id(),
            attempt = state.attempts,
            "no answer from shipping: cancellation request sent again"
        );
        send_request(cx, state, self.config.answer_timeout).await
    }

    async fn compensate(
        &self,
        state: &mut CancellationState,
        reason: &str,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        change_order(cx, |order, now| order.refuse_cancellation(reason, now)).await?;
        if state.withdraw {
            let withdrawn = OrderCancellationWithdrawn {
                order_id: order_id(cx)?,
                reason: reason.to_owned(),
            };
            cx.send(&withdrawn).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SagaStep<ShipmentCancelled> for OrderCancellation {
    fn saga_id(event: &ShipmentCancelled) -> String {
        event.order_id.to_string()
    }

    async fn handle(
        &self,
        _state: &mut CancellationState,
        _event: ShipmentCancelled,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        change_order(cx, |order, now| order.confirm_cancellation(now)).await?;
        cx.complete();
        Ok(())
    }
}

#[async_trait]
impl SagaStep<ShipmentCancellationRefused> for OrderCancellation {
    fn saga_id(event: &ShipmentCancellationRefused) -> String {
        event.order_id.to_string()
    }

    async fn handle(
        &self,
        _state: &mut CancellationState,
        event: ShipmentCancellationRefused,
        cx: &mut SagaContext<'_>,
    ) -> Result<(), DomainError> {
        cx.compensate(event.reason);
        Ok(())
    }
}

/// The saga's runner over `storage`.
pub fn runner(storage: &Persistence, config: CancellationConfig) -> SagaRunner<OrderCancellation> {
    let saga_config = SagaConfig {
        timeout_poll_interval: config.timeout_poll_interval,
        ..SagaConfig::default()
    };
    SagaRunner::new(OrderCancellation::new(config), Arc::new(storage.clone()))
        .with_config(saga_config)
}

/// The start-up step: checks the `[cancellation]` section, subscribes the
/// service's consumer group to shipping's answers and runs the timeout
/// scheduler until shutdown. Returns the runner the routes start sagas with.
pub async fn start(ctx: ServiceContext) -> Result<SagaRunner<OrderCancellation>, BoxError> {
    let config = CancellationConfig::from_context(&ctx)?;
    let runner = runner(&ctx.persistence(), config);
    let handlers =
        runner.on::<ShipmentCancellationRefused>(runner.on::<ShipmentCancelled>(Handlers::new()));
    ctx.bus()
        .subscribe(Subscription::new(ctx.name().to_owned(), handlers))
        .await?;
    let timeouts = runner.start_timeouts();
    let stopping = ctx.shutdown_signal();
    ctx.spawn("cancellation-timeouts", async move {
        stopping.stopping().await;
        timeouts.shutdown().await?;
        Ok(())
    });
    Ok(runner)
}

/// Cancel an order: mark it `cancelling` and start the saga, in one unit of
/// work.
#[derive(Debug, Clone, Copy)]
pub struct CancelOrder {
    /// The order.
    pub order_id: Uuid,
}

impl Command for CancelOrder {
    const NAME: &'static str = "order.cancel";
    type Output = Order;
}

/// Handles [`CancelOrder`] with the saga's runner.
#[derive(Debug, Clone)]
pub struct CancelOrderHandler {
    runner: SagaRunner<OrderCancellation>,
}

impl CancelOrderHandler {
    /// A handler starting sagas with `runner`.
    pub fn new(runner: SagaRunner<OrderCancellation>) -> Self {
        Self { runner }
    }
}

#[async_trait]
impl CommandHandler<CancelOrder> for CancelOrderHandler {
    async fn handle(
        &self,
        command: CancelOrder,
        cx: &mut CommandContext,
    ) -> Result<Order, DomainError> {
        let now = OffsetDateTime::now_utc();
        let orders = Repository::<Order>::new();
        let uow: &mut dyn UnitOfWork = cx.unit_of_work()?;
        let mut order = orders.load(uow, &command.order_id).await?;
        order.request_cancellation(now)?;
        orders.update(uow, &mut order).await?;
        self.runner
            .start_in(uow, &command.order_id.to_string(), now)
            .await?;
        Ok(order)
    }
}

/// Cancel an order.
///
/// The order becomes `cancelling` and the shipping service is asked to take
/// its units out of the packages not yet sent. The outcome shows in
/// `GET /orders/{id}`: `cancelled`, or `cancellation_refused` with
/// `cancellation.reason` (packages already sent, or shipping did not answer
/// after `cancellation.max_attempts` requests).
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 202, description = "Cancellation started; the order is `cancelling`", body = OrderView),
        (status = 404, description = "No such order", content_type = "application/problem+json"),
        (status = 409, description = "The order is being cancelled, was cancelled, had its \
                                      cancellation refused, or is not complete",
         content_type = "application/problem+json"),
    )
)]
pub(crate) async fn cancel_order(
    State(orders): State<Orders>,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<OrderView>), Problem> {
    let order = orders
        .cancel(CancelOrder { order_id: id }, current_message_context())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(order_view(&order))))
}

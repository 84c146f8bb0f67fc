//! The application layer: the use cases the API offers, run through the
//! chassis command pipeline (logging span with the correlation id, one unit
//! of work, `OrderCompleted` written to the outbox in the same transaction).

use std::sync::Arc;

use async_trait::async_trait;
use chassis_domain::{
    Command, CommandContext, CommandHandler, CommandPipeline, DomainError, MessageContext,
    UnitOfWork,
};
use chassis_storage::{Repository, Storage};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cancellation::{self, CancelOrder, CancelOrderHandler};
use crate::domain::{Order, PlaceOrder};

impl Command for PlaceOrder {
    const NAME: &'static str = "order.place";
    type Output = Order;
}

/// Places an order and completes it at once: payment is outside this
/// example, so an accepted order is a paid one.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlaceOrderHandler;

#[async_trait]
impl CommandHandler<PlaceOrder> for PlaceOrderHandler {
    async fn handle(
        &self,
        command: PlaceOrder,
        cx: &mut CommandContext,
    ) -> Result<Order, DomainError> {
        let now = OffsetDateTime::now_utc();
        let mut order = Order::place(Uuid::now_v7(), command, now)?;
        order.complete(now)?;
        Repository::<Order>::new()
            .add(cx.unit_of_work()?, &mut order)
            .await?;
        Ok(order)
    }
}

/// The order service's use cases over its storage. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Orders {
    storage: Storage,
    pipeline: CommandPipeline,
    cancel: CancelOrderHandler,
}

impl Orders {
    /// The use cases over `storage`.
    pub fn new(storage: Storage) -> Self {
        let pipeline = CommandPipeline::new().with_unit_of_work(Arc::new(storage.clone()));
        let cancel = CancelOrderHandler::new(cancellation::runner(&storage, Default::default()));
        Self {
            storage,
            pipeline,
            cancel,
        }
    }

    /// Starts cancellations with this saga runner (its configured timeouts).
    pub fn with_cancellation(
        mut self,
        runner: chassis_domain::saga::SagaRunner<cancellation::OrderCancellation>,
    ) -> Self {
        self.cancel = CancelOrderHandler::new(runner);
        self
    }

    /// Starts cancelling an order (see [`crate::cancellation`]).
    pub async fn cancel(
        &self,
        command: CancelOrder,
        context: MessageContext,
    ) -> Result<Order, DomainError> {
        self.pipeline.execute(&self.cancel, command, context).await
    }

    /// Places (and completes) an order.
    pub async fn place(
        &self,
        command: PlaceOrder,
        context: MessageContext,
    ) -> Result<Order, DomainError> {
        self.pipeline
            .execute(&PlaceOrderHandler, command, context)
            .await
    }

    /// The order with `id`; [`DomainError::NotFound`] if there is none.
    pub async fn get(&self, id: Uuid, context: MessageContext) -> Result<Order, DomainError> {
        let mut uow = self.storage.begin(context).await?;
        let order = Repository::<Order>::new().load(&mut uow, &id).await;
        Box::new(uow).rollback().await?;
        order
    }
}

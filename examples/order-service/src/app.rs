//! The application layer: the use cases the API offers, run through the
//! chassis command pipeline (logging span with the correlation id, one unit
//! of work, `OrderCompleted` written to the outbox in the same transaction).

use std::sync::Arc;

use async_trait::async_trait;
use chassis_domain::{
    Command, CommandContext, CommandHandler, CommandPipeline, DomainError, MessageContext,
    UnitOfWork,
};
use chassis_storage::{Persistence, Repository};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cancellation::{self, CancelOrder, CancelOrderHandler};
use crate::domain::{Order, PlaceOrder, ShippingQuote};
use crate::quote::Quotes;

impl Command for PlaceOrder {
    const NAME: &'static str = "order.place";
    type Output = Order;
}

/// Places an order and completes it at once: payment is outside this
/// example, so an accepted order is a paid one. Keeps shipping's quote when
/// one was obtained (see [`crate::quote`]).
#[derive(Debug, Clone, Default)]
pub struct PlaceOrderHandler {
    quote: Option<ShippingQuote>,
}

impl PlaceOrderHandler {
    /// Places orders keeping `quote` (shipping's, asked beforehand).
    pub fn with_quote(quote: Option<ShippingQuote>) -> Self {
        Self { quote }
    }
}

#[async_trait]
impl CommandHandler<PlaceOrder> for PlaceOrderHandler {
    async fn handle(
        &self,
        command: PlaceOrder,
        cx: &mut CommandContext,
    ) -> Result<Order, DomainError> {
        let now = OffsetDateTime::now_utc();
        let mut order = Order::place(Uuid::now_v7(), command, now)?;
        if let Some(quote) = self.quote.clone() {
            order.record_shipping_quote(quote);
        }
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
    storage: Persistence,
    pipeline: CommandPipeline,
    cancel: CancelOrderHandler,
    quotes: Option<Quotes>,
}

impl Orders {
    /// The use cases over `storage`.
    pub fn new(storage: Persistence) -> Self {
        let pipeline = CommandPipeline::new().with_unit_of_work(Arc::new(storage.clone()));
        let cancel = CancelOrderHandler::new(cancellation::runner(&storage, Default::default()));
        Self {
            storage,
            pipeline,
            cancel,
            quotes: None,
        }
    }

    /// Asks shipping for quotes (`POST /orders/quote`, and at placement).
    pub fn with_quotes(mut self, quotes: Quotes) -> Self {
        self.quotes = Some(quotes);
        self
    }

    /// The quote client, when quotes are enabled.
    pub fn quotes(&self) -> Option<&Quotes> {
        self.quotes.as_ref()
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

    /// Places (and completes) an order. With quotes enabled, a valid order
    /// first asks shipping for a quote (short timeout); without an answer it
    /// is placed all the same, without a quote (see [`crate::quote`]).
    pub async fn place(
        &self,
        command: PlaceOrder,
        context: MessageContext,
    ) -> Result<Order, DomainError> {
        let quote = match &self.quotes {
            // An invalid order is refused by the handler below; no quote.
            Some(quotes) => {
                match Order::place(Uuid::nil(), command.clone(), OffsetDateTime::now_utc()) {
                    Ok(order) => quotes.at_placement(&order, &context).await,
                    Err(_) => None,
                }
            }
            None => None,
        };
        self.pipeline
            .execute(&PlaceOrderHandler::with_quote(quote), command, context)
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

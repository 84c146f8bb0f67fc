//! Commands, their handlers and the pipeline that runs them: a logging span
//! with the correlation id, a unit of work around the handler, integration
//! events handed on only after commit.

use std::sync::Arc;

use async_trait::async_trait;
use messaging_abstractions::{Envelope, EventBus, EventBusExt, IntegrationEvent, MessageContext};
use storage_abstractions::{RecordWrite, Transaction};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::DomainError;

/// A request to change the state of the domain (the command pattern).
pub trait Command: Send + 'static {
    /// A stable name for logs and metrics, e.g. `order.place`.
    const NAME: &'static str;
    /// What a successful command returns (often the id of what it created).
    type Output: Send + 'static;
}

/// Carries out one kind of command.
#[async_trait]
pub trait CommandHandler<C: Command>: Send + Sync {
    /// Runs the command. Everything written through `cx.unit_of_work()`
    /// commits only if this returns `Ok`.
    async fn handle(&self, command: C, cx: &mut CommandContext) -> Result<C::Output, DomainError>;
}

/// One transaction of the domain: repository reads and writes, outbox
/// messages and inbox marks that commit or roll back together.
///
/// This is the port; `chassis-storage` implements it over any
/// `storage_abstractions::Store`, and its repositories work on a
/// `&mut dyn UnitOfWork`. Dropping a unit of work without commit rolls it back.
#[async_trait]
pub trait UnitOfWork: Send {
    /// The context the work runs in (correlation, causation, trace); the
    /// envelopes of enqueued events inherit it.
    fn context(&self) -> &MessageContext;

    /// The underlying transaction.
    fn transaction(&mut self) -> &mut dyn Transaction;

    /// Writes messages to the outbox in this transaction, relayed after
    /// commit in order per `ordering_key` (usually the aggregate id). Fields
    /// of the context missing from an envelope are filled in.
    async fn enqueue(
        &mut self,
        ordering_key: &str,
        envelopes: Vec<Envelope>,
    ) -> Result<(), DomainError>;

    /// Writes one record and enqueues `envelopes` (as
    /// [`enqueue`](Self::enqueue) does): what a repository saving an
    /// aggregate with its integration events does. If the write fails,
    /// nothing is enqueued. By default the write through
    /// [`transaction`](Self::transaction), then `enqueue`; a unit of work over
    /// a store that writes both in one statement hands them over together.
    async fn write_and_enqueue(
        &mut self,
        write: RecordWrite,
        ordering_key: &str,
        envelopes: Vec<Envelope>,
    ) -> Result<(), DomainError> {
        self.transaction()
            .write_with_outbox(write, Vec::new())
            .await?;
        self.enqueue(ordering_key, envelopes).await
    }

    /// Commits everything at once.
    async fn commit(self: Box<Self>) -> Result<(), DomainError>;

    /// Discards everything.
    async fn rollback(self: Box<Self>) -> Result<(), DomainError>;
}

/// Opens units of work (implemented by `chassis-storage`).
#[async_trait]
pub trait UnitOfWorkFactory: Send + Sync + 'static {
    /// Opens a unit of work running in `context`.
    async fn begin(&self, context: MessageContext) -> Result<Box<dyn UnitOfWork>, DomainError>;
}

/// What a command handler works with: the message context, the unit of work
/// (when the pipeline has one) and a way to publish integration events that
/// are handed on only once the command has succeeded.
pub struct CommandContext {
    message: MessageContext,
    unit_of_work: Option<Box<dyn UnitOfWork>>,
    has_bus: bool,
    after_success: Vec<Envelope>,
}

impl std::fmt::Debug for CommandContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandContext")
            .field("message", &self.message)
            .field("unit_of_work", &self.unit_of_work.is_some())
            .field("after_success", &self.after_success.len())
            .finish()
    }
}

impl CommandContext {
    /// The context of the request or message that sent the command.
    pub fn message_context(&self) -> &MessageContext {
        &self.message
    }

    /// The correlation id (the pipeline always sets one).
    pub fn correlation_id(&self) -> Option<&str> {
        self.message.correlation_id.as_deref()
    }

    /// Whether the pipeline opened a unit of work for this command.
    pub fn has_unit_of_work(&self) -> bool {
        self.unit_of_work.is_some()
    }

    /// The unit of work; [`DomainError::Internal`] if the pipeline has no
    /// unit of work configured (a wiring mistake, not a client error).
    pub fn unit_of_work(&mut self) -> Result<&mut dyn UnitOfWork, DomainError> {
        match self.unit_of_work.as_deref_mut() {
            Some(uow) => Ok(uow),
            None => Err(DomainError::internal(
                "this command needs a unit of work, but the command pipeline has none: \
                 configure it with CommandPipeline::with_unit_of_work",
            )),
        }
    }

    /// Publishes an integration event once the command succeeds: through the
    /// outbox of the unit of work when there is one (atomic with the
    /// command's writes), else directly on the event bus after the handler
    /// returned `Ok`. Aggregates record their events themselves
    /// ([`crate::Changes::publish`]); this is for events not tied to one.
    pub async fn publish<E: IntegrationEvent>(&mut self, event: &E) -> Result<(), DomainError> {
        let envelope = Envelope::for_event(event)?.with_context(&self.message);
        if let Some(uow) = self.unit_of_work.as_deref_mut() {
            let key = envelope
                .partition_key
                .clone()
                .unwrap_or_else(|| envelope.message_id.to_string());
            return uow.enqueue(&key, vec![envelope]).await;
        }
        if !self.has_bus {
            return Err(DomainError::internal(format!(
                "cannot publish `{}`: the command pipeline has neither a unit of work nor an event bus",
                E::EVENT_TYPE
            )));
        }
        self.after_success.push(envelope);
        Ok(())
    }
}

/// Runs commands the same way every time (the chassis' "base command"):
///
/// 1. a `command` tracing span carrying the command name and the correlation
///    id (a new one if the caller had none);
/// 2. a unit of work around the handler when configured: commit on `Ok`,
///    rollback on `Err`;
/// 3. integration events handed on only after commit — written to the outbox
///    by the unit of work, or, without one, published on the bus once the
///    handler succeeded.
///
/// ```
/// use chassis_domain::{Command, CommandContext, CommandHandler, CommandPipeline, DomainError, MessageContext};
///
/// struct Greet { name: String }
/// impl Command for Greet {
///     const NAME: &'static str = "greet";
///     type Output = String;
/// }
///
/// struct GreetHandler;
/// #[async_trait::async_trait]
/// impl CommandHandler<Greet> for GreetHandler {
///     async fn handle(&self, c: Greet, cx: &mut CommandContext) -> Result<String, DomainError> {
///         if c.name.is_empty() {
///             return Err(DomainError::invalid_field("name", "must not be empty"));
///         }
///         Ok(format!("hello {} ({})", c.name, cx.correlation_id().unwrap_or_default()))
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pipeline = CommandPipeline::new(); // add .with_unit_of_work(storage) and .with_event_bus(bus)
/// let ctx = MessageContext { correlation_id: Some("c-1".into()), ..Default::default() };
/// let out = pipeline.execute(&GreetHandler, Greet { name: "Ada".into() }, ctx.clone()).await.unwrap();
/// assert_eq!(out, "hello Ada (c-1)");
/// let err = pipeline.execute(&GreetHandler, Greet { name: "".into() }, ctx).await.unwrap_err();
/// assert_eq!(err.status(), 422);
/// # });
/// ```
#[derive(Clone, Default)]
pub struct CommandPipeline {
    unit_of_work: Option<Arc<dyn UnitOfWorkFactory>>,
    bus: Option<Arc<dyn EventBus>>,
}

impl std::fmt::Debug for CommandPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandPipeline")
            .field("unit_of_work", &self.unit_of_work.is_some())
            .field("bus", &self.bus.as_ref().map(|b| b.provider()))
            .finish()
    }
}

impl CommandPipeline {
    /// A pipeline with neither unit of work nor event bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs every command in a unit of work from `factory`.
    pub fn with_unit_of_work(mut self, factory: Arc<dyn UnitOfWorkFactory>) -> Self {
        self.unit_of_work = Some(factory);
        self
    }

    /// Publishes events directly on `bus` after success when there is no
    /// unit of work (with one, the outbox relay publishes them).
    pub fn with_event_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Runs `command` again, in a fresh unit of work, while it fails with a
    /// retryable error ([`DomainError::Concurrency`], [`DomainError::Unavailable`]),
    /// `attempts` times in all; then returns the last error. For commands
    /// whose handler re-reads what it changes (load, change, save), which
    /// makes a retry after a concurrency conflict safe.
    pub async fn execute_with_retries<C, H>(
        &self,
        handler: &H,
        command: C,
        context: MessageContext,
        attempts: u32,
    ) -> Result<C::Output, DomainError>
    where
        C: Command + Clone,
        H: CommandHandler<C> + ?Sized,
    {
        let mut attempt = 1;
        loop {
            match self
                .execute(handler, command.clone(), context.clone())
                .await
            {
                Err(error) if error.is_retryable() && attempt < attempts => {
                    tracing::debug!(command = C::NAME, attempt, error = %error, "retrying command");
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// Runs `command` with `handler` in the current message context (the
    /// request's or the handled message's, [`MessageContext::current`]).
    pub async fn run<C, H>(&self, handler: &H, command: C) -> Result<C::Output, DomainError>
    where
        C: Command,
        H: CommandHandler<C> + ?Sized,
    {
        self.execute(handler, command, MessageContext::current())
            .await
    }

    /// Runs `command` with `handler` in `context`.
    pub async fn execute<C, H>(
        &self,
        handler: &H,
        command: C,
        mut context: MessageContext,
    ) -> Result<C::Output, DomainError>
    where
        C: Command,
        H: CommandHandler<C> + ?Sized,
    {
        let span = tracing::info_span!(
            "command",
            command = C::NAME,
            correlation_id = tracing::field::Empty
        );
        if context.correlation_id.is_none() {
            // A command outside any request or message: the id it gets here
            // is in no log context, so its span carries it (inside one, the
            // host's log context adds it to every line already).
            let id = Uuid::now_v7().to_string();
            span.record("correlation_id", id.as_str());
            context.correlation_id = Some(id);
        }
        let result = self
            .run_in_unit_of_work(handler, command, context)
            .instrument(span.clone())
            .await;
        span.in_scope(|| match &result {
            Ok(_) => tracing::debug!("command succeeded"),
            Err(e) if e.status() >= 500 => {
                tracing::error!(error = %e, code = e.code(), "command failed")
            }
            Err(e) => tracing::info!(error = %e, code = e.code(), "command rejected"),
        });
        result
    }

    async fn run_in_unit_of_work<C, H>(
        &self,
        handler: &H,
        command: C,
        context: MessageContext,
    ) -> Result<C::Output, DomainError>
    where
        C: Command,
        H: CommandHandler<C> + ?Sized,
    {
        let unit_of_work = match &self.unit_of_work {
            Some(factory) => Some(factory.begin(context.clone()).await?),
            None => None,
        };
        let mut cx = CommandContext {
            message: context,
            unit_of_work,
            has_bus: self.bus.is_some(),
            after_success: Vec::new(),
        };
        let outcome = handler.handle(command, &mut cx).await;
        let CommandContext {
            unit_of_work,
            after_success,
            ..
        } = cx;
        let output = match (outcome, unit_of_work) {
            (Ok(output), Some(uow)) => {
                uow.commit().await?;
                output
            }
            (Ok(output), None) => output,
            (Err(error), Some(uow)) => return Err(abandon(uow, error, "command").await),
            (Err(error), None) => return Err(error),
        };
        if !after_success.is_empty()
            && let Some(bus) = &self.bus
        {
            bus.publish_all(after_success).await.map_err(|e| {
                DomainError::unavailable(format!(
                    "the command succeeded but its events could not be published: {e}"
                ))
            })?;
        }
        Ok(output)
    }
}

/// Rolls `uow` back after `error` and returns `error`: the transaction is
/// gone either way, and the error that failed the work is the one the caller
/// needs, so a failing rollback is only logged. `what` names the work.
pub(crate) async fn abandon(
    uow: Box<dyn UnitOfWork>,
    error: DomainError,
    what: &str,
) -> DomainError {
    if let Err(rollback) = uow.rollback().await {
        tracing::warn!(error = %rollback, "rollback after a failed {what} failed");
    }
    error
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Noted {
        n: u32,
    }
    impl IntegrationEvent for Noted {
        const EVENT_TYPE: &'static str = "test.noted.v1";
    }

    struct Note {
        n: u32,
    }
    impl Command for Note {
        const NAME: &'static str = "test.note";
        type Output = u32;
    }

    struct NoteHandler;
    #[async_trait]
    impl CommandHandler<Note> for NoteHandler {
        async fn handle(&self, c: Note, cx: &mut CommandContext) -> Result<u32, DomainError> {
            cx.publish(&Noted { n: c.n }).await?;
            if c.n == 0 {
                return Err(DomainError::invalid_field("n", "must be > 0"));
            }
            Ok(c.n)
        }
    }

    /// What the fake unit of work saw: enqueued (key, envelope) and the outcome.
    #[derive(Default)]
    struct Journal {
        enqueued: Vec<(String, Envelope)>,
        outcomes: Vec<&'static str>,
    }

    // A unit of work recording calls; the transaction is never used by the
    // handlers under test.
    struct FakeUow {
        context: MessageContext,
        journal: Arc<Mutex<Journal>>,
        staged: Vec<(String, Envelope)>,
    }

    #[async_trait]
    impl UnitOfWork for FakeUow {
        fn context(&self) -> &MessageContext {
            &self.context
        }
        fn transaction(&mut self) -> &mut dyn Transaction {
            unreachable!("not used by these handlers")
        }
        async fn enqueue(
            &mut self,
            key: &str,
            envelopes: Vec<Envelope>,
        ) -> Result<(), DomainError> {
            self.staged
                .extend(envelopes.into_iter().map(|e| (key.to_owned(), e)));
            Ok(())
        }
        async fn commit(self: Box<Self>) -> Result<(), DomainError> {
            let mut j = self.journal.lock().unwrap();
            j.enqueued.extend(self.staged);
            j.outcomes.push("commit");
            Ok(())
        }
        async fn rollback(self: Box<Self>) -> Result<(), DomainError> {
            self.journal.lock().unwrap().outcomes.push("rollback");
            Ok(())
        }
    }

    struct FakeFactory(Arc<Mutex<Journal>>);

    #[async_trait]
    impl UnitOfWorkFactory for FakeFactory {
        async fn begin(&self, context: MessageContext) -> Result<Box<dyn UnitOfWork>, DomainError> {
            Ok(Box::new(FakeUow {
                context,
                journal: self.0.clone(),
                staged: Vec::new(),
            }))
        }
    }

    #[tokio::test]
    async fn commits_on_success_and_rolls_back_on_error() {
        let journal = Arc::new(Mutex::new(Journal::default()));
        let pipeline =
            CommandPipeline::new().with_unit_of_work(Arc::new(FakeFactory(journal.clone())));
        let ctx = MessageContext {
            correlation_id: Some("corr-7".into()),
            ..Default::default()
        };
        assert_eq!(
            pipeline
                .execute(&NoteHandler, Note { n: 5 }, ctx.clone())
                .await
                .unwrap(),
            5
        );
        let err = pipeline
            .execute(&NoteHandler, Note { n: 0 }, ctx)
            .await
            .unwrap_err();
        assert_eq!(err.status(), 422);
        let j = journal.lock().unwrap();
        assert_eq!(j.outcomes, vec!["commit", "rollback"]);
        assert_eq!(
            j.enqueued.len(),
            1,
            "the failed command's event is discarded"
        );
        let (key, env) = &j.enqueued[0];
        assert_eq!(key, &env.message_id.to_string());
        assert_eq!(env.correlation_id.as_deref(), Some("corr-7"));
        assert_eq!(env.decode::<Noted>().unwrap().n, 5);
    }

    #[tokio::test]
    async fn retries_retryable_errors_only() {
        #[derive(Clone)]
        struct Flaky;
        impl Command for Flaky {
            const NAME: &'static str = "test.flaky";
            type Output = u32;
        }
        struct FlakyHandler(Mutex<u32>);
        #[async_trait]
        impl CommandHandler<Flaky> for FlakyHandler {
            async fn handle(&self, _: Flaky, _: &mut CommandContext) -> Result<u32, DomainError> {
                let mut calls = self.0.lock().unwrap();
                *calls += 1;
                match *calls {
                    1 | 2 => Err(DomainError::unavailable("db blip")),
                    3 => Ok(3),
                    _ => Err(DomainError::conflict("not retried")),
                }
            }
        }
        let handler = FlakyHandler(Mutex::new(0));
        let pipeline = CommandPipeline::new();
        let ctx = MessageContext::default();
        let err = pipeline
            .execute_with_retries(&handler, Flaky, ctx.clone(), 2)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "unavailable");
        *handler.0.lock().unwrap() = 0;
        let out = pipeline
            .execute_with_retries(&handler, Flaky, ctx.clone(), 5)
            .await;
        assert_eq!(out, Ok(3));
        let err = pipeline
            .execute_with_retries(&handler, Flaky, ctx, 5)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict");
        assert_eq!(*handler.0.lock().unwrap(), 4, "a conflict is not retried");
    }

    #[tokio::test]
    async fn without_unit_of_work_or_bus_publishing_is_a_wiring_error() {
        let err = CommandPipeline::new()
            .execute(&NoteHandler, Note { n: 1 }, MessageContext::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "internal");
        assert!(err.to_string().contains("test.noted.v1"), "{err}");
    }

    #[tokio::test]
    async fn unit_of_work_missing_is_reported() {
        struct NeedsUow;
        #[async_trait]
        impl CommandHandler<Note> for NeedsUow {
            async fn handle(&self, _: Note, cx: &mut CommandContext) -> Result<u32, DomainError> {
                assert!(cx.correlation_id().is_some(), "the pipeline sets one");
                cx.unit_of_work()?;
                Ok(0)
            }
        }
        let err = CommandPipeline::new()
            .execute(&NeedsUow, Note { n: 1 }, MessageContext::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("with_unit_of_work"), "{err}");
    }
}

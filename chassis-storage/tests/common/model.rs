//! A small domain for the tests: counters that publish `Incremented`, and a
//! tally that a consumer keeps.

use async_trait::async_trait;
use chassis_domain::{
    AggregateRoot, Changes, Command, CommandContext, CommandHandler, DomainError, Entity,
    IndexEntry, IntegrationEvent, UnitOfWork,
};
use chassis_storage::{InboxHandler, Repository};
use messaging_abstractions::Delivery;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incremented {
    pub counter_id: String,
    pub value: u64,
    pub poison: bool,
}

impl IntegrationEvent for Incremented {
    const EVENT_TYPE: &'static str = "test.counter.incremented.v1";
}

#[derive(Debug, Clone, PartialEq)]
pub enum CounterEvent {
    Incremented(u64),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Counter {
    pub id: String,
    pub value: u64,
    #[serde(skip)]
    changes: Changes<CounterEvent>,
}

impl Entity for Counter {
    type Id = String;
    fn id(&self) -> &String {
        &self.id
    }
}

impl AggregateRoot for Counter {
    const COLLECTION: &'static str = "counters";
    type DomainEvent = CounterEvent;
    fn changes(&self) -> &Changes<CounterEvent> {
        &self.changes
    }
    fn changes_mut(&mut self) -> &mut Changes<CounterEvent> {
        &mut self.changes
    }
    fn index_entries(&self) -> Vec<IndexEntry> {
        let parity = if self.value.is_multiple_of(2) {
            "even"
        } else {
            "odd"
        };
        vec![IndexEntry {
            key: "parity".into(),
            value: parity.into(),
        }]
    }
}

impl Counter {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            value: 0,
            changes: Changes::default(),
        }
    }

    pub fn increment(&mut self, poison: bool) {
        self.value += 1;
        self.changes.raise(CounterEvent::Incremented(self.value));
        self.changes.publish(Incremented {
            counter_id: self.id.clone(),
            value: self.value,
            poison,
        });
    }
}

/// Load-or-create a counter, increment it, save it.
#[derive(Debug, Clone)]
pub struct Increment {
    pub id: String,
    pub poison: bool,
    /// Fail after saving: everything must roll back.
    pub fail_after_save: bool,
}

impl Increment {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            poison: false,
            fail_after_save: false,
        }
    }
}

impl Command for Increment {
    const NAME: &'static str = "test.counter.increment";
    type Output = u64;
}

pub struct IncrementHandler;

#[async_trait]
impl CommandHandler<Increment> for IncrementHandler {
    async fn handle(&self, c: Increment, cx: &mut CommandContext) -> Result<u64, DomainError> {
        let counters = Repository::<Counter>::new();
        let uow = cx.unit_of_work()?;
        let mut counter = counters
            .get(uow, &c.id)
            .await?
            .unwrap_or_else(|| Counter::new(&c.id));
        counter.increment(c.poison);
        let events = counters.save(uow, &mut counter).await?;
        assert_eq!(events, vec![CounterEvent::Incremented(counter.value)]);
        if c.fail_after_save {
            return Err(DomainError::conflict("requested failure after save"));
        }
        Ok(counter.value)
    }
}

/// What a consumer keeps: how many increments of a counter it has seen.
#[derive(Debug, Serialize, Deserialize)]
pub struct Tally {
    pub id: String,
    pub seen: u64,
    #[serde(skip)]
    changes: Changes<()>,
}

impl Entity for Tally {
    type Id = String;
    fn id(&self) -> &String {
        &self.id
    }
}

impl AggregateRoot for Tally {
    const COLLECTION: &'static str = "tallies";
    type DomainEvent = ();
    fn changes(&self) -> &Changes<()> {
        &self.changes
    }
    fn changes_mut(&mut self) -> &mut Changes<()> {
        &mut self.changes
    }
}

/// Adds one to the tally of the counter; fails (after writing) while
/// `fail_next` is above zero, to prove the rollback.
pub struct TallyHandler {
    pub fail_next: Arc<AtomicU32>,
    pub runs: Arc<AtomicU32>,
}

pub async fn bump_tally(uow: &mut dyn UnitOfWork, id: &str) -> Result<u64, DomainError> {
    let tallies = Repository::<Tally>::new();
    let mut tally = tallies.get(uow, &id.to_owned()).await?.unwrap_or(Tally {
        id: id.to_owned(),
        seen: 0,
        changes: Changes::default(),
    });
    tally.seen += 1;
    tallies.save(uow, &mut tally).await?;
    Ok(tally.seen)
}

#[async_trait]
impl InboxHandler<Incremented> for TallyHandler {
    async fn handle(
        &self,
        event: Incremented,
        _delivery: &Delivery,
        uow: &mut dyn UnitOfWork,
    ) -> Result<(), DomainError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        bump_tally(uow, &event.counter_id).await?;
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(DomainError::unavailable("simulated outage after the write"));
        }
        Ok(())
    }
}

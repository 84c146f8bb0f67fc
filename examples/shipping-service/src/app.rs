//! The application layer: the shipping use cases, each in one unit of work —
//! packing a completed order (through the inbox, so a redelivered message
//! has no effect), changing a destination, sending, tracking, and queries.

use std::sync::Arc;

use async_trait::async_trait;
use chassis_domain::messaging::Delivery;
use chassis_domain::messaging::{EventHandler, HandlerError};
use chassis_domain::{
    Command, CommandContext, CommandHandler, CommandPipeline, DomainError, MessageContext,
    UnitOfWork,
};
use chassis_storage::{Inbox, InboxHandler, Persistence};
use order_service_client::events::OrderCompleted;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{
    Address, Package, PackageStatus, Packing, Shipment, TrackingStatus, TransportProviders,
    new_tracking_id, pack,
};
use crate::integration::order_to_pack;
use crate::tables::{Packages, Shipments};

/// Packs the items of a completed order. Runs in the inbox's unit of work:
/// the packages, the shipment record and the inbox mark commit together.
#[derive(Debug, Clone)]
pub struct PackOrder {
    providers: Arc<TransportProviders>,
}

impl PackOrder {
    /// Packs with these providers.
    pub fn new(providers: Arc<TransportProviders>) -> Self {
        Self { providers }
    }
}

/// How many locks orders to different places are spread over.
const PLACE_STRIPES: usize = 64;

/// The bus handler of `order.completed.v1`: packs each order through the
/// inbox (exactly-once effect), one order per place at a time in this
/// process.
///
/// Orders to one place fill the same open packages. Run concurrently, all
/// but one would fail their commit on the package's version and go round the
/// bus' retries — with enough of them, into the dead letters. Holding a lock
/// per place (striped: a fixed set of locks, places hashed onto them) across
/// the whole unit of work, commit included, lets them take turns instead;
/// orders to other places still run in parallel. Across several instances
/// of the service the optimistic check and the retries remain the guard.
#[derive(Debug, Clone)]
pub struct PackOrderConsumer {
    inbox: Inbox,
    work: Arc<PackOrder>,
    stripes: Arc<[tokio::sync::Mutex<()>]>,
}

impl PackOrderConsumer {
    /// Packs with `work` through `inbox`.
    pub fn new(inbox: Inbox, work: PackOrder) -> Self {
        Self {
            inbox,
            work: Arc::new(work),
            stripes: (0..PLACE_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    fn stripe(&self, place_key: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        place_key.hash(&mut hasher);
        &self.stripes[(hasher.finish() % PLACE_STRIPES as u64) as usize]
    }
}

#[async_trait]
impl EventHandler<OrderCompleted> for PackOrderConsumer {
    async fn handle(&self, event: OrderCompleted, delivery: &Delivery) -> Result<(), HandlerError> {
        let place = order_to_pack(&event)?.destination.place_key();
        let _turn = self.stripe(&place).lock().await;
        let work = self.work.clone();
        let owned = delivery.clone();
        self.inbox
            .process(&delivery.envelope, move |uow| {
                Box::pin(async move { work.handle(event, &owned, uow).await })
            })
            .await?;
        Ok(())
    }
}

#[async_trait]
impl InboxHandler<OrderCompleted> for PackOrder {
    async fn handle(
        &self,
        event: OrderCompleted,
        _delivery: &Delivery,
        uow: &mut dyn UnitOfWork,
    ) -> Result<(), DomainError> {
        let order = order_to_pack(&event)?;
        let (shipments, packages) = (Shipments, Packages);
        let open = packages.open_for(uow, &order).await?;
        let already_packed = || {
            tracing::info!(order_id = %order.order_id, "order already packed; nothing to do");
            Ok(())
        };
        // Whether the order was packed already is asked by the shipment's
        // insert below (one statement instead of a read before it).
        let packed = match pack(
            &order,
            None,
            open,
            &self.providers,
            OffsetDateTime::now_utc(),
        ) {
            Packing::AlreadyPacked => return already_packed(),
            Packing::Packed(packed) => *packed,
        };
        let mut shipment = packed.shipment;
        // The shipment's id is the order's: an order packed already (or
        // concurrently, once that commits) has one, and nothing is written.
        if !shipments.add_unless_packed(uow, &mut shipment).await? {
            return already_packed();
        }
        for mut package in packed.opened {
            packages.add(uow, &mut package).await?;
        }
        for mut package in packed.filled {
            packages.update(uow, &mut package).await?;
        }
        for item in shipment.unshippable() {
            tracing::warn!(order_id = %order.order_id, sku = %item.sku, reason = %item.reason,
                "item recorded as unshippable");
        }
        tracing::info!(order_id = %order.order_id, packages = shipment.packages().len(), "order packed");
        Ok(())
    }
}

/// Send a package somewhere else (refused once sent).
#[derive(Debug, Clone)]
pub struct ChangeDestination {
    /// The package.
    pub package_id: Uuid,
    /// Where it goes now.
    pub destination: Address,
}

/// Hand a package to its transport provider.
#[derive(Debug, Clone, Copy)]
pub struct SendPackage {
    /// The package.
    pub package_id: Uuid,
}

/// Record a step reported by the transport provider.
#[derive(Debug, Clone)]
pub struct RecordTracking {
    /// The package.
    pub package_id: Uuid,
    /// What happened.
    pub status: TrackingStatus,
    /// Detail.
    pub description: String,
}

impl Command for ChangeDestination {
    const NAME: &'static str = "package.change_destination";
    type Output = Package;
}

impl Command for SendPackage {
    const NAME: &'static str = "package.send";
    type Output = Package;
}

impl Command for RecordTracking {
    const NAME: &'static str = "package.record_tracking";
    type Output = Package;
}

/// Handles the package commands: load, change through the aggregate, save.
#[derive(Debug, Clone, Copy, Default)]
pub struct PackageCommands;

async fn change(
    cx: &mut CommandContext,
    id: Uuid,
    f: impl FnOnce(&mut Package) -> Result<(), DomainError> + Send,
) -> Result<Package, DomainError> {
    let uow = cx.unit_of_work()?;
    let mut package = Packages.load(uow, id).await?;
    f(&mut package)?;
    Packages.update(uow, &mut package).await?;
    Ok(package)
}

#[async_trait]
impl CommandHandler<ChangeDestination> for PackageCommands {
    async fn handle(
        &self,
        c: ChangeDestination,
        cx: &mut CommandContext,
    ) -> Result<Package, DomainError> {
        change(cx, c.package_id, |p| {
            Ok(p.change_destination(c.destination)?)
        })
        .await
    }
}

#[async_trait]
impl CommandHandler<SendPackage> for PackageCommands {
    async fn handle(
        &self,
        c: SendPackage,
        cx: &mut CommandContext,
    ) -> Result<Package, DomainError> {
        change(cx, c.package_id, |p| {
            let tracking_id = new_tracking_id(p.transport_provider());
            Ok(p.send(tracking_id, OffsetDateTime::now_utc())?)
        })
        .await
    }
}

#[async_trait]
impl CommandHandler<RecordTracking> for PackageCommands {
    async fn handle(
        &self,
        c: RecordTracking,
        cx: &mut CommandContext,
    ) -> Result<Package, DomainError> {
        change(cx, c.package_id, |p| {
            Ok(p.record_tracking(c.status, c.description, OffsetDateTime::now_utc())?)
        })
        .await
    }
}

/// Which packages to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackageFilter {
    /// Only packages holding units of this order.
    pub order_id: Option<Uuid>,
    /// Only packages in this state.
    pub status: Option<PackageStatus>,
}

/// The shipping service's use cases over its storage. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shipping {
    storage: Persistence,
    pipeline: CommandPipeline,
}

impl Shipping {
    /// The use cases over `storage`.
    pub fn new(storage: Persistence) -> Self {
        let pipeline = CommandPipeline::new().with_unit_of_work(Arc::new(storage.clone()));
        Self { storage, pipeline }
    }

    /// Runs a package command.
    pub async fn execute<C>(
        &self,
        command: C,
        context: MessageContext,
    ) -> Result<Package, DomainError>
    where
        C: Command<Output = Package>,
        PackageCommands: CommandHandler<C>,
    {
        self.pipeline
            .execute(&PackageCommands, command, context)
            .await
    }

    /// Packages matching `filter`, oldest first, one page.
    pub async fn packages(
        &self,
        filter: PackageFilter,
        offset: u64,
        limit: u32,
        context: MessageContext,
    ) -> Result<Vec<Package>, DomainError> {
        self.read(context, |uow| {
            Box::pin(async move {
                Packages
                    .page(uow, filter.status, filter.order_id, offset, limit)
                    .await
            })
        })
        .await
    }

    /// The package with `id`.
    pub async fn package(&self, id: Uuid, context: MessageContext) -> Result<Package, DomainError> {
        self.read(context, |uow| {
            Box::pin(async move { Packages.load(uow, id).await })
        })
        .await
    }

    /// How the order `order_id` was packed.
    pub async fn shipment(
        &self,
        order_id: Uuid,
        context: MessageContext,
    ) -> Result<Shipment, DomainError> {
        self.read(context, |uow| {
            Box::pin(async move { Shipments.load(uow, order_id).await })
        })
        .await
    }

    /// Runs a read in a unit of work that is rolled back afterwards.
    async fn read<T>(
        &self,
        context: MessageContext,
        f: impl for<'u> FnOnce(&'u mut dyn UnitOfWork) -> chassis_storage::WorkFuture<'u, T>,
    ) -> Result<T, DomainError> {
        let mut uow = self.storage.begin(context).await?;
        let result = f(&mut uow).await;
        Box::new(uow).rollback().await?;
        result
    }
}

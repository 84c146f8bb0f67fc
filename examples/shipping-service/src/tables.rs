//! Shipping's storage: packages, their lines and tracking events, and
//! shipments in tables of the service's own ([`MIGRATIONS`]), read and
//! written with SQL on the unit of work's transaction — the one that also
//! holds the outbox and the inbox mark, so one commit makes the rows and the
//! answers visible together (`docs/storage.md`, "A repository over tables").
//!
//! The questions packing and cancelling ask are SQL queries over indexes:
//! [`Packages::open_for`] ("open packages to the same place with room for
//! the order's lightest unit, oldest first"), [`Packages::of_order`]
//! ("packages of an order") and [`Shipments::get`] ("an order's
//! shipment"). Writes check the row's `version` (optimistic concurrency: 0
//! rows changed is a [`DomainError::Concurrency`], retried by the bus) and
//! then enqueue the aggregate's integration events with [`publish_changes`].

use std::collections::HashMap;

use chassis_domain::storage::Migration;
use chassis_domain::{AggregateRoot, DomainError, Entity, UnitOfWork};
use chassis_storage::sql::{Statement, Value};
use chassis_storage::{Sql, publish_changes};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::cancellation::ShipmentCancellation;
use crate::domain::{
    Address, Dimensions, OrderToPack, Package, PackageEvent, PackageStatus, PackedItem, Shipment,
    TrackingEvent, TrackingStatus, TransportProvider, UnshippableItem,
};

/// The service's schema, applied by the host at start-up
/// (`ServiceHostBuilder::migrations`).
pub static MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "packages",
        include_str!("../migrations/0001_packages.sql"),
    ),
    Migration::new(
        2,
        "shipments",
        include_str!("../migrations/0002_shipments.sql"),
    ),
    Migration::new(
        3,
        "free_weight",
        include_str!("../migrations/0003_free_weight.sql"),
    ),
];

/// The columns of `packages`, in [`PackageRow`]'s order.
macro_rules! package_columns {
    () => {
        "id, recipient, street, city, postal_code, country, provider, \
         provider_max_weight_grams, provider_max_length_mm, provider_max_width_mm, \
         provider_max_height_mm, status, tracking_id, opened_at, version"
    };
}

/// What writing a line that is stored already does: overwrite it.
macro_rules! line_upsert {
    () => {
        "ON CONFLICT (package_id, line) DO UPDATE SET order_id = excluded.order_id, \
         sku = excluded.sku, quantity = excluded.quantity, \
         weight_grams = excluded.weight_grams, length_mm = excluded.length_mm, \
         width_mm = excluded.width_mm, height_mm = excluded.height_mm"
    };
}

/// PostgreSQL: inserts (upserts) the lines given as a JSON array
/// ([`lines_json`]) in parameter `$param` for the package the CTE `package`
/// returned — so a package's row and its new lines are written by one
/// statement, one round trip.
macro_rules! lines_of_package {
    ($param:literal) => {
        concat!(
            "INSERT INTO package_lines (package_id, line, order_id, sku, quantity, weight_grams, \
             length_mm, width_mm, height_mm) SELECT package.id, l.line, l.order_id, l.sku, \
             l.quantity, l.weight_grams, l.length_mm, l.width_mm, l.height_mm FROM package, \
             jsonb_to_recordset(",
            $param,
            ") AS l(line bigint, order_id uuid, sku text, quantity bigint, weight_grams bigint, \
             length_mm bigint, width_mm bigint, height_mm bigint) ",
            line_upsert!()
        )
    };
}

/// The columns a new package is inserted with and their parameters.
macro_rules! insert_package {
    () => {
        concat!(
            "INSERT INTO packages (",
            package_columns!(),
            ", place, free_grams) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        )
    };
}

/// The update of a package's row: `$1` id, `$2`–`$6` address, `$7` place,
/// `$8` status, `$9` tracking id, `$10` new version, `$11` expected version,
/// `$12` free weight.
macro_rules! update_package {
    () => {
        "UPDATE packages SET recipient = $2, street = $3, city = $4, postal_code = $5, \
         country = $6, place = $7, status = $8, tracking_id = $9, version = $10, \
         free_grams = $12 WHERE id = $1 AND version = $11"
    };
}

/// The insert of a shipment's row (version 1).
macro_rules! insert_shipment_row {
    () => {
        "INSERT INTO shipments (order_id, recipient, street, city, postal_code, country, \
         packages, unshippable, packed_at, cancellation, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1)"
    };
}

/// The statements that load the packages whose ids `$ids` (a subquery)
/// selects. On PostgreSQL one statement returns each package with its lines
/// and tracking events aggregated as JSON (`whole`): one round trip and one
/// run of `$ids` instead of three, where `$ids` was the costliest part
/// (docs/bench-pipeline.md, 2026-12-07). SQLite, in process, runs the three
/// others: the packages oldest first, their lines, their tracking events.
/// The same parameters bind to all of them.
macro_rules! selection {
    ($($ids:tt)+) => {
        Selection {
            whole: concat!(
                "SELECT ",
                package_columns!(),
                ", COALESCE((SELECT json_agg(json_build_array(l.order_id, l.sku, l.quantity, \
                 l.weight_grams, l.length_mm, l.width_mm, l.height_mm) ORDER BY l.line) \
                 FROM package_lines l WHERE l.package_id = packages.id), '[]') AS lines, \
                 COALESCE((SELECT json_agg(json_build_array(e.status, e.description, \
                 (extract(epoch FROM e.at) * 1000000)::bigint) ORDER BY e.seq) \
                 FROM tracking_events e WHERE e.package_id = packages.id), '[]') AS events \
                 FROM packages WHERE id IN (",
                $($ids)+,
                ") ORDER BY opened_at, id"
            ),
            packages: concat!(
                "SELECT ",
                package_columns!(),
                " FROM packages WHERE id IN (",
                $($ids)+,
                ") ORDER BY opened_at, id"
            ),
            lines: concat!(
                "SELECT package_id, order_id, sku, quantity, weight_grams, length_mm, width_mm, \
                 height_mm FROM package_lines WHERE package_id IN (",
                $($ids)+,
                ") ORDER BY package_id, line"
            ),
            events: concat!(
                "SELECT package_id, status, description, at FROM tracking_events \
                 WHERE package_id IN (",
                $($ids)+,
                ") ORDER BY package_id, seq"
            ),
        }
    };
}

struct Selection {
    whole: &'static str,
    packages: &'static str,
    lines: &'static str,
    events: &'static str,
}

/// Most open packages to one place that packing considers at once.
macro_rules! max_open_packages_per_place {
    () => {
        "1000"
    };
}

/// Open packages to one place (`$1`) with at least `$2` grams free, oldest
/// first, at most `max_open_packages_per_place!()`. The filter runs in a
/// materialized CTE so that it can only be answered by its best index
/// (`packages_open_with_room`) and the few rows it finds are sorted after.
/// Written as one query with `ORDER BY … LIMIT`, the plan PostgreSQL picks
/// on the empty tables a service starts with — and keeps, as the generic
/// plan of the prepared statement, until an `ANALYZE` invalidates it — walks
/// every open package in `packages_by_status` order to save that sort:
/// ≈ 340 index entries and heap fetches per load in the bench
/// (docs/bench-pipeline.md, 2026-12-07).
const OPEN_WITH_ROOM: Selection = selection!(concat!(
    "WITH open AS MATERIALIZED (SELECT id, opened_at FROM packages \
     WHERE status = 'open' AND place = $1 AND free_grams >= $2) \
     SELECT id FROM open ORDER BY opened_at, id LIMIT ",
    max_open_packages_per_place!()
));

/// Packages holding units of order `$1` (index `package_lines_by_order`).
const OF_ORDER: Selection = selection!("SELECT package_id FROM package_lines WHERE order_id = $1");
/// One package (`$1`).
const ONE: Selection = selection!("SELECT id FROM packages WHERE id = $1");
/// A page of packages, oldest first: status `$1` and order `$2` when not
/// NULL, `$3` rows from row `$4`.
const PAGE: Selection = selection!(
    "SELECT id FROM packages WHERE ($1 IS NULL OR status = $1) \
     AND ($2 IS NULL OR id IN (SELECT package_id FROM package_lines WHERE order_id = $2)) \
     ORDER BY opened_at, id LIMIT $3 OFFSET $4"
);

/// The five address columns of `packages` and `shipments`.
#[derive(sqlx::FromRow)]
struct AddressColumns {
    recipient: String,
    street: String,
    city: String,
    postal_code: String,
    country: String,
}

impl AddressColumns {
    /// The address of the row `id`, checked again.
    fn into_address(self, id: Uuid) -> Result<Address, DomainError> {
        Address::new(
            &self.recipient,
            &self.street,
            &self.city,
            &self.postal_code,
            &self.country,
        )
        .map_err(|errors| {
            let problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
            corrupt("address of", id, problems.join("; "))
        })
    }
}

#[derive(sqlx::FromRow)]
struct PackageRow {
    id: Uuid,
    #[sqlx(flatten)]
    address: AddressColumns,
    provider: String,
    provider_max_weight_grams: i64,
    provider_max_length_mm: Option<i64>,
    provider_max_width_mm: Option<i64>,
    provider_max_height_mm: Option<i64>,
    status: String,
    tracking_id: Option<String>,
    opened_at: OffsetDateTime,
    version: i64,
}

/// A row of [`Selection::whole`]: a package with its lines and tracking
/// events as JSON arrays.
#[derive(sqlx::FromRow)]
struct WholePackageRow {
    #[sqlx(flatten)]
    package: PackageRow,
    lines: serde_json::Value,
    events: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct LineRow {
    package_id: Uuid,
    order_id: Uuid,
    sku: String,
    quantity: i64,
    weight_grams: i64,
    length_mm: i64,
    width_mm: i64,
    height_mm: i64,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    package_id: Uuid,
    status: String,
    description: String,
    at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct ShipmentRow {
    order_id: Uuid,
    #[sqlx(flatten)]
    address: AddressColumns,
    packages: serde_json::Value,
    unshippable: serde_json::Value,
    packed_at: OffsetDateTime,
    cancellation: Option<serde_json::Value>,
    version: i64,
}

/// A stored value the domain does not accept: the table was written by
/// something else than this code.
fn corrupt(what: &str, id: Uuid, problem: impl std::fmt::Display) -> DomainError {
    DomainError::internal(format!("stored {what} {id} is not valid: {problem}"))
}

fn unsigned<T: TryFrom<i64>>(value: i64, what: &str, id: Uuid) -> Result<T, DomainError> {
    T::try_from(value).map_err(|_| corrupt(what, id, format!("{value} is out of range")))
}

fn signed(value: impl TryInto<i64>) -> Result<i64, DomainError> {
    value
        .try_into()
        .map_err(|_| DomainError::internal("a number too large for a bigint column"))
}

/// The values of an address's five columns, in table order.
fn address_values(a: &Address) -> [Value; 5] {
    [
        a.name().into(),
        a.street().into(),
        a.city().into(),
        a.postal_code().into(),
        a.country().into(),
    ]
}

/// The version a row has now (0: gone), for a conflict's report.
async fn stored_version(
    uow: &mut dyn UnitOfWork,
    sql: &'static str,
    id: Uuid,
) -> Result<u64, DomainError> {
    let version: Option<i64> = Sql::of(uow.transaction())?
        .query(sql)
        .bind(id)
        .fetch_scalar_optional()
        .await?;
    Ok(version.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
}

fn conflict<A: AggregateRoot>(id: Uuid, expected: u64, actual: u64) -> DomainError {
    DomainError::Concurrency {
        entity: A::COLLECTION.to_owned(),
        id: id.to_string(),
        expected,
        actual,
    }
}

/// The package repository over `packages`, `package_lines` and
/// `tracking_events`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Packages;

impl Packages {
    /// The open packages that can take some of `order`: to its place, with
    /// room for at least one unit of its lightest item, oldest first. Full
    /// packages waiting to be sent are not read at all, however many there
    /// are.
    pub async fn open_for(
        &self,
        uow: &mut dyn UnitOfWork,
        order: &OrderToPack,
    ) -> Result<Vec<Package>, DomainError> {
        let Some(lightest) = order.lightest_unit_grams() else {
            return Ok(Vec::new());
        };
        let params = [
            order.destination.place_key().into(),
            i64::from(lightest).into(),
        ];
        load(uow, &OPEN_WITH_ROOM, &params).await
    }

    /// The packages holding units of `order_id`, oldest first.
    pub async fn of_order(
        &self,
        uow: &mut dyn UnitOfWork,
        order_id: Uuid,
    ) -> Result<Vec<Package>, DomainError> {
        load(uow, &OF_ORDER, &[order_id.into()]).await
    }

    /// The package `id`; [`DomainError::NotFound`] if there is none.
    pub async fn load(&self, uow: &mut dyn UnitOfWork, id: Uuid) -> Result<Package, DomainError> {
        load(uow, &ONE, &[id.into()])
            .await?
            .pop()
            .ok_or_else(|| DomainError::not_found(Package::COLLECTION, id))
    }

    /// One page of packages, oldest first, only of `status` and `order_id`
    /// when given.
    pub async fn page(
        &self,
        uow: &mut dyn UnitOfWork,
        status: Option<PackageStatus>,
        order_id: Option<Uuid>,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<Package>, DomainError> {
        let params = [
            status.map(PackageStatus::as_str).into(),
            order_id.into(),
            limit.into(),
            signed(offset)?.into(),
        ];
        load(uow, &PAGE, &params).await
    }

    /// Inserts a new package (version 1) and enqueues its events.
    pub async fn add(
        &self,
        uow: &mut dyn UnitOfWork,
        package: &mut Package,
    ) -> Result<(), DomainError> {
        let id = *package.id();
        let provider = package.transport_provider();
        let limits = provider.max_dimensions();
        let mut sql = Sql::of(uow.transaction())?;
        // PostgreSQL: the row and its lines in one statement.
        let together = sql.provider() == "postgres";
        let mut insert = if together {
            sql.query(concat!(
                "WITH package AS (",
                insert_package!(),
                " RETURNING id) ",
                lines_of_package!("$18")
            ))
        } else {
            sql.query(insert_package!())
        };
        insert = insert.bind(id);
        for value in address_values(package.destination()) {
            insert = insert.bind(value);
        }
        insert = insert
            .bind(provider.name())
            .bind(signed(provider.max_weight_grams())?)
            .bind(limits.map(|d| d.length_mm))
            .bind(limits.map(|d| d.width_mm))
            .bind(limits.map(|d| d.height_mm))
            .bind(package.status().as_str())
            .bind(package.tracking_id())
            .bind(package.opened_at())
            .bind(1_i64)
            .bind(package.destination().place_key())
            .bind(signed(package.free_weight_grams())?);
        if together {
            insert.bind(lines_json(package, 0)?).execute().await?;
            write_tracking(uow, package).await?;
        } else {
            insert.execute().await?;
            write_children(uow, package, 0).await?;
        }
        publish_changes(uow, package, 1).await?;
        Ok(())
    }

    /// Stores a changed package (version + 1) if nobody changed it since it
    /// was loaded, and enqueues its events.
    pub async fn update(
        &self,
        uow: &mut dyn UnitOfWork,
        package: &mut Package,
    ) -> Result<(), DomainError> {
        let id = *package.id();
        let expected = package.version();
        let next = expected + 1;
        let appended = appended_lines(package);
        let mut sql = Sql::of(uow.transaction())?;
        // PostgreSQL, when only lines were added: the row and the new lines
        // in one statement (a rewrite of every line keeps its own DELETE).
        let together = sql.provider() == "postgres" && appended.is_some();
        let mut update = if together {
            sql.query(concat!(
                "WITH package AS (",
                update_package!(),
                " RETURNING id), lines AS (",
                lines_of_package!("$13"),
                ") SELECT count(*) FROM package"
            ))
        } else {
            sql.query(update_package!())
        };
        update = update.bind(id);
        for value in address_values(package.destination()) {
            update = update.bind(value);
        }
        update = update
            .bind(package.destination().place_key())
            .bind(package.status().as_str())
            .bind(package.tracking_id())
            .bind(signed(next)?)
            .bind(signed(expected)?)
            .bind(signed(package.free_weight_grams())?);
        let changed = match appended {
            Some(first_new) if together => {
                let changed: i64 = update
                    .bind(lines_json(package, first_new)?)
                    .fetch_scalar()
                    .await?;
                u64::try_from(changed).unwrap_or(0)
            }
            _ => update.execute().await?,
        };
        if changed == 0 {
            let actual =
                stored_version(uow, "SELECT version FROM packages WHERE id = $1", id).await?;
            return Err(conflict::<Package>(id, expected, actual));
        }
        if together {
            write_tracking(uow, package).await?;
            publish_changes(uow, package, next).await?;
            return Ok(());
        }
        let first_new = match appended {
            Some(first_new) => first_new,
            None => {
                Sql::of(uow.transaction())?
                    .query("DELETE FROM package_lines WHERE package_id = $1")
                    .bind(id)
                    .execute()
                    .await?;
                0
            }
        };
        write_children(uow, package, first_new).await?;
        publish_changes(uow, package, next).await?;
        Ok(())
    }

    /// Deletes a package left empty (a cancellation), if unchanged since it
    /// was loaded.
    pub async fn delete(
        &self,
        uow: &mut dyn UnitOfWork,
        package: &mut Package,
    ) -> Result<(), DomainError> {
        let id = *package.id();
        let expected = package.version();
        let mut sql = Sql::of(uow.transaction())?;
        for children in [
            "DELETE FROM tracking_events WHERE package_id = $1",
            "DELETE FROM package_lines WHERE package_id = $1",
        ] {
            sql.query(children).bind(id).execute().await?;
        }
        let deleted = sql
            .query("DELETE FROM packages WHERE id = $1 AND version = $2")
            .bind(id)
            .bind(signed(expected)?)
            .execute()
            .await?;
        if deleted == 0 {
            let actual =
                stored_version(uow, "SELECT version FROM packages WHERE id = $1", id).await?;
            return Err(conflict::<Package>(id, expected, actual));
        }
        publish_changes(uow, package, 0).await?;
        Ok(())
    }
}

/// Where the lines added since the package was loaded start, when that is
/// all that changed about its lines: every change is a `Filled` (units of
/// an order that was not in the package), and those orders' lines are the
/// last ones. Then only they are written — packing an order into a package
/// of many orders writes its own lines, not the package's all over again
/// (a line that was stored after all is overwritten: the insert upserts).
/// `None` (anything else, e.g. an order released) rewrites every line.
fn appended_lines(package: &Package) -> Option<usize> {
    let mut filled = Vec::new();
    for event in package.changes().domain_events() {
        match event {
            PackageEvent::Filled { order_id, .. } => filled.push(*order_id),
            _ => return None,
        }
    }
    let items = package.items();
    let first_new = items
        .iter()
        .position(|item| filled.contains(&item.order_id))
        .unwrap_or(items.len());
    items[first_new..]
        .iter()
        .all(|item| filled.contains(&item.order_id))
        .then_some(first_new)
}

/// Writes a package's lines from `first_line` on (the ones before are
/// stored and unchanged) and the tracking events not stored yet (they are
/// only ever appended).
async fn write_children(
    uow: &mut dyn UnitOfWork,
    package: &Package,
    first_line: usize,
) -> Result<(), DomainError> {
    let id = *package.id();
    let mut sql = Sql::of(uow.transaction())?;
    for (line, item) in package.items().iter().enumerate().skip(first_line) {
        sql.query(concat!(
            "INSERT INTO package_lines (package_id, line, order_id, sku, quantity, weight_grams, \
             length_mm, width_mm, height_mm) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ",
            line_upsert!()
        ))
        .bind(id)
        .bind(signed(line)?)
        .bind(item.order_id)
        .bind(item.sku.as_str())
        .bind(item.quantity)
        .bind(item.weight_grams)
        .bind(item.dimensions.length_mm)
        .bind(item.dimensions.width_mm)
        .bind(item.dimensions.height_mm)
        .execute()
        .await?;
    }
    write_tracking(uow, package).await
}

/// Writes the tracking events of `package` not stored yet (they are only
/// ever appended): nothing for a package without any.
async fn write_tracking(uow: &mut dyn UnitOfWork, package: &Package) -> Result<(), DomainError> {
    if package.tracking().is_empty() {
        return Ok(());
    }
    let id = *package.id();
    let mut sql = Sql::of(uow.transaction())?;
    for (seq, event) in package.tracking().iter().enumerate() {
        sql.query(
            "INSERT INTO tracking_events (package_id, seq, status, description, at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (package_id, seq) DO NOTHING",
        )
        .bind(id)
        .bind(signed(seq)?)
        .bind(event.status.as_str())
        .bind(event.description.as_str())
        .bind(event.at)
        .execute()
        .await?;
    }
    Ok(())
}

/// The lines of `package` from `first_line` on as the JSON array
/// `lines_of_package!` reads (one object per line, keyed by column).
fn lines_json(package: &Package, first_line: usize) -> Result<Value, DomainError> {
    let lines = package
        .items()
        .iter()
        .enumerate()
        .skip(first_line)
        .map(|(line, item)| {
            Ok(serde_json::json!({
                "line": signed(line)?,
                "order_id": item.order_id,
                "sku": item.sku,
                "quantity": item.quantity,
                "weight_grams": item.weight_grams,
                "length_mm": item.dimensions.length_mm,
                "width_mm": item.dimensions.width_mm,
                "height_mm": item.dimensions.height_mm,
            }))
        })
        .collect::<Result<Vec<_>, DomainError>>()?;
    Ok(serde_json::Value::Array(lines).into())
}

/// Runs a [`Selection`] and puts the packages together.
async fn load(
    uow: &mut dyn UnitOfWork,
    selection: &Selection,
    params: &[Value],
) -> Result<Vec<Package>, DomainError> {
    let mut sql = Sql::of(uow.transaction())?;
    fn bind<'s>(mut statement: Statement<'s>, params: &[Value]) -> Statement<'s> {
        for value in params {
            statement = statement.bind(value.clone());
        }
        statement
    }
    if sql.provider() == "postgres" {
        let rows: Vec<WholePackageRow> =
            bind(sql.query(selection.whole), params).fetch_all().await?;
        return rows
            .into_iter()
            .map(|row| {
                let id = row.package.id;
                let lines = whole_lines(id, row.lines)?;
                let events = whole_events(id, row.events)?;
                restore(row.package, lines, events)
            })
            .collect();
    }
    let rows: Vec<PackageRow> = bind(sql.query(selection.packages), params)
        .fetch_all()
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut lines: HashMap<Uuid, Vec<PackedItem>> = HashMap::new();
    for row in bind(sql.query(selection.lines), params)
        .fetch_all::<LineRow>()
        .await?
    {
        let id = row.package_id;
        lines.entry(id).or_default().push(packed_item(
            id,
            row.order_id,
            row.sku,
            [
                row.quantity,
                row.weight_grams,
                row.length_mm,
                row.width_mm,
                row.height_mm,
            ],
        )?);
    }
    let mut events: HashMap<Uuid, Vec<TrackingEvent>> = HashMap::new();
    for row in bind(sql.query(selection.events), params)
        .fetch_all::<EventRow>()
        .await?
    {
        events
            .entry(row.package_id)
            .or_default()
            .push(tracking_event(
                row.package_id,
                &row.status,
                row.description,
                row.at,
            )?);
    }
    rows.into_iter()
        .map(|row| {
            let id = row.id;
            restore(
                row,
                lines.remove(&id).unwrap_or_default(),
                events.remove(&id).unwrap_or_default(),
            )
        })
        .collect()
}

/// A line of package `id`: quantity, weight and the three dimensions.
fn packed_item(
    id: Uuid,
    order_id: Uuid,
    sku: String,
    [quantity, weight_grams, length_mm, width_mm, height_mm]: [i64; 5],
) -> Result<PackedItem, DomainError> {
    let dim = |v| unsigned::<u32>(v, "package", id);
    Ok(PackedItem {
        order_id,
        sku,
        quantity: dim(quantity)?,
        weight_grams: dim(weight_grams)?,
        dimensions: Dimensions::new(dim(length_mm)?, dim(width_mm)?, dim(height_mm)?),
    })
}

fn tracking_event(
    id: Uuid,
    status: &str,
    description: String,
    at: OffsetDateTime,
) -> Result<TrackingEvent, DomainError> {
    let status = TrackingStatus::parse(status)
        .ok_or_else(|| corrupt("package", id, format!("status {status}")))?;
    Ok(TrackingEvent {
        status,
        description,
        at,
    })
}

/// The lines of package `id` from [`Selection::whole`]'s JSON array of
/// `[order_id, sku, quantity, weight, length, width, height]`, in line order.
fn whole_lines(id: Uuid, json: serde_json::Value) -> Result<Vec<PackedItem>, DomainError> {
    type Line = (Uuid, String, i64, i64, i64, i64, i64);
    let lines: Vec<Line> =
        serde_json::from_value(json).map_err(|e| corrupt("package", id, format!("lines: {e}")))?;
    lines
        .into_iter()
        .map(|(order_id, sku, q, w, l, wd, h)| packed_item(id, order_id, sku, [q, w, l, wd, h]))
        .collect()
}

/// The tracking events of package `id` from [`Selection::whole`]'s JSON
/// array of `[status, description, microseconds since the epoch]`, in order
/// (a number, not JSON's text of a timestamp, so nothing depends on the
/// session's time zone or date style).
fn whole_events(id: Uuid, json: serde_json::Value) -> Result<Vec<TrackingEvent>, DomainError> {
    let events: Vec<(String, String, i64)> = serde_json::from_value(json)
        .map_err(|e| corrupt("package", id, format!("tracking events: {e}")))?;
    events
        .into_iter()
        .map(|(status, description, micros)| {
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
                .map_err(|e| corrupt("package", id, format!("tracking time {micros}: {e}")))?;
            tracking_event(id, &status, description, at)
        })
        .collect()
}

/// A package from its row, lines and tracking events.
fn restore(
    row: PackageRow,
    lines: Vec<PackedItem>,
    events: Vec<TrackingEvent>,
) -> Result<Package, DomainError> {
    let id = row.id;
    let dim = |v| unsigned::<u32>(v, "package", id);
    let limits = match (
        row.provider_max_length_mm,
        row.provider_max_width_mm,
        row.provider_max_height_mm,
    ) {
        (Some(l), Some(w), Some(h)) => Some(Dimensions::new(dim(l)?, dim(w)?, dim(h)?)),
        _ => None,
    };
    let status = PackageStatus::parse(&row.status)
        .ok_or_else(|| corrupt("package", id, format!("status {}", row.status)))?;
    Ok(Package::restore(
        id,
        row.address.into_address(id)?,
        TransportProvider::restore(
            row.provider,
            unsigned(row.provider_max_weight_grams, "package", id)?,
            limits,
        ),
        status,
        lines,
        row.tracking_id,
        events,
        row.opened_at,
        unsigned(row.version, "package", id)?,
    ))
}

/// The shipment repository over `shipments`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shipments;

impl Shipments {
    /// The shipment of `order_id`, if the order was packed.
    pub async fn get(
        &self,
        uow: &mut dyn UnitOfWork,
        order_id: Uuid,
    ) -> Result<Option<Shipment>, DomainError> {
        let row: Option<ShipmentRow> = Sql::of(uow.transaction())?
            .query(
                "SELECT order_id, recipient, street, city, postal_code, country, packages, \
                 unshippable, packed_at, cancellation, version FROM shipments WHERE order_id = $1",
            )
            .bind(order_id)
            .fetch_optional()
            .await?;
        row.map(|row| {
            let id = row.order_id;
            let json = |value: serde_json::Value, what: &'static str| {
                move |e: serde_json::Error| {
                    corrupt("shipment", id, format!("{what}: {e} in {value}"))
                }
            };
            let packages: Vec<Uuid> = serde_json::from_value(row.packages.clone())
                .map_err(json(row.packages, "packages"))?;
            let unshippable: Vec<UnshippableItem> = serde_json::from_value(row.unshippable.clone())
                .map_err(json(row.unshippable, "unshippable"))?;
            let cancellation: Option<ShipmentCancellation> = match row.cancellation {
                Some(value) => Some(
                    serde_json::from_value(value.clone()).map_err(json(value, "cancellation"))?,
                ),
                None => None,
            };
            Ok(Shipment::restore(
                id,
                row.address.into_address(id)?,
                packages,
                unshippable,
                row.packed_at,
                cancellation,
                unsigned(row.version, "shipment", id)?,
            ))
        })
        .transpose()
    }

    /// The shipment of `order_id`; [`DomainError::NotFound`] if the order
    /// was not packed.
    pub async fn load(
        &self,
        uow: &mut dyn UnitOfWork,
        order_id: Uuid,
    ) -> Result<Shipment, DomainError> {
        self.get(uow, order_id)
            .await?
            .ok_or_else(|| DomainError::not_found(Shipment::COLLECTION, order_id))
    }

    /// Inserts the shipment of a newly packed order; a second one for the
    /// same order is a [`DomainError::Concurrency`] (the primary key).
    pub async fn add(
        &self,
        uow: &mut dyn UnitOfWork,
        shipment: &mut Shipment,
    ) -> Result<(), DomainError> {
        insert_shipment(uow, shipment, insert_shipment_row!()).await?;
        publish_changes(uow, shipment, 1).await?;
        Ok(())
    }

    /// Inserts the shipment of a newly packed order unless its order has one
    /// already: `false` then, and nothing is written. Asking and writing in
    /// one statement saves packing a read before the write; a concurrent
    /// packing of the same order waits for the first one's commit and then
    /// finds its row (or, if that rolled back, inserts).
    pub async fn add_unless_packed(
        &self,
        uow: &mut dyn UnitOfWork,
        shipment: &mut Shipment,
    ) -> Result<bool, DomainError> {
        let statement = concat!(insert_shipment_row!(), " ON CONFLICT (order_id) DO NOTHING");
        if insert_shipment(uow, shipment, statement).await? == 0 {
            return Ok(false);
        }
        publish_changes(uow, shipment, 1).await?;
        Ok(true)
    }

    /// Stores a changed shipment (its packages and cancellation) if nobody
    /// changed it since it was loaded.
    pub async fn update(
        &self,
        uow: &mut dyn UnitOfWork,
        shipment: &mut Shipment,
    ) -> Result<(), DomainError> {
        let id = shipment.order_id();
        let expected = shipment.version();
        let [packages, unshippable, cancellation] = shipment_json(shipment)?;
        let changed = Sql::of(uow.transaction())?
            .query(
                "UPDATE shipments SET packages = $2, unshippable = $3, cancellation = $4, \
                 version = $5 WHERE order_id = $1 AND version = $6",
            )
            .bind(id)
            .bind(packages)
            .bind(unshippable)
            .bind(cancellation)
            .bind(signed(expected + 1)?)
            .bind(signed(expected)?)
            .execute()
            .await?;
        if changed == 0 {
            let actual =
                stored_version(uow, "SELECT version FROM shipments WHERE order_id = $1", id)
                    .await?;
            return Err(conflict::<Shipment>(id, expected, actual));
        }
        publish_changes(uow, shipment, expected + 1).await?;
        Ok(())
    }
}

/// Runs `statement` (an `insert_shipment_row!`, maybe with an `ON CONFLICT`
/// clause) for `shipment`; the number of rows inserted.
async fn insert_shipment(
    uow: &mut dyn UnitOfWork,
    shipment: &Shipment,
    statement: &'static str,
) -> Result<u64, DomainError> {
    let [packages, unshippable, cancellation] = shipment_json(shipment)?;
    let mut sql = Sql::of(uow.transaction())?;
    let mut insert = sql.query(statement);
    insert = insert.bind(shipment.order_id());
    for value in address_values(shipment.destination()) {
        insert = insert.bind(value);
    }
    Ok(insert
        .bind(packages)
        .bind(unshippable)
        .bind(shipment.packed_at())
        .bind(cancellation)
        .execute()
        .await?)
}

/// A shipment's JSON columns: packages, unshippable items, cancellation.
fn shipment_json(shipment: &Shipment) -> Result<[Value; 3], DomainError> {
    let json = |value: Result<serde_json::Value, serde_json::Error>| {
        value.map_err(|e| DomainError::internal(format!("cannot serialize a shipment: {e}")))
    };
    Ok([
        json(serde_json::to_value(shipment.packages()))?.into(),
        json(serde_json::to_value(shipment.unshippable()))?.into(),
        shipment
            .cancellation()
            .map(|c| json(serde_json::to_value(c)))
            .transpose()?
            .into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::package::tests::{address, now, providers, units};

    /// A package as loaded: two lines of two orders, no changes pending.
    fn stored(a: Uuid, b: Uuid) -> Package {
        let p = providers(31_500);
        let provider = p.iter().next().unwrap().clone();
        let items = vec![units(a, "A", 1, 1_000), units(b, "B", 2, 1_000)];
        let (destination, opened) = (address("1 Main St"), now());
        Package::restore(
            Uuid::now_v7(),
            destination,
            provider,
            PackageStatus::Open,
            items,
            None,
            vec![],
            opened,
            3,
        )
    }

    #[test]
    fn only_the_lines_of_orders_filled_since_loading_are_written() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut package = stored(a, b);
        assert_eq!(
            appended_lines(&package),
            Some(2),
            "nothing changed: nothing to write"
        );
        package.add(units(c, "C", 1, 1_000)).unwrap();
        package.add(units(c, "D", 1, 1_000)).unwrap();
        package.add(units(c, "C", 1, 1_000)).unwrap();
        assert_eq!(package.items().len(), 4);
        assert_eq!(appended_lines(&package), Some(2));
    }

    #[test]
    fn a_released_order_or_a_stored_line_filled_again_rewrites_every_line() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut released = stored(a, b);
        released.release_order(a).unwrap();
        released.add(units(c, "C", 1, 1_000)).unwrap();
        assert_eq!(appended_lines(&released), None);

        // Units of an order already in the package, in front of another's.
        let mut again = stored(a, b);
        again.add(units(a, "A", 1, 1_000)).unwrap();
        assert_eq!(appended_lines(&again), None);
    }
}

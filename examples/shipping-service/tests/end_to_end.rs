//! The shipping service in-process on the in-memory providers: events in
//! through the bus (harness), results out through its HTTP API (client).

use chassis_testing::TestBus;
use order_service_client::events::{Destination, ItemToShip, OrderCompleted};
use shipping_service_client::dto::{self, PackageStatus, RecordTrackingRequest, TrackingStatus};
use shipping_service_client::{ClientConfig, ShippingServiceClient};
use time::OffsetDateTime;
use uuid::Uuid;

const GROUP: &str = shipping_service::SERVICE_NAME;

fn item(sku: &str, quantity: u32, weight_grams: u32) -> ItemToShip {
    ItemToShip {
        sku: sku.into(),
        quantity,
        weight_grams,
        length_mm: 300,
        width_mm: 200,
        height_mm: 100,
    }
}

fn order(street: &str, items: Vec<ItemToShip>) -> OrderCompleted {
    OrderCompleted {
        order_id: Uuid::now_v7(),
        destination: Destination {
            name: "Ada Lovelace".into(),
            street: street.into(),
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
        },
        items,
        completed_at: OffsetDateTime::now_utc(),
    }
}

async fn start(bus: &TestBus) -> (chassis_web::RunningService, ShippingServiceClient) {
    let service = chassis_testing::start(shipping_service::host(), bus).await;
    let client = ShippingServiceClient::new(&ClientConfig::new(service.base_url())).unwrap();
    (service, client)
}

/// Units of `order_id`'s `sku` over all packages.
fn units(packages: &[dto::PackageView], order_id: Uuid, sku: &str) -> u32 {
    packages
        .iter()
        .flat_map(|p| &p.items)
        .filter(|i| i.order_id == order_id && i.sku == sku)
        .map(|i| i.quantity)
        .sum()
}

#[tokio::test]
async fn orders_to_one_place_share_packages_up_to_the_maximum_weight() {
    let bus = TestBus::in_memory();
    let (service, shipping) = start(&bus).await;

    // parcel-post takes 31 500 g: 3 x 10 kg fit, the fourth opens a package.
    let first = order("12 St James's Square", vec![item("A", 3, 10_000)]);
    let sent = bus.publish_event(&first).await;
    assert_eq!(bus.wait_handled(GROUP, sent.message_id).await, Ok(()));
    let second = order(
        "12 St James's Square",
        vec![item("B", 1, 1_500), item("C", 1, 10_000)],
    );
    let sent = bus.publish_event(&second).await;
    assert_eq!(bus.wait_handled(GROUP, sent.message_id).await, Ok(()));

    let of_first = shipping.packages_for_order(first.order_id).await.unwrap();
    assert_eq!(of_first.len(), 1);
    let shared = &of_first[0];
    assert_eq!(shared.status, PackageStatus::Open);
    assert_eq!(shared.transport_provider, "parcel-post");
    assert_eq!(shared.total_weight_grams, 31_500, "exactly at the limit");
    assert_eq!(units(&of_first, second.order_id, "B"), 1);

    let of_second = shipping.packages_for_order(second.order_id).await.unwrap();
    assert_eq!(of_second.len(), 2);
    assert_eq!(units(&of_second, second.order_id, "C"), 1);
    assert!(
        of_second
            .iter()
            .all(|p| p.total_weight_grams <= p.max_weight_grams)
    );

    let json = serde_json::to_value(&of_second[0]).unwrap();
    for key in [
        "id",
        "status",
        "destination",
        "transport_provider",
        "total_weight_grams",
        "items",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    service.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_light_item_fills_the_oldest_package_with_room_past_full_ones() {
    let bus = TestBus::in_memory();
    let (service, shipping) = start(&bus).await;
    let place = "12 St James's Square";

    // parcel-post takes 31 500 g. First: 30 kg (1 500 g free). Second:
    // 10 kg does not fit there and opens a package (21 500 g free).
    let mut orders = vec![
        order(place, vec![item("A", 3, 10_000)]),
        order(place, vec![item("B", 1, 10_000)]),
    ];
    // Third: 2 kg skips the first package (too little room) for the second;
    // fourth: 1 kg still finds the first.
    orders.push(order(place, vec![item("C", 1, 2_000)]));
    orders.push(order(place, vec![item("D", 1, 1_000)]));
    for o in &orders {
        let sent = bus.publish_event(o).await;
        assert_eq!(bus.wait_handled(GROUP, sent.message_id).await, Ok(()));
    }
    let first = shipping
        .packages_for_order(orders[0].order_id)
        .await
        .unwrap();
    let second = shipping
        .packages_for_order(orders[1].order_id)
        .await
        .unwrap();
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first[0].id, second[0].id);
    let of = |i: usize| shipping.packages_for_order(orders[i].order_id);
    assert_eq!(
        of(2).await.unwrap()[0].id,
        second[0].id,
        "2 kg into the second"
    );
    assert_eq!(
        of(3).await.unwrap()[0].id,
        first[0].id,
        "1 kg into the first"
    );
    let first = shipping.get_package(first[0].id).await.unwrap().unwrap();
    assert_eq!(first.total_weight_grams, 31_000);

    service.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_same_order_completed_delivered_twice_is_packed_once() {
    let bus = TestBus::in_memory();
    let (service, shipping) = start(&bus).await;
    let completed = order("1 Main St", vec![item("A", 2, 1_000), item("B", 1, 500)]);
    let envelope = bus.publish_event(&completed).await;
    // Redelivery of the very same message (same id): the inbox drops it.
    bus.redeliver(envelope.clone()).await;
    let outcomes = bus.wait_handled_times(GROUP, envelope.message_id, 2).await;
    assert_eq!(outcomes, [Ok(()), Ok(())]);
    // The same order in a new message (a republished event): the domain
    // finds the shipment and packs nothing.
    let again = bus.publish_event(&completed).await;
    assert_eq!(bus.wait_handled(GROUP, again.message_id).await, Ok(()));

    let packages = shipping
        .packages_for_order(completed.order_id)
        .await
        .unwrap();
    assert_eq!(units(&packages, completed.order_id, "A"), 2);
    assert_eq!(units(&packages, completed.order_id, "B"), 1);
    let shipment = shipping
        .shipment(completed.order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shipment.packages.len(), packages.len());
    assert!(shipment.unshippable.is_empty());
    service.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn destination_changes_until_sent_then_conflict_and_tracking() {
    let bus = TestBus::in_memory();
    let (service, shipping) = start(&bus).await;
    let completed = order("1 Main St", vec![item("A", 1, 1_000)]);
    let sent = bus.publish_event(&completed).await;
    assert_eq!(bus.wait_handled(GROUP, sent.message_id).await, Ok(()));
    let package = shipping
        .packages_for_order(completed.order_id)
        .await
        .unwrap()[0]
        .clone();

    let tracking = shipping.tracking(package.id).await.unwrap();
    assert!(tracking.events.is_empty() && tracking.tracking_id.is_none());

    let mut new_place = package.destination.clone();
    new_place.street = "2 Other Rd".into();
    let changed = shipping
        .change_destination(package.id, &new_place)
        .await
        .unwrap();
    assert_eq!(changed.destination.street, "2 Other Rd");

    let mut invalid = new_place.clone();
    invalid.city = " ".into();
    let err = shipping
        .change_destination(package.id, &invalid)
        .await
        .unwrap_err();
    assert!(err.is_validation(), "{err}");
    assert!(err.problem().unwrap().mentions("city"));

    let receipt = shipping.send_package(package.id).await.unwrap();
    assert!(
        receipt.tracking_id.starts_with("PARCEL-POST-"),
        "{receipt:?}"
    );
    let err = shipping
        .change_destination(package.id, &new_place)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(
        err.problem()
            .unwrap()
            .detail
            .as_deref()
            .unwrap()
            .contains("already sent")
    );
    assert!(
        shipping
            .send_package(package.id)
            .await
            .unwrap_err()
            .is_conflict()
    );

    shipping
        .record_tracking(
            package.id,
            &RecordTrackingRequest {
                status: TrackingStatus::Delivered,
                description: "front door".into(),
            },
        )
        .await
        .unwrap();
    let tracking = shipping.tracking(package.id).await.unwrap();
    assert_eq!(
        tracking.tracking_id.as_deref(),
        Some(receipt.tracking_id.as_str())
    );
    let steps: Vec<_> = tracking.events.iter().map(|e| e.status).collect();
    assert_eq!(
        steps,
        [TrackingStatus::HandedOver, TrackingStatus::Delivered]
    );
    let sent_package = shipping.get_package(package.id).await.unwrap().unwrap();
    assert_eq!(sent_package.status, PackageStatus::Sent);

    // A new order to the old place does not go into the sent package.
    let later = order("2 Other Rd", vec![item("Z", 1, 100)]);
    let msg = bus.publish_event(&later).await;
    assert_eq!(bus.wait_handled(GROUP, msg.message_id).await, Ok(()));
    let later_packages = shipping.packages_for_order(later.order_id).await.unwrap();
    assert_ne!(later_packages[0].id, package.id);

    assert!(
        shipping
            .get_package(Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        shipping
            .send_package(Uuid::now_v7())
            .await
            .unwrap_err()
            .is_not_found()
    );
    service.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn unshippable_items_are_recorded_and_bad_events_dead_lettered() {
    let bus = TestBus::in_memory();
    let (service, shipping) = start(&bus).await;
    let completed = order(
        "1 Main St",
        vec![item("OK", 1, 1_000), item("ANVIL", 1, 50_000)],
    );
    let sent = bus.publish_event(&completed).await;
    assert_eq!(bus.wait_handled(GROUP, sent.message_id).await, Ok(()));
    let shipment = shipping
        .shipment(completed.order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shipment.unshippable.len(), 1);
    assert_eq!(shipment.unshippable[0].sku, "ANVIL");
    assert!(
        shipment.unshippable[0].reason.contains("50000 g"),
        "{:?}",
        shipment.unshippable
    );
    let packages = shipping
        .packages_for_order(completed.order_id)
        .await
        .unwrap();
    assert_eq!(units(&packages, completed.order_id, "OK"), 1);
    assert_eq!(units(&packages, completed.order_id, "ANVIL"), 0);

    // An event whose destination is invalid cannot be packed: dead-lettered
    // at once (permanent), the reason naming the field.
    let mut broken = order("1 Main St", vec![item("A", 1, 1)]);
    broken.destination.city = String::new();
    let sent = bus.publish_event(&broken).await;
    let letter = bus.wait_dead_letter(GROUP, sent.message_id).await;
    assert_eq!(letter.attempts, 1);
    assert!(
        letter.reason.contains("destination.city"),
        "{}",
        letter.reason
    );
    assert!(shipping.shipment(broken.order_id).await.unwrap().is_none());
    service.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn openapi_and_offline_docs_are_served() {
    let bus = TestBus::in_memory();
    let (service, _) = start(&bus).await;
    let http = reqwest::Client::new();
    let spec: serde_json::Value = http
        .get(format!("{}/openapi.json", service.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/packages",
        "/packages/{id}",
        "/packages/{id}/destination",
        "/packages/{id}/send",
        "/packages/{id}/tracking",
        "/shipments/{order_id}",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(spec["components"]["schemas"].get("PackageView").is_some());
    let docs = http
        .get(format!("{}/docs/", service.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    service.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn many_orders_to_one_place_at_once_fill_packages_without_losing_any() {
    let bus = TestBus::in_memory();
    let (service, shipping) = start(&bus).await;
    let orders: Vec<OrderCompleted> = (0..40)
        .map(|_| order("7 Busy Lane", vec![item("BOX", 1, 1_000)]))
        .collect();
    let mut sent = Vec::new();
    for o in &orders {
        sent.push(bus.publish_event(o).await.message_id);
    }
    for id in sent {
        assert_eq!(bus.wait_handled(GROUP, id).await, Ok(()));
    }
    assert!(bus.dead_letters(Some(GROUP)).await.is_empty());
    let packages = shipping.list_packages(1000).await.unwrap();
    let total: u32 = packages
        .iter()
        .flat_map(|p| &p.items)
        .map(|i| i.quantity)
        .sum();
    assert_eq!(total, 40);
    // 31 kg fit a 31.5 kg parcel: 40 units need exactly two packages.
    assert_eq!(packages.len(), 2, "{packages:#?}");
    service.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

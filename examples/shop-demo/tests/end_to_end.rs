//! Both services in one process on one in-memory bus: orders placed over
//! HTTP end up packed, every unit exactly once.

use std::collections::BTreeMap;
use std::process::Command;

use chassis_testing::TestBus;
use order_service_client::{ClientConfig, OrderServiceClient};
use shipping_service_client::ShippingServiceClient;

#[tokio::test]
async fn orders_placed_over_http_are_packed_every_unit_exactly_once() {
    let bus = TestBus::in_memory();
    let orders_service = chassis_testing::start(order_service::host(), &bus).await;
    let shipping_service = chassis_testing::start(shipping_service::host(), &bus).await;
    let orders = OrderServiceClient::new(&ClientConfig::new(orders_service.base_url())).unwrap();
    let shipping =
        ShippingServiceClient::new(&ClientConfig::new(shipping_service.base_url())).unwrap();

    let mut placed = Vec::new();
    for request in shop_demo::samples::orders() {
        placed.push(orders.place_order(&request).await.unwrap());
    }
    let handled = bus
        .wait_until("shipping to pack every sample order", |log| {
            let ok: Vec<_> = log
                .iter()
                .filter(|h| h.group == shipping_service::SERVICE_NAME && h.outcome.is_ok())
                .collect();
            (ok.len() >= placed.len()).then_some(ok.len())
        })
        .await;
    assert_eq!(handled, placed.len());

    let mut units: BTreeMap<(uuid::Uuid, String), u64> = BTreeMap::new();
    let mut packages = BTreeMap::new();
    for order in &placed {
        for package in shipping.packages_for_order(order.id).await.unwrap() {
            assert!(package.total_weight_grams <= package.max_weight_grams);
            packages.insert(package.id, package);
        }
    }
    for package in packages.values() {
        for item in &package.items {
            *units.entry((item.order_id, item.sku.clone())).or_default() +=
                u64::from(item.quantity);
        }
    }
    for order in &placed {
        for item in &order.items {
            assert_eq!(
                units.get(&(order.id, item.sku.clone())).copied(),
                Some(item.quantity as u64),
                "order {} {}",
                order.id,
                item.sku
            );
        }
    }
    // Ada's two orders go to one place: they share a package.
    let shared = packages
        .values()
        .find(|p| p.items.iter().any(|i| i.order_id == placed[0].id))
        .unwrap();
    assert!(shared.items.iter().any(|i| i.order_id == placed[1].id));

    shipping_service.shutdown().await.unwrap();
    orders_service.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[test]
fn the_demo_exits_0_once_every_sample_item_is_packed() {
    let output = Command::new(env!("CARGO_BIN_EXE_shop-demo"))
        .args(["--once", "--order-port", "0", "--shipping-port", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("every sample item is packed"), "{stdout}");
    assert!(stdout.contains("via long-goods-freight"), "{stdout}");
}

#[test]
fn the_demo_rejects_unknown_arguments() {
    let output = Command::new(env!("CARGO_BIN_EXE_shop-demo"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown argument `--bogus`"));
}

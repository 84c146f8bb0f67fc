//! The sample orders: two orders to the same place (they share packages), a
//! pair of skis only the long-goods carrier takes, and enough dumbbells to
//! fill more than one parcel.

use order_service_client::dto::{Destination, OrderItem, PlaceOrderRequest};

fn destination(
    name: &str,
    street: &str,
    city: &str,
    postal_code: &str,
    country: &str,
) -> Destination {
    Destination {
        name: name.into(),
        street: street.into(),
        city: city.into(),
        postal_code: postal_code.into(),
        country: country.into(),
    }
}

/// `(sku, name, price in cents, quantity, grams, [length, width, height] mm)`.
type Line<'a> = (&'a str, &'a str, i64, i64, i64, [i64; 3]);

fn items(lines: &[Line<'_>]) -> Vec<OrderItem> {
    lines
        .iter()
        .map(
            |&(sku, name, unit_price_cents, quantity, weight_grams, [l, w, h])| OrderItem {
                sku: sku.into(),
                name: name.into(),
                unit_price_cents,
                quantity,
                weight_grams,
                length_mm: l,
                width_mm: w,
                height_mm: h,
            },
        )
        .collect()
}

/// The orders the demo places.
pub fn orders() -> Vec<PlaceOrderRequest> {
    let ada = destination(
        "Ada Lovelace",
        "12 St James's Square",
        "London",
        "SW1Y 4JH",
        "GB",
    );
    vec![
        PlaceOrderRequest {
            customer_id: "ada".into(),
            destination: ada.clone(),
            items: items(&[
                ("LAMP-01", "Desk lamp", 4_999, 2, 2_400, [450, 250, 250]),
                (
                    "SHELF-07",
                    "Bookshelf kit",
                    12_900,
                    1,
                    18_000,
                    [1_000, 400, 300],
                ),
            ]),
        },
        PlaceOrderRequest {
            customer_id: "ada".into(),
            destination: ada,
            items: items(&[("PAN-12", "Cast-iron pan", 3_450, 3, 3_200, [520, 300, 90])]),
        },
        PlaceOrderRequest {
            customer_id: "grace".into(),
            destination: destination(
                "Grace Hopper",
                "1 Navy Pentagon",
                "Arlington",
                "VA 22202",
                "US",
            ),
            items: items(&[
                (
                    "SKI-180",
                    "Touring skis 180 cm",
                    54_900,
                    1,
                    4_500,
                    [1_800, 200, 100],
                ),
                ("BOOT-42", "Ski boots", 32_900, 1, 2_100, [350, 300, 250]),
            ]),
        },
        PlaceOrderRequest {
            customer_id: "alan".into(),
            destination: destination("Alan Turing", "Oxford Road", "Manchester", "M13 9PL", "GB"),
            items: items(&[("DUMB-5", "Dumbbell 5 kg", 1_999, 12, 5_000, [300, 120, 120])]),
        },
    ]
}

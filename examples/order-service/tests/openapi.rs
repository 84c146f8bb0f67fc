//! `/openapi.json` tells what the service answers: every status of the
//! chassis's edge on every operation, as problems, and the request schemas
//! state the limits the validators enforce (the same constants). The
//! property-based run against this document is `scripts/openapi-test`.

use chassis_domain::text::NOT_BLANK_PATTERN;
use order_service_client::dto::limits::{MAX_ITEMS, MAX_MEASURE, MAX_QUANTITY, MAX_SKU, MAX_TEXT};
use serde_json::{Value, json};

async fn document() -> Value {
    chassis_testing::openapi_document(order_service::host()).await
}

#[tokio::test]
async fn every_operation_documents_the_answers_of_the_edge() {
    let doc = document().await;
    let checked = chassis_testing::assert_edge_documented(&doc);
    assert_eq!(checked.len(), 4, "{checked:?}");
    // What the generated requests found undocumented before: an id that is
    // not a UUID (400), a body without a JSON content type (415).
    let get = &doc["paths"]["/orders/{id}"]["get"]["responses"];
    assert!(get.get("400").is_some() && get.get("404").is_some());
    assert!(
        doc["paths"]["/orders"]["post"]["responses"]
            .get("415")
            .is_some()
    );
}

#[tokio::test]
async fn request_schemas_state_the_limits_the_validators_enforce() {
    let doc = document().await;
    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    let text = |max: usize| json!({ "type": "string", "minLength": 1, "maxLength": max, "pattern": NOT_BLANK_PATTERN });
    let has = |field: &Value, expected: &Value| {
        for (key, value) in expected.as_object().unwrap() {
            assert_eq!(&field[key], value, "{key} of {field}");
        }
    };

    let order = schema("PlaceOrderRequest");
    has(&order["properties"]["customer_id"], &text(MAX_TEXT));
    has(
        &order["properties"]["items"],
        &json!({ "minItems": 1, "maxItems": MAX_ITEMS }),
    );
    let quote = schema("QuoteOrderRequest");
    has(
        &quote["properties"]["items"],
        &json!({ "minItems": 1, "maxItems": MAX_ITEMS }),
    );
    let destination = schema("Destination");
    for field in ["name", "street", "city", "postal_code", "country"] {
        has(&destination["properties"][field], &text(MAX_TEXT));
    }
    for line in [schema("OrderItem"), schema("QuoteLine")] {
        has(&line["properties"]["sku"], &text(MAX_SKU));
        has(
            &line["properties"]["quantity"],
            &json!({ "minimum": 1, "maximum": MAX_QUANTITY }),
        );
        for measure in ["weight_grams", "length_mm", "width_mm", "height_mm"] {
            has(
                &line["properties"][measure],
                &json!({ "minimum": 1, "maximum": MAX_MEASURE }),
            );
        }
    }
    let item = schema("OrderItem");
    has(&item["properties"]["name"], &text(MAX_TEXT));
    has(
        &item["properties"]["unit_price_cents"],
        &json!({ "minimum": 0 }),
    );
}

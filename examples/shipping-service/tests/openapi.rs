//! `/openapi.json` tells what the service answers: every status of the
//! chassis's edge on every operation, as problems, and the request schemas
//! state the limits the validators enforce (the same constants). The
//! property-based run against this document is `scripts/openapi-test`.

use chassis_domain::text::NOT_BLANK_PATTERN;
use serde_json::{Value, json};
use shipping_service_client::dto::limits::MAX_TEXT;

async fn document() -> Value {
    chassis_testing::openapi_document(shipping_service::host()).await
}

#[tokio::test]
async fn every_operation_documents_the_answers_of_the_edge_and_the_limits() {
    let doc = document().await;
    let checked = chassis_testing::assert_edge_documented(&doc);
    assert_eq!(checked.len(), 7, "{checked:?}");

    let destination = &doc["components"]["schemas"]["Destination"]["properties"];
    for field in ["name", "street", "city", "postal_code", "country"] {
        let schema = &destination[field];
        assert_eq!(schema["minLength"], 1, "{field}");
        assert_eq!(schema["maxLength"], MAX_TEXT, "{field}");
        assert_eq!(schema["pattern"], NOT_BLANK_PATTERN, "{field}");
    }
    let limit = doc["paths"]["/packages"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!(1), &json!(1000))
    );
}

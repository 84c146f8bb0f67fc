//! Operations of an OpenAPI document, for tests that must cover every route.

use serde_json::Value;

/// Every operation of an OpenAPI 3 document as `(METHOD, path)`, with each
/// `{parameter}` replaced by a syntactically plausible value (a UUID), so a
/// test can call each route, including routes added later:
///
/// ```
/// let doc = serde_json::json!({ "paths": {
///     "/orders": { "get": {}, "post": {} },
///     "/orders/{id}": { "get": {}, "parameters": [] },
/// }});
/// let ops = chassis_testing::openapi_operations(&doc);
/// assert_eq!(ops.len(), 3);
/// assert!(ops.contains(&("GET".into(), "/orders/00000000-0000-4000-8000-000000000000".into())));
/// ```
pub fn openapi_operations(doc: &Value) -> Vec<(String, String)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut operations = Vec::new();
    for (template, item) in paths {
        let path = concrete(template);
        for method in METHODS {
            if item.get(method).is_some() {
                operations.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    operations
}

fn concrete(template: &str) -> String {
    let mut path = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            // Unbalanced: keep the remainder as written.
            break;
        };
        path.push_str(&rest[..open]);
        path.push_str("00000000-0000-4000-8000-000000000000");
        rest = &rest[open + close + 1..];
    }
    path.push_str(rest);
    path
}

/// Checks that every operation of `doc` (a chassis service's `/openapi.json`,
/// authentication on with the default rate limit) lists each status the
/// chassis's edge may answer for it, as `application/problem+json` with the
/// `Problem` schema: 400 (operations with parameters or a body), 401 (outside
/// the allow-list), 413, 415 and 422 (operations with a body), 429, 500 and
/// 503. Returns the operations checked, as `METHOD path` (panics naming the
/// first gap).
///
/// ```
/// let doc = serde_json::json!({
///     "components": { "schemas": { "Problem": {} } },
///     "paths": { "/stats": { "get": { "responses": {
///         "200": {},
///         "401": { "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } },
///         "429": { "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } },
///         "500": { "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } },
///         "503": { "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } },
///     } } } },
/// });
/// assert_eq!(chassis_testing::assert_edge_documented(&doc), ["GET /stats"]);
/// ```
pub fn assert_edge_documented(doc: &Value) -> Vec<String> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    assert!(
        doc.pointer("/components/schemas/Problem").is_some(),
        "no Problem schema in components.schemas"
    );
    let open = ["/health/live", "/health/ready", "/metrics", "/openapi.json"];
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let label = format!("{} {path}", method.to_ascii_uppercase());
            let has_body = operation.get("requestBody").is_some();
            let has_params = path.contains('{')
                || operation["parameters"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["in"] == "query" || p["in"] == "path"));
            let mut expected = Vec::new();
            if has_body || has_params {
                expected.push("400");
            }
            if !open.contains(&path.as_str()) && !path.starts_with("/docs") {
                expected.push("401");
            }
            if has_body {
                expected.extend(["413", "415", "422"]);
            }
            expected.extend(["429", "500", "503"]);
            for status in expected {
                let schema = operation
                    .pointer(&format!(
                        "/responses/{status}/content/application~1problem+json/schema/$ref"
                    ))
                    .and_then(Value::as_str);
                assert_eq!(
                    schema,
                    Some("#/components/schemas/Problem"),
                    "{label}: status {status} is not documented as a problem: {}",
                    operation["responses"]
                );
            }
            checked.push(label);
        }
    }
    checked
}

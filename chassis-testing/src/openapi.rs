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

//! The credentials the edge accepts, declared in a service's OpenAPI
//! document, so clients and the docs UI (its Authorize button) know them.

use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};

use super::AllowList;
use super::config::AuthConfig;

/// Name of the API key scheme in `components.securitySchemes`.
pub const API_KEY_SCHEME: &str = "api_key";
/// Name of the bearer token (JWT) scheme in `components.securitySchemes`.
pub const BEARER_SCHEME: &str = "bearer";

/// Declares in `api` what `[security.auth]` makes the edge accept: the API
/// key header (when keys are configured) and bearer JWTs (when
/// `security.auth.jwt.algorithm` is set), either of them required by every
/// operation outside `security.auth.allow`, whose operations require none.
/// With authentication off nothing is declared: nothing is asked for.
///
/// ```
/// use chassis_web::security::{AuthConfig, declare_in_openapi};
///
/// let mut api = utoipa::openapi::OpenApiBuilder::new().build();
/// let auth = AuthConfig { api_keys: vec!["k".into()], ..Default::default() };
/// declare_in_openapi(&mut api, &auth);
/// let json = serde_json::to_value(&api).unwrap();
/// assert_eq!(json["components"]["securitySchemes"]["api_key"]["name"], "x-api-key");
/// assert_eq!(json["security"][0]["api_key"], serde_json::json!([]));
/// ```
pub fn declare_in_openapi(api: &mut OpenApi, auth: &AuthConfig) {
    if !auth.enabled {
        return;
    }
    let mut schemes = Vec::new();
    if !auth.api_keys.is_empty() {
        schemes.push((
            API_KEY_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                auth.api_key_header.as_str(),
                "An API key of `security.auth.api_keys`.",
            ))),
        ));
    }
    if !auth.jwt.algorithm.is_empty() {
        schemes.push((
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(format!(
                        "A JWT signed with {} (`security.auth.jwt`).",
                        auth.jwt.algorithm
                    )))
                    .build(),
            ),
        ));
    }
    let components = api.components.get_or_insert_with(Default::default);
    // Alternatives: a list of requirements is satisfied by any one of them.
    let mut requirements = Vec::new();
    for (name, scheme) in schemes {
        components.add_security_scheme(name, scheme);
        requirements.push(SecurityRequirement::new(name, Vec::<String>::new()));
    }
    api.security = Some(requirements);
    let allow = AllowList::new(&auth.allow);
    for (path, item) in api.paths.paths.iter_mut() {
        if allow.contains(path) {
            for operation in operations(item) {
                // An empty list: this operation needs no credentials.
                operation.security = Some(Vec::new());
            }
        }
    }
}

/// Every operation of a path item.
pub(crate) fn operations(
    item: &mut utoipa::openapi::path::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::{OpenApiBuilder, PathsBuilder};

    use super::*;
    use crate::security::JwtConfig;

    fn api() -> OpenApi {
        OpenApiBuilder::new()
            .paths(
                PathsBuilder::new()
                    .path(
                        "/orders",
                        PathItem::new(HttpMethod::Post, OperationBuilder::new()),
                    )
                    .path(
                        "/health/live",
                        PathItem::new(HttpMethod::Get, OperationBuilder::new()),
                    ),
            )
            .build()
    }

    fn declared(auth: &AuthConfig) -> serde_json::Value {
        let mut api = api();
        declare_in_openapi(&mut api, auth);
        serde_json::to_value(&api).unwrap()
    }

    #[test]
    fn api_key_and_bearer_are_alternatives_outside_the_allow_list() {
        let auth = AuthConfig {
            api_key_header: "x-key".into(),
            api_keys: vec!["k".into()],
            jwt: JwtConfig {
                algorithm: "HS256".into(),
                secret: "s".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let doc = declared(&auth);
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["type"], "apiKey");
        assert_eq!(schemes["api_key"]["in"], "header");
        assert_eq!(schemes["api_key"]["name"], "x-key");
        assert_eq!(schemes["bearer"]["type"], "http");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
        assert_eq!(
            doc["security"],
            json!([{ "api_key": [] }, { "bearer": [] }])
        );
        assert_eq!(doc["paths"]["/health/live"]["get"]["security"], json!([]));
        assert!(doc["paths"]["/orders"]["post"].get("security").is_none());
    }

    #[test]
    fn only_what_is_configured_is_declared() {
        let keys_only = AuthConfig {
            api_keys: vec!["k".into()],
            ..Default::default()
        };
        let doc = declared(&keys_only);
        assert!(doc["components"]["securitySchemes"].get("bearer").is_none());
        assert_eq!(doc["security"], json!([{ "api_key": [] }]));

        let off = AuthConfig {
            enabled: false,
            api_keys: vec!["k".into()],
            ..Default::default()
        };
        let doc = declared(&off);
        assert!(doc.get("security").is_none());
        assert!(doc.get("components").is_none());
    }
}

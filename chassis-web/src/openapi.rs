//! A service's OpenAPI document made to tell what the chassis's edge answers
//! (feature `openapi`).
//!
//! A handler's `#[utoipa::path]` lists what the handler answers. Before the
//! handler runs, the edge and axum's extractors may answer on their own:
//! 400 (a path or query parameter that does not parse, JSON that is not
//! JSON), 401/403 (authentication), 413 (body limit), 415 (no JSON content
//! type), 422 (a body of the wrong shape), 429 (rate limit), 503
//! (concurrency limit, request timeout) and 500 (a panic). [`document`] adds
//! each of them to every operation it applies to — from the same
//! configuration the edge runs with, so the document follows the settings —
//! every one as `application/problem+json` with the [`PROBLEM_SCHEMA`]
//! schema, which error responses the service declared without a schema get
//! too.

use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{
    ContentBuilder, KnownFormat, OpenApi, Ref, RefOr, Response, ResponseBuilder,
};

use crate::config::ChassisConfig;
use crate::problem::PROBLEM_JSON;
use crate::security::{AllowList, declare_in_openapi, openapi_operations as operations};

/// Name of the RFC 9457 problem schema in `components.schemas`.
pub const PROBLEM_SCHEMA: &str = "Problem";

/// What [`document`] appends to `info.description`: a link to the service's
/// AsyncAPI document, which the docs UI (`/docs`) shows on its page.
pub const ASYNCAPI_LINK: &str =
    "Messages the service publishes and receives: its [AsyncAPI document](/asyncapi.json).";

/// Declares the credentials the edge accepts ([`declare_in_openapi`]), the
/// [`PROBLEM_SCHEMA`] schema, the link to the AsyncAPI document
/// ([`ASYNCAPI_LINK`], in `info.description`), and on every operation each status the edge
/// may answer for it (see the module docs), leaving the responses the
/// service declared itself as they are (a problem schema added where they
/// have none).
///
/// ```
/// use chassis_web::ChassisConfig;
/// use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
/// use utoipa::openapi::{OpenApiBuilder, PathsBuilder};
///
/// let mut api = OpenApiBuilder::new()
///     .paths(PathsBuilder::new().path(
///         "/orders",
///         PathItem::new(HttpMethod::Post, OperationBuilder::new().request_body(Some(Default::default()))),
///     ))
///     .build();
/// let mut chassis = ChassisConfig::default();
/// chassis.security.auth.api_keys = vec!["k".into()];
/// chassis_web::openapi::document(&mut api, &chassis);
/// let doc = serde_json::to_value(&api).unwrap();
/// let responses = &doc["paths"]["/orders"]["post"]["responses"];
/// assert!(doc["info"]["description"].as_str().unwrap().contains("(/asyncapi.json)"));
/// for status in ["400", "401", "413", "415", "422", "429", "500", "503"] {
///     assert_eq!(
///         responses[status]["content"]["application/problem+json"]["schema"]["$ref"],
///         "#/components/schemas/Problem",
///         "{status}"
///     );
/// }
/// ```
pub fn document(api: &mut OpenApi, chassis: &ChassisConfig) {
    let security = &chassis.security;
    let description = api.info.description.get_or_insert_with(String::new);
    if !description.contains(ASYNCAPI_LINK) {
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(ASYNCAPI_LINK);
    }
    declare_in_openapi(api, &security.auth);
    api.components
        .get_or_insert_with(Default::default)
        .schemas
        .insert(PROBLEM_SCHEMA.to_owned(), RefOr::T(problem_schema()));
    let allow = AllowList::new(&security.auth.allow);
    for (path, item) in api.paths.paths.iter_mut() {
        let open = !security.auth.enabled || allow.contains(path);
        for operation in operations(item) {
            let has_body = operation.request_body.is_some();
            let has_params = path.contains('{')
                || operation.parameters.as_ref().is_some_and(|params| {
                    params.iter().any(|p| match p {
                        RefOr::T(p) => {
                            matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query)
                        }
                        // A shared parameter: assume it can be malformed.
                        RefOr::Ref(_) => true,
                    })
                });
            let mut edge: Vec<(u16, &str)> = Vec::new();
            if has_body || has_params {
                edge.push((
                    400,
                    "A path or query parameter, or the body, does not parse (e.g. an id that \
                     is not a UUID, a body that is not JSON)",
                ));
            }
            if !open {
                edge.push((
                    401,
                    "No credentials, or not valid ones (`WWW-Authenticate` names the accepted \
                     schemes)",
                ));
                if !security.auth.jwt.required_scope.is_empty() {
                    edge.push((403, "The token does not grant the required scope"));
                }
            }
            if has_body {
                edge.push((
                    413,
                    "The body is larger than the service accepts (`http.body_limit`)",
                ));
                edge.push((415, "The body is not sent as `application/json`"));
                edge.push((
                    422,
                    "The body does not match the schema, or breaks a rule of the service; \
                     `errors[].field` names each field",
                ));
            }
            if security.rate_limit.enabled {
                edge.push((
                    429,
                    "The client exceeded its request rate; `Retry-After` says when to retry",
                ));
            }
            edge.push((500, "The service failed; the log has the details"));
            edge.push((
                503,
                "The service is at its concurrency limit or the request took too long; retry \
                 later",
            ));
            let responses = &mut operation.responses.responses;
            for (status, description) in edge {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::T(problem_response(description)));
            }
            for (status, response) in responses.iter_mut() {
                if status.starts_with(['4', '5'])
                    && let RefOr::T(response) = response
                {
                    give_problem_schema(response);
                }
            }
        }
    }
}

fn problem_ref() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(PROBLEM_SCHEMA))
}

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new().schema(Some(problem_ref())).build(),
        )
        .build()
}

/// An error response the service declared: its problem+json content gets the
/// schema when it has none; one without any content is answered as a
/// problem all the same.
fn give_problem_schema(response: &mut Response) {
    let content = response
        .content
        .entry(PROBLEM_JSON.to_owned())
        .or_insert_with(|| RefOr::T(ContentBuilder::new().build()));
    if let RefOr::T(content) = content
        && content.schema.is_none()
    {
        content.schema = Some(problem_ref());
    }
}

/// RFC 9457 problem details as the chassis writes them.
fn problem_schema() -> Schema {
    let text = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
    };
    let field_error = ObjectBuilder::new()
        .property("field", text("The field's path (`items[2].quantity`)"))
        .property("detail", text("What is wrong with it"))
        .required("field")
        .required("detail");
    Schema::Object(
        ObjectBuilder::new()
            .description(Some(
                "RFC 9457 problem details; extension members may be added.",
            ))
            .property(
                "type",
                text("A URI naming the problem type (`about:blank` when the status says it all)"),
            )
            .property("title", text("Short summary of the problem type"))
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                    .minimum(Some(100))
                    .maximum(Some(599))
                    .description(Some("The HTTP status code")),
            )
            .property("detail", text("Explanation of this occurrence"))
            .property("instance", text("The request path"))
            .property(
                "correlation_id",
                text("The request's correlation id (`x-correlation-id`)"),
            )
            .property(
                "errors",
                ArrayBuilder::new()
                    .items(field_error)
                    .description(Some("Each invalid field (422)")),
            )
            .required("type")
            .required("title")
            .required("status")
            .build(),
    )
}

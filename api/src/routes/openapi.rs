//! `GET /openapi.json`: the OpenAPI 3 document. Its paths are collected from the handlers as
//! they are registered (`routes::mount`); this module adds what no handler carries (title,
//! tags, shared schemas), the request body's rules under this deployment's limits, and the
//! access rules that hold for every route alike: the `api_key` scheme, which routes are public
//! (the guard's own list, `auth::guard::PUBLIC`), which need the operator scope, and the
//! 401/403/429 answers of the protected ones. Adding those here, by walking every path, means
//! a new route cannot be documented without them.

use actix_web::{HttpResponse, route, web};
use portfolio_engine::request::{RequestLimits, request_schema};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Deprecated, ObjectBuilder, OpenApi as Document, PathItem, Ref, RefOr,
    ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};

use crate::auth::guard::PUBLIC;
use crate::error::{PROBLEM_JSON, Problem};
use crate::routes::charts::ResultChart;

/// The name of the security scheme in the document.
pub(crate) const SCHEME: &str = "api_key";
/// Paths that need a key with the `operator` scope (their handlers require it).
pub(crate) const OPERATOR_PATHS: [&str; 2] = ["/queue/stats", "/queue/charts/depth.svg"];
/// Operations that change a tenant's jobs, so need the `simulate` scope (an operator-only key
/// gets 403).
const SIMULATE_OPERATIONS: [(&str, &str); 3] =
    [("post", "/simulations"), ("post", "/run_simulation"), ("delete", "/simulations/{id}")];
/// Kept for clients of the old app; new clients use `POST /simulations`.
const DEPRECATED_OPERATIONS: [(&str, &str); 1] = [("post", "/run_simulation")];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "portfolio-mc",
        description = "Retirement-portfolio Monte Carlo simulations as a job queue: submit a \
                       request, poll its result. Errors are RFC 9457 problem documents. Every \
                       route except the health checks, the pages and their assets needs \
                       `Authorization: Bearer <key>`."
    ),
    components(schemas(Problem, portfolio_engine::FieldError, ResultChart)),
    tags(
        (name = "simulations", description = "Submit and cancel jobs"),
        (name = "results", description = "Jobs, progress and results"),
        (name = "charts", description = "Charts of a result and of the queue, as SVG"),
        (name = "operations", description = "Health, readiness, metrics, queue statistics"),
        (name = "web", description = "The web frontend and the operators' dashboard"),
    )
)]
pub(crate) struct ApiDoc;

/// Completes the document once every handler's path is in it.
pub(crate) fn complete(document: &mut Document, limits: RequestLimits) {
    RequestRules(limits).modify(document);
    Access.modify(document);
    JobLinks.modify(document);
    name_the_assets(document);
}

/// The request body's schema, generated from the engine's rules with this deployment's cap on
/// `n_scenarios`.
pub(crate) struct RequestRules(pub(crate) RequestLimits);

impl Modify for RequestRules {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert("SimulationRequestInput".to_owned(), request_schema(&self.0).into());
    }
}

/// Who may call what: the bearer scheme required by default, `security: []` on the public
/// paths, the operator scope on the operators' paths, the simulate scope on the operations
/// that submit or cancel, and on every protected operation the
/// answers the access checks give (401, 403, 429) as shared responses.
struct Access;

impl Modify for Access {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("pmc_<prefix>_<secret>")
                    .description(Some(
                        "An API key, made with `portfolio-api keys create`. Its scopes: \
                         `simulate` (submit, read and cancel the key's own jobs) and \
                         `operator` (queue statistics, the dashboard's charts, every \
                         tenant's jobs read-only).",
                    ))
                    .build(),
            ),
        );
        for (name, response) in shared_responses() {
            components.responses.insert(name.to_owned(), RefOr::T(response));
        }
        openapi.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);

        for (path, item) in openapi.paths.paths.iter_mut() {
            // The guard's own list, so the document says what the guard does.
            let public = PUBLIC.contains(&path.as_str());
            let operator = OPERATOR_PATHS.contains(&path.as_str());
            for (method, operation) in operations(item) {
                if DEPRECATED_OPERATIONS.contains(&(method, path.as_str())) {
                    operation.deprecated = Some(Deprecated::True);
                }
                // Every 503 of ours (a dependency down, the queue full) says when to come back.
                if let Some(RefOr::T(unavailable)) = operation.responses.responses.get_mut("503") {
                    unavailable.headers.insert(
                        "Retry-After".to_owned(),
                        string_header("Seconds to wait before trying again"),
                    );
                }
                if public {
                    operation.security = Some(Vec::new());
                    continue;
                }
                if operator {
                    operation.security = Some(vec![SecurityRequirement::new(SCHEME, ["operator"])]);
                } else if SIMULATE_OPERATIONS.contains(&(method, path.as_str())) {
                    operation.security = Some(vec![SecurityRequirement::new(SCHEME, ["simulate"])]);
                }
                let answers = &mut operation.responses.responses;
                // The rate limit's headers come on the answers of a keyed request once its key
                // is known and Redis has counted it (the guard adds them to the handler's answer).
                for answer in answers.values_mut() {
                    if let RefOr::T(answer) = answer {
                        for (name, header) in rate_limit_headers() {
                            answer.headers.insert(name.to_owned(), header);
                        }
                    }
                }
                answers.insert("401".to_owned(), response_ref("Unauthorized"));
                if operator || SIMULATE_OPERATIONS.contains(&(method, path.as_str())) {
                    answers.insert("403".to_owned(), response_ref("Forbidden"));
                }
                answers.insert("429".to_owned(), response_ref("TooManyRequests"));
            }
        }
    }
}

/// The operations of a path with their lower-case method names.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("head", &mut item.head),
        ("post", &mut item.post),
        ("put", &mut item.put),
        ("patch", &mut item.patch),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|op| (method, op)))
}

fn response_ref(name: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::Ref(Ref::from_response_name(name))
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

/// The headers of the tenant's rate limit (IETF httpapi draft), on every keyed answer.
fn rate_limit_headers() -> [(&'static str, utoipa::openapi::header::Header); 2] {
    [
        ("RateLimit", string_header("The remaining budget (IETF httpapi draft)")),
        ("RateLimit-Policy", string_header("The budget's size and window")),
    ]
}

/// The answers of the access checks, shared by every protected operation.
fn shared_responses() -> [(&'static str, utoipa::openapi::Response); 3] {
    let problem = || ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    [
        (
            "Unauthorized",
            ResponseBuilder::new()
                .description(
                    "No key, or a key that is unknown or revoked (the answer does not say which)",
                )
                .content(PROBLEM_JSON, problem())
                .header("WWW-Authenticate", string_header("`Bearer realm=\"portfolio-mc\"`"))
                .build(),
        ),
        (
            "Forbidden",
            ResponseBuilder::new()
                .description("The key lacks the scope this operation needs")
                .content(PROBLEM_JSON, problem())
                .build(),
        ),
        (
            "TooManyRequests",
            rate_limit_headers().into_iter().fold(
                ResponseBuilder::new()
                    .description(
                        "Over the key's rate limit (submits and reads have separate budgets) or, \
                         for a submit, over the key's quota of unfinished jobs",
                    )
                    .content(PROBLEM_JSON, problem())
                    .header("Retry-After", string_header("Seconds to wait before trying again")),
                |response, (name, header)| response.header(name, header),
            )
            .build(),
        ),
    ]
}

/// Links from the job a submit answers with to every operation on a job (`{id}` in its path),
/// so a client, or a tool walking the document, can follow a submit to its result, charts,
/// table and cancel without guessing that `id` is the path's `{id}`.
struct JobLinks;

impl Modify for JobLinks {
    fn modify(&self, openapi: &mut Document) {
        let mut on_a_job: Vec<String> = Vec::new();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path.contains("{id}") {
                on_a_job.extend(operations(item).filter_map(|(_, op)| op.operation_id.clone()));
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(submit) = item.post.as_mut().filter(|_| !path.contains('{')) else {
                continue;
            };
            for status in ["200", "202"] {
                if let Some(RefOr::T(response)) = submit.responses.responses.get_mut(status) {
                    for operation_id in &on_a_job {
                        let link = LinkBuilder::new()
                            .operation_id(operation_id)
                            .parameter("id", "$response.body#/id")
                            .build();
                        response.links.insert(operation_id.clone(), RefOr::T(link));
                    }
                }
            }
        }
    }
}

/// `/assets/{name}` takes one of the names the handler serves.
fn name_the_assets(openapi: &mut Document) {
    let Some(get) = openapi.paths.paths.get_mut("/assets/{name}").and_then(|i| i.get.as_mut())
    else {
        return;
    };
    for parameter in get.parameters.iter_mut().flatten().filter(|p| p.name == "name") {
        parameter.schema = Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(crate::routes::pages::asset_names()))
                .into(),
        );
    }
}

/// The finished document, as `/openapi.json` serves it: serialised once, when the app is built.
pub(crate) struct Served(serde_json::Value);

impl Served {
    pub(crate) fn new(document: &Document, limits: &RequestLimits) -> Self {
        let mut json = serde_json::to_value(document).expect("the document always serialises");
        camel_case_links(&mut json);
        // The request body's `sweep` member, written as JSON Schema (a `oneOf` of two axis forms
        // that utoipa's builders would only spell at length).
        if let Some(properties) = json
            .pointer_mut("/components/schemas/SimulationRequestInput/properties")
            .and_then(serde_json::Value::as_object_mut)
        {
            properties.insert(
                "sweep".to_owned(),
                portfolio_engine::sweep::Sweep::schema(limits.max_sweep_cells),
            );
        }
        Self(json)
    }
}

/// utoipa 5.5 writes a Link object's fields in snake case (`operation_id`); OpenAPI names
/// them `operationId`, `operationRef` and `requestBody`, and tools ignore the others.
fn camel_case_links(json: &mut serde_json::Value) {
    use serde_json::Value;
    match json {
        Value::Object(map) => {
            if let Some(Value::Object(links)) = map.get_mut("links") {
                for link in links.values_mut().filter_map(Value::as_object_mut) {
                    for (snake, camel) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(value) = link.remove(snake) {
                            link.insert(camel.to_owned(), value);
                        }
                    }
                }
            }
            map.values_mut().for_each(camel_case_links);
        }
        Value::Array(items) => items.iter_mut().for_each(camel_case_links),
        _ => {}
    }
}

/// This document.
#[utoipa::path(get, tag = "operations",
    responses(
        (status = 200, description = "OpenAPI 3 document", content_type = "application/json"),
        (status = 503, description = "Postgres unavailable (the key is looked up there)", body = Problem, content_type = "application/problem+json"),
    ))]
#[route("/openapi.json", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all)]
pub(crate) async fn openapi_json(document: web::Data<Served>) -> HttpResponse {
    HttpResponse::Ok().json(&document.0)
}

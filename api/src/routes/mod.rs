//! Routes, one file per group, registered in one place: [`mount`] registers each handler with
//! its OpenAPI path (utoipa-actix-web reads both from the handler's attributes), so the
//! document cannot miss a route, and then answers the methods a path does not serve with a
//! 405 naming those it does.

pub(crate) mod cells;
pub(crate) mod charts;
pub(crate) mod exports;
pub(crate) mod health;
pub(crate) mod openapi;
pub(crate) mod pages;
pub(crate) mod queue_stats;
pub(crate) mod results;
pub(crate) mod scrape;
pub(crate) mod simulations;
pub(crate) mod sweeps;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpResponse, ResponseError, web};
use portfolio_engine::request::RequestLimits;
use utoipa::OpenApi;
use utoipa::openapi::PathItem;
use utoipa_actix_web::AppExt;

use crate::error::{ApiError, shortened};

/// Every route of the API on `app`, with its OpenAPI document at `/openapi.json`, the rules of
/// a request under `limits`, the 405s and the 404 fallback.
pub(crate) fn mount<T, B>(app: App<T>, limits: RequestLimits) -> App<T>
where
    B: MessageBody,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        >,
{
    let (app, mut document) = app
        .into_utoipa_app()
        .openapi(openapi::ApiDoc::openapi())
        .service(simulations::submit)
        .service(simulations::run_simulation)
        .service(simulations::cancel)
        .service(results::list)
        .service(results::get)
        .service(cells::cell)
        // Before `result_chart`, whose `{chart}.svg` would take `heatmap.svg` for its own.
        .service(sweeps::heatmap_svg)
        .service(charts::result_chart)
        .service(sweeps::sweep_csv)
        .service(sweeps::cell_fan)
        .service(exports::table_csv)
        .service(queue_stats::queue_stats)
        .service(charts::queue_depth)
        .service(pages::index)
        .service(pages::dashboard)
        .service(pages::asset)
        .service(health::health)
        .service(health::ready)
        .service(openapi::openapi_json)
        .split_for_parts();
    openapi::complete(&mut document, limits);
    // The handlers' resources match their own method only; a request with another method
    // falls through to this resource of the same path.
    let app = document.paths.paths.iter().fold(app, |app, (path, item)| {
        let allow = methods(item).join(", ");
        app.service(web::resource(path.as_str()).to(move || {
            let allow = allow.clone();
            async move { method_not_allowed(&allow) }
        }))
    });
    app.app_data(web::Data::new(openapi::Served::new(&document, &limits)))
        .app_data(web::Data::new(pages::Rules::new(&limits)))
        .default_service(web::to(not_found))
}

/// The methods a path serves, as an `Allow` header lists them. Every GET route answers HEAD
/// too (`#[route(.., method = "GET", method = "HEAD")]`) without a HEAD operation of its own in
/// the document, so HEAD is listed wherever GET is.
fn methods(item: &PathItem) -> Vec<&'static str> {
    [
        ("GET", &item.get),
        ("HEAD", if item.get.is_some() { &item.get } else { &item.head }),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("PATCH", &item.patch),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter(|(_, operation)| operation.is_some())
    .map(|(method, _)| method)
    .collect()
}

/// The 405 problem, with `Allow` naming the methods the path serves (RFC 9110 §15.5.6).
fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed.error_response();
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// The answer to a path no route serves.
#[tracing::instrument(skip_all)]
pub(crate) async fn not_found(
    req: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route {} {}", req.method(), shortened(req.path()))))
}

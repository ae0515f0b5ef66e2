//! Routes, one file per group, registered in one place.

pub mod charts;
pub mod exports;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod queue_stats;
pub mod results;
pub mod simulations;

use actix_web::web;

use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/simulations")
            .route(web::post().to(simulations::submit))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/run_simulation")
            .route(web::post().to(simulations::run_simulation))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/simulations/{id}")
            .route(web::delete().to(simulations::cancel))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/results")
            .route(web::get().to(results::list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/results/{id}")
            .route(web::get().to(results::get))
            .default_service(web::to(method_not_allowed)),
    )
    .service(get("/results/{id}/charts/{chart}").route(web::get().to(charts::result_chart)))
    .service(get("/results/{id}/table.csv").route(web::get().to(exports::table_csv)))
    .service(get("/queue/stats").route(web::get().to(queue_stats::queue_stats)))
    .service(get("/queue/charts/depth.svg").route(web::get().to(charts::queue_depth)))
    .service(get("/").route(web::get().to(pages::index)))
    .service(get("/dashboard").route(web::get().to(pages::dashboard)))
    .service(get("/assets/{name}").route(web::get().to(pages::asset)))
    .route("/health", web::get().to(health::health))
    .route("/ready", web::get().to(health::ready))
    .route("/metrics", web::get().to(metrics::metrics))
    .route("/openapi.json", web::get().to(openapi::openapi_json));
}

/// A resource that answers other methods with a 405 problem (add its GET route).
fn get(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route {} {}", req.method(), req.path())))
}

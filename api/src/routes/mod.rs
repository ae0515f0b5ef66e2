//! Routes, one file per group, registered in one place.

pub mod health;
pub mod metrics;
pub mod openapi;
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
    .route("/health", web::get().to(health::health))
    .route("/ready", web::get().to(health::ready))
    .route("/metrics", web::get().to(metrics::metrics))
    .route("/openapi.json", web::get().to(openapi::openapi_json));
}

async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route {} {}", req.method(), req.path())))
}

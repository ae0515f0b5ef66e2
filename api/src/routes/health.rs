//! `GET /health`: the process is up (touches nothing, for liveness probes). `GET /ready`: Redis
//! and Postgres answer (for load balancers and readiness probes); a 503 names what is down.

use std::time::Duration;

use actix_web::http::header;
use actix_web::route;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, PROBLEM_JSON, Problem};
use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    #[schema(example = "ok")]
    pub(crate) status: &'static str,
    pub(crate) version: &'static str,
}

/// The process is up.
#[utoipa::path(get, tag = "operations", responses((status = 200, description = "The process is alive (it reaches neither store: see `/ready`)", body = Health)))]
#[route("/health", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all)]
pub(crate) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

/// Readiness of each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Readiness {
    #[schema(example = "ok")]
    pub(crate) postgres: String,
    #[schema(example = "ok")]
    pub(crate) redis: String,
}

/// Redis and Postgres are reachable.
#[utoipa::path(
    get,
    tag = "operations",
    responses(
        (status = 200, description = "Both reachable", body = Readiness),
        (status = 503, description = "A problem naming what is down, with `checks` per dependency", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/ready", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all)]
pub(crate) async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.write_pool.clone();
    let read_pool = state.read_pool.clone();
    let postgres = tokio::time::timeout(
        CHECK_TIMEOUT,
        portfolio_shared::telemetry::spawn_blocking_with_tracing(move || -> anyhow::Result<()> {
            use diesel::RunQueryDsl;
            for p in [&pool, &read_pool] {
                let mut pooled = p.get_timeout(CHECK_TIMEOUT)?;
                let conn: &mut diesel::PgConnection = &mut pooled;
                diesel::sql_query("SELECT 1").execute(conn)?;
            }
            Ok(())
        }),
    );
    let redis = tokio::time::timeout(CHECK_TIMEOUT, state.queue.ping());
    let (postgres, redis) = futures_util::join!(postgres, redis);
    let postgres = match postgres {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    let redis = match redis {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    // The page is public: the causes (host names, driver messages) go to the log, and the
    // answer says only what is down.
    for (name, outcome) in [("postgres", &postgres), ("redis", &redis)] {
        if let Err(e) = outcome {
            tracing::warn!(dependency = name, error = %e, "not ready");
        }
    }
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(_) => "unavailable".to_owned(),
    };
    let checks = Readiness { postgres: show(&postgres), redis: show(&redis) };
    if postgres.is_ok() && redis.is_ok() {
        return HttpResponse::Ok().json(checks);
    }
    let down: Vec<&str> = [("postgres", &postgres), ("redis", &redis)]
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| *n)
        .collect();
    let what = down.join(" and ");
    let mut problem = ApiError::Unavailable {
        what: "a dependency",
        retry_after_secs: 5,
        unsettled: false,
        source: anyhow::anyhow!("{what} down"),
    }
    .problem();
    problem.detail = format!("{what} unreachable");
    let mut body = serde_json::to_value(problem).expect("serialisable");
    body["checks"] = serde_json::to_value(&checks).expect("serialisable");
    HttpResponse::ServiceUnavailable()
        .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
        .insert_header((header::RETRY_AFTER, "5"))
        .json(body)
}

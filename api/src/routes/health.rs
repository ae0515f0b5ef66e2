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

/// Readiness of each dependency: `ok`, `unavailable`, for Postgres `not migrated` (it lacks
/// migrations this build needs: `portfolio-api migrate`), for Redis `full` (at `maxmemory`,
/// refusing writes) or `read-only` (a replica).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Readiness {
    #[schema(example = "ok")]
    pub(crate) postgres: String,
    #[schema(example = "ok")]
    pub(crate) redis: String,
}

/// Why a dependency is not ready.
enum NotReady {
    /// It does not answer; the cause goes to the log.
    Unreachable(String),
    /// Postgres answers, without these migrations applied.
    NotMigrated(Vec<String>),
    /// Redis answers and refuses writes: `full` or `read-only`.
    RefusesWrites(&'static str, String),
}

impl NotReady {
    fn shown(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unavailable",
            Self::NotMigrated(_) => "not migrated",
            Self::RefusesWrites(why, _) => why,
        }
    }
}

/// Redis and Postgres are reachable, Redis takes writes, and Postgres has every migration this
/// build needs.
#[utoipa::path(
    get,
    tag = "operations",
    responses(
        (status = 200, description = "Both reachable, Redis takes writes, and the database has every migration of this build", body = Readiness),
        (status = 503, description = "A problem naming what is down, with `checks` per dependency: `unavailable`, a Redis that refuses writes (`full` at maxmemory, `read-only` on a replica), or a database that lacks migrations (`not migrated`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/ready", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all)]
pub(crate) async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.write_pool.clone();
    let read_pool = state.read_pool.clone();
    let postgres = tokio::time::timeout(
        CHECK_TIMEOUT,
        portfolio_shared::telemetry::spawn_blocking_with_tracing(
            move || -> anyhow::Result<Vec<String>> {
                use diesel::RunQueryDsl;
                let mut pooled = read_pool.get_timeout(CHECK_TIMEOUT)?;
                let conn: &mut diesel::PgConnection = &mut pooled;
                diesel::sql_query("SELECT 1").execute(conn)?;
                // The primary is where migrations are applied; a replica follows it.
                let mut pooled = pool.get_timeout(CHECK_TIMEOUT)?;
                portfolio_shared::db::missing_migrations(&mut pooled)
            },
        ),
    );
    let redis = tokio::time::timeout(CHECK_TIMEOUT, state.queue.write_probe());
    let (postgres, redis) = futures_util::join!(postgres, redis);
    let postgres = match postgres {
        Ok(Ok(Ok(missing))) if missing.is_empty() => Ok(()),
        Ok(Ok(Ok(missing))) => Err(NotReady::NotMigrated(missing)),
        Ok(Ok(Err(e))) => Err(NotReady::Unreachable(format!("{e:#}"))),
        Ok(Err(e)) => Err(NotReady::Unreachable(e.to_string())),
        Err(_) => Err(NotReady::Unreachable(format!("no answer within {CHECK_TIMEOUT:?}"))),
    };
    let redis = match redis {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.code() == Some("OOM") => {
            Err(NotReady::RefusesWrites("full", e.to_string()))
        }
        Ok(Err(e)) if e.code() == Some("READONLY") => {
            Err(NotReady::RefusesWrites("read-only", e.to_string()))
        }
        Ok(Err(e)) => Err(NotReady::Unreachable(e.to_string())),
        Err(_) => Err(NotReady::Unreachable(format!("no answer within {CHECK_TIMEOUT:?}"))),
    };
    // The page is public: the causes (host names, driver messages) go to the log, and the
    // answer says only what is down.
    for (name, outcome) in [("postgres", &postgres), ("redis", &redis)] {
        match outcome {
            Ok(()) => {}
            Err(NotReady::Unreachable(e) | NotReady::RefusesWrites(_, e)) => {
                tracing::warn!(dependency = name, error = %e, "not ready");
            }
            Err(NotReady::NotMigrated(missing)) => tracing::error!(
                dependency = name,
                missing = %missing.join(", "),
                "not ready: the database lacks this build's migrations (portfolio-api migrate)"
            ),
        }
    }
    let show = |r: &Result<(), NotReady>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.shown().to_owned(),
    };
    let checks = Readiness { postgres: show(&postgres), redis: show(&redis) };
    if postgres.is_ok() && redis.is_ok() {
        return HttpResponse::Ok().json(checks);
    }
    let what = [("postgres", &postgres), ("redis", &redis)]
        .iter()
        .filter_map(|(name, r)| match r {
            Ok(()) => None,
            Err(NotReady::Unreachable(_)) => Some(format!("{name} unreachable")),
            Err(NotReady::RefusesWrites(why, _)) => Some(format!("{name} refuses writes ({why})")),
            Err(NotReady::NotMigrated(missing)) => Some(format!(
                "{name} lacks {} migration(s) this build needs (portfolio-api migrate)",
                missing.len()
            )),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut problem = ApiError::Unavailable {
        what: "a dependency",
        retry_after_secs: 5,
        unsettled: false,
        source: anyhow::anyhow!("{what}"),
    }
    .problem();
    problem.detail = what;
    let mut body = serde_json::to_value(problem).expect("serialisable");
    body["checks"] = serde_json::to_value(&checks).expect("serialisable");
    HttpResponse::ServiceUnavailable()
        .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
        .insert_header((header::RETRY_AFTER, "5"))
        .json(body)
}

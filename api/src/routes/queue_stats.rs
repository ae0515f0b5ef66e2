//! `GET /queue/stats`: the queue and its workers as Redis has them now, and what the jobs did
//! lately as Postgres recorded it (throughput, submit-to-result time, failures). Each source
//! is read on its own: when one is down the answer still carries the other's part, with the
//! missing part `null` and the source marked unavailable, so the operators' dashboard keeps
//! showing what can be known during an incident.

use std::time::Duration;

use actix_web::http::header;
use actix_web::route;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, TimeZone, Utc};
use portfolio_shared::queue::{QueueDepth, WorkerHeartbeat};
use portfolio_shared::store::stats::{self, FinishedInWindow, LatencySummary, RecentFailure};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Caller, Scope};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// Windows of the throughput figures, in minutes.
pub(crate) const THROUGHPUT_WINDOWS: [i32; 3] = [1, 5, 15];
/// Window of the latency percentiles, in minutes.
pub(crate) const LATENCY_WINDOW: i32 = 5;
/// Window of the error rate, in minutes (the widest throughput window).
pub(crate) const ERROR_RATE_WINDOW: i32 = 15;
pub(crate) const RECENT_FAILURES: i64 = 20;
/// Workers whose last heartbeat is older than this are no longer listed (and the leader
/// forgets them: `Queue::remember_workers`).
pub(crate) const DEAD_WORKER_SHOWN_FOR: Duration = Duration::from_secs(3600);

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueStats {
    pub(crate) generated_at: DateTime<Utc>,
    pub(crate) redis: Source,
    pub(crate) postgres: Source,
    /// From Redis; `null` when Redis is unavailable.
    pub(crate) queue: Option<QueueNow>,
    /// From Postgres; `null` when Postgres is unavailable.
    pub(crate) jobs: Option<JobsLately>,
}

/// Whether a source answered.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Source {
    pub(crate) available: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// The queue right now.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueNow {
    /// Due and waiting for a worker.
    pub(crate) ready: u64,
    /// Waiting for a future time (retry back-off).
    pub(crate) scheduled: u64,
    /// Claimed by a worker.
    pub(crate) running: u64,
    /// Given up on by the queue itself (should stay 0).
    pub(crate) dead: u64,
    /// Age of the oldest ready job; `null` when none is waiting.
    pub(crate) oldest_ready_age_seconds: Option<f64>,
    pub(crate) workers_alive: u64,
    /// Workers alive, and those that stopped reporting within the last hour without stopping
    /// cleanly (killed, or cut off); newest heartbeat first. A worker that stops cleanly, or
    /// restarts under a new name after a Redis error, leaves the list at once.
    pub(crate) workers: Vec<WorkerView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkerView {
    pub(crate) name: String,
    /// Heartbeat within the orphan window.
    pub(crate) alive: bool,
    pub(crate) last_heartbeat: DateTime<Utc>,
    pub(crate) seconds_since_heartbeat: u64,
    /// Jobs it has claimed; a unit of a sweep is shown as its sweep (the job its owner reads),
    /// once however many of its units the worker holds.
    pub(crate) current_jobs: Vec<Uuid>,
}

/// What the jobs did lately, by the database's clock.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobsLately {
    /// Jobs finished in the last 1, 5 and 15 minutes.
    pub(crate) throughput: Vec<Throughput>,
    pub(crate) latency: Latency,
    pub(crate) error_rate: ErrorRate,
    /// The latest failed jobs, newest first (at most 20).
    pub(crate) recent_failures: Vec<Failure>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Throughput {
    pub(crate) window_minutes: i32,
    /// Jobs that reached a terminal state in the window, and their split by state.
    pub(crate) finished: i64,
    pub(crate) succeeded: i64,
    pub(crate) failed: i64,
    pub(crate) cancelled: i64,
    /// `finished` per minute.
    pub(crate) per_minute: f64,
}

/// Submit-to-result time (`finished_at − created_at`) of the jobs that succeeded in the
/// window.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Latency {
    pub(crate) window_minutes: i32,
    pub(crate) jobs: i64,
    pub(crate) p50_seconds: Option<f64>,
    pub(crate) p95_seconds: Option<f64>,
}

/// Failed jobs among the jobs that finished in the window (cancelled ones included in the
/// denominator).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorRate {
    pub(crate) window_minutes: i32,
    pub(crate) failed: i64,
    pub(crate) finished: i64,
    /// `failed / finished`; `null` when nothing finished.
    pub(crate) rate: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Failure {
    pub(crate) id: Uuid,
    pub(crate) error: Option<String>,
    pub(crate) failed_at: DateTime<Utc>,
    pub(crate) attempts: i32,
}

/// The queue, its workers, and recent throughput, latency and failures.
#[utoipa::path(
    get,
    tag = "operations",
    responses(
        (status = 200, description = "Statistics; a source that did not answer is marked unavailable and its part is null", body = QueueStats),
        (status = 503, description = "Neither Redis nor Postgres answered", body = Problem, content_type = "application/problem+json"),
    )
)]
#[route("/queue/stats", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all)]
pub(crate) async fn queue_stats(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Operator)?;
    let (queue, jobs) = tokio::join!(queue_now(&state), jobs_lately(&state));
    // Postgres just answered (or did not: then the units stay, rather than wait for it again).
    let queue = match queue {
        Ok(now) if jobs.is_ok() => Ok(units_as_their_sweeps(&state, now).await),
        other => other,
    };
    if let (Err(redis), Err(postgres)) = (&queue, &jobs) {
        tracing::warn!(%redis, %postgres, "queue stats: no source answered");
        return Err(ApiError::unavailable(
            "redis and postgres",
            anyhow::anyhow!("neither source answered"),
        ));
    }
    let source =
        |error: Option<&String>| Source { available: error.is_none(), error: error.cloned() };
    let body = QueueStats {
        generated_at: Utc::now(),
        redis: source(queue.as_ref().err()),
        postgres: source(jobs.as_ref().err()),
        queue: queue.ok(),
        jobs: jobs.ok(),
    };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// The workers' current jobs with each sweep's unit replaced by its sweep. Without Postgres
/// they stay as Redis has them.
async fn units_as_their_sweeps(state: &AppState, mut now: QueueNow) -> QueueNow {
    let ids: Vec<Uuid> = now.workers.iter().flat_map(|w| w.current_jobs.iter().copied()).collect();
    if ids.is_empty() {
        return now;
    }
    let sweeps = match state.read(move |conn| stats::sweeps_of_units(conn, &ids)).await {
        Ok(pairs) => pairs.into_iter().collect::<std::collections::HashMap<_, _>>(),
        Err(e) => {
            tracing::warn!(error = ?e, "queue stats: units not resolved to their sweeps");
            return now;
        }
    };
    for worker in &mut now.workers {
        let mut shown = Vec::with_capacity(worker.current_jobs.len());
        for id in &worker.current_jobs {
            let job = sweeps.get(id).copied().unwrap_or(*id);
            if !shown.contains(&job) {
                shown.push(job);
            }
        }
        worker.current_jobs = shown;
    }
    now
}

async fn queue_now(state: &AppState) -> Result<QueueNow, String> {
    let queue = &state.queue;
    let read = state.redis(async {
        let workers = queue.workers().await.map_err(anyhow::Error::from)?;
        let depth = queue.depth_with(&workers).await.map_err(anyhow::Error::from)?;
        // A dead worker leaves the workers set once another worker's orphan recovery runs;
        // the leader's record still has it.
        let gone = queue.gone_workers(&workers).await.map_err(anyhow::Error::from)?;
        Ok::<_, anyhow::Error>((depth, workers, gone))
    });
    match read.await {
        Ok((depth, workers, gone)) => Ok(queue_view(state, depth, workers, gone)),
        Err(e) => {
            tracing::warn!(error = ?e, "queue stats: Redis unavailable");
            Err("Redis did not answer; see the API's log".to_owned())
        }
    }
}

/// `gone`: workers no longer in the workers set, silent whatever their last heartbeat says.
fn queue_view(
    state: &AppState,
    depth: QueueDepth,
    workers: Vec<WorkerHeartbeat>,
    gone: Vec<WorkerHeartbeat>,
) -> QueueNow {
    let listed = workers.into_iter().map(|w| (state.queue.is_alive(&w), w));
    let mut workers: Vec<WorkerView> = listed
        .chain(gone.into_iter().map(|w| (false, w)))
        .filter_map(|(alive, w)| {
            let since = w.silent_for;
            (alive || since <= DEAD_WORKER_SHOWN_FOR.as_secs()).then(|| WorkerView {
                alive,
                last_heartbeat: Utc
                    .timestamp_opt(i64::try_from(w.last_heartbeat).unwrap_or(0), 0)
                    .single()
                    .unwrap_or_default(),
                seconds_since_heartbeat: since,
                current_jobs: w.jobs,
                name: w.name,
            })
        })
        .collect();
    workers.sort_by_key(|w| w.seconds_since_heartbeat);
    QueueNow {
        ready: depth.ready,
        scheduled: depth.scheduled,
        running: depth.running,
        dead: depth.dead,
        oldest_ready_age_seconds: depth.oldest_ready_age_ms.map(|ms| ms as f64 / 1e3),
        workers_alive: depth.workers_alive,
        workers,
    }
}

async fn jobs_lately(state: &AppState) -> Result<JobsLately, String> {
    let read = state
        .read(|conn| {
            let windows = stats::finished_in_windows(conn, &THROUGHPUT_WINDOWS)?;
            let latency = stats::latency(conn, LATENCY_WINDOW)?;
            let failures = stats::recent_failures(conn, RECENT_FAILURES)?;
            Ok((windows, latency, failures))
        })
        .await;
    match read {
        Ok((windows, latency, failures)) => Ok(jobs_view(windows, latency, failures)),
        Err(e) => {
            tracing::warn!(error = %e, "queue stats: Postgres unavailable");
            Err("Postgres did not answer; see the API's log".to_owned())
        }
    }
}

fn jobs_view(
    windows: Vec<FinishedInWindow>,
    latency: LatencySummary,
    failures: Vec<RecentFailure>,
) -> JobsLately {
    let widest = windows.iter().find(|w| w.minutes == ERROR_RATE_WINDOW).copied();
    JobsLately {
        throughput: windows
            .into_iter()
            .map(|w| Throughput {
                window_minutes: w.minutes,
                finished: w.finished,
                succeeded: w.succeeded,
                failed: w.failed,
                cancelled: w.cancelled,
                per_minute: w.finished as f64 / f64::from(w.minutes.max(1)),
            })
            .collect(),
        latency: Latency {
            window_minutes: LATENCY_WINDOW,
            jobs: latency.jobs,
            p50_seconds: latency.p50_seconds,
            p95_seconds: latency.p95_seconds,
        },
        error_rate: ErrorRate {
            window_minutes: ERROR_RATE_WINDOW,
            failed: widest.map_or(0, |w| w.failed),
            finished: widest.map_or(0, |w| w.finished),
            rate: widest.filter(|w| w.finished > 0).map(|w| w.failed as f64 / w.finished as f64),
        },
        recent_failures: failures
            .into_iter()
            .map(|f| Failure {
                id: f.id,
                error: f.error,
                failed_at: f.failed_at,
                attempts: f.attempts,
            })
            .collect(),
    }
}

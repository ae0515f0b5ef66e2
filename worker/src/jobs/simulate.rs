//! The simulation job: claim the row, run the engine off the async executor while reporting
//! progress, and record the outcome exactly once.
//!
//! Every delivery is acknowledged to apalis (the handler returns `Ok`): retries, attempt
//! counting and recovery are decided here against Postgres, because apalis-redis 1.0 ignores
//! `max_attempts` and counts no attempt when it re-delivers an orphan.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::{BoxDynError, Data, WorkerContext};
use futures_util::FutureExt;
use portfolio_shared::domain::request::{RequestLimits, SimulationRequest};
use portfolio_shared::domain::{JobStatus, RequestError, SimulationRequestInput};
use portfolio_shared::engine::{self, EngineError, Progress, RunOptions};
use portfolio_shared::queue::JobEnvelope;
use portfolio_shared::store::{self, Claim, ClaimedJob, ProgressAck};
use tracing::Instrument;
use uuid::Uuid;

use crate::context::JobContext;

/// How often a running job reports progress (and refreshes its heartbeat).
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The apalis handler.
pub async fn handle(
    envelope: JobEnvelope,
    ctx: Data<Arc<JobContext>>,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    match envelope {
        JobEnvelope::Undecodable(what) => {
            tracing::warn!(worker = worker.name(), entry = %what, "dropped a queue entry that is not a job");
        }
        JobEnvelope::Job(job) => {
            let span = tracing::info_span!(
                "job",
                job_id = %job.id,
                worker = worker.name(),
                request_id = tracing::field::Empty,
                attempt = tracing::field::Empty
            );
            // A bug in this handler must not take the worker down with it: the job is then left
            // to the reconciler and the next attempt.
            let outcome = AssertUnwindSafe(run(job.id, ctx.0.clone(), worker.name().to_owned()))
                .catch_unwind()
                .instrument(span)
                .await;
            if let Err(panic) = outcome {
                tracing::error!(job_id = %job.id, panic = %panic_message(panic), "job handler panicked");
            }
        }
    }
    Ok(())
}

async fn run(id: Uuid, ctx: Arc<JobContext>, worker: String) {
    let max_attempts = ctx.settings.queue.max_attempts as i32;
    let orphan_window = ctx.orphan_window();
    let claim = {
        let worker = worker.clone();
        ctx.db_retrying("claim", move |conn| {
            store::claim(conn, id, &worker, max_attempts, orphan_window)
        })
        .await
    };
    let job = match claim {
        Some(Claim::Run(job)) => job,
        Some(Claim::Missing) => {
            tracing::warn!("no such job in Postgres; dropped the queue entry");
            return;
        }
        Some(Claim::Finished(status)) => {
            tracing::info!(%status, "job already finished; duplicate delivery acknowledged");
            if status == JobStatus::Cancelled {
                ctx.metrics.finished.with_label_values(&["cancelled"]).inc();
            }
            return;
        }
        Some(Claim::HeldElsewhere { worker: holder }) => {
            tracing::info!(holder, "job is running on a live worker; delivery acknowledged");
            return;
        }
        Some(Claim::GaveUp { attempts }) => {
            tracing::error!(attempts, "job failed: out of attempts");
            ctx.metrics.finished.with_label_values(&["failed"]).inc();
            return;
        }
        Some(Claim::NotYet { not_before }) => {
            let delay = (not_before - chrono::Utc::now()).to_std().unwrap_or_default();
            if let Err(e) = ctx.queue.enqueue_after(id, delay).await {
                tracing::warn!(error = ?e, "could not re-schedule an early delivery; the reconciler will");
            }
            return;
        }
        // Postgres stayed down: leave the job to the reconciler, which pushes it again once
        // Postgres answers and nothing holds it.
        None => return,
    };
    let span = tracing::Span::current();
    if let Some(rid) = &job.request_id {
        span.record("request_id", rid.as_str());
    }
    span.record("attempt", job.attempt);
    if job.attempt == 1 {
        let waited = (chrono::Utc::now() - job.created_at).to_std().unwrap_or_default();
        ctx.metrics.queue_wait.observe(waited.as_secs_f64());
    }
    execute(job, &ctx, &worker).await;
}

async fn execute(job: ClaimedJob, ctx: &Arc<JobContext>, worker: &str) {
    let id = job.id;
    let request = match parse_stored(&job.request) {
        Ok(r) => r,
        Err(message) => {
            // A request that no longer passes the rules cannot get better by retrying.
            record_failure(ctx, id, worker, &format!("the stored request is invalid: {message}"))
                .await;
            return;
        }
    };
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let cancel = Arc::new(AtomicBool::new(false));
    ctx.register(id, cancel.clone());
    let options = RunOptions {
        batch_size: ctx.settings.engine.batch_size,
        memory_budget: ctx.settings.engine.memory_budget_bytes,
        progress: Some(progress.clone()),
        cancel: Some(cancel.clone()),
    };
    let seed = job.seed as u64;
    let engine_pool = ctx.engine_pool.clone();
    let mut run = portfolio_shared::telemetry::spawn_blocking_with_tracing(move || {
        engine_pool.install(|| engine::run(&request, seed, &options))
    });
    tracing::info!("running");

    let mut gone = false;
    let mut last_reported = (u64::MAX, u64::MAX);
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            () = tokio::time::sleep(PROGRESS_EVERY) => {
                let (done, total) = progress.snapshot();
                if (done, total) == last_reported && started.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                last_reported = (done, total);
                let worker = worker.to_owned();
                let ack = ctx
                    .db_once(move |conn| store::report_progress(conn, id, &worker, done as i32, total as i32))
                    .await;
                match ack {
                    Some(ProgressAck::Continue) | None => {}
                    Some(ProgressAck::Cancel) => {
                        tracing::info!("cancel requested; stopping between batches");
                        cancel.store(true, Ordering::Relaxed);
                    }
                    Some(ProgressAck::Gone) => {
                        tracing::warn!("job is no longer running here (finished elsewhere); stopping");
                        gone = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    };
    ctx.unregister(id);
    let elapsed = started.elapsed();

    match outcome {
        Ok(Ok(result)) => {
            let success = result.success_probability;
            let scenario_months = result.scenario_months;
            let batches = progress.snapshot().1 as i32;
            let json = serde_json::to_value(&result).expect("results always serialise");
            let worker_owned = worker.to_owned();
            let written = ctx
                .db_retrying_until_shutdown("store result", move |conn| {
                    store::complete(conn, id, &worker_owned, &json, success, batches)
                })
                .await;
            match written {
                Some(true) => {
                    ctx.metrics.finished.with_label_values(&["succeeded"]).inc();
                    ctx.metrics.run_time.observe(elapsed.as_secs_f64());
                    ctx.metrics.scenario_months.inc_by(scenario_months);
                    tracing::info!(
                        success_probability = success,
                        elapsed_ms = elapsed.as_millis() as u64,
                        "succeeded"
                    );
                }
                Some(false) => {
                    tracing::info!("another delivery finished the job first; result discarded")
                }
                None => tracing::warn!(
                    "could not store the result before shutdown; the job will run again"
                ),
            }
        }
        Ok(Err(EngineError::Cancelled)) => {
            if gone {
                return;
            }
            if ctx.handing_back() {
                hand_back(ctx, id, worker).await;
                return;
            }
            let worker = worker.to_owned();
            if ctx
                .db_retrying("record cancellation", move |conn| {
                    store::cancelled_by_worker(conn, id, &worker)
                })
                .await
                == Some(true)
            {
                ctx.metrics.finished.with_label_values(&["cancelled"]).inc();
                tracing::info!("cancelled");
            }
        }
        Err(join) if join.is_panic() => {
            let message = panic_message(join.into_panic());
            tracing::error!(panic = %message, "the engine panicked");
            retry_or_fail(ctx, id, worker, job.attempt, &format!("the engine panicked: {message}"))
                .await;
        }
        Err(join) => {
            retry_or_fail(ctx, id, worker, job.attempt, &format!("the engine task failed: {join}"))
                .await;
        }
    }
}

fn parse_stored(request: &serde_json::Value) -> Result<SimulationRequest, String> {
    let input: SimulationRequestInput =
        serde_json::from_value(request.clone()).map_err(|e| e.to_string())?;
    SimulationRequest::from_input(input, &RequestLimits::default()).map_err(|e| match e {
        RequestError::Malformed(m) => m,
        RequestError::Invalid(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

async fn record_failure(ctx: &Arc<JobContext>, id: Uuid, worker: &str, error: &str) {
    let (worker, message) = (worker.to_owned(), error.to_owned());
    if ctx.db_retrying("record failure", move |conn| store::fail(conn, id, &worker, &message)).await
        == Some(true)
    {
        ctx.metrics.finished.with_label_values(&["failed"]).inc();
        tracing::error!(error, "job failed");
    }
}

/// A failure that another attempt might not repeat: back off and retry, or fail for good once
/// the attempts are spent.
async fn retry_or_fail(ctx: &Arc<JobContext>, id: Uuid, worker: &str, attempt: i32, error: &str) {
    let max = ctx.settings.queue.max_attempts as i32;
    if attempt >= max {
        record_failure(ctx, id, worker, &format!("{error} (gave up after {attempt} attempts)"))
            .await;
        return;
    }
    let delay = backoff(attempt);
    let not_before = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
    let message = error.to_owned();
    if ctx
        .db_retrying("schedule retry", move |conn| {
            store::release_for_retry(conn, id, &message, Some(not_before))
        })
        .await
        == Some(true)
    {
        tracing::warn!(
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            error,
            "attempt failed; retrying"
        );
        if let Err(e) = ctx.queue.enqueue_after(id, delay).await {
            tracing::warn!(error = ?e, "could not schedule the retry; the reconciler will push it");
        }
    }
}

/// Exponential back-off with full jitter: 1 s, 2 s, 4 s … (capped at 60 s), times a random
/// factor in [0.5, 1).
pub fn backoff(attempt: i32) -> Duration {
    let base = Duration::from_secs(1 << attempt.clamp(0, 6)).min(Duration::from_secs(60));
    base.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// Gives the job back to the queue at once, without counting the attempt (graceful shutdown).
async fn hand_back(ctx: &Arc<JobContext>, id: Uuid, worker: &str) {
    let worker = worker.to_owned();
    match ctx.db_once(move |conn| store::hand_back(conn, id, &worker)).await {
        Some(true) => {
            if let Err(e) = ctx.queue.enqueue(id).await {
                tracing::warn!(error = ?e, "handed back in Postgres but not re-queued; the reconciler will push it");
            } else {
                tracing::info!("shutting down: job handed back to the queue");
            }
        }
        Some(false) => {}
        None => tracing::warn!(
            "could not hand the job back (Postgres down); the reconciler will recover it"
        ),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

//! The simulation job: claim the row, run the engine off the async executor while reporting
//! progress, and record the outcome exactly once.
//!
//! Every delivery is acknowledged to apalis (the handler returns `Ok`): retries, attempt
//! counting and recovery are decided here against Postgres, because apalis-redis 1.0 ignores
//! `max_attempts` and counts no attempt when it re-delivers an orphan. The job itself runs in
//! a task of its own, so that when apalis ends the worker that delivered it (it does on any
//! Redis error) the job still finishes and records its outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::{BoxDynError, Data, WorkerContext};
use portfolio_engine::{EngineError, ProgressCounter, RunOptions};
use portfolio_shared::JobStatus;
use portfolio_shared::queue::{JobEnvelope, PushOutcome, announcement};
use portfolio_shared::result_cache::CachedResult;
use portfolio_shared::settings::Fault;
use portfolio_shared::store::{self, Claim, ClaimedJob, Lease, ProgressAck, UnitWrite, Write};
use tracing::Instrument;
use uuid::Uuid;

use crate::admission::{self, Slot};
use crate::context::{DbGaveUp, JobContext, JobGuard};
use crate::jobs::engine_task;
use crate::jobs::work::{Done, Work};

/// How often a running job reports progress (and refreshes its heartbeat).
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// When a running job first reports: a job shorter than this writes no progress at all (the
/// claim wrote its heartbeat, and the orphan window is at least 2 s).
pub(crate) const FIRST_PROGRESS_AFTER: Duration = Duration::from_secs(1);
/// Added to a re-delivery's wait so it lands after the moment it waits for.
const REDELIVERY_MARGIN: Duration = Duration::from_secs(1);
/// When Postgres stayed away through a claim, the delivery comes back after this long.
const UNCLAIMED_RETRY: Duration = Duration::from_secs(5);

/// The apalis handler. Its span is the job's: every line logged for the delivery, here and in
/// the task the job runs in, carries the job id and this process's name, and once the job is
/// claimed its request id and attempt.
#[tracing::instrument(
    name = "job",
    skip_all,
    fields(
        job_id = tracing::field::Empty,
        worker = ctx.name(),
        request_id = tracing::field::Empty,
        attempt = tracing::field::Empty,
    )
)]
pub(crate) async fn handle(
    envelope: JobEnvelope,
    ctx: Data<Arc<JobContext>>,
    slot: Data<Slot>,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    match envelope {
        JobEnvelope::Undecodable(what) => {
            tracing::warn!(worker = worker.name(), entry = %what, "dropped a queue entry that is not a job");
        }
        JobEnvelope::Job(job) => {
            tracing::Span::current().record("job_id", tracing::field::display(job.id));
            let ctx = ctx.0.clone();
            let Some(guard) = ctx.begin(job.id) else {
                tracing::info!(job_id = %job.id, "job already running in this process; duplicate delivery dropped");
                return Ok(());
            };
            let delivery = Delivery { worker: worker.name().to_owned() };
            // The job's task holds the place until the job ends, even past this handler.
            let slot = slot.0.clone();
            let task =
                tokio::spawn(claim_and_execute(guard, ctx, delivery, slot).in_current_span());
            // A bug in the job's code must not take the worker down with it: the job is then
            // left to the reconciler and its next attempt.
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!(job_id = %job.id, panic = %panic_message(e.into_panic()), "job handler panicked");
            }
        }
    }
    Ok(())
}

/// The apalis worker a delivery came through: its in-flight set holds the job until the
/// delivery is acknowledged, so our own re-pushes must look past it.
struct Delivery {
    worker: String,
}

impl Delivery {
    /// Gives the job a new queue entry after `delay` (the reconciler covers a failed push).
    async fn push_again(&self, ctx: &JobContext, id: Uuid, delay: Duration) {
        match ctx.queue.push(id, delay, Some(&self.worker)).await {
            Ok(PushOutcome::Pushed) => {}
            Ok(outcome) => tracing::debug!(?outcome, "job already has a queue entry"),
            Err(e) => {
                tracing::warn!(error = ?e, "could not push the job again; the reconciler will")
            }
        }
    }
}

/// Claims the job in Postgres (or learns why not to run it now) and executes it.
async fn claim_and_execute(guard: JobGuard, ctx: Arc<JobContext>, delivery: Delivery, slot: Slot) {
    let id = guard.id;
    if ctx.handing_back() {
        // Shutting down: this delivery goes back untouched for another worker.
        delivery.push_again(&ctx, id, Duration::ZERO).await;
        return;
    }
    let max_attempts = ctx.settings.queue.max_attempts as i32;
    let orphan_window = ctx.orphan_window();
    // A job whose last attempt died with its process runs alone (see `JobContext::isolation`).
    // The claim itself says so, without claiming, when asked under the shared turn; the lone
    // turn is then taken before claiming again, so no attempt is charged to a job that only
    // waits while another runs alone and takes the process down.
    let Ok(shared) = ctx.isolation.try_read() else {
        // A job runs alone here, or waits to: this one would wait for its end, and another
        // worker may be idle (this one takes no delivery meanwhile: `admission`).
        delivery.push_again(&ctx, id, Duration::ZERO).await;
        return;
    };
    let mut turn = Turn::Shared(shared);
    // One token for every try of this delivery's claim (see `store::claim`).
    let token = Uuid::new_v4();
    let claim = loop {
        if ctx.handing_back() {
            // The turn came after the hand-back began (behind a job run alone): a claim now
            // would count an attempt that the process may not live to hand back.
            drop(turn);
            delivery.push_again(&ctx, id, Duration::ZERO).await;
            return;
        }
        let worker = ctx.name().to_owned();
        let alone = matches!(turn, Turn::Alone(..));
        let claim = ctx
            .db_claiming(move |conn| {
                if alone {
                    store::claim(conn, id, &worker, token, max_attempts, orphan_window)
                } else {
                    store::claim_beside_others(
                        conn,
                        id,
                        &worker,
                        token,
                        max_attempts,
                        orphan_window,
                    )
                }
            })
            .await;
        if !alone && matches!(claim, Ok(Claim::MustRunAlone)) {
            drop(turn);
            // No delivery is taken from now until it has run: see `admission`.
            let fetching_stopped = ctx.places.alone();
            turn = Turn::Alone(ctx.isolation.write().await, fetching_stopped);
            continue;
        }
        break claim;
    };
    let job = match claim {
        Ok(Claim::Run(job)) => job,
        Ok(Claim::Missing) => {
            tracing::warn!("no such job in Postgres; dropped the queue entry");
            return;
        }
        Ok(Claim::Finished(status)) => {
            tracing::info!(%status, "job already finished; duplicate delivery acknowledged");
            if status == JobStatus::Cancelled {
                // Cancelled while queued: this claim may be what recorded it.
                ctx.metrics.finished.with_label_values(&["cancelled"]).inc();
                announce_end(&ctx, id).await;
            }
            return;
        }
        Ok(Claim::HeldElsewhere { worker: holder, recheck_in: wait }) => {
            // Look again once the holder's heartbeat would have gone stale: if it died, the job
            // runs again then, whatever apalis-redis's own orphan recovery does.
            tracing::info!(
                holder,
                recheck_in_ms = wait.as_millis() as u64,
                "job is running on a live worker"
            );
            delivery.push_again(&ctx, id, wait + REDELIVERY_MARGIN).await;
            return;
        }
        Ok(Claim::GaveUp { attempts }) => {
            tracing::error!(attempts, "job failed: out of attempts");
            ctx.metrics.finished.with_label_values(&["failed"]).inc();
            announce_end(&ctx, id).await;
            return;
        }
        Ok(Claim::MustRunAlone) => {
            // Only a claim beside others answers this, and the loop above retried it alone.
            delivery.push_again(&ctx, id, Duration::ZERO).await;
            return;
        }
        Ok(Claim::NotYet { wait }) => {
            delivery.push_again(&ctx, id, wait).await;
            return;
        }
        Err(DbGaveUp::Unavailable) => {
            delivery.push_again(&ctx, id, UNCLAIMED_RETRY).await;
            return;
        }
        // A query bug: pushing it again would only repeat it. Left to the reconciler.
        Err(DbGaveUp::Permanent(_)) => return,
    };
    let span = tracing::Span::current();
    if let Some(rid) = &job.request_id {
        span.record("request_id", rid.as_str());
    }
    span.record("attempt", job.lease.attempt);
    if job.lease.attempt == 1 {
        ctx.metrics.queue_wait.observe(job.waited.as_secs_f64());
    }
    execute(job, &guard, &ctx, &delivery, turn, &slot).await;
}

async fn execute(
    job: ClaimedJob,
    guard: &JobGuard,
    ctx: &Arc<JobContext>,
    delivery: &Delivery,
    turn: Turn<'_>,
    slot: &Slot,
) {
    let lease = &job.lease;
    let work = match Work::parse(&job.request, job.sweep) {
        Ok(w) => w,
        Err(message) => {
            // A request that no longer passes the rules cannot get better by retrying.
            record_failure(ctx, lease, &format!("the stored request is invalid: {message}")).await;
            return;
        }
    };
    slot.size(work.cost());
    if ctx.handing_back() {
        hand_back(ctx, lease, delivery).await;
        return;
    }
    let started = Instant::now();
    let progress = Arc::new(ProgressCounter::default());
    let cancel = guard.cancel.clone();
    let options = RunOptions {
        batch_size: ctx.settings.engine.batch_size,
        memory_budget: ctx.settings.engine.memory_budget_bytes,
        progress: Some(progress.clone()),
        cancel: Some(cancel.clone()),
    };
    // Progress (and the heartbeat) from a task of its own, so a slow database never delays
    // noticing that the engine finished.
    let gone = Arc::new(AtomicBool::new(false));
    let reporter = tokio::spawn(report_progress(
        ctx.clone(),
        lease.clone(),
        progress.clone(),
        cancel.clone(),
        gone.clone(),
    ));
    // JOB_TIMEOUT_SECS: past it, the engine is stopped the way a cancel stops it (between
    // batches) and the job fails for good; another attempt would only run as long again.
    let timeout = ctx.settings.job_limits.job_timeout;
    let timed_out = Arc::new(AtomicBool::new(false));
    let timer = tokio::spawn({
        let (timed_out, cancel) = (timed_out.clone(), cancel.clone());
        async move {
            tokio::time::sleep(timeout).await;
            timed_out.store(true, Ordering::SeqCst);
            cancel.store(true, Ordering::SeqCst);
        }
    });
    if matches!(turn, Turn::Alone(..)) {
        tracing::info!("the last attempt died with its process: running this one alone");
    }
    let seed = job.seed as u64;
    let sweep = work.sweep();
    let fault = ctx.settings.worker.faults.for_seed(seed);
    let pool = ctx.engine_pools.take(admission::is_light(work.cost()));
    let engine = engine_task::spawn(pool, move || {
        if let Some(Fault::Abort) = fault {
            tracing::error!("injected fault (WORKER_FAULT_INJECTION): aborting the process");
            std::process::abort();
        }
        work.run(seed, &options, matches!(fault, Some(Fault::Panic)))
    });
    tracing::info!("running");

    let outcome = engine.await;
    reporter.abort();
    timer.abort();
    let elapsed = started.elapsed();

    'settle: {
        match outcome {
            Ok(Ok(Done::Unit { cells, scenario_months })) => {
                let Some(sweep) = sweep else { break 'settle };
                let batches = progress.snapshot().1 as i32;
                let count = cells.len();
                let held = lease.clone();
                let written = ctx
                    .db_retrying_until_shutdown("store unit", move |conn| {
                        store::complete_unit(conn, &held, sweep, &cells, batches)
                    })
                    .await;
                match written {
                    Ok(UnitWrite { write: Write::Applied, sweep_ended }) => {
                        announce_end(ctx, lease.job).await;
                        ctx.metrics.finished.with_label_values(&["succeeded"]).inc();
                        ctx.metrics.run_time.observe(elapsed.as_secs_f64());
                        ctx.metrics.scenario_months.inc_by(scenario_months);
                        tracing::info!(
                            cells = count,
                            sweep_ended,
                            elapsed_ms = elapsed.as_millis() as u64,
                            "unit succeeded"
                        );
                    }
                    Ok(UnitWrite { write: Write::FencedOut, .. }) => {}
                    Err(DbGaveUp::Unavailable) => tracing::warn!(
                        "could not store the unit before shutdown; it will run again"
                    ),
                    Err(DbGaveUp::Permanent(e)) => {
                        record_failure(ctx, lease, &format!("the unit could not be stored: {e}"))
                            .await
                    }
                }
            }
            Ok(Ok(Done::Plan(result))) => {
                let success = result.success_probability;
                let scenario_months = result.scenario_months;
                let batches = progress.snapshot().1 as i32;
                // Serialised once: the same text is stored, cached and announced.
                let json =
                    serde_json::value::to_raw_value(&result).expect("results always serialise");
                let cache = job.cache_key.as_deref().zip(ctx.settings.result_cache.ttl).map(
                    |(key, ttl)| {
                        let entry = CachedResult {
                            engine_version: result.engine_version.clone(),
                            batches,
                            success_probability: success,
                            result: json.clone(),
                        };
                        (key, entry, ttl)
                    },
                );
                let held = lease.clone();
                let written = ctx
                    .db_retrying_until_shutdown("store result", move |conn| {
                        let completed =
                            store::complete(conn, &held, &json, Some(success), batches)?;
                        // Encoded here, on the blocking thread, beside the statement's result.
                        let document = completed
                            .job
                            .as_ref()
                            .map(|job| announcement::encode_ended_plan(job, &json));
                        Ok((completed.write, document))
                    })
                    .await;
                match written {
                    Ok((Write::Applied, document)) => {
                        let document = document.as_deref();
                        let announced = match cache {
                            Some((key, entry, ttl)) => {
                                ctx.queue
                                    .cache_result_and_announce(
                                        key, &entry, ttl, lease.job, document,
                                    )
                                    .await
                            }
                            None => ctx.queue.announce_ended_plan(lease.job, document).await,
                        };
                        if let Err(e) = announced {
                            tracing::debug!(error = %e, "could not cache the result or announce the job's end");
                        }
                        ctx.metrics.finished.with_label_values(&["succeeded"]).inc();
                        ctx.metrics.run_time.observe(elapsed.as_secs_f64());
                        ctx.metrics.scenario_months.inc_by(scenario_months);
                        tracing::info!(
                            success_probability = success,
                            elapsed_ms = elapsed.as_millis() as u64,
                            "succeeded"
                        );
                    }
                    // Finished or taken over elsewhere; the store logged it.
                    Ok((Write::FencedOut, _)) => {}
                    Err(DbGaveUp::Unavailable) => tracing::warn!(
                        "could not store the result before shutdown; the job will run again"
                    ),
                    Err(DbGaveUp::Permanent(e)) => {
                        record_failure(ctx, lease, &format!("the result could not be stored: {e}"))
                            .await
                    }
                }
            }
            Ok(Err(EngineError::Cancelled)) => {
                if gone.load(Ordering::SeqCst) {
                    break 'settle;
                }
                if timed_out.load(Ordering::SeqCst) {
                    let message = format!(
                        "the job ran past JOB_TIMEOUT_SECS={} and was stopped after {:.1} s",
                        timeout.as_secs(),
                        elapsed.as_secs_f64()
                    );
                    record_failure(ctx, lease, &message).await;
                    break 'settle;
                }
                if ctx.handing_back() {
                    hand_back(ctx, lease, delivery).await;
                    break 'settle;
                }
                let held = lease.clone();
                if ctx
                    .db_retrying("record cancellation", move |conn| {
                        store::cancelled_by_worker(conn, &held)
                    })
                    .await
                    == Ok(Write::Applied)
                {
                    announce_end(ctx, lease.job).await;
                    ctx.metrics.finished.with_label_values(&["cancelled"]).inc();
                    tracing::info!("cancelled");
                }
            }
            Err(panicked) => {
                let message = panic_message(panicked);
                tracing::error!(panic = %message, "the engine panicked");
                retry_or_fail(ctx, lease, delivery, &format!("the engine panicked: {message}"))
                    .await;
            }
        }
    }
    // Waiters on the sweep hear of every unit's end: its map has more cells, or it has ended.
    if let Some(sweep) = sweep {
        announce_end(ctx, sweep).await;
    }
    // The turn is held until the outcome is recorded: a job run alone next may take the process
    // down, and a neighbour's finished result must be in Postgres by then, not lost with it.
    drop(turn);
}

/// A job's hold on the engine: shared with the other jobs of the process, or alone.
enum Turn<'a> {
    Shared(#[expect(dead_code, reason = "held for its lock")] tokio::sync::RwLockReadGuard<'a, ()>),
    Alone(
        #[expect(dead_code, reason = "held for its lock")] tokio::sync::RwLockWriteGuard<'a, ()>,
        #[expect(dead_code, reason = "held to take no delivery")] admission::Alone,
    ),
}

/// Reports progress every [`PROGRESS_EVERY`] from [`FIRST_PROGRESS_AFTER`] on, until aborted; raises `cancel` when a cancel is
/// requested, and `gone` too when the job is no longer held under this worker's lease.
async fn report_progress(
    ctx: Arc<JobContext>,
    lease: Lease,
    progress: Arc<ProgressCounter>,
    cancel: Arc<AtomicBool>,
    gone: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + FIRST_PROGRESS_AFTER,
        PROGRESS_EVERY,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (done, total) = progress.snapshot();
        let held = lease.clone();
        let ack = ctx
            .db_once(move |conn| store::report_progress(conn, &held, done as i32, total as i32))
            .await;
        match ack {
            Ok(ProgressAck::Continue) => {}
            // Postgres away: the engine keeps going and the result waits for it.
            Err(e) => tracing::debug!(error = %e.message, "progress not recorded"),
            Ok(ProgressAck::Cancel) => {
                tracing::info!("cancel requested; stopping between batches");
                cancel.store(true, Ordering::SeqCst);
            }
            Ok(ProgressAck::FencedOut) => {
                tracing::info!("stopping the engine: the job is no longer this worker's");
                gone.store(true, Ordering::SeqCst);
                cancel.store(true, Ordering::SeqCst);
                return;
            }
        }
    }
}

async fn record_failure(ctx: &Arc<JobContext>, lease: &Lease, error: &str) {
    let (held, message) = (lease.clone(), error.to_owned());
    if ctx.db_retrying("record failure", move |conn| store::fail(conn, &held, &message)).await
        == Ok(Write::Applied)
    {
        announce_end(ctx, lease.job).await;
        ctx.metrics.finished.with_label_values(&["failed"]).inc();
        tracing::error!(error, "job failed");
    }
}

/// Tells API processes waiting on the job that its outcome is in Postgres; called after every
/// terminal write this worker applies. Best effort: a waiter that misses it re-reads Postgres.
async fn announce_end(ctx: &JobContext, id: Uuid) {
    if let Err(e) = ctx.queue.announce_finished(id).await {
        tracing::debug!(error = %e, "could not announce the job's end");
    }
}

/// A failure that another attempt might not repeat: back off and retry, or fail for good once
/// the attempts are spent.
async fn retry_or_fail(ctx: &Arc<JobContext>, lease: &Lease, delivery: &Delivery, error: &str) {
    let (attempt, max) = (lease.attempt, ctx.settings.queue.max_attempts as i32);
    if attempt >= max {
        record_failure(ctx, lease, &format!("{error} (gave up after {attempt} attempts)")).await;
        return;
    }
    let delay = backoff(attempt);
    let (held, message) = (lease.clone(), error.to_owned());
    if ctx
        .db_retrying("schedule retry", move |conn| {
            store::release_for_retry(conn, &held, &message, delay)
        })
        .await
        == Ok(Write::Applied)
    {
        tracing::warn!(
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            error,
            "attempt failed; retrying"
        );
        delivery.push_again(ctx, lease.job, delay).await;
    }
}

/// Exponential back-off with jitter after failed attempt `attempt` (1-based): 1 s, 2 s, 4 s …
/// (capped at 60 s), times a random factor in [0.5, 1).
pub(crate) fn backoff(attempt: i32) -> Duration {
    let base = Duration::from_secs(1 << (attempt - 1).clamp(0, 6)).min(Duration::from_secs(60));
    base.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// Gives the job back to the queue at once, without counting the attempt (graceful shutdown).
async fn hand_back(ctx: &Arc<JobContext>, lease: &Lease, delivery: &Delivery) {
    let held = lease.clone();
    match ctx.db_once(move |conn| store::hand_back(conn, &held)).await {
        Ok(Write::Applied) => {
            delivery.push_again(ctx, lease.job, Duration::ZERO).await;
            tracing::info!("shutting down: job handed back to the queue");
        }
        Ok(Write::FencedOut) => {}
        Err(e) => tracing::warn!(
            error = %e.message,
            "could not hand the job back (Postgres unavailable); the reconciler will recover it"
        ),
    }
}

pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_grows_exponentially_with_jitter_and_is_capped() {
        for attempt in 1..=10 {
            let base = Duration::from_secs(1 << (attempt - 1).min(6)).min(Duration::from_secs(60));
            for _ in 0..50 {
                let d = backoff(attempt);
                assert!(d >= base / 2 && d < base, "attempt {attempt}: {d:?}");
            }
        }
    }
}

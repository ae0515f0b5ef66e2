//! The API's background work, done by one instance at a time (the leader: `crate::leadership`):
//! - promote due jobs into the ready list, in bounded chunks (so apalis-redis's fetch never
//!   meets the 8,000-job backlog that crashes it, and the list's length is the ready backlog);
//! - reconcile: push again every unfinished job that no queue entry and no worker holds
//!   (after Redis lost its data, or a push that never happened);
//! - free the Redis memory of acknowledged deliveries (apalis-redis keeps it for ever), and of
//!   workers that are gone;
//! - record the workers seen in the last hour, so that a dead one stays listed as silent;
//! - keep the monthly audit partitions ahead, and drop those past `AUDIT_RETENTION_MONTHS`;
//! - publish the autoscaling signal as CloudWatch Embedded Metric Format lines on stdout.

use std::time::{Duration, Instant};

use actix_web::web;
use chrono::Utc;
use portfolio_shared::names;
use portfolio_shared::queue::QueueDepth;
use portfolio_shared::store;
use tokio::task::JoinHandle;

use crate::leadership::Leadership;
use crate::routes::queue_stats;
use crate::state::AppState;

const TICK: Duration = Duration::from_millis(500);
const PROMOTE_CHUNK: usize = 1000;
/// Candidates looked at per query, and queries per round at most.
const RECONCILE_BATCH: i64 = 1000;
const RECONCILE_PAGES: usize = 5;
/// Acknowledged deliveries freed per tick.
const SWEEP_CHUNK: usize = 2000;
const PARTITION_EVERY: Duration = Duration::from_secs(3600);
/// How often the workers set's heartbeats are copied into the record of workers seen lately:
/// a dead worker is then listed with a heartbeat at most this much older than its last.
const REMEMBER_WORKERS_EVERY: Duration = Duration::from_secs(2);

/// Runs the background work whenever this instance leads; aborting it gives up the lead.
pub(crate) fn spawn(state: web::Data<AppState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let leadership = Leadership::spawn(
            state.settings.database.url.clone(),
            state.settings.worker.orphan_window(),
        );
        let mut last_reconcile = Instant::now();
        let mut last_partitions: Option<Instant> = None;
        let mut last_publish: Option<Instant> = None;
        let mut last_remembered: Option<Instant> = None;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Asked before each step, not once a round: a process frozen mid-round may have been
        // replaced by the time it thaws, and must not finish the round as a second leader.
        let leads = || leadership.leads();
        loop {
            tick.tick().await;
            if !leads() {
                continue;
            }
            promote(&state).await;
            if !leads() {
                continue;
            }
            sweep(&state).await;
            if leads() && last_reconcile.elapsed() >= state.settings.queue.reconcile_interval {
                last_reconcile = Instant::now();
                reconcile(&state, &leads).await;
            }
            if leads() && last_partitions.is_none_or(|t| t.elapsed() >= PARTITION_EVERY) {
                last_partitions = Some(Instant::now());
                ensure_partitions(&state).await;
                sweep_worker_metadata(&state).await;
            }
            if leads() && last_remembered.is_none_or(|t| t.elapsed() >= REMEMBER_WORKERS_EVERY) {
                last_remembered = Some(Instant::now());
                remember_workers(&state).await;
            }
            if leads()
                && last_publish
                    .is_none_or(|t| t.elapsed() >= state.settings.api.metrics_publish_interval)
            {
                last_publish = Some(Instant::now());
                publish_scaling_signal(&state, &leads).await;
            }
        }
    })
}

async fn promote(state: &AppState) {
    if let Err(e) = state.redis_in_background(state.queue.promote_due(PROMOTE_CHUNK)).await {
        tracing::debug!(error = ?e, "promoting due jobs failed");
    }
}

async fn sweep(state: &AppState) {
    match state.redis_in_background(state.queue.sweep_done(SWEEP_CHUNK)).await {
        Ok(0) => {}
        Ok(swept) => tracing::debug!(swept, "freed acknowledged deliveries"),
        Err(e) => tracing::debug!(error = ?e, "sweeping acknowledged deliveries failed"),
    }
}

/// Pushes again the unfinished jobs that nothing holds. Only jobs quiet for the orphan window
/// plus one interval are looked at (a fresh job may not be pushed yet; a running one reports
/// every 250 ms), quiet by the database's clock, and each one looked at is touched, so it is
/// looked at again only after another quiet spell.
async fn reconcile(state: &AppState, leads: &impl Fn() -> bool) {
    let quiet = state.settings.worker.orphan_window() + state.settings.queue.reconcile_interval;
    let mut pushed = 0;
    for _ in 0..RECONCILE_PAGES {
        let ids = match state
            .write_in_background(move |conn| store::stale_unfinished(conn, quiet, RECONCILE_BATCH))
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = ?e, "reconciler cannot read Postgres");
                break;
            }
        };
        if !leads() {
            return;
        }
        let missing = match state.redis_in_background(state.queue.unheld(&ids)).await {
            Ok(missing) => missing,
            Err(e) => {
                tracing::debug!(error = ?e, "reconciler cannot read Redis");
                break;
            }
        };
        for id in missing {
            if !leads() {
                return;
            }
            match state.redis_in_background(state.queue.enqueue(id)).await {
                Ok(_) => {
                    pushed += 1;
                    tracing::info!(job_id = %id, "reconciler pushed a job nothing held");
                }
                Err(e) => {
                    tracing::warn!(job_id = %id, error = ?e, "reconciler could not push");
                    return;
                }
            }
        }
        let looked_at = ids.len();
        if let Err(e) = state.write_in_background(move |conn| store::touch_all(conn, &ids)).await {
            tracing::warn!(error = ?e, "reconciler could not mark the jobs it looked at");
            break;
        }
        if looked_at < RECONCILE_BATCH as usize {
            break;
        }
    }
    if pushed > 0 {
        tracing::info!(pushed, "reconciler round");
    }
}

/// How long the hourly sweep of gone workers' metadata may take: a walk of the keyspace, a
/// thousand keys a round trip, so far more than one Redis call's timeout on a large Redis; a
/// walk cut short keeps what it deleted.
const METADATA_SWEEP_BUDGET: Duration = Duration::from_secs(30);

/// Keeps the record of workers seen lately (`Queue::remember_workers`), from which the queue
/// stats list a worker that died after another worker's orphan recovery took it off the
/// workers set.
async fn remember_workers(state: &AppState) {
    let remembered = state.queue.remember_workers(queue_stats::DEAD_WORKER_SHOWN_FOR);
    if let Err(e) = state.redis_in_background(remembered).await {
        tracing::debug!(error = ?e, "recording the workers seen failed");
    }
}

/// Frees what Redis keeps of workers that are gone (`Queue::sweep_worker_metadata`): when an
/// instance takes the lead, then hourly, since it walks the keyspace.
async fn sweep_worker_metadata(state: &AppState) {
    let gone_after = state.settings.worker.orphan_window();
    let sweep = state.queue.sweep_worker_metadata(gone_after);
    match tokio::time::timeout(METADATA_SWEEP_BUDGET, sweep).await {
        Ok(Ok(0)) => {}
        Ok(Ok(deleted)) => tracing::info!(deleted, "freed the metadata of workers that are gone"),
        Ok(Err(e)) => tracing::warn!(error = ?e, "sweeping the metadata of gone workers failed"),
        Err(_) => tracing::warn!(
            budget_secs = METADATA_SWEEP_BUDGET.as_secs(),
            "sweeping the metadata of gone workers ran out of time; the rest waits an hour"
        ),
    }
}

async fn ensure_partitions(state: &AppState) {
    match state
        .write_in_background(|conn| Ok(portfolio_shared::db::ensure_audit_partitions(conn)))
        .await
    {
        Ok(Ok(created)) if created > 0 => tracing::info!(created, "created audit_logs partitions"),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = ?e, "could not create audit_logs partitions"),
        Err(e) => tracing::warn!(error = ?e, "could not create audit_logs partitions"),
    }
    let Some(months) = state.settings.api.audit_retention_months else { return };
    match state
        .write_in_background(move |conn| {
            Ok(portfolio_shared::db::drop_old_audit_partitions(conn, months))
        })
        .await
    {
        Ok(Ok(dropped)) if dropped > 0 => {
            tracing::info!(dropped, months, "dropped audit_logs partitions past the retention")
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = ?e, "could not drop old audit_logs partitions"),
        Err(e) => tracing::warn!(error = ?e, "could not drop old audit_logs partitions"),
    }
}

/// One EMF line per interval, published even when the queue is empty (target tracking does
/// not scale in on missing data).
async fn publish_scaling_signal(state: &AppState, leads: &impl Fn() -> bool) {
    let depth = match state.redis_in_background(state.queue.depth()).await {
        Ok(depth) => depth,
        Err(e) => {
            tracing::warn!(error = ?e, "no scaling signal this interval: queue depth unavailable");
            return;
        }
    };
    state.metrics.record_depth(&depth);
    if !leads() {
        return;
    }
    println!("{}", emf_line(state.queue.namespace(), &depth, Utc::now().timestamp_millis()));
}

/// The Embedded Metric Format document for one observation.
pub(crate) fn emf_line(namespace: &str, depth: &QueueDepth, timestamp_ms: i64) -> String {
    let backlog_per_task = depth.ready as f64 / depth.workers_alive.max(1) as f64;
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": names::EMF_NAMESPACE,
                "Dimensions": [[names::EMF_DIMENSION]],
                "Metrics": [
                    { "Name": names::EMF_QUEUE_DEPTH, "Unit": "Count" },
                    { "Name": names::EMF_BACKLOG_PER_TASK, "Unit": "Count" },
                    { "Name": names::EMF_WORKERS_ALIVE, "Unit": "Count" },
                ],
            }],
        },
        names::EMF_DIMENSION: namespace,
        names::EMF_QUEUE_DEPTH: depth.ready,
        names::EMF_BACKLOG_PER_TASK: backlog_per_task,
        names::EMF_WORKERS_ALIVE: depth.workers_alive,
    })
    .to_string()
}

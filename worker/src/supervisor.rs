//! The worker process: supervises one apalis worker (restarting it under a fresh name after a
//! Redis error, since apalis-redis 1.0 ends a worker on any Redis error and refuses a reused
//! name within the orphan window; what the ended worker had claimed goes back to the queue at
//! once, while the jobs it had started carry on in their own tasks), serves metrics, and shuts
//! down gracefully: on SIGTERM it stops fetching, lets running jobs finish until shortly before
//! `SHUTDOWN_GRACE_SECS`, then hands whatever is left back to the queue (no attempt counted)
//! and exits 0 within the grace.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use apalis::prelude::{BackendExt, WorkerBuilder};
use backon::{BackoffBuilder, ExponentialBuilder};
use portfolio_shared::db;
use portfolio_shared::queue::{self, LenientJsonCodec, Queue};
use portfolio_shared::settings::{ExposeSecret, Settings};
use portfolio_shared::state_holders::{Holders, LET_GO_WITHIN};
use tokio::sync::watch;

use crate::admission::AdmissionLayer;
use crate::context::JobContext;
use crate::doorbell::{self, WakeOnRing};
use crate::engine_pools::EnginePools;
use crate::jobs;
use crate::metrics::{self, WorkerMetrics};

/// Time kept at the end of the grace to hand jobs back and exit.
const HAND_BACK_MARGIN: Duration = Duration::from_secs(5);
/// Waits before restarting an ended apalis worker: 0.5 s, 1 s, 2 s, 4 s, then 5 s.
const RESTART_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(500))
    .with_max_delay(RESTART_BACKOFF_MAX)
    .with_factor(2.0)
    .without_max_times();
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A worker that ran this long before failing restarts without back-off.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// Runs a worker process until SIGTERM or SIGINT and the drain that follows
/// (`portfolio-worker run`), on a runtime of its own. Returns without waiting for engine threads
/// still finishing a job the grace cut short: the caller is about to exit.
///
/// The runtime has one thread. What runs on it only waits (for Redis, for Postgres on the
/// blocking threads, for the engine on its pool), and on one thread a job passes from the
/// doorbell to the fetch, the claim and the finish without waking another thread at each
/// step: on two threads each hand-off cost a futex wake, about 0.1 ms on a 2-vCPU VM.
pub fn run_until_terminated(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let outcome = runtime.block_on(async move {
        let worker = Worker::build(settings)?;
        tracing::info!(
            name = worker.name(),
            metrics_port = worker.metrics_port(),
            "portfolio-worker starting"
        );
        worker.run_until(termination()).await
    });
    if let Err(e) = &outcome {
        tracing::error!(error = ?e, "worker failed");
    }
    // Dropping the runtime would wait for those threads.
    runtime.shutdown_background();
    outcome
}

/// A worker process, built and ready to run.
pub struct Worker {
    ctx: Arc<JobContext>,
    base_name: String,
    metrics_port: u16,
    metrics_server: actix_web::dev::Server,
    /// The metrics server thread's share of the pool, waited for as the worker stops.
    holders: Holders,
}

impl Worker {
    /// Builds pools, the queue handle, the engine's threads and the metrics endpoint. Call
    /// inside a Tokio runtime.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = db::pool(settings.database.url.expose_secret(), &settings.database.worker_pool);
        let conn = queue::connect(&settings.queue).context("REDIS_URL")?;
        let queue = Queue::new(conn, &settings.queue, &settings.worker);
        let engine_pools = EnginePools::new(
            settings.worker.threads,
            settings.worker.pin_threads,
            settings.worker.concurrency,
        )?;
        let metrics = Arc::new(WorkerMetrics::new());
        let (holders, holder) = Holders::new();
        let (metrics_port, metrics_server) =
            metrics::serve(settings.worker.metrics_bind, metrics.clone(), pool.clone(), holder)?;
        let base_name = settings.worker.name.clone().unwrap_or_else(default_name);
        let ctx = Arc::new(JobContext::new(
            base_name.clone(),
            pool,
            queue,
            settings,
            metrics,
            engine_pools,
        ));
        Ok(Self { ctx, base_name, metrics_port, metrics_server, holders })
    }

    pub(crate) fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    pub fn name(&self) -> &str {
        &self.base_name
    }

    /// Runs until `shutdown` resolves, then drains as described in the module docs.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self { ctx, base_name, metrics_server, holders, .. } = self;
        let metrics_handle = metrics_server.handle();
        tokio::spawn(metrics_server);
        doorbell::listen(&ctx.settings.queue, ctx.queue.doorbell(), ctx.bell.clone())
            .context("REDIS_URL")?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let grace = ctx.settings.worker.shutdown_grace;
        let drain = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                shutdown.await;
                let began = Instant::now();
                tracing::info!(
                    grace_secs = grace.as_secs(),
                    running = ctx.running_jobs(),
                    "shutdown: no longer fetching"
                );
                let _ = stop_tx.send(true);
                ctx.set_hard_deadline(began + grace);
                let margin = HAND_BACK_MARGIN.min(grace / 3);
                tokio::time::sleep(grace.saturating_sub(margin)).await;
                if ctx.running_jobs() > 0 {
                    tracing::warn!(
                        running = ctx.running_jobs(),
                        "grace ending: handing unfinished jobs back"
                    );
                    ctx.hand_back_all();
                }
            })
        };

        let supervised = {
            let ctx = ctx.clone();
            let stop_rx = stop_rx.clone();
            async move {
                let outcome = supervise(ctx.clone(), base_name, stop_rx).await;
                // Jobs whose delivering apalis worker ended run on detached; wait for them (they
                // hand back when the grace ends).
                ctx.wait_idle().await;
                outcome
            }
        };
        let mut waited = stop_rx.clone();
        // Whatever happens, the process leaves within the grace once shutdown began: what
        // follows the deadline (the metrics server's stop, its hold on the pool) may take up
        // to `LET_GO_WITHIN`, so the deadline comes that much earlier (a sixth of a short grace).
        let let_go_within = LET_GO_WITHIN.min(grace / 6);
        let exit_by = grace.saturating_sub(let_go_within);
        let deadline = async move {
            let _ = waited.wait_for(|stop| *stop).await;
            tokio::time::sleep(exit_by).await;
        };
        let outcome = tokio::select! {
            outcome = supervised => outcome,
            () = deadline => {
                tracing::warn!(running = ctx.running_jobs(), "grace exhausted with work still running; exiting");
                Ok(())
            }
        };
        drain.abort();
        metrics_handle.stop(false).await;
        if !holders.released(let_go_within).await {
            tracing::warn!("the metrics server thread still held the pool when the worker stopped");
        }
        outcome
    }
}

/// Runs the apalis worker, restarting it with a fresh name after errors, until `stop`.
async fn supervise(
    ctx: Arc<JobContext>,
    base_name: String,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = queue::apalis_config(&ctx.settings.queue, &ctx.settings.worker);
    let poll = ctx.settings.worker.poll_interval;
    let (concurrency, light_concurrency) =
        (ctx.settings.worker.concurrency, ctx.settings.worker.light_concurrency);
    let mut generation = 0u32;
    let mut restart_waits = RESTART_BACKOFF.build();
    // Ended workers whose claims are not yet given back (Redis may still be down).
    let mut ended: Vec<String> = Vec::new();
    loop {
        release(&ctx, &mut ended).await;
        if *stop.borrow() {
            return Ok(());
        }
        let name =
            if generation == 0 { base_name.clone() } else { format!("{base_name}-r{generation}") };
        generation += 1;
        let storage = ctx
            .queue
            .worker_storage(config.clone())
            .with_codec(LenientJsonCodec)
            .poll_with_strategy(WakeOnRing::new(poll, ctx.bell.clone()));
        let worker = WorkerBuilder::new(name.clone())
            .backend(storage)
            .data(ctx.clone())
            .layer(AdmissionLayer::new(ctx.places.clone()))
            .build(jobs::simulate::handle);
        let mut stop_signal = stop.clone();
        let signal = async move {
            let _ = stop_signal.wait_for(|stop| *stop).await;
            Ok::<(), std::io::Error>(())
        };
        tracing::info!(worker = name, concurrency, light_concurrency, "worker started");
        let began = Instant::now();
        let draining = tokio::spawn(beat_while_draining(ctx.clone(), name.clone(), stop.clone()));
        let ran = worker.run_until(signal).await;
        draining.abort();
        match ran {
            Ok(()) => {
                tracing::info!(worker = name, "worker stopped");
                // apalis-redis's own clean-up removes the wrong member from the worker set.
                ended.push(name);
                release(&ctx, &mut ended).await;
                return Ok(());
            }
            Err(e) => {
                ended.push(name.clone());
                if began.elapsed() >= HEALTHY_RUN {
                    restart_waits = RESTART_BACKOFF.build();
                }
                let wait = restart_waits.next().unwrap_or(RESTART_BACKOFF_MAX);
                tracing::warn!(worker = name, error = %e, running = ctx.running_jobs(), restart_in_ms = wait.as_millis() as u64, "worker ended; restarting under a new name");
                let mut stop_wait = stop.clone();
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop_wait.wait_for(|stop| *stop) => {}
                }
            }
        }
    }
}

/// Once the worker is told to stop, apalis stops its heartbeat but waits for the jobs it
/// runs; this keeps the worker's entry in the workers set fresh until then. Without it, after
/// one orphan window the other workers' recovery handed its running jobs out again, every
/// window for as long as the drain lasted (their claims then found them held here), and its own
/// acknowledgement failed at the end, logged as an error. Never registers the worker again
/// once it was let go (`Queue::keep_registered`).
async fn beat_while_draining(ctx: Arc<JobContext>, name: String, mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        return;
    }
    let mut beats = tokio::time::interval(ctx.settings.worker.heartbeat_interval());
    loop {
        beats.tick().await;
        if let Err(e) = ctx.queue.keep_registered(&name).await {
            tracing::debug!(worker = name, error = %e, "could not refresh the drain's heartbeat");
        }
    }
}

/// Gives back what ended workers had claimed and not started (jobs already running here are
/// left out: they finish on their own) and unregisters them; keeps those Redis refused.
async fn release(ctx: &JobContext, ended: &mut Vec<String>) {
    let mut kept = Vec::new();
    for name in ended.drain(..) {
        match ctx.queue.release_worker(&name, &ctx.running_ids()).await {
            Ok((0, 0)) => {}
            Ok((requeued, dropped)) => {
                if dropped > 0 {
                    tracing::warn!(
                        worker = name,
                        dropped,
                        "dropped queue entries without data (they end any worker that fetches them)"
                    );
                }
                tracing::info!(
                    worker = name,
                    requeued,
                    "gave back the jobs an ended worker had claimed"
                );
            }
            Err(e) => {
                tracing::debug!(worker = name, error = %e, "could not release an ended worker yet");
                kept.push(name);
            }
        }
    }
    *ended = kept;
}

/// Host (the ECS task's hostname) + pid + a random suffix: unique per process, so a restarted
/// task never collides with its predecessor's registration.
fn default_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>())
}

/// Resolves on SIGTERM (what ECS and Kubernetes send) or SIGINT.
pub(crate) async fn termination() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

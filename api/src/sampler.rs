//! Samples the queue's depth into Postgres (`queue_samples`) every `INTERVAL`, so that the
//! operators' dashboard draws the same last hour whichever API replica serves it, and the
//! history survives a restart. Every replica runs this loop; a transaction advisory lock and a
//! "none recorded lately" check inside it make one sample per interval across all of them
//! (no replica has to be elected for it), and samples older than `KEEP` are deleted as new
//! ones come in.

use std::time::Duration;

use actix_web::web;
use portfolio_shared::store::stats::{self, NewQueueSample};
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Advisory-lock key of the sampler ("qsample" in ASCII); distinct from the leader's.
pub const SAMPLE_LOCK: i64 = 0x71_7361_6d70_6c65;
/// Time between samples.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);
/// How long samples are kept.
pub(crate) const KEEP: Duration = Duration::from_secs(24 * 3600);
/// A replica whose timer fires this much earlier than the last sample's interval has passed
/// leaves the slot to it, so that timer jitter does not drop a sample.
const SLACK: Duration = Duration::from_secs(1);

pub(crate) fn spawn(state: web::Data<AppState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sample_once(&state).await;
        }
    })
}

/// Reads the depth from Redis and records it unless another replica just did. Returns whether
/// a sample was recorded; failures are logged and skipped (a gap in the chart says enough).
pub(crate) async fn sample_once(state: &AppState) -> bool {
    let depth = match state.redis_in_background(state.queue.depth()).await {
        Ok(depth) => depth,
        Err(e) => {
            tracing::debug!(error = ?e, "no queue sample this interval: Redis unavailable");
            return false;
        }
    };
    let sample = NewQueueSample {
        ready: saturating_i64(depth.ready),
        scheduled: saturating_i64(depth.scheduled),
        running: saturating_i64(depth.running),
        dead: saturating_i64(depth.dead),
        workers_alive: i32::try_from(depth.workers_alive).unwrap_or(i32::MAX),
    };
    let recorded = state
        .write_in_background(move |conn| {
            stats::record_sample(conn, SAMPLE_LOCK, &sample, INTERVAL - SLACK, KEEP)
        })
        .await;
    match recorded {
        Ok(recorded) => recorded,
        Err(e) => {
            tracing::debug!(error = ?e, "no queue sample this interval: Postgres unavailable");
            false
        }
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

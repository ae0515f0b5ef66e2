//! The doorbell: our push, release and promote scripts `PUBLISH` on the namespace's doorbell
//! channel whenever a job becomes ready, and this process's subscriber rings a [`Notify`] that
//! the apalis worker's poll strategy ([`WakeOnRing`]) waits on beside its timer. An idle worker
//! thus fetches the moment a job is pushed instead of on its next tick (issue 11); the timer
//! (`WORKER_POLL_INTERVAL_MS`) only covers a lost ring: one published while the subscriber was
//! reconnecting, or one that arrived while a fetch begun before the push was in flight.
//!
//! The subscriber never takes the worker down: whatever Redis does, it reconnects with
//! back-off, and rings once after each (re)subscription for what it may have missed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{PollSnapshot, PollStrategy};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use tokio::sync::Notify;

/// Waits between reconnections: 100 ms, doubling, at most 5 s.
const RECONNECT_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(100))
    .with_max_delay(Duration::from_secs(5))
    .with_factor(2.0)
    .without_max_times();
/// How long one connection attempt may take (a Redis that drops packets never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Listens on `channel` for the life of the process, ringing `bell` on every message.
pub(crate) fn listen(redis_url: String, channel: String, bell: Arc<Notify>) {
    tokio::spawn(async move {
        let mut waits = RECONNECT_BACKOFF.build();
        loop {
            match subscribe(&redis_url, &channel).await {
                Ok(pubsub) => {
                    waits = RECONNECT_BACKOFF.build();
                    tracing::debug!(channel, "listening on the doorbell");
                    // Jobs pushed while nobody listened rang for nobody.
                    bell.notify_one();
                    let mut messages = pubsub.into_on_message();
                    while messages.next().await.is_some() {
                        bell.notify_one();
                    }
                    tracing::info!(channel, "doorbell connection lost; reconnecting");
                }
                Err(e) => tracing::debug!(channel, error = %e, "cannot listen on the doorbell yet"),
            }
            tokio::time::sleep(waits.next().unwrap_or(Duration::from_secs(5))).await;
        }
    });
}

async fn subscribe(redis_url: &str, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let client = redis::Client::open(redis_url)?;
    let mut pubsub =
        tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await.map_err(
            |_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        )??;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// The apalis worker's poll strategy: fetch on a ring or every `interval`, whichever comes
/// first. apalis fetches whenever the worker's task is polled with a free slot, so all this
/// must do is wake the task; a ring that comes while every slot is busy stays pending (a
/// [`Notify`] permit, or a notified waiter) until a slot frees. apalis's own
/// `IntervalStrategy` is not used: it replaces its timer when it fires without polling the new
/// one, so no wake-up is registered and the worker sleeps until its next heartbeat.
pub(crate) struct WakeOnRing {
    interval: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    bell: Arc<Notify>,
    ring: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
}

impl WakeOnRing {
    pub(crate) fn new(interval: Duration, bell: Arc<Notify>) -> Self {
        Self { interval, timer: None, bell, ring: None }
    }

    fn next_ring(&self) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        let bell = self.bell.clone();
        Box::pin(async move { bell.notified().await })
    }
}

impl PollStrategy for WakeOnRing {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _snapshot: &PollSnapshot) -> Poll<Option<()>> {
        let mut due = false;
        // Each future is polled until pending, so this task's waker stays registered with both.
        let interval = self.interval;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
        while timer.as_mut().poll(cx).is_ready() {
            due = true;
            timer.as_mut().reset(tokio::time::Instant::now() + interval);
        }
        loop {
            if self.ring.is_none() {
                self.ring = Some(self.next_ring());
            }
            match self.ring.as_mut().expect("set above").as_mut().poll(cx) {
                Poll::Ready(()) => {
                    due = true;
                    // A fetch follows this poll: the ring is answered, and so is any rung since.
                    self.ring = None;
                }
                Poll::Pending => break,
            }
        }
        if due {
            // A ring answered by this fetch also restarts the fallback's count.
            if let Some(timer) = self.timer.as_mut() {
                timer.as_mut().reset(tokio::time::Instant::now() + interval);
                let _ = timer.as_mut().poll(cx);
            }
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

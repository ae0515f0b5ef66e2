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
use portfolio_shared::queue;
use portfolio_shared::settings::QueueSettings;
use tokio::sync::Notify;

/// Listens on `channel` for the life of the process, ringing `bell` on every message and
/// after every (re)subscription: jobs pushed while nobody listened rang for nobody.
pub(crate) fn listen(
    queue: &QueueSettings,
    channel: String,
    bell: Arc<Notify>,
) -> redis::RedisResult<()> {
    let on_subscribed = bell.clone();
    queue::subscribe(queue, channel, move |_| bell.notify_one(), move || on_subscribed.notify_one())
        .map(drop)
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

//! A Redis pub/sub subscription that outlives Redis: one task per process listens on a channel
//! and hands each message's payload to a callback, reconnecting with back-off whenever Redis
//! goes away (a restart, a failover, `CLIENT KILL`). The queue's channels are hints, never the
//! record — the doorbell ([`super::Keys::doorbell`]) and finished jobs
//! ([`super::Keys::finished`]) — so a message published while the subscriber was away is simply
//! lost; `on_subscribed` runs after every (re)subscription so the listener can catch up with
//! whatever it may have missed. Each (re)subscription asks [`RedisTarget`] for the master
//! again, so behind Sentinels it follows a failover.
//!
//! A subscription only listens, so a server gone silent (hung, or lost with its node while an
//! ElastiCache endpoint moved to a replica) would look like a quiet channel for as long as the
//! kernel keeps the socket. It is pinged every [`PING_EVERY`], and one unanswered within
//! [`PING_TIMEOUT`] ends it, to subscribe again wherever the target now leads.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::RedisTarget;
use crate::settings::QueueSettings;

/// Waits between attempts to subscribe while Redis is away: 0.1 s doubling to 2 s.
const RESUBSCRIBE_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(100))
    .with_max_delay(Duration::from_secs(2))
    .with_factor(2.0)
    .without_max_times();
/// How long one connection attempt may take (a Redis that drops packets never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a quiet subscription checks that its server still answers.
const PING_EVERY: Duration = Duration::from_secs(3);
/// A ping unanswered this long means the server went silent.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Listens on `channel` until the returned task is aborted. Call inside a Tokio runtime.
pub fn subscribe(
    queue: &QueueSettings,
    channel: String,
    on_message: impl Fn(&[u8]) + Send + Sync + 'static,
    on_subscribed: impl Fn() + Send + Sync + 'static,
) -> redis::RedisResult<JoinHandle<()>> {
    let target = RedisTarget::new(queue)?;
    Ok(tokio::spawn(async move {
        let mut waits = RESUBSCRIBE_BACKOFF.build();
        loop {
            match listen(&target, &channel, &on_message, &on_subscribed).await {
                Ok(()) => {
                    tracing::info!(channel, "subscription ended; subscribing again");
                    waits = RESUBSCRIBE_BACKOFF.build();
                }
                Err(e) => tracing::debug!(channel, error = %e, "cannot subscribe yet"),
            }
            tokio::time::sleep(waits.next().unwrap_or(Duration::from_secs(2))).await;
        }
    }))
}

/// One subscription, until its connection ends.
async fn listen(
    target: &RedisTarget,
    channel: &str,
    on_message: &impl Fn(&[u8]),
    on_subscribed: &impl Fn(),
) -> redis::RedisResult<()> {
    let client = target.client().await?;
    let mut pubsub =
        tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await.map_err(
            |_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        )??;
    pubsub.subscribe(channel).await?;
    tracing::debug!(channel, "subscribed");
    on_subscribed();
    let (mut sink, mut messages) = pubsub.split();
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(message) => on_message(message.get_payload_bytes()),
                None => return Ok(()),
            },
            _ = pings.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        tracing::warn!(channel, "Redis did not answer the subscription's ping; subscribing again");
                        return Ok(());
                    }
                }
            }
        }
    }
}

//! Rate limits per tenant, shared by every API replica: one Redis script
//! (`sliding_window.lua`) counts a tenant's requests of one budget over the last minute and
//! admits one more only while the count is under the limit. A sliding window rather than
//! fixed minutes, so a client cannot get twice its budget across a minute's boundary; one
//! script rather than a crate, since the well-kept Rust limiters (governor) count in one
//! process and the limit must hold across replicas.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use uuid::Uuid;

use crate::queue::{Keys, QueueConn};

pub(crate) static SLIDING_WINDOW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("sliding_window.lua")));

/// The length of every window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// One of a tenant's budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Its name in `RateLimit-Policy` and in the Redis key.
    pub name: &'static str,
    /// Requests per [`WINDOW`].
    pub limit: u32,
}

/// What the limiter decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub accepted: bool,
    /// Requests left in the window after this one.
    pub remaining: u32,
    /// How long until the oldest request in the window leaves it (and, when none are left,
    /// until one more would be accepted).
    pub reset: Duration,
}

/// The limiter: a Redis connection and the namespace's keys.
#[derive(Clone)]
pub struct RateLimiter {
    conn: QueueConn,
    keys: Keys,
}

impl RateLimiter {
    pub fn new(conn: QueueConn, keys: Keys) -> Self {
        Self { conn, keys }
    }

    /// Counts one request of `tenant` against `budget`, if the budget has room.
    pub async fn admit(&self, tenant: &str, budget: Budget) -> redis::RedisResult<Decision> {
        let mut conn = self.conn.clone();
        let (accepted, remaining, wait_ms): (i64, i64, i64) = SLIDING_WINDOW
            .key(self.keys.rate_window(budget.name, tenant))
            .arg(WINDOW.as_millis() as u64)
            .arg(budget.limit)
            .arg(Uuid::new_v4().simple().to_string())
            .invoke_async(&mut conn)
            .await?;
        Ok(Decision {
            accepted: accepted == 1,
            remaining: remaining.max(0) as u32,
            reset: Duration::from_millis(wait_ms.max(0) as u64),
        })
    }
}

//! The half of the result cache that the API and the worker share: what a cache key is, what an
//! entry holds, and the Redis layer (L2) itself.
//!
//! The engine is deterministic: a result is a function of the normalised request (every default
//! filled in, the seed included) and the engine version. So a job that named its seed gets a
//! cache key at submit; the worker that computes it stores the result under that key; and an
//! identical submit within the TTL is answered from the cache, recorded for its own owner, with
//! no worker involved. A job without a seed gets none: the server draws it one, and its result is
//! a new draw by design. The API adds an in-process layer (L1) in front (`api/src/result_cache.rs`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::queue::Queue;

/// The cache key of a request: SHA-256 of the engine version and the normalised request's JSON,
/// in hex. A new engine version gives every request a new key, so an upgrade never serves a
/// result the new engine would not compute.
pub fn key(engine_version: &str, normalised_request: &serde_json::Value) -> String {
    let mut hash = Sha256::new();
    hash.update(engine_version.as_bytes());
    // A separator no version string holds, so (version, request) pairs cannot run together.
    hash.update([0]);
    hash.update(normalised_request.to_string().as_bytes());
    hex::encode(hash.finalize())
}

/// One cached result: what a worker stored when the job succeeded. It names no job and no
/// owner, so serving it to another tenant reveals only what their own request determines.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedResult {
    /// Checked again on read: an entry of another version is a miss.
    pub engine_version: String,
    /// The job's progress total, so a job served from the cache shows the same progress.
    pub batches: i32,
    pub success_probability: f64,
    /// The engine's result document as the worker serialised it (and stored it in Postgres).
    pub result: Box<serde_json::value::RawValue>,
}

impl Queue {
    /// The L2 entry of `key`, if Redis holds one, and how long Redis keeps it yet (a copy kept
    /// elsewhere must not outlive it), in one round trip.
    pub async fn cached_result(
        &self,
        key: &str,
    ) -> redis::RedisResult<Option<(Vec<u8>, Duration)>> {
        let mut conn = self.conn.clone();
        let key = self.keys.result_cache(key);
        let (raw, left_ms): (Option<Vec<u8>>, i64) =
            redis::pipe().cmd("GET").arg(&key).cmd("PTTL").arg(&key).query_async(&mut conn).await?;
        // Gone (-2) or, never the case for our entries, kept for ever (-1): keep no copy.
        let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
        Ok(raw.map(|raw| (raw, left)))
    }

    /// Stores `entry` under `key` for `ttl` (whole seconds, at least one), then announces that
    /// `job` ended (with its `document`, as [`Queue::announce_ended_plan`]), in one round trip.
    /// Redis runs them in order, so a client that resubmits the moment it learns of the result
    /// is answered from the cache.
    pub async fn cache_result_and_announce(
        &self,
        key: &str,
        entry: &CachedResult,
        ttl: Duration,
        job: uuid::Uuid,
        document: Option<&[u8]>,
    ) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let bytes = serde_json::to_vec(entry).expect("cache entries always serialise");
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.result_cache(key))
            .arg(bytes)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .ignore();
        crate::queue::announcement::publish(&mut pipe, &self.keys, job, document);
        pipe.query_async::<()>(&mut conn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_the_engine_version_and_with_any_field_of_the_request() {
        let request = serde_json::json!({ "years": 30, "seed": 7 });
        let base = key("engine/1", &request);
        assert_eq!(base, key("engine/1", &request.clone()), "a key is a function of its inputs");
        assert_ne!(base, key("engine/2", &request), "a new engine version misses");
        assert_ne!(base, key("engine/1", &serde_json::json!({ "years": 30, "seed": 8 })));
        assert_eq!(base.len(), 64, "hex SHA-256");
    }
}

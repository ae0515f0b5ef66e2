//! The API's side of the result cache: an in-process layer (L1, bounded by bytes, each copy
//! kept only as long as Redis keeps the entry it copied) in front of the Redis layer (L2,
//! `portfolio_shared::result_cache`), and the lookup a submit makes before it records a job. A
//! miss, or Redis being away, only means the job runs as it would have without a cache.

use std::sync::Arc;
use std::time::Duration;

use portfolio_shared::result_cache::CachedResult;
use portfolio_shared::settings::ResultCacheSettings;

use crate::state::AppState;

/// Which layer answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    L1,
    L2,
}

impl Layer {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
        }
    }
}

/// An L1 entry, its weight (the size of its JSON), and how long Redis kept it yet when copied.
#[derive(Debug)]
struct Entry {
    cached: CachedResult,
    bytes: u32,
    left: Duration,
}

/// An L1 copy expires with the L2 entry it copied: an entry is served for the TTL from when it
/// was computed, however many layers it passes through.
struct WithItsSource;

impl moka::Expiry<String, Arc<Entry>> for WithItsSource {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.left)
    }
}

/// Clones share the in-process layer.
#[derive(Clone)]
pub(crate) struct ResultCache {
    on: bool,
    l1: Option<moka::sync::Cache<String, Arc<Entry>>>,
}

impl ResultCache {
    pub(crate) fn new(settings: &ResultCacheSettings) -> Self {
        let l1 = settings.ttl.filter(|_| settings.l1_max_bytes > 0).map(|ttl| {
            moka::sync::Cache::builder()
                .max_capacity(settings.l1_max_bytes)
                .weigher(|_key: &String, entry: &Arc<Entry>| entry.bytes)
                .time_to_live(ttl)
                .expire_after(WithItsSource)
                .build()
        });
        Self { on: settings.ttl.is_some(), l1 }
    }

    /// Whether submits look the cache up at all (`RESULT_CACHE_TTL_SECS` > 0).
    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    /// The cached result of `key`, from L1, else from L2 (which then fills L1). An L2 entry
    /// made by another engine version, or unreadable, is a miss.
    pub(crate) async fn lookup(
        &self,
        state: &AppState,
        key: &str,
    ) -> Option<(CachedResult, Layer)> {
        let count = |layer: Layer, outcome: &str| {
            state.metrics.result_cache.with_label_values(&[layer.as_str(), outcome]).inc();
        };
        if let Some(l1) = &self.l1 {
            if let Some(entry) = l1.get(key) {
                count(Layer::L1, "hit");
                return Some((entry.cached.clone(), Layer::L1));
            }
            count(Layer::L1, "miss");
        }
        let raw = match state.redis(state.queue.cached_result(key)).await {
            Ok(raw) => raw,
            Err(e) => {
                tracing::debug!(error = %e, "result cache unavailable; the job will run");
                None
            }
        };
        let cached = raw.and_then(|(raw, left)| {
            let bytes = u32::try_from(raw.len()).unwrap_or(u32::MAX);
            serde_json::from_slice::<CachedResult>(&raw)
                .ok()
                .filter(|c| c.engine_version == portfolio_engine::ENGINE_VERSION)
                .map(|cached| Entry { cached, bytes, left })
        });
        let Some(entry) = cached else {
            count(Layer::L2, "miss");
            return None;
        };
        count(Layer::L2, "hit");
        let cached = entry.cached.clone();
        if let Some(l1) = self.l1.as_ref().filter(|_| !entry.left.is_zero()) {
            l1.insert(key.to_owned(), Arc::new(entry));
        }
        Some((cached, Layer::L2))
    }
}

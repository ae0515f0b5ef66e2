//! Every Redis key of the queue comes from [`Keys`]. apalis-redis reads and writes the same keys
//! (it derives them from its `Config`, whose queue name is our namespace), so these must be the
//! very strings it uses: a unit test compares them with `apalis_redis::Config`'s own. Our Lua
//! scripts, the depth reads, the KEDA trigger (checked by the deploy-file tests) and the tests
//! all take their keys from here.
//!
//! What lives under a namespace, by role:
//! - entries (a job waiting or held): the ready list, the scheduled set, one in-flight set per
//!   worker;
//! - bookkeeping: the data hash and a meta hash per job (freed by our sweep), the done and dead
//!   sets, the workers set and each worker's metadata hash, apalis's signal list, and our
//!   record of the workers seen lately.

/// The ZSET where apalis-redis registers the workers set of every queue it has seen (one per
/// Redis, not namespaced: `register_worker.lua` writes it).
pub const QUEUE_REGISTRY: &str = "core:apalis:queues:list";

/// The keys of one queue namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    namespace: String,
}

impl Keys {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self { namespace: namespace.into() }
    }

    /// The prefix of every key (apalis-redis's queue name).
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// LIST of task ids ready to be claimed (apalis-redis's `active` list). Due jobs are
    /// promoted into it continuously, so its length is the ready backlog (KEDA scales on it).
    pub fn ready_list(&self) -> String {
        self.key("active")
    }

    /// ZSET of task ids waiting for a time (epoch seconds): delayed retries and back-offs.
    pub fn scheduled_set(&self) -> String {
        self.key("scheduled")
    }

    /// ZSET of worker names scored by their last heartbeat (epoch seconds).
    pub fn workers_set(&self) -> String {
        self.key("workers")
    }

    /// ZSET of the worker names the leader has seen in the workers set lately, scored by the
    /// last heartbeat it saw (ours: [`super::Queue::remember_workers`]). A worker that died
    /// leaves the workers set as soon as another worker's orphan recovery runs; this keeps it
    /// listed, as silent, on the operators' dashboard.
    pub fn seen_workers(&self) -> String {
        self.key("seen-workers")
    }

    /// STRING `/ready` writes (with a 10 s lifetime) to prove Redis takes writes.
    pub fn ready_probe(&self) -> String {
        self.key("ready-probe")
    }

    /// What apalis-redis names each worker's metadata HASH after (`{prefix}:{worker}`): written
    /// when the worker registers, read only to list workers, freed by nobody but our sweep
    /// (`Queue::sweep_worker_metadata`).
    pub fn worker_metadata_prefix(&self) -> String {
        self.key("workers:metadata")
    }

    /// What a worker's in-flight set is named after (`{prefix}:{worker}`); the Lua scripts
    /// take it to reach every registered worker's set.
    pub fn inflight_prefix(&self) -> String {
        self.key("inflight")
    }

    /// SET of the task ids a worker has claimed and not yet acknowledged.
    pub fn inflight_set(&self, worker: &str) -> String {
        format!("{}:{worker}", self.inflight_prefix())
    }

    /// HASH of task id → payload.
    pub fn data_hash(&self) -> String {
        self.key("data")
    }

    /// What a task's meta hash is named after (`{prefix}:{task id}`).
    pub(crate) fn meta_prefix(&self) -> String {
        self.key("meta")
    }

    /// HASH of one task's attempts, status and result, as apalis-redis keeps them.
    pub fn meta_hash(&self, task: &str) -> String {
        format!("{}:{task}", self.meta_prefix())
    }

    /// SET of acknowledged task ids (no timestamps), emptied by our sweep.
    pub fn done_set(&self) -> String {
        self.key("done")
    }

    /// SET of task ids apalis-redis gave up on (our handler acknowledges everything, so it
    /// stays empty).
    pub(crate) fn dead_set(&self) -> String {
        self.key("dead")
    }

    /// Pub/sub channel rung whenever a job becomes ready (our push, release and promote
    /// scripts publish on it), so an idle worker fetches at once instead of on its next tick.
    /// A channel, not a key: nothing is stored, and a lost ring only costs the poll interval.
    pub fn doorbell(&self) -> String {
        self.key("doorbell")
    }

    /// Pub/sub channel on which a job's id is published once its outcome is in Postgres, so
    /// an API process waiting on it answers at once (a plan's success also with its document:
    /// `super::announcement`). A lost message only costs the waiter's re-read interval:
    /// Postgres stays the record.
    pub fn finished(&self) -> String {
        self.key("finished")
    }

    /// ZSET of one tenant's requests of one budget (`submits`, `reads`) in the last minute,
    /// shared by every API replica (our key, not apalis-redis's: see `crate::rate_limit`).
    pub fn rate_window(&self, budget: &str, tenant: &str) -> String {
        format!("{}:{tenant}", self.key(&format!("ratelimit:{budget}")))
    }

    /// String holding one cached result (`crate::result_cache`), under its key; it expires
    /// after `RESULT_CACHE_TTL_SECS`.
    pub fn result_cache(&self, key: &str) -> String {
        self.key(&format!("result:{key}"))
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use apalis_core::worker::context::WorkerContext;

    use super::*;

    #[test]
    fn every_key_is_the_one_apalis_redis_uses_for_the_namespace() {
        let namespace = "pmc-keys-{test}";
        let keys = Keys::new(namespace);
        let config = apalis_redis::Config::default().queue(namespace);
        let worker = WorkerContext::new("host-42-r1");
        assert_eq!(keys.namespace(), namespace);
        assert_eq!(keys.ready_list(), config.active_jobs_list());
        assert_eq!(keys.scheduled_set(), config.scheduled_jobs_set());
        assert_eq!(keys.workers_set(), config.workers_set());
        assert_eq!(keys.inflight_prefix(), config.inflight_jobs_set());
        assert_eq!(keys.inflight_set(worker.name()), config.inflight_set_for(&worker));
        assert_eq!(keys.data_hash(), config.job_data_hash());
        assert_eq!(keys.meta_prefix(), config.job_meta_hash());
        assert_eq!(keys.done_set(), config.done_jobs_set());
        assert_eq!(keys.dead_set(), config.dead_jobs_set());
    }

    #[test]
    fn a_tasks_meta_hash_is_named_as_apalis_redis_scripts_name_it() {
        // fetch_next.lua and handle_results.lua build it as `meta prefix .. ':' .. task id`.
        let keys = Keys::new("ns");
        assert_eq!(keys.meta_hash("01J"), format!("{}:01J", keys.meta_prefix()));
        assert_eq!(keys.meta_hash("01J"), "ns:meta:01J");
    }
}

//! The integration suite: one test binary, modules by theme. Every test starts what it needs
//! (its own database, queue namespace, API and workers) against real Redis and Postgres.

mod api;
mod api_shutdown;
mod autoscaling;
mod background;
mod browser;
mod deploy_files;
mod end_to_end;
mod faults;
mod faults_infra;
mod faults_load;
mod faults_queue;
mod harness;
mod headers;
mod layout;
mod lifecycle;
mod limits;
mod pickup;
mod pools;
mod queue_stats;
mod redis_ha;
mod result_cache;
mod schema;
mod startup;
mod sweeps;
mod telemetry;
mod tenancy;
mod waiting;
mod web;

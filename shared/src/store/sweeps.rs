//! A sweep's rows. The sweep is one job for its owner (one row, its own audit trail, what the
//! owner reads and cancels); its work is split into units, rows of their own that the queue,
//! the claim fencing, the retries and the reconciler treat exactly as any job. What is added
//! here is what ties them together, always inside the transaction of the unit's own write:
//!
//! - the first unit claimed starts the sweep;
//! - a unit completed writes its cells and, when the sweep then has every cell, ends it
//!   `succeeded` (the count of stored cells decides, so a unit stored twice cannot end it early);
//! - a unit failed for good fails the sweep, naming the cell, and stops its other units;
//! - a sweep cancelled cancels its queued units and asks its running ones to stop.

use diesel::dsl::{now, sql};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Timestamptz};
use serde_json::json;
use uuid::Uuid;

use super::api_queries::{Recorded, Viewer, within_quota};
use super::audit::{self, Actor, AuditEvent};
use super::job_lifecycle::{Lease, Write, cancelled_by_worker, complete};
use super::models::{NewSimulation, Simulation};
use super::statement::{Append, Statement};
use super::transition::{finish, locked};
use crate::schema::{simulations, sweep_cells};
use crate::{JobKind, JobStatus};

/// A unit of a sweep's work, as the API records it.
#[derive(Debug, Clone)]
pub struct NewUnit {
    pub id: Uuid,
    /// `{"cells": [{"index", "values", "request"}, ...]}`.
    pub request: serde_json::Value,
}

/// Records a sweep (`queued`, progress 0 of `cells`), its `submitted` audit row and its units,
/// atomically and within its owner's quota, as [`super::insert_job`] does for a plain job. Each
/// unit holds a place in the quota (it is a queue entry); the sweep's own row holds none.
pub fn insert_sweep(
    conn: &mut PgConnection,
    job: &NewSimulation<'_>,
    cells: i32,
    units: &[NewUnit],
    max_unfinished: i64,
) -> QueryResult<Recorded> {
    let places = i64::try_from(units.len()).unwrap_or(i64::MAX);
    within_quota(conn, job, places, max_unfinished, |conn| {
        diesel::insert_into(simulations::table)
            .values((
                job,
                simulations::kind.eq(JobKind::Sweep),
                simulations::progress_total.eq(cells),
            ))
            .execute(conn)?;
        for unit in units {
            let row = NewSimulation {
                id: unit.id,
                request: &unit.request,
                idempotency_key: None,
                request_hash: None,
                cache_key: None,
                ..job.clone()
            };
            diesel::insert_into(simulations::table)
                .values((
                    row,
                    simulations::kind.eq(JobKind::Unit),
                    simulations::parent_id.eq(job.id),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Locks the sweep of job `id` if it is a unit, before the unit itself is locked. Every path that
/// writes a unit and its sweep takes the sweep's row first (a unit's completion, a cancel and
/// the units it stops); a claim or a final failure that locked the unit first and its sweep
/// second could deadlock with a cancel. Nothing for a plan.
pub(super) fn lock_sweep_of(conn: &mut PgConnection, id: Uuid) -> QueryResult<()> {
    // A `Statement`, prepared once per connection: every unit's claim runs it.
    Statement::new(
        "SELECT 1 FROM simulations \
         WHERE id = (SELECT parent_id FROM simulations WHERE id = ",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .sql(") FOR UPDATE")
    .execute(conn)
    .map(drop)
}

/// The sweep of a unit just claimed by `worker` is running from now (its first unit's claim).
pub(super) fn unit_started(conn: &mut PgConnection, sweep: Uuid, worker: &str) -> QueryResult<()> {
    let started: Option<Option<String>> = diesel::update(
        simulations::table.find(sweep).filter(simulations::status.eq(JobStatus::Queued)),
    )
    .set((
        simulations::status.eq(JobStatus::Running),
        simulations::started_at.eq(sql::<Nullable<Timestamptz>>("coalesce(started_at, now())")),
        simulations::updated_at.eq(now),
    ))
    .returning(simulations::request_id)
    .get_result(conn)
    .optional()?;
    if let Some(request_id) = started {
        audit::record(
            conn,
            sweep,
            AuditEvent::Started,
            Actor::Worker(worker),
            request_id.as_deref(),
            json!({ "first_unit": true }),
        )?;
    }
    Ok(())
}

/// One cell's outcome, as the worker stores it.
#[derive(Debug, Clone)]
pub struct CellOutcome {
    pub index: i32,
    /// The plain request the cell is, seed included.
    pub request: serde_json::Value,
    /// `portfolio_engine::sweep::CellSummary`.
    pub summary: serde_json::Value,
    /// The whole result, as a plain job's.
    pub result: serde_json::Value,
}

/// What completing a unit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitWrite {
    pub write: Write,
    /// The sweep now has every cell and has ended `succeeded`.
    pub sweep_ended: bool,
}

/// Stores a unit's cells and marks it `succeeded`, once (fenced by `lease`, as
/// [`complete`]); ends the sweep when it then has every cell. One transaction. A unit whose
/// sweep has already ended (cancelled, or failed by another unit) stores nothing and ends
/// `cancelled`, so an ended sweep's document never changes again: [`Write::FencedOut`].
pub fn complete_unit(
    conn: &mut PgConnection,
    lease: &Lease,
    sweep: Uuid,
    cells: &[CellOutcome],
    batches: i32,
) -> QueryResult<UnitWrite> {
    conn.transaction(|conn| {
        // The sweep's row first: the cells' foreign keys share-lock it, and two units taking
        // that lock before asking for the row's update lock would deadlock each other.
        let Some(job) = locked(conn, sweep)? else {
            return Ok(UnitWrite { write: fenced_out_unit(lease), sweep_ended: false });
        };
        if job.status.is_terminal() {
            tracing::info!(job_id = %lease.job, sweep = %sweep, status = %job.status,
                "the unit's sweep has ended; its cells are not stored");
            // Ended here, or already taken over elsewhere: either way it stores nothing.
            let _ = cancelled_by_worker(conn, lease)?;
            return Ok(UnitWrite { write: Write::FencedOut, sweep_ended: false });
        }
        let indices: Vec<i32> = cells.iter().map(|c| c.index).collect();
        let document = serde_json::value::to_raw_value(&json!({ "cells": indices }))
            .expect("a list of indices always serialises");
        let write = complete(conn, lease, &document, None, batches)?.write;
        if write == Write::FencedOut {
            return Ok(UnitWrite { write, sweep_ended: false });
        }
        for cell in cells {
            diesel::insert_into(sweep_cells::table)
                .values((
                    sweep_cells::sweep_id.eq(sweep),
                    sweep_cells::cell_index.eq(cell.index),
                    sweep_cells::unit_id.eq(lease.job),
                    sweep_cells::request.eq(&cell.request),
                    sweep_cells::summary.eq(&cell.summary),
                    sweep_cells::result.eq(&cell.result),
                    sweep_cells::worker.eq(&lease.worker),
                ))
                .on_conflict_do_nothing()
                .execute(conn)?;
        }
        let sweep_ended = advance(conn, &job, &lease.worker)?;
        Ok(UnitWrite { write, sweep_ended })
    })
}

/// A unit whose sweep is gone (deleted under it) stores nothing.
fn fenced_out_unit(lease: &Lease) -> Write {
    tracing::warn!(job_id = %lease.job, "the unit's sweep no longer exists; nothing stored");
    Write::FencedOut
}

/// Counts the sweep's stored cells into its progress, and ends it `succeeded` once it has
/// them all. The caller holds the sweep's row lock, so two units finishing together count in
/// turn.
fn advance(conn: &mut PgConnection, job: &Simulation, worker: &str) -> QueryResult<bool> {
    let sweep = job.id;
    if job.status.is_terminal() {
        return Ok(false);
    }
    let done: i64 =
        sweep_cells::table.filter(sweep_cells::sweep_id.eq(sweep)).count().get_result(conn)?;
    let done = i32::try_from(done).unwrap_or(i32::MAX);
    diesel::update(simulations::table.find(sweep))
        .set((simulations::progress_done.eq(done), simulations::updated_at.eq(now)))
        .execute(conn)?;
    if done < job.progress_total {
        return Ok(false);
    }
    finish(conn, job, JobStatus::Succeeded, Actor::Worker(worker), None, json!({ "cells": done }))?;
    Ok(true)
}

/// A unit of `sweep` has failed for good with `error`: the sweep fails, naming the unit's
/// cells, and its other units stop. Called under the unit's own write.
pub(super) fn unit_failed(
    conn: &mut PgConnection,
    unit: Uuid,
    sweep: Uuid,
    actor: Actor<'_>,
    error: &str,
) -> QueryResult<()> {
    let Some(job) = locked(conn, sweep)? else { return Ok(()) };
    if job.status.is_terminal() {
        return Ok(());
    }
    let unit_request: serde_json::Value =
        simulations::table.find(unit).select(simulations::request).first(conn)?;
    let message = format!("{}: {error}", describe_failed(&job.request, &unit_request, error));
    finish(
        conn,
        &job,
        JobStatus::Failed,
        actor,
        Some(&message),
        json!({ "unit": unit, "reason": "a unit failed" }),
    )?;
    // The stopped units' entries are left to the workers' claims, which drop them at once.
    stop_units(conn, sweep, actor.name()).map(drop)
}

/// The cell a failure names: the one the worker says failed (its error reads `cell N: …`), else
/// the unit's only cell, with its values by field (`cell 3 (years = 25)`); else the unit's
/// range of cells (`cells 3–5`).
fn describe_failed(
    sweep_request: &serde_json::Value,
    unit_request: &serde_json::Value,
    error: &str,
) -> String {
    let cells = unit_request["cells"].as_array().cloned().unwrap_or_default();
    let index = |c: &serde_json::Value| c["index"].as_i64().unwrap_or(-1);
    let named = named_cell(error).and_then(|n| cells.iter().find(|c| index(c) == n));
    let cell = match (named, cells.as_slice()) {
        (Some(cell), _) | (None, [cell]) => cell,
        (None, []) => return "a unit".to_owned(),
        (None, [first, .., last]) => return format!("cells {}–{}", index(first), index(last)),
    };
    let values: Vec<f64> = cell["values"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    match portfolio_engine::sweep::from_stored(sweep_request) {
        Ok((_, spec)) => {
            format!("cell {} ({})", index(cell), portfolio_engine::sweep::describe(&spec, &values))
        }
        Err(_) => format!("cell {}", index(cell)),
    }
}

/// `N` of the first `cell N:` in a worker's error.
fn named_cell(error: &str) -> Option<i64> {
    error.match_indices("cell ").find_map(|(at, _)| {
        let rest = &error[at + 5..];
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        rest[digits..].starts_with(':').then(|| rest[..digits].parse().ok()).flatten()
    })
}

/// The owner's sweep is cancelled (the caller holds its lock and has ended it): its queued
/// units end `cancelled`, and its running ones are asked to stop.
pub(super) fn stop_units(
    conn: &mut PgConnection,
    sweep: Uuid,
    actor: &str,
) -> QueryResult<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Stopped {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    // Each unit ends with its terminal audit row, as any job does.
    let stopped: Vec<Stopped> = diesel::sql_query(
        "WITH stopped AS (
             UPDATE simulations SET status = 'cancelled', finished_at = now(), updated_at = now()
             WHERE parent_id = $1 AND status = 'queued'
             RETURNING id, request_id),
         logged AS (
             INSERT INTO audit_logs (simulation_id, event, actor, request_id, data)
             SELECT id, 'cancelled', $2, request_id, '{\"when\": \"queued\", \"by\": \"sweep\"}'::jsonb
             FROM stopped)
         SELECT id FROM stopped",
    )
    .bind::<diesel::sql_types::Uuid, _>(sweep)
    .bind::<diesel::sql_types::Text, _>(actor)
    .load(conn)?;
    diesel::update(
        simulations::table
            .filter(simulations::parent_id.eq(sweep))
            .filter(simulations::status.eq(JobStatus::Running)),
    )
    .set((simulations::cancel_requested.eq(true), simulations::updated_at.eq(now)))
    .execute(conn)?;
    Ok(stopped.into_iter().map(|s| s.id).collect())
}

/// The summaries of a sweep's cells done so far, by index.
pub fn cell_summaries(conn: &mut PgConnection, sweep: Uuid) -> QueryResult<Vec<serde_json::Value>> {
    sweep_cells::table
        .filter(sweep_cells::sweep_id.eq(sweep))
        .order(sweep_cells::cell_index.asc())
        .select(sweep_cells::summary)
        .load(conn)
}

/// One stored cell of a sweep.
#[derive(Debug, Clone, Queryable)]
pub struct StoredCell {
    pub request: serde_json::Value,
    pub summary: serde_json::Value,
    pub result: serde_json::Value,
    pub worker: String,
}

/// The sweep `id` as `viewer` sees it, and its cell `index` if that cell is done.
pub fn find_cell(
    conn: &mut PgConnection,
    viewer: Viewer<'_>,
    id: Uuid,
    index: i32,
) -> QueryResult<Option<(Simulation, Option<StoredCell>)>> {
    let Some((job, _)) = super::api_queries::find_row(conn, viewer, id)? else { return Ok(None) };
    let cell = sweep_cells::table
        .find((id, index))
        .select((
            sweep_cells::request,
            sweep_cells::summary,
            sweep_cells::result,
            sweep_cells::worker,
        ))
        .first(conn)
        .optional()?;
    Ok(Some((job, cell)))
}

/// Which worker stored each cell of a sweep, by index (tests and operators: which worker ran
/// which unit).
pub fn cell_workers(conn: &mut PgConnection, sweep: Uuid) -> QueryResult<Vec<(i32, Uuid, String)>> {
    sweep_cells::table
        .filter(sweep_cells::sweep_id.eq(sweep))
        .order(sweep_cells::cell_index.asc())
        .select((sweep_cells::cell_index, sweep_cells::unit_id, sweep_cells::worker))
        .load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_cell_the_worker_named_with_its_values() {
        let sweep = json!({"starting_portfolio": 1e6, "monthly_spending": 4000, "years": 30,
                           "sweep": {"axes": [{"field": "annual_fee", "values": [0.0, 0.01]}]}});
        let unit = json!({"cells": [{"index": 0, "values": [0.0], "request": {}},
                                    {"index": 1, "values": [0.01], "request": {}}]});
        let error = "the engine panicked: cell 1: boom (gave up after 3 attempts)";
        assert_eq!(describe_failed(&sweep, &unit, error), "cell 1 (annual_fee = 0.01)");
        assert_eq!(
            describe_failed(&sweep, &unit, "the job ran past JOB_TIMEOUT_SECS"),
            "cells 0–1"
        );
        assert_eq!(named_cell("cell 12: x"), Some(12));
        assert_eq!(named_cell("a cell 3 without a colon"), None);
    }
}

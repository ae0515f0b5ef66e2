//! Waiting for a job to end, for the long-poll (`GET /results/{id}?wait=N`), `Prefer: wait=N`
//! on a submit, and `POST /run_simulation`.
//!
//! Workers publish a job's id on the queue's finished channel once its outcome is committed
//! ([`Keys::finished`]); one subscriber per API process wakes the requests waiting on that id,
//! which then read the job from Postgres. The announcement is only a hint: a waiter also
//! re-reads every `WAIT_RECHECK_MS`, and every waiter re-reads whenever the subscription is
//! (re)established, so a lost announcement (Redis away, a worker killed between its commit and
//! its publish, an outcome written by the leader) costs at most that interval, never a wrong
//! answer. On shutdown every waiter answers at once with what it has, so a draining API does
//! not hold its grace for a minute-long wait.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portfolio_shared::JobKind;
use portfolio_shared::queue::{self, Keys};
use portfolio_shared::store::{self, models::Simulation, models::SimulationResultRow};
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// A job and its result, as `store::find_job` reads them.
pub(crate) type JobRead = (Simulation, Option<SimulationResultRow>);

/// The requests of this process waiting for jobs to end, by job.
#[derive(Default)]
pub(crate) struct Completions {
    waiting: Mutex<HashMap<Uuid, Waited>>,
    /// Wakes every waiter: a (re)subscription or shutdown.
    everyone: Notify,
    closed: AtomicBool,
}

struct Waited {
    notify: Arc<Notify>,
    waiters: usize,
}

/// One request's interest in one job; dropping it forgets the interest.
struct Watch<'a> {
    completions: &'a Completions,
    id: Uuid,
    notify: Arc<Notify>,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut waiting = self.completions.waiting.lock().expect("lock");
        if let Some(waited) = waiting.get_mut(&self.id) {
            waited.waiters -= 1;
            if waited.waiters == 0 {
                waiting.remove(&self.id);
            }
        }
    }
}

impl Completions {
    fn watch(&self, id: Uuid) -> Watch<'_> {
        let mut waiting = self.waiting.lock().expect("lock");
        let waited =
            waiting.entry(id).or_insert_with(|| Waited { notify: Arc::default(), waiters: 0 });
        waited.waiters += 1;
        Watch { completions: self, id, notify: waited.notify.clone() }
    }

    /// A worker announced that `id` ended.
    fn announce(&self, id: Uuid) {
        if let Some(waited) = self.waiting.lock().expect("lock").get(&id) {
            waited.notify.notify_waiters();
        }
    }

    /// Announcements may have been missed: every waiter reads its job again.
    fn wake_all(&self) {
        self.everyone.notify_waiters();
    }

    /// The process is shutting down: every waiter answers now with what it has.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_all();
    }
}

/// Subscribes this process to the finished channel until the task is aborted.
pub(crate) fn spawn_subscriber(state: &AppState) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let channel = Keys::new(state.queue.namespace()).finished();
    let (on_message, on_subscribed) = (state.completions.clone(), state.completions.clone());
    queue::subscribe(
        &state.settings.queue,
        channel,
        move |payload| match std::str::from_utf8(payload).ok().and_then(|s| s.parse::<Uuid>().ok())
        {
            Some(id) => on_message.announce(id),
            None => tracing::debug!("ignored a finished-channel message that is no job id"),
        },
        move || on_subscribed.wake_all(),
    )
    .map_err(Into::into)
}

/// Reads job `id` as `caller` sees it, again and again, until it is terminal or `wait` has
/// passed (or the process is shutting down); returns the last read (`None`: no such job, or
/// not the caller's). Reads go to the primary: a replica may not have the outcome yet when the
/// announcement arrives.
pub(crate) async fn until_terminal(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    wait: Duration,
) -> Result<Option<JobRead>, ApiError> {
    until(state, caller, id, wait, false).await
}

/// [`until_terminal`], except that a sweep's read is also answered as soon as it has more cells
/// done than at the first read: the long-poll of a map that fills in.
pub(crate) async fn until_news(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    wait: Duration,
) -> Result<Option<JobRead>, ApiError> {
    until(state, caller, id, wait, true).await
}

async fn until(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    wait: Duration,
    news: bool,
) -> Result<Option<JobRead>, ApiError> {
    let mut first_done = None;
    let deadline = Instant::now() + wait;
    let completions = &state.completions;
    let watch = completions.watch(id);
    loop {
        // Registered before the read, so an announcement racing it is not missed.
        let mut announced = pin!(watch.notify.notified());
        let mut everyone = pin!(completions.everyone.notified());
        announced.as_mut().enable();
        everyone.as_mut().enable();
        let caller = caller.clone();
        let read = state.write(move |conn| store::find_job(conn, caller.viewer(), id)).await?;
        let done = match &read {
            None => true,
            Some((job, _)) if news && job.kind == JobKind::Sweep => {
                let before = *first_done.get_or_insert(job.progress_done);
                job.status.is_terminal() || job.progress_done != before
            }
            Some((job, _)) => job.status.is_terminal(),
        };
        let now = Instant::now();
        if done || now >= deadline || completions.closed.load(Ordering::SeqCst) {
            return Ok(read);
        }
        let recheck = deadline.min(now + state.settings.api.wait_recheck);
        tokio::select! {
            () = announced => {}
            () = everyone => {}
            () = tokio::time::sleep_until(recheck) => {}
        }
    }
}

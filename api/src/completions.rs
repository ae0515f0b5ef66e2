//! Waiting for a job to end, for the long-poll (`GET /results/{id}?wait=N`), `Prefer: wait=N`
//! on a submit, and `POST /run_simulation`.
//!
//! Workers publish a job's id on the queue's finished channel once its outcome is committed
//! ([`Keys::finished`]); one subscriber per API process wakes the requests waiting on that id,
//! which then read the job from Postgres. A plan that succeeded is announced with its committed
//! row and result as well ([`announcement`]), and its waiters answer from that, with no read.
//! The announcement is only a hint: a waiter also re-reads every `WAIT_RECHECK_MS`, and every
//! waiter re-reads whenever the subscription is (re)established, so a lost announcement (Redis
//! away, a worker killed between its commit and its publish, an outcome written by the leader)
//! costs at most that interval, never a wrong answer. On shutdown every waiter answers at once
//! with what it has, so a draining API does not hold its grace for a minute-long wait.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portfolio_shared::JobKind;
use portfolio_shared::queue::announcement::{self, EndedPlan};
use portfolio_shared::queue::{self, Keys};
use portfolio_shared::store::{
    self, KeyedRead, Viewer, models::Simulation, models::SimulationResultRow,
};
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use crate::auth::Caller;
use crate::auth::admission::Admission;
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
    news: Arc<News>,
    waiters: usize,
}

/// The announcements of one job: a count, so that a waiter can tell whether one arrived while
/// it was not listening, a wake-up for those listening, and the ended plan when an
/// announcement carried it.
#[derive(Default)]
struct News {
    count: AtomicU64,
    notify: Notify,
    ended: Mutex<Option<Arc<EndedPlan>>>,
}

/// One request's interest in one job; dropping it forgets the interest.
pub(crate) struct Watch<'a> {
    completions: &'a Completions,
    id: Uuid,
    news: Arc<News>,
    /// The announcements counted when the interest was registered.
    count_at_start: u64,
}

impl Watch<'_> {
    /// Whether the job was announced since the watch began, listened for or not.
    fn has_news(&self) -> bool {
        self.news.count.load(Ordering::SeqCst) != self.count_at_start
    }

    /// The job as an announcement carried it, if one did and `viewer` may see it (as
    /// [`store::find_job`] would have answered); otherwise the job is read.
    fn ended_plan(&self, viewer: Viewer<'_>) -> Option<JobRead> {
        let plan = self.news.ended.lock().expect("lock").clone()?;
        let visible = match viewer {
            Viewer::Tenant(owner) => plan.job.owner == owner,
            Viewer::Operator => true,
        };
        (visible && plan.job.kind == JobKind::Plan).then(|| {
            let result = SimulationResultRow::new(plan.result.clone(), false);
            (plan.job.clone(), Some(result))
        })
    }
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
    /// Registers an interest in `id` ending. A submit that will wait registers before it
    /// pushes the job, so not even the quickest worker can end it unseen.
    pub(crate) fn watch(&self, id: Uuid) -> Watch<'_> {
        let mut waiting = self.waiting.lock().expect("lock");
        let waited =
            waiting.entry(id).or_insert_with(|| Waited { news: Arc::default(), waiters: 0 });
        waited.waiters += 1;
        let news = waited.news.clone();
        let count_at_start = news.count.load(Ordering::SeqCst);
        Watch { completions: self, id, news, count_at_start }
    }

    /// A worker announced that `id` ended.
    fn announce(&self, id: Uuid) {
        if let Some(waited) = self.waiting.lock().expect("lock").get(&id) {
            waited.news.count.fetch_add(1, Ordering::SeqCst);
            waited.news.notify.notify_waiters();
        }
    }

    /// A worker announced that plan `id` succeeded, with its `document`: decoded only if a
    /// request here waits on it. One this build cannot decode is an announcement by id.
    fn announce_with(&self, id: Uuid, document: &[u8]) {
        let Some(news) = self.waiting.lock().expect("lock").get(&id).map(|w| w.news.clone()) else {
            return;
        };
        match announcement::decode_ended_plan(id, document) {
            Some(plan) => *news.ended.lock().expect("lock") = Some(Arc::new(plan)),
            None => tracing::debug!(job_id = %id, "an announcement's document could not be read"),
        }
        news.count.fetch_add(1, Ordering::SeqCst);
        news.notify.notify_waiters();
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
        move |payload| match announcement::parse(payload) {
            Some((id, None)) => on_message.announce(id),
            Some((id, Some(document))) => on_message.announce_with(id, document),
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
    until(state, caller, None, state.completions.watch(id), wait, NextRead::Now, false).await
}

/// [`until_terminal`] for a job this request has just recorded as `queued` and watched since
/// before it was pushed: nothing is read until the job is announced (or the recheck interval
/// passes), since a read before that could only find it queued or running.
pub(crate) async fn until_pushed_job_ends(
    state: &AppState,
    caller: &Caller,
    watch: Watch<'_>,
    wait: Duration,
) -> Result<Option<JobRead>, ApiError> {
    until(state, caller, None, watch, wait, NextRead::AfterNews, false).await
}

/// [`until_terminal`], except that a sweep's read is also answered as soon as it has more cells
/// done than at the first read: the long-poll of a map that fills in. A key only remembered
/// (`admission`) is checked by the reads ([`read_on_primary`]).
pub(crate) async fn until_news(
    state: &AppState,
    caller: &Caller,
    admission: &Admission,
    id: Uuid,
    wait: Duration,
) -> Result<Option<JobRead>, ApiError> {
    let watch = state.completions.watch(id);
    until(state, caller, Some(admission), watch, wait, NextRead::Now, true).await
}

/// Reads job `id` as `caller` sees it, on the primary. When the caller's key is one this process
/// only remembers as valid (`admission`, see auth/lookup.rs), the same statement checks that it
/// is not revoked (`store::find_job_checking_key`): the read needs no lookup of its own, and a
/// revoked key reads nothing (`401`). Where the read finds no job, the key stays unchecked, and
/// the guard looks it up before the `404` goes out.
pub(crate) async fn read_on_primary(
    state: &AppState,
    caller: &Caller,
    admission: Option<&Admission>,
    id: Uuid,
) -> Result<Option<JobRead>, ApiError> {
    let caller = caller.clone();
    match (admission.filter(|a| a.key_unchecked()), caller.key_id) {
        (Some(admission), Some(key_id)) => {
            let read = state
                .read_primary(move |conn| {
                    store::find_job_checking_key(conn, caller.viewer(), id, key_id)
                })
                .await?;
            match read {
                KeyedRead::Found(job, result) => {
                    admission.key_checked(state, true);
                    Ok(Some((*job, result)))
                }
                KeyedRead::KeyRefused => {
                    admission.key_checked(state, false);
                    Err(ApiError::Unauthorized)
                }
                KeyedRead::NotFound => Ok(None),
            }
        }
        _ => state.read_primary(move |conn| store::find_job(conn, caller.viewer(), id)).await,
    }
}

/// How far past its end a wait's read may run. A read takes a millisecond, or as long as a
/// busy pool's checkout; one that Postgres does not answer (paused, or the host gone) would
/// otherwise hold the answer for the request's statement deadline, and a `wait=2` be answered
/// after 12 s.
const READ_GRACE: Duration = Duration::from_secs(1);

/// When a waiter reads its job next: at once, or once there is news of it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NextRead {
    Now,
    AfterNews,
}

async fn until(
    state: &AppState,
    caller: &Caller,
    admission: Option<&Admission>,
    watch: Watch<'_>,
    wait: Duration,
    mut next_read: NextRead,
    news: bool,
) -> Result<Option<JobRead>, ApiError> {
    let mut first_done = None;
    let deadline = Instant::now() + wait;
    let completions = &state.completions;
    let id = watch.id;
    loop {
        // Registered before the read, so an announcement racing it is not missed.
        let mut announced = pin!(watch.news.notify.notified());
        let mut everyone = pin!(completions.everyone.notified());
        announced.as_mut().enable();
        everyone.as_mut().enable();
        let now = Instant::now();
        let closed = completions.closed.load(Ordering::SeqCst);
        if next_read == NextRead::Now || watch.has_news() || now >= deadline || closed {
            let read = match watch.ended_plan(caller.viewer()) {
                Some(ended) => Some(ended),
                // A wait's reads end with it (and a grace): not the 10 s statement deadline
                // on top. A read asked for no wait has the request's usual bounds.
                None if wait.is_zero() => read_on_primary(state, caller, admission, id).await?,
                None => {
                    let within = deadline.saturating_duration_since(Instant::now()) + READ_GRACE;
                    tokio::time::timeout(within, read_on_primary(state, caller, admission, id))
                        .await
                        .map_err(|_| {
                            let late = anyhow::anyhow!(
                                "Postgres did not answer a read within the wait (+{READ_GRACE:?})"
                            );
                            ApiError::unavailable("postgres", late)
                        })??
                }
            };
            let done = match &read {
                None => true,
                Some((job, _)) if news && job.kind == JobKind::Sweep => {
                    let before = *first_done.get_or_insert(job.progress_done);
                    job.status.is_terminal() || job.progress_done != before
                }
                Some((job, _)) => job.status.is_terminal(),
            };
            if done || Instant::now() >= deadline || closed {
                return Ok(read);
            }
        }
        next_read = NextRead::Now;
        let now = Instant::now();
        let recheck = deadline.min(now + state.settings.api.wait_recheck);
        tokio::select! {
            () = announced => {}
            () = everyone => {}
            () = tokio::time::sleep_until(recheck) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_made_before_anyone_listened_is_still_news_to_its_watch_only() {
        let completions = Completions::default();
        let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
        let watch = completions.watch(id);
        let unrelated = completions.watch(other);
        assert!(!watch.has_news());
        completions.announce(id);
        assert!(watch.has_news(), "announced between the watch and the first listen");
        assert!(!unrelated.has_news());
        drop(watch);
        assert!(!completions.watch(id).has_news(), "a new watch starts from what it finds");
    }

    fn ended_plan(id: Uuid, owner: &str, kind: JobKind) -> Vec<u8> {
        let now = chrono::Utc::now();
        let job: Simulation = serde_json::from_value(serde_json::json!({
            "id": id, "status": "succeeded", "request": { "n_scenarios": 10 }, "seed": 7,
            "request_id": null, "request_hash": null, "attempts": 1, "progress_done": 1,
            "progress_total": 1, "error": null, "worker": "w", "cancel_requested": false,
            "created_at": now, "started_at": now, "finished_at": now, "owner": owner,
            "cache_key": null, "kind": kind, "parent_id": null,
        }))
        .unwrap();
        announcement::encode_ended_plan(
            &job,
            &serde_json::value::to_raw_value(&serde_json::json!({ "success_probability": 0.9 }))
                .unwrap(),
        )
    }

    #[test]
    fn an_announced_plan_is_answered_only_to_whom_a_read_would_show_it() {
        let completions = Completions::default();
        let id = Uuid::now_v7();
        let watch = completions.watch(id);
        let message = ended_plan(id, "alice", JobKind::Plan);
        let (announced, Some(document)) = announcement::parse(&message).unwrap() else {
            panic!("no document in {}", String::from_utf8_lossy(&message));
        };
        assert_eq!(announced, id);
        completions.announce_with(id, document);
        assert!(watch.has_news());
        let (job, result) = watch.ended_plan(Viewer::Tenant("alice")).expect("the owner's");
        assert_eq!((job.id, job.owner.as_str()), (id, "alice"));
        let document = result.unwrap().document().unwrap();
        let document: serde_json::Value = serde_json::from_str(document.get()).unwrap();
        assert_eq!(document["success_probability"], 0.9);
        assert!(watch.ended_plan(Viewer::Operator).is_some());
        assert!(watch.ended_plan(Viewer::Tenant("mallory")).is_none(), "another tenant reads");
    }

    #[test]
    fn a_document_that_cannot_be_read_or_names_another_job_is_an_announcement_by_id() {
        let completions = Completions::default();
        let id = Uuid::now_v7();
        let watch = completions.watch(id);
        completions.announce_with(id, b"{not json");
        assert!(watch.has_news());
        assert!(watch.ended_plan(Viewer::Operator).is_none());
        let elsewhere = ended_plan(Uuid::now_v7(), "alice", JobKind::Plan);
        completions.announce_with(id, announcement::parse(&elsewhere).unwrap().1.unwrap());
        assert!(watch.ended_plan(Viewer::Operator).is_none(), "another job's row");
        let unit = ended_plan(id, "alice", JobKind::Unit);
        completions.announce_with(id, announcement::parse(&unit).unwrap().1.unwrap());
        assert!(watch.ended_plan(Viewer::Operator).is_none(), "a sweep's unit is never shown");
        // An id alone, or with a separator other than one space, is what it always was.
        assert_eq!(announcement::parse(id.to_string().as_bytes()), Some((id, None)));
        assert_eq!(announcement::parse(format!("{id}x").as_bytes()), None);
    }
}

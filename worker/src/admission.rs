//! Which deliveries the worker takes on: at most `WORKER_CONCURRENCY` jobs of any size at once,
//! and beside them light jobs, up to `WORKER_LIGHT_CONCURRENCY` jobs in all.
//!
//! A job of 1,000 scenarios spends as long in its round trips to Postgres and Redis as on the
//! engine, so two at a time leave the engine threads idle between them: four or eight at a time
//! raised a burst of such jobs 1.18× and 1.38× (issue 11). Heavy jobs must not follow: each may
//! keep `ENGINE_MEMORY_BUDGET_MB` of values, and a worker that takes more than it runs at full
//! speed holds jobs that a worker the autoscaler just started would run sooner. The size of a
//! job is known only once it is claimed, so every delivery counts as heavy until its handler
//! says it is light ([`Slot::lighten`]); a fetch waits for a heavy place. No more heavy jobs
//! than today are ever held, and small ones fill the gaps.
//!
//! While a job runs alone (its last attempt died with its process: `JobContext::isolation`),
//! the worker takes no delivery at all: one it took could only wait for the lone job's end,
//! while another worker may be idle.
//!
//! This takes the place of apalis's `concurrency` (a tower `ConcurrencyLimit`): apalis fetches
//! only while the service is ready, and this service is ready while a heavy place is free.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use apalis::prelude::{Layer, Service, Task};

/// A job whose cost is at most this many scenario-months (10,000 scenarios × 40 years; tens
/// of milliseconds on the engine, about 10 MB of recorded values) runs beside the heavy ones.
pub(crate) const LIGHT_JOB_COST: u64 = 10_000 * 40 * 12;

/// Is a job of this cost light?
pub(crate) fn is_light(cost: u64) -> bool {
    cost <= LIGHT_JOB_COST
}

/// The worker's places, shared by every apalis worker the supervisor (re)starts, so that jobs
/// still running when one ends keep their places.
#[derive(Debug)]
pub(crate) struct Places {
    heavy_limit: usize,
    total_limit: usize,
    state: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// Deliveries not yet known to be light.
    heavy: usize,
    light: usize,
    /// Jobs running alone, or waiting to.
    alone: usize,
    waiting: Vec<Waker>,
}

impl Places {
    /// `heavy_limit` jobs of any size, `total_limit` (at least as many) in all.
    pub(crate) fn new(heavy_limit: usize, total_limit: usize) -> Arc<Self> {
        let heavy_limit = heavy_limit.max(1);
        Arc::new(Self {
            heavy_limit,
            total_limit: total_limit.max(heavy_limit),
            state: Mutex::default(),
        })
    }

    /// (heavy, light) deliveries held now.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let s = self.state.lock().expect("lock");
        (s.heavy, s.light)
    }

    /// Ready for another delivery, or registers `cx` to be woken when a place frees.
    fn poll_place(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.state.lock().expect("lock");
        if s.alone == 0 && s.heavy < self.heavy_limit && s.heavy + s.light < self.total_limit {
            return Poll::Ready(());
        }
        if !s.waiting.iter().any(|w| w.will_wake(cx.waker())) {
            s.waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }

    fn take(self: &Arc<Self>) -> Slot {
        self.state.lock().expect("lock").heavy += 1;
        Slot(Arc::new(SlotInner { places: self.clone(), light: AtomicBool::new(false) }))
    }

    /// Takes no delivery until the guard is dropped: a job is about to run alone.
    pub(crate) fn alone(self: &Arc<Self>) -> Alone {
        self.change(|s| s.alone += 1);
        Alone(self.clone())
    }

    fn change(&self, f: impl FnOnce(&mut Held)) {
        let waiting = {
            let mut s = self.state.lock().expect("lock");
            f(&mut s);
            std::mem::take(&mut s.waiting)
        };
        waiting.into_iter().for_each(Waker::wake);
    }
}

/// One delivery's place. Every clone shares it; it is given back when the last clone goes
/// (the apalis task's and the job's own task's), so a job that outlives the apalis worker that
/// delivered it keeps its place until it ends.
#[derive(Debug, Clone)]
pub(crate) struct Slot(Arc<SlotInner>);

#[derive(Debug)]
struct SlotInner {
    places: Arc<Places>,
    light: AtomicBool,
}

impl Slot {
    /// The job turned out light: its heavy place is free for another delivery.
    pub(crate) fn lighten(&self) {
        if !self.0.light.swap(true, Ordering::SeqCst) {
            self.0.places.change(|s| {
                s.heavy -= 1;
                s.light += 1;
            });
        }
    }

    /// Lightens the slot if a job of `cost` scenario-months is light.
    pub(crate) fn size(&self, cost: u64) {
        if is_light(cost) {
            self.lighten();
        }
    }
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        let light = *self.light.get_mut();
        self.places.change(|s| if light { s.light -= 1 } else { s.heavy -= 1 });
    }
}

/// While held, the worker takes no delivery ([`Places::alone`]).
#[derive(Debug)]
pub(crate) struct Alone(Arc<Places>);

impl Drop for Alone {
    fn drop(&mut self) {
        self.0.change(|s| s.alone -= 1);
    }
}

/// The tower layer that puts [`Places`] in front of the job handler.
#[derive(Debug, Clone)]
pub(crate) struct AdmissionLayer {
    places: Arc<Places>,
}

impl AdmissionLayer {
    pub(crate) fn new(places: Arc<Places>) -> Self {
        Self { places }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission { inner, places: self.places.clone() }
    }
}

/// Ready while a heavy place is free; each delivery carries its [`Slot`] in the task's data.
#[derive(Debug, Clone)]
pub(crate) struct Admission<S> {
    inner: S,
    places: Arc<Places>,
}

impl<S, Args> Service<Task<Args>> for Admission<S>
where
    S: Service<Task<Args>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.places.poll_place(cx) {
            Poll::Ready(()) => self.inner.poll_ready(cx),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, mut task: Task<Args>) -> Self::Future {
        let slot = self.places.take();
        task.inject_data(slot.clone());
        let answer = self.inner.call(task);
        // Held to the handler's end whatever apalis does with the task's data meanwhile; the
        // job's own task holds its clone past that (see `jobs::simulate::handle`).
        Box::pin(async move {
            let answer = answer.await;
            drop(slot);
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portfolio_engine::JobCost;
    use std::sync::atomic::AtomicUsize;

    struct CountingWaker(AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn ready(places: &Places, waker: &Arc<CountingWaker>) -> bool {
        let waker = Waker::from(waker.clone());
        places.poll_place(&mut Context::from_waker(&waker)).is_ready()
    }

    #[test]
    fn unsized_deliveries_count_as_heavy_and_light_ones_fill_the_rest() {
        let places = Places::new(2, 5);
        let woken = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let a = places.take();
        let b = places.take();
        assert!(!ready(&places, &woken), "two deliveries of unknown size fill the heavy places");
        a.lighten();
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "a lightened slot wakes the fetcher");
        assert!(ready(&places, &woken));
        let lights: Vec<Slot> = (0..3)
            .map(|_| {
                let s = places.take();
                s.lighten();
                s
            })
            .collect();
        assert_eq!(places.held(), (1, 4));
        assert!(!ready(&places, &woken), "five in all");
        drop(lights);
        assert_eq!(places.held(), (1, 1));
        assert!(ready(&places, &woken));
        let c = places.take();
        assert!(!ready(&places, &woken), "the second heavy place is taken again");
        drop((b, c));
        assert_eq!(places.held(), (0, 1));
        drop(a);
        assert_eq!(places.held(), (0, 0));
    }

    #[test]
    fn no_delivery_is_taken_while_a_job_runs_alone_and_the_fetcher_is_woken_after() {
        let places = Places::new(2, 8);
        let woken = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let _lone_job = places.take();
        let alone = places.alone();
        assert!(!ready(&places, &woken), "a free place, but a job runs alone");
        drop(alone);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert!(ready(&places, &woken));
    }

    #[test]
    fn a_place_is_given_back_once_when_its_last_clone_goes_and_lightening_twice_counts_once() {
        let places = Places::new(1, 4);
        let slot = places.take();
        let held_by_the_job = slot.clone();
        slot.lighten();
        held_by_the_job.lighten();
        assert_eq!(places.held(), (0, 1));
        drop(slot);
        assert_eq!(places.held(), (0, 1), "the job's task still holds it");
        drop(held_by_the_job);
        assert_eq!(places.held(), (0, 0));
    }

    #[test]
    fn the_total_is_never_below_the_heavy_limit() {
        let places = Places::new(3, 1);
        let woken = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let _held: Vec<Slot> = (0..3).map(|_| places.take()).collect();
        assert!(!ready(&places, &woken));
        assert_eq!(places.held(), (3, 0));
    }

    #[test]
    fn light_means_at_most_ten_thousand_scenarios_for_forty_years() {
        let cost =
            |scenarios: u64, years: u64| JobCost { scenarios, months: years * 12, passes: 1 };
        assert!(is_light(cost(10_000, 40).total()));
        assert!(is_light(cost(1_000, 30).total()));
        assert!(!is_light(cost(10_001, 40).total()));
        assert!(!is_light(JobCost { scenarios: 1_000, months: 360, passes: 41 }.total()));
    }
}

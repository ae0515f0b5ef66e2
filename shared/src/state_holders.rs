//! Lets a process wait, as it stops, for the threads it does not join to let go of its state.
//!
//! actix's server threads are told to stop but never joined: a server's future resolves once
//! each thread has *said* it stopped, and the thread drops its copy of the app state (and with
//! it the last handles of the Postgres pools) only afterwards. Returning from `main` then races
//! `exit`: libpq closes those connections, through OpenSSL when they use TLS, while `exit` runs
//! OpenSSL's own clean-up, and the process can die with SIGSEGV after a clean stop. So each
//! copy of the state carries a [`Holder`], and the process waits (bounded) until none is left.
//! (The threads a pool connects in cannot be waited for; the settings keep Kerberos out of
//! their connects instead: `settings::without_gss_probe`.)

use std::time::Duration;

use tokio::sync::watch;

/// How long a stopping process waits for its holders ([`Holders::released`]): letting go takes
/// milliseconds, and the API's grace plus this stays inside every orchestrator's stop budget.
pub const LET_GO_WITHIN: Duration = Duration::from_secs(2);

/// Kept by the process; clones watch the same holders.
#[derive(Clone, Debug)]
pub struct Holders {
    tx: watch::Sender<()>,
}

/// Carried by each copy of the state; every clone is one more holder.
#[derive(Clone, Debug)]
pub struct Holder {
    _held: watch::Receiver<()>,
}

impl Holders {
    pub fn new() -> (Self, Holder) {
        let (tx, rx) = watch::channel(());
        (Self { tx }, Holder { _held: rx })
    }

    /// How many holders are alive now.
    pub fn count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Waits until every holder is dropped, at most `within`; `false` if some still were.
    pub async fn released(&self, within: Duration) -> bool {
        tokio::time::timeout(within, self.tx.closed()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn released_answers_once_the_last_holder_on_another_thread_is_dropped() {
        let (holders, holder) = Holders::new();
        let copies: Vec<Holder> = (0..3).map(|_| holder.clone()).collect();
        drop(holder);
        assert_eq!(holders.count(), 3);
        assert!(!holders.released(Duration::from_millis(20)).await, "three are still held");
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = wait.recv();
            drop(copies);
        });
        go.send(()).unwrap();
        assert!(holders.released(Duration::from_secs(10)).await);
        assert_eq!(holders.count(), 0);
        thread.join().unwrap();
    }
}

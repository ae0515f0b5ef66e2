//! Which API instance leads the background work: the holder of a Postgres session advisory
//! lock, kept on a connection of its own. Leadership moves on by itself when the holder dies
//! (its session ends). A holder that is frozen rather than dead (a paused VM, `SIGSTOP`) keeps
//! its session, so the lock alone would keep it leader for as long as the freeze lasts; hence
//! the holder's session runs a statement every tick, in a task of its own apart from the work
//! (a slow round of work never makes a live leader look silent), and the next instance to ask
//! for the lock ends a holder's session that has been silent for the orphan window.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Bool, Double};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use portfolio_shared::settings::{ExposeSecret, SecretUrl};
use portfolio_shared::telemetry::spawn_blocking_with_tracing;
use tokio::task::AbortHandle;

/// Advisory-lock key of the leader ("leader" in ASCII).
const LEADER_LOCK: i64 = 0x6c65_6164_6572;
/// How often the lock is asked for, or its session shown alive.
const TICK: Duration = Duration::from_millis(500);
/// How recent the last confirmation of the lock must be for this instance to act as leader:
/// after a freeze longer than this, it does no work until it has checked it still leads.
const CONFIRMED_WITHIN: Duration = Duration::from_secs(2);

/// This instance's view of the lock, kept current by a task that ends when this is dropped.
pub(crate) struct Leadership {
    confirmed: Arc<Mutex<Option<Instant>>>,
    task: AbortHandle,
}

impl Leadership {
    /// Starts asking for the lock on `url`. A holder whose session has been silent for
    /// `silent_for` is taken to be frozen, and its session is ended.
    pub(crate) fn spawn(url: SecretUrl, silent_for: Duration) -> Self {
        let confirmed = Arc::new(Mutex::new(None));
        let task = tokio::spawn(keep(Lock::new(url, silent_for), confirmed.clone()));
        Self { confirmed, task: task.abort_handle() }
    }

    /// Whether this instance leads: it holds the lock, checked within [`CONFIRMED_WITHIN`].
    pub(crate) fn leads(&self) -> bool {
        let confirmed = *self.confirmed.lock().expect("the leadership mutex is never poisoned");
        confirmed.is_some_and(|at| at.elapsed() < CONFIRMED_WITHIN)
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep(mut lock: Lock, confirmed: Arc<Mutex<Option<Instant>>>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (holds, back) = lock.check().await;
        lock = back;
        *confirmed.lock().expect("the leadership mutex is never poisoned") =
            holds.then(Instant::now);
    }
}

/// The lock's connection, and whether it holds the lock.
struct Lock {
    url: SecretUrl,
    silent_for: Duration,
    conn: Option<PgConnection>,
    holds: bool,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct Ended {
    #[diesel(sql_type = BigInt)]
    ended: i64,
}

impl Lock {
    fn new(url: SecretUrl, silent_for: Duration) -> Self {
        Self { url, silent_for, conn: None, holds: false }
    }

    /// Whether this instance holds the lock now. Runs on a blocking thread; returns itself.
    async fn check(self) -> (bool, Self) {
        let (url, silent_for) = (self.url.clone(), self.silent_for);
        match spawn_blocking_with_tracing(move || {
            let mut me = self;
            let holds = me.check_blocking();
            (holds, me)
        })
        .await
        {
            Ok(pair) => pair,
            Err(_) => (false, Lock::new(url, silent_for)),
        }
    }

    fn check_blocking(&mut self) -> bool {
        if self.conn.is_none() {
            self.holds = false;
            self.conn = PgConnection::establish(self.url.expose_secret()).ok();
        }
        let Some(conn) = self.conn.as_mut() else { return false };
        let outcome = if self.holds {
            // The session lock lives as long as the session; this statement also shows the
            // session alive to the instances asking for the lock.
            diesel::sql_query("SELECT true AS locked").get_result::<Locked>(conn)
        } else {
            diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                .bind::<BigInt, _>(LEADER_LOCK)
                .get_result::<Locked>(conn)
        };
        match outcome {
            Ok(row) => {
                if row.locked && !self.holds {
                    tracing::info!("this API instance now leads the background work");
                }
                if !row.locked {
                    end_a_silent_holder(conn, self.silent_for);
                }
                self.holds = row.locked;
            }
            Err(e) => {
                if self.holds {
                    tracing::warn!(error = %e, "lost the leader connection");
                }
                self.holds = false;
                self.conn = None;
            }
        }
        self.holds
    }
}

/// Ends the session holding the lock if it has run nothing for `silent_for`: its process
/// is frozen (a live holder runs a statement every tick), and the lock goes with the session.
/// Where this role may not see or signal the holder's session, nothing happens.
fn end_a_silent_holder(conn: &mut PgConnection, silent_for: Duration) {
    let ended = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid)) AS ended \
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND l.classid = ($1 >> 32)::oid AND l.objid = ($1 & 4294967295)::oid \
            AND a.pid <> pg_backend_pid() \
            AND a.state_change < now() - make_interval(secs => $2)",
    )
    .bind::<BigInt, _>(LEADER_LOCK)
    .bind::<Double, _>(silent_for.as_secs_f64())
    .get_result::<Ended>(conn);
    match ended {
        Ok(Ended { ended: 0 }) => {}
        Ok(Ended { ended }) => tracing::warn!(
            ended,
            silent_secs = silent_for.as_secs_f64(),
            "ended the session of a leader that ran nothing for the orphan window; \
             taking the lead once it is gone"
        ),
        Err(e) => tracing::debug!(error = %e, "could not look for a silent leader"),
    }
}

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
use portfolio_shared::conninfo;
use portfolio_shared::settings::{ExposeSecret, SecretUrl};
use portfolio_shared::telemetry::spawn_blocking_with_tracing;
use tokio::task::AbortHandle;

/// Advisory-lock key of the leader ("leader" in ASCII).
const LEADER_LOCK: i64 = 0x6c65_6164_6572;
/// How often the lock is asked for, or its session shown alive.
const TICK: Duration = Duration::from_millis(500);
/// The longest a confirmation of the lock counts for: after a freeze longer than this (or than
/// half the silent window, if that is shorter), this instance does no work as leader until it
/// has checked it still holds the lock.
const CONFIRMED_WITHIN: Duration = Duration::from_secs(2);

/// This instance's view of the lock, kept current by a task that ends when this is dropped.
pub(crate) struct Leadership {
    confirmed: Arc<Mutex<Option<Instant>>>,
    confirmed_within: Duration,
    task: AbortHandle,
}

impl Leadership {
    /// Starts asking for the lock on `url`. A holder whose session has been silent for
    /// `silent_for` is taken to be frozen, and its session is ended.
    pub(crate) fn spawn(url: SecretUrl, silent_for: Duration) -> Self {
        let confirmed = Arc::new(Mutex::new(None));
        let task = tokio::spawn(keep(Lock::new(url, silent_for), confirmed.clone()));
        // Another instance ends this one's session once it has been silent for `silent_for`;
        // a confirmation older than half that is no longer proof of anything.
        let confirmed_within = CONFIRMED_WITHIN.min(silent_for / 2);
        Self { confirmed, confirmed_within, task: task.abort_handle() }
    }

    /// Whether this instance leads: it holds the lock, confirmed recently enough that no other
    /// instance can have taken it meanwhile. The background work asks before each step.
    pub(crate) fn leads(&self) -> bool {
        let confirmed = *self.confirmed.lock().expect("the leadership mutex is never poisoned");
        confirmed.is_some_and(|at| at.elapsed() < self.confirmed_within)
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
        // Dated from before the check: a freeze during it (or before this line) then ages the
        // confirmation, where dating it after would make it look fresh on thawing.
        let asked = Instant::now();
        let (holds, back) = lock.check().await;
        lock = back;
        *confirmed.lock().expect("the leadership mutex is never poisoned") = holds.then_some(asked);
    }
}

/// The lock's connection, and whether it holds the lock.
struct Lock {
    url: SecretUrl,
    silent_for: Duration,
    conn: Option<PgConnection>,
    holds: bool,
    /// Since when the lock has been refused, and when a silent holder was last looked for:
    /// the look reads `pg_locks`, so each follower makes it only once the lock has been
    /// refused for the silent window, and then at most every half window.
    refused_since: Option<Instant>,
    looked_at: Option<Instant>,
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
        Self { url, silent_for, conn: None, holds: false, refused_since: None, looked_at: None }
    }

    /// Whether to look for a silent holder now (the lock was just refused).
    fn time_to_look(&mut self) -> bool {
        let now = Instant::now();
        let refused_since = *self.refused_since.get_or_insert(now);
        let due = now.duration_since(refused_since) >= self.silent_for
            && self.looked_at.is_none_or(|at| now.duration_since(at) >= self.silent_for / 2);
        if due {
            self.looked_at = Some(now);
        }
        due
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
            // The pools' connection settings: a vanished host is given up on within seconds,
            // and the session is named after the process.
            let url = conninfo::for_this_process(self.url.expose_secret());
            self.conn = PgConnection::establish(&url).ok();
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
                self.holds = row.locked;
                if row.locked {
                    self.refused_since = None;
                } else if self.time_to_look()
                    && let Some(conn) = self.conn.as_mut()
                {
                    end_a_silent_holder(conn, self.silent_for);
                }
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

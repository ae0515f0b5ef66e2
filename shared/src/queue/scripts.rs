//! Our Lua scripts on apalis-redis's keys, one `.lua` file each under `lua/` (each file's
//! header says why it exists and which keys and arguments it takes, in order). Pushes, the
//! reconciler's view of what the queue holds, giving back an ended worker's claims, freeing
//! acknowledged deliveries and promoting due jobs all run as one script each, so each is atomic
//! against the workers' own scripts.

use std::sync::LazyLock;

use redis::Script;

/// Moves due jobs to the ready list, a bounded number at a time.
pub(super) static PROMOTE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/promote.lua")));
/// Gives a job at most one entry, rewriting its payload (apalis-redis's push is a no-op for an
/// id it has seen before).
pub(super) static PUSH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/push.lua")));
/// Of some jobs, those no entry holds.
pub(super) static UNHELD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/unheld.lua")));
/// Gives back an ended worker's claims and unregisters it.
pub(super) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/release.lua")));
/// Takes jobs cancelled while queued out of the queue.
pub(super) static WITHDRAW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/withdraw.lua")));
/// Frees the data and meta of acknowledged jobs.
pub(super) static SWEEP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/sweep.lua")));

/// Whether the script of this SHA-1 may run twice for one call (see `connect`): each of ours
/// does. A push gives a job at most one entry, promoting moves only due jobs, a release finds
/// nothing left to give back, a sweep nothing left to free, a withdrawal nothing left to take
/// out, and a second rate-limit count is one request too many in a minute's window.
pub(super) fn bear_a_second_run(sha: &[u8]) -> bool {
    [
        &*PROMOTE,
        &*PUSH,
        &*UNHELD,
        &*RELEASE,
        &*SWEEP,
        &*WITHDRAW,
        &*crate::rate_limit::SLIDING_WINDOW,
    ]
    .iter()
    .any(|script| script.get_hash().as_bytes() == sha)
}

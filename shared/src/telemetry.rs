//! Tracing set up once per process: an env filter (`RUST_LOG`, checked when the settings are
//! read, so an unreadable one has already stopped the process), JSON lines in production or
//! readable text locally (`LOG_FORMAT`), and the helper that carries the current span into a
//! blocking thread so log lines of the engine keep their job and request ids.

use tracing::Span;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::settings::{LogFormat, TelemetrySettings};

/// Installs the global subscriber. A second call (several apps in one test process) is a no-op.
pub fn init(settings: &TelemetrySettings) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(settings.filter.env_filter())
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// Keeps `anyhow` from capturing a backtrace with every error when `RUST_BACKTRACE` is set (as
/// on many hosts, for panics' sake). Errors are logged with their chain of causes; with a
/// backtrace through actix's generic frames, one warning of a Redis outage was about 0.5 MB,
/// and an API's log grew by 50 MB in 8 s of Redis away. `RUST_LIB_BACKTRACE` governs library
/// backtraces apart from panics', which keep theirs; one the operator set is kept. Called first
/// in each binary's `main`, before any thread starts.
#[expect(unsafe_code, reason = "setting a variable of the process's environment")]
pub fn quiet_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: no other thread runs yet, so none reads or writes the environment meanwhile.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") }
    }
}

/// `tokio::task::spawn_blocking`, keeping the caller's span.
pub fn spawn_blocking_with_tracing<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}

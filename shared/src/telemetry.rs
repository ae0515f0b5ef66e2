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

/// `tokio::task::spawn_blocking`, keeping the caller's span.
pub fn spawn_blocking_with_tracing<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}

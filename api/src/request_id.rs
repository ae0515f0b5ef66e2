//! Request ids: taken from `X-Request-Id` when the client sends a usable one, generated
//! otherwise, echoed in the response, put on the request's root span (so every log line of the
//! request carries it) and stored with the job (so the worker's lines and the audit rows do).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

pub(crate) const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of a request, available to handlers as an extension.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

/// Whether a client's id is kept: `^[A-Za-z0-9._:-]{1,128}$`, enough for UUIDs, ULIDs and
/// trace ids. Anything else (quotes, spaces, `=`, braces...) could forge a field of a log line
/// or pass for another system's id in an audit row, so it is replaced by a generated one.
pub(crate) fn usable(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Outermost middleware: fixes the id before tracing starts the root span.
pub(crate) async fn assign(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| usable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let value = HeaderValue::from_str(&id).expect("checked or generated ids are valid headers");
    req.headers_mut().insert(HEADER, value.clone());
    req.extensions_mut().insert(RequestId(id));
    req.extensions_mut().insert(Arrived(Instant::now()));
    let mut res = next.call(req).await?;
    res.headers_mut().insert(HEADER, value);
    Ok(res)
}

/// The query parameters the API reads: their values are logged as sent.
const LOGGED_PARAMETERS: [&str; 4] = ["wait", "limit", "before", "minutes"];

/// The request's path and query for the log, with the value of any query parameter the API
/// does not read left out (`…`), and any path segment written as an API key is: a client that
/// puts its key in the query string (as `?api_key=`, say) or the path is refused, and its key
/// must not reach the logs on the way.
pub(crate) fn loggable_target(uri: &actix_web::http::Uri) -> String {
    let path: Vec<&str> = uri
        .path()
        .split('/')
        .map(|segment| if segment.starts_with("pmc_") { "…" } else { segment })
        .collect();
    let path = path.join("/");
    let Some(query) = uri.query() else {
        return path;
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if LOGGED_PARAMETERS.contains(&name) => pair.to_owned(),
            None if LOGGED_PARAMETERS.contains(&pair) => pair.to_owned(),
            _ => "…".to_owned(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// When the request reached the outermost middleware, for its access line.
#[derive(Debug, Clone, Copy)]
struct Arrived(Instant);

/// Root span with `request_id` from the header [`assign`] set.
pub(crate) struct RequestIdRootSpan;

impl RootSpanBuilder for RequestIdRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        // Built by hand rather than with `root_span!`, which adds tracing-actix-web's own
        // generated `request_id` next to ours.
        let id = request.headers().get(&HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-");
        let route = request.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
        tracing::info_span!(
            "request",
            request_id = %id,
            http.method = %request.method(),
            http.route = %route,
            http.target = %loggable_target(request.uri()),
            http.status_code = tracing::field::Empty,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    /// Records the status on the span, and writes the request's access line in it: method,
    /// route, target and request id (the span's), status and time taken. Health probes and
    /// the like are written at debug level, so a load balancer's probes do not fill the log.
    /// An error's cause is logged where it is answered (`ApiError::error_response`), at the
    /// level it deserves; tracing-actix-web's own error event, which logged a designed refusal
    /// such as a full queue as an error, is off (its default feature).
    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span.clone(), outcome);
        let _in = span.enter();
        let Ok(response) = outcome else {
            tracing::info!("request failed before it was answered");
            return;
        };
        let status = response.status().as_u16();
        let elapsed_ms = response
            .request()
            .extensions()
            .get::<Arrived>()
            .map(|arrived| arrived.0.elapsed().as_secs_f64() * 1e3);
        let probe = matches!(response.request().path(), "/health" | "/ready");
        if probe && status < 400 {
            tracing::debug!(status, elapsed_ms, "request");
        } else {
            tracing::info!(status, elapsed_ms, "request");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{loggable_target, usable};

    #[test]
    fn a_query_is_logged_with_only_the_values_of_parameters_the_api_reads() {
        let logged = |target: &str| loggable_target(&target.parse().unwrap());
        assert_eq!(logged("/results/x"), "/results/x");
        assert_eq!(logged("/results/x?wait=5"), "/results/x?wait=5");
        assert_eq!(
            logged("/results?api_key=pmc_abcd_SECRET&limit=2&pmc_abcd_SECRET&wait"),
            "/results?…&limit=2&…&wait"
        );
        assert!(!logged("/results?access_token=pmc_abcd_SECRET").contains("SECRET"));
        assert_eq!(logged("/results/pmc_abcd_SECRET/table.csv"), "/results/…/table.csv");
    }

    #[test]
    fn only_ids_of_the_safe_pattern_are_kept() {
        let longest = "a".repeat(128);
        for kept in ["a", "0193aa2e-2c4b-7c3e-9f1a-6d2b9c1e4f00", "trace:1.2_3-x", &longest] {
            assert!(usable(kept), "{kept}");
        }
        let too_long = "a".repeat(129);
        for replaced in ["", "a b", "id\"x", "a=b", "{}", "ü", "a\tb", "x/y", "<script>", &too_long]
        {
            assert!(!usable(replaced), "{replaced:?}");
        }
    }
}

//! The one error type of the API. Every failure becomes an RFC 9457 problem document
//! (`application/problem+json`): user mistakes are 4xx naming the field and the rule; server
//! trouble is logged once with its cause chain and answered without internals.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use portfolio_engine::FieldError;
use serde::Serialize;
use utoipa::ToSchema;

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";
/// The challenge of every 401 (RFC 6750 §3).
pub(crate) const WWW_AUTHENTICATE: &str = r#"Bearer realm="portfolio-mc""#;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body did not arrive in time: a client that sends its headers and then trickles or
    /// withholds the body must not hold a connection and its request for ever.
    #[error("the body did not arrive within {secs} s of the request; nothing was recorded")]
    BodyTimedOut { secs: u64 },
    /// No key, or one that is malformed, unknown or revoked: all answered alike, so that the
    /// answer says nothing of whether a key exists.
    #[error(
        "this route needs an API key: send `Authorization: Bearer <key>`; the key given (if any) is not valid"
    )]
    Unauthorized,
    /// A valid key without the scope the route needs.
    #[error("{0}")]
    Forbidden(String),
    /// The tenant used its budget of this kind of request for the minute.
    #[error(
        "rate limit: at most {limit} {budget} per minute per tenant ({setting}); retry in {retry_after_secs} s"
    )]
    RateLimited { budget: &'static str, limit: u32, setting: &'static str, retry_after_secs: u64 },
    /// The tenant's queued and running work holds `unfinished` queue places (a plan one, a
    /// sweep one per unit), and `needed` more would pass `limit`.
    #[error(
        "quota: your queued and running jobs hold {unfinished} of the {limit} queue places one tenant may hold (MAX_UNFINISHED_JOBS_PER_KEY={limit}; a plan holds one, a sweep one per unit), and this submit needs {needed}; nothing was recorded, submit again when some have finished"
    )]
    QuotaReached { unfinished: i64, needed: i64, limit: u64 },
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    /// Postgres refused a value of the request (a data exception, SQLSTATE class 22) that the
    /// API's own rules let through; nothing was recorded.
    #[error(
        "the database refused a value of this request as invalid data (SQLSTATE {sqlstate}); \
         nothing was recorded"
    )]
    RefusedByDatabase { sqlstate: String },
    /// The job would cost more than the deployment allows (`MAX_JOB_COST`).
    #[error(
        "the job would cost {cost}, over this deployment's limit \
         (MAX_JOB_COST={limit}); lower n_scenarios or years, or solve with fewer scenarios"
    )]
    TooCostly { cost: portfolio_engine::JobCost, limit: u64 },
    /// The queue is above its depth ceiling: try again later. The depth itself is logged, not
    /// told: it counts every tenant's jobs, and only an operator key may read the queue.
    #[error("the queue is full")]
    QueueFull { depth: u64, retry_after_secs: u64 },
    /// A dependency is down: nothing was recorded, unless `unsettled` (it stopped answering
    /// while it had what the request asked of it, which may still be done when it answers).
    #[error("{what} is unavailable")]
    Unavailable {
        what: &'static str,
        retry_after_secs: u64,
        unsettled: bool,
        source: anyhow::Error,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation-error")]
    pub(crate) kind: String,
    #[schema(example = "Your request has invalid fields")]
    pub(crate) title: String,
    #[schema(example = 422)]
    pub(crate) status: u16,
    #[schema(example = "years: must be an integer from 1 to 100")]
    pub(crate) detail: String,
    /// Each broken rule, with the field to change (a validation error; a job over `MAX_JOB_COST`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) errors: Option<Vec<FieldError>>,
}

/// What a problem may show of a client's input (a path, a path segment): up to 64 characters,
/// then `…` for the rest. A 404 need not echo 20 KB back.
pub(crate) fn shortened(input: &str) -> std::borrow::Cow<'_, str> {
    const MOST: usize = 64;
    match input.char_indices().nth(MOST) {
        Some((cut, _)) => format!("{}…", &input[..cut]).into(),
        None => input.into(),
    }
}

/// [`shortened`], quoted as a string literal.
pub(crate) fn quoted(input: &str) -> String {
    format!("{:?}", shortened(input))
}

impl ApiError {
    pub(crate) fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub(crate) fn unavailable(what: &'static str, source: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable { what, retry_after_secs: 5, unsettled: false, source: source.into() }
    }

    /// `what` stopped answering after it was asked to change something, which it may still do.
    pub(crate) fn unsettled(what: &'static str, source: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable { what, retry_after_secs: 5, unsettled: true, source: source.into() }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            Self::Validation(_) => ("validation-error", "Your request has invalid fields"),
            Self::Malformed(_) => ("malformed-json", "The body is not valid JSON"),
            Self::UnsupportedMediaType(_) => ("unsupported-media-type", "Send JSON"),
            Self::PayloadTooLarge { .. } => ("payload-too-large", "The body is too large"),
            Self::BodyTimedOut { .. } => ("request-timeout", "The body came too slowly"),
            Self::Unauthorized => ("unauthorized", "An API key is needed"),
            Self::Forbidden(_) => ("forbidden", "The API key lacks a scope"),
            Self::RateLimited { .. } => ("rate-limited", "Too many requests"),
            Self::QuotaReached { .. } => ("quota-reached", "Too many unfinished jobs"),
            Self::NotFound(_) => ("not-found", "Not found"),
            Self::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            Self::Conflict(_) => ("conflict", "Conflict with the job's state"),
            Self::RefusedByDatabase { .. } => {
                ("refused-by-database", "The database refused the input")
            }
            Self::TooCostly { .. } => ("job-too-costly", "The job would cost too much"),
            Self::QueueFull { .. } => ("queue-full", "Too many jobs are waiting"),
            Self::Unavailable { unsettled: false, .. } => {
                ("service-unavailable", "A dependency is unavailable")
            }
            Self::Unavailable { unsettled: true, .. } => {
                ("outcome-unknown", "A dependency stopped answering; the outcome is not known")
            }
            Self::Internal(_) => ("internal-error", "Internal server error"),
        }
    }

    pub(crate) fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let detail = match self {
            Self::Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            Self::QueueFull { retry_after_secs, .. } => format!(
                "more jobs are waiting than this deployment takes (QUEUE_DEPTH_CEILING); nothing \
                 was recorded, retry in {retry_after_secs} s"
            ),
            Self::Unavailable { what, retry_after_secs, unsettled: false, .. } => {
                format!("{what} is unreachable; nothing was changed, retry in {retry_after_secs} s")
            }
            Self::Unavailable { what, retry_after_secs, unsettled: true, .. } => format!(
                "{what} stopped answering while it had this request's change, which may still be \
                 done (a submit retried with the same Idempotency-Key finds its job); retry in \
                 {retry_after_secs} s"
            ),
            Self::Internal(_) => "the server failed to handle this request".to_owned(),
            other => other.to_string(),
        };
        Problem {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: self.status_code().as_u16(),
            detail,
            // A job over the cost cap names what to change too: the scenario count is its lever.
            errors: match self {
                Self::Validation(errors) => Some(errors.clone()),
                Self::TooCostly { .. } => {
                    Some(vec![FieldError::new("n_scenarios", self.to_string())])
                }
                _ => None,
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::RefusedByDatabase { .. } | Self::TooCostly { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } | Self::QuotaReached { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::QueueFull { .. } | Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(e) => tracing::error!(error = ?e, "request failed"),
            // Counted by `portfolio_submits_refused_total`; a burst refuses thousands.
            Self::QueueFull { depth, .. } => {
                tracing::debug!(depth, "submit refused: the queue is above its ceiling")
            }
            Self::Unavailable { what, source, .. } => {
                tracing::warn!(dependency = what, error = ?source, "dependency unavailable")
            }
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Self::QueueFull { retry_after_secs, .. }
        | Self::Unavailable { retry_after_secs, .. }
        | Self::RateLimited { retry_after_secs, .. } = self
        {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if let Self::QuotaReached { .. } = self {
            // Jobs end within seconds to minutes; a client backing off this long is not early.
            response.insert_header((header::RETRY_AFTER, "30"));
        }
        if let Self::Unauthorized = self {
            response.insert_header((header::WWW_AUTHENTICATE, WWW_AUTHENTICATE));
        }
        response.body(serde_json::to_vec(&self.problem()).expect("a problem always serialises"))
    }
}

/// The largest body of a bare error answer read into a problem's `detail`.
const BARE_DETAIL_LIMIT: usize = 1024;

/// Middleware: a client error answered by a layer of actix's and not by us (the CORS
/// middleware refusing an origin, for one) comes without a `Content-Type`, its reason as plain
/// text. It is rewritten as the problem document every other error is, its text the `detail`.
pub(crate) async fn problem_for_bare_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let status = res.status();
    if !status.is_client_error() || res.headers().contains_key(header::CONTENT_TYPE) {
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let (mut head, body) = res.into_parts();
    let text = actix_web::body::to_bytes_limited(body, BARE_DETAIL_LIMIT)
        .await
        .ok()
        .and_then(Result::ok)
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("Client error");
    // In our titles' case: "Bad request", as "Method not allowed".
    let title = reason.get(..1).unwrap_or_default().to_owned() + &reason[1..].to_lowercase();
    let problem = Problem {
        kind: format!("/problems/{}", reason.to_ascii_lowercase().replace(' ', "-")),
        title,
        status: status.as_u16(),
        detail: if text.is_empty() { reason.to_lowercase() } else { text },
        errors: None,
    };
    head.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    head.headers_mut().remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&problem).expect("a problem always serialises");
    Ok(ServiceResponse::new(req, head.set_body(BoxBody::new(body))))
}

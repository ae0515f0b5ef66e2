//! The middleware in front of every route: lets the public routes through, authenticates
//! everything else (401 + `WWW-Authenticate: Bearer`), then counts the request against its
//! tenant's budget for the minute (429 + `Retry-After` once it is spent). The budgets are the
//! IETF httpapi rate-limit draft's policies (`RateLimit-Policy`, `RateLimit` on every
//! authenticated answer). A submit's count is decided beside its handler's first reads instead
//! of before them ([`super::admission`]).
//!
//! A key is looked up on the primary at every request: a revoked key stops working at once on
//! every replica, for one indexed read per request. A submit, and a read of one job where reads
//! go to the primary, on a key this process found valid in the last minute are the exceptions:
//! the statement that records or reads the job checks the key instead, and nothing else is
//! answered on it before a lookup ([`super::lookup`]). A request that lasted a second or more
//! (a long-poll, a waited submit) is looked up again before it answers.

use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use portfolio_shared::rate_limit::{Budget, Decision};
use portfolio_shared::settings::AuthMode;

use super::admission::{Admission, whole_seconds};
use super::key::PresentedKey;
use super::{Caller, lookup};
use crate::error::ApiError;
use crate::state::AppState;

/// The routes anyone may call: the pages and their assets (they ask for the key themselves)
/// and the health checks load balancers probe. Everything else, the OpenAPI document
/// included, is for key holders.
pub(crate) const PUBLIC: &[&str] = &["/", "/dashboard", "/assets/{name}", "/health", "/ready"];

/// A request that lasted this long looks its key up again before its answer goes out: a
/// long-poll or a waited submit answers up to `MAX_WAIT_SECS` after its key was checked, and a
/// key revoked meanwhile gets the `401`, not the job. A shorter request's answer is no later
/// than one sent just before the revocation would have been, and pays no second lookup.
const CHECK_KEY_AGAIN_AFTER: Duration = Duration::from_secs(1);

static RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Is this route served to anyone? Decided on the route the request matches (as the router
/// decides it), not on the raw path, so that no spelling of a protected path passes as public.
pub(crate) fn is_public(req: &ServiceRequest) -> bool {
    req.match_pattern().is_some_and(|pattern| PUBLIC.contains(&pattern.as_str()))
}

pub(crate) async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // CORS preflights carry no credentials, and never reach here: the CORS middleware outside
    // answers them when `CORS_ALLOWED_ORIGINS` is set, and a same-origin page sends none. An
    // `OPTIONS` that does needs a key like any request: its `405` would list a route's methods.
    if is_public(&req) {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let state = req.app_data::<web::Data<AppState>>().expect("AppState is registered").clone();
    let started = Instant::now();
    let budget = budget_of(&req, &state);
    let submit = budget.name == SUBMITS;
    let checked_by_handler = submit || reads_one_job_on_the_primary(&req, &state);
    let (caller, key) = match state.settings.auth.mode {
        AuthMode::Disabled => (Caller::local(), None),
        AuthMode::ApiKey => match identify(&state, &req, checked_by_handler).await {
            Ok((caller, key)) => (caller, Some(key)),
            Err(e) => {
                // A submit whose key could not be looked up is refused for the outage, as one
                // whose record could not be written is.
                if submit && matches!(e, ApiError::Unavailable { .. }) {
                    state.metrics.submits_refused.with_label_values(&["unavailable"]).inc();
                }
                return Ok(req.error_response(e).map_into_right_body());
            }
        },
    };
    let admission = if submit {
        // A submit reads its body and asks Redis for the cache and the queue depth while it
        // is counted, and waits for the decision before it records anything (admission.rs).
        let (counting, tenant) = (state.clone(), caller.tenant.clone());
        let admission = Admission::start(
            async move { count(&counting, &tenant, budget).await },
            budget,
            "RATE_LIMIT_SUBMITS_PER_MINUTE",
        );
        // Lets the count reach Redis before the handler starts on the body.
        tokio::task::yield_now().await;
        admission
    } else {
        let decision = count(&state, &caller.tenant, budget).await;
        let admission = Admission::decided(decision, budget, "RATE_LIMIT_READS_PER_MINUTE");
        if let Some(decision) = decision
            && !decision.accepted
        {
            return Ok(refused(req, &admission, decision).map_into_right_body());
        }
        admission
    };
    let admission = match key {
        Some((key, remembered)) => admission.with_key(key, remembered),
        None => admission,
    };
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(admission.clone());
    let mut response = next.call(req).await?.map_into_left_body();
    let again = admission.key_checked_yet() && started.elapsed() >= CHECK_KEY_AGAIN_AFTER;
    if again {
        // A long-poll, a submit that waited for its job: the key may have been revoked while
        // the request waited, and its answer must not go out on a revoked key.
        admission.check_key_again();
    }
    // A `503` carries nothing of the tenant's, and a lookup would only wait out a second
    // checkout on the Postgres that is away: it goes out as it is.
    let bounded = again && response.status() == StatusCode::ACCEPTED;
    if admission.key_unchecked()
        && response.status() != StatusCode::SERVICE_UNAVAILABLE
        && let Err(e) = verify(&admission, &state, bounded).await
        // A key found valid at the start and not known either way now (Postgres went away
        // while the request waited) keeps its answer: a waited submit's `202` says its job was
        // recorded, which a `503` would deny.
        && (!again || matches!(e, ApiError::Unauthorized))
    {
        // A remembered key the handler answered on without a check (a body it refused, a
        // spent budget): its answer waits for the lookup, and a revoked key gets the `401`.
        let req = ServiceRequest::from_request(response.request().clone());
        return Ok(req.error_response(e).map_into_right_body());
    }
    if admission.key_refused() {
        return Ok(response);
    }
    let decision = admission.decision().await;
    if let Some(decision) = decision
        && !decision.accepted
    {
        // Only a submit gets here: any other request was refused before its handler.
        state.metrics.submits_refused.with_label_values(&["rate_limited"]).inc();
        if !admission.was_asked() {
            // The handler answered without asking (a body it refused) and did nothing: the
            // budget's answer comes first. One that asked answered the refusal itself.
            let req = ServiceRequest::from_request(response.request().clone());
            return Ok(refused(req, &admission, decision).map_into_right_body());
        }
    }
    if let Some(decision) = decision {
        add_rate_limit_headers(response.headers_mut(), budget, decision);
    }
    // The answer is the key's: a browser that keeps it (an ended job is `private, max-age`)
    // must not serve it to the next key used in the same profile.
    response.headers_mut().append(header::VARY, HeaderValue::from_static("authorization"));
    Ok(response)
}

/// Counts the request against `budget`; `None` when Redis could not be asked.
async fn count(state: &AppState, tenant: &str, budget: Budget) -> Option<Decision> {
    match state.redis(state.rate_limiter.admit(tenant, budget)).await {
        Ok(decision) => Some(decision),
        Err(e) => {
            // Open, not closed: a Redis outage must not turn into an outage of reads (which
            // need only Postgres) or of submits (which are then reconciled). The quota, kept
            // in Postgres, still bounds what one tenant can queue meanwhile.
            tracing::warn!(error = ?e, "rate limiter unavailable; request let through");
            None
        }
    }
}

/// The `429` of a spent budget, with its headers.
fn refused(req: ServiceRequest, admission: &Admission, decision: Decision) -> ServiceResponse {
    let mut response = req.error_response(admission.refusal(decision));
    add_rate_limit_headers(response.headers_mut(), admission.budget(), decision);
    response
}

const SUBMITS: &str = "submits";
const REQUESTS: &str = "requests";

/// Submits have a budget of their own (each is a job for the fleet); everything else shares
/// a larger one.
fn budget_of(req: &ServiceRequest, state: &AppState) -> Budget {
    let submit = req.method() == Method::POST
        && matches!(req.match_pattern().as_deref(), Some("/simulations" | "/run_simulation"));
    if submit {
        Budget { name: SUBMITS, limit: state.settings.auth.submits_per_minute }
    } else {
        Budget { name: REQUESTS, limit: state.settings.auth.reads_per_minute }
    }
}

/// How long the key's second look waits for Postgres after a long request answered `202`.
/// The request has waited as long as it was asked to already; a Postgres that does not answer
/// (paused, or the host gone) held a waited submit's `202` five more seconds for its checkout.
const CHECK_AGAIN_WITHIN: Duration = Duration::from_millis(500);

/// The key's lookup for a request answered on a remembered key. `bounded`: the second look
/// after a long request whose answer is a `202`, which carries nothing but the job's id, so
/// not knowing within [`CHECK_AGAIN_WITHIN`] is not knowing and the answer stands; any other
/// answer (a job's document, its result) waits for the lookup, so a revoked key never gets it.
async fn verify(admission: &Admission, state: &AppState, bounded: bool) -> Result<(), ApiError> {
    if !bounded {
        return admission.verified(state).await;
    }
    tokio::time::timeout(CHECK_AGAIN_WITHIN, admission.verified(state)).await.unwrap_or_else(|_| {
        let late =
            anyhow::anyhow!("no answer to the key's second look within {CHECK_AGAIN_WITHIN:?}");
        Err(ApiError::unavailable("postgres", late))
    })
}

/// A read of one job (`GET /results/{id}`, long-poll or not) where reads go to the primary:
/// its handler's read checks a remembered key in the same statement (`store::
/// find_job_checking_key`). A replica may not have a revocation yet, so with one every read is
/// looked up first.
fn reads_one_job_on_the_primary(req: &ServiceRequest, state: &AppState) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD)
        && req.match_pattern().as_deref() == Some("/results/{id}")
        && !state.reads_from_replica()
}

/// Who the request's key is, and the key (with whether it was only remembered). A request
/// whose handler checks the key in its own statement (`checked_by_handler`: a submit, a read of
/// one job on the primary) may go on a key remembered as valid; everything else is looked up
/// on the primary.
async fn identify(
    state: &AppState,
    req: &ServiceRequest,
    checked_by_handler: bool,
) -> Result<(Caller, (PresentedKey, bool)), ApiError> {
    let key = lookup::presented(req)?;
    if checked_by_handler && let Some(caller) = state.verified_keys.recall(&key) {
        return Ok((caller, (key, true)));
    }
    let caller = lookup::look_up(state, key.clone()).await?;
    Ok((caller, (key, false)))
}

/// `RateLimit-Policy: "submits";q=120;w=60` and `RateLimit: "submits";r=57;t=12`
/// (draft-ietf-httpapi-ratelimit-headers).
fn add_rate_limit_headers(headers: &mut header::HeaderMap, budget: Budget, decision: Decision) {
    let window = portfolio_shared::rate_limit::WINDOW.as_secs();
    let policy = format!("\"{}\";q={};w={window}", budget.name, budget.limit);
    let state =
        format!("\"{}\";r={};t={}", budget.name, decision.remaining, whole_seconds(decision.reset));
    for (name, value) in [(&RATE_LIMIT_POLICY, policy), (&RATE_LIMIT, state)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name.clone(), value);
        }
    }
}

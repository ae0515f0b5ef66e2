//! The security headers of every response, set in one place so that no route (a new one, an
//! error, a 404, a 405) can go without them:
//!
//! - `X-Content-Type-Options: nosniff` everywhere, so a browser never reads a job's text (a
//!   name in a CSV, a problem's detail) as HTML or script;
//! - `Content-Security-Policy: default-src 'none'` on SVG and JSON (problems included): opened
//!   directly, an SVG could otherwise run script, and JSON needs nothing at all (the pages set
//!   their own policy);
//! - `Cache-Control` with `private` on everything per tenant (every route but the public ones,
//!   the guard's [`is_public`]): a shared cache must never keep one client's plan or result for another.
//!   A route's own directives stay (`no-store`, `no-cache`, `max-age`), except `public`.

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::middleware::Next;

use crate::auth::guard::is_public;

/// The policy of everything that is not a page: load nothing, run nothing.
pub(crate) const NOTHING_POLICY: &str = "default-src 'none'";

/// Middleware: sets the headers above on every response.
pub(crate) async fn secure(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let per_tenant = !is_public(&req);
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if is_svg_or_json(headers) && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(NOTHING_POLICY));
    }
    if per_tenant {
        let existing = headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok());
        let value = private(existing);
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("private")),
        );
    }
    Ok(res)
}

fn is_svg_or_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "image/svg+xml" || essence == "application/json" || essence.ends_with("+json")
}

/// A `Cache-Control` value with `private` and without `public`, keeping the other directives.
fn private(existing: Option<&str>) -> String {
    let mut directives: Vec<&str> = existing
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.eq_ignore_ascii_case("public"))
        .collect();
    if !directives.iter().any(|d| d.eq_ignore_ascii_case("private")) {
        directives.insert(0, "private");
    }
    directives.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_tenant_cache_control_is_private_keeps_the_rest_and_is_never_public() {
        for (existing, expected) in [
            (None, "private"),
            (Some("no-store"), "private, no-store"),
            (Some("no-cache"), "private, no-cache"),
            (Some("public, max-age=3600"), "private, max-age=3600"),
            (Some("PUBLIC"), "private"),
            (Some("private, no-cache"), "private, no-cache"),
        ] {
            assert_eq!(private(existing), expected, "{existing:?}");
        }
    }
}

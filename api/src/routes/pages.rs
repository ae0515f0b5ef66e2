//! `GET /` (the simulation form, its progress and its results), `GET /dashboard` (the
//! operators' page) and `GET /assets/{name}` (their scripts, style sheet and `rules.json`).
//!
//! The files are our own, under `api/web/`, embedded in the binary at build time: the pages
//! need nothing from the network, no build step of their own, and always match the API they
//! talk to. `rules.json` is the engine's rules document under this deployment's limits, made
//! when the app is built: the form checks every field by it, in the API's own words. Each
//! asset is served with an ETag (a hash of its bytes), so a browser revalidates with a 304
//! instead of downloading it again.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::route;
use actix_web::{HttpRequest, HttpResponse, web};
use portfolio_engine::request::{RequestLimits, document};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Problem, quoted};

/// The pages load scripts and styles from this origin only, and nothing else at all.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

struct Asset {
    content_type: &'static str,
    body: String,
    etag: String,
}

impl Asset {
    fn new(content_type: &'static str, body: String) -> Self {
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(body.as_bytes()))[..32]);
        Self { content_type, body, etag }
    }

    fn respond(&self, req: &HttpRequest) -> HttpResponse {
        let fresh = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == self.etag));
        let mut response = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
        response
            .insert_header((header::ETAG, self.etag.clone()))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
        if self.content_type.starts_with("text/html") {
            response
                .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                .insert_header((header::REFERRER_POLICY, "same-origin"));
        }
        if fresh {
            response.finish()
        } else {
            response.content_type(self.content_type).body(self.body.clone())
        }
    }
}

const HTML: &str = "text/html; charset=utf-8";

static INDEX: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(HTML, include_str!("../../web/index.html").to_owned()));

static DASHBOARD: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(HTML, include_str!("../../web/dashboard.html").to_owned()));

static ASSETS: LazyLock<[(&str, Asset); 4]> = LazyLock::new(|| {
    let js = "text/javascript; charset=utf-8";
    [
        ("app.js", Asset::new(js, include_str!("../../web/app.js").to_owned())),
        ("dashboard.js", Asset::new(js, include_str!("../../web/dashboard.js").to_owned())),
        ("common.js", Asset::new(js, include_str!("../../web/common.js").to_owned())),
        (
            "style.css",
            Asset::new("text/css; charset=utf-8", include_str!("../../web/style.css").to_owned()),
        ),
    ]
});

/// The simulation form; with `?job={id}` it follows that job and shows its result.
#[utoipa::path(get, tag = "web",
    responses((status = 200, description = "HTML page", content_type = "text/html")))]
#[route("/", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all)]
pub(crate) async fn index(req: HttpRequest) -> HttpResponse {
    INDEX.respond(&req)
}

/// The operators' dashboard: queue, throughput, latency, error rate, workers, failures.
#[utoipa::path(get, tag = "web",
    responses((status = 200, description = "HTML page", content_type = "text/html")))]
#[route("/dashboard", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all)]
pub(crate) async fn dashboard(req: HttpRequest) -> HttpResponse {
    DASHBOARD.respond(&req)
}

/// The rules document the form checks by, under this deployment's limits.
pub(crate) struct Rules(Asset);

impl Rules {
    pub(crate) fn new(limits: &RequestLimits) -> Self {
        Self(Asset::new("application/json", document(limits).to_string()))
    }
}

/// The names `/assets/{name}` serves, for the document's enum of `name`: the files the
/// handler looks up, so the two cannot disagree.
pub(crate) fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|(name, _)| *name).chain(["rules.json"]).collect()
}

/// A script, style sheet or the rules document of the pages.
#[utoipa::path(get, tag = "web",
    params(("name" = String, Path, description = "app.js, common.js, dashboard.js, style.css or rules.json")),
    responses(
        (status = 200, description = "The file"),
        (status = 404, description = "No such asset", body = Problem, content_type = "application/problem+json"),
    ))]
#[route("/assets/{name}", method = "GET", method = "HEAD")]
#[tracing::instrument(skip_all, fields(name = %name))]
pub(crate) async fn asset(
    req: HttpRequest,
    name: web::Path<String>,
    rules: web::Data<Rules>,
) -> Result<HttpResponse, ApiError> {
    let rules = ("rules.json", &rules.0);
    ASSETS
        .iter()
        .map(|(n, asset)| (*n, asset))
        .chain([rules])
        .find(|(n, _)| *n == name.as_str())
        .map(|(_, asset)| asset.respond(&req))
        .ok_or_else(|| ApiError::NotFound(format!("no asset {}", quoted(name.as_str()))))
}

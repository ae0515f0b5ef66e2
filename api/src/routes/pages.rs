//! `GET /` (the simulation form, its progress and its results), `GET /dashboard` (the
//! operators' page) and `GET /assets/{name}` (their scripts and style sheet).
//!
//! The files are our own, under `api/web/`, embedded in the binary at build time: the pages
//! need nothing from the network, no build step of their own, and always match the API they
//! talk to. Each is served with an ETag (a hash of its bytes), so a browser revalidates with a
//! 304 instead of downloading it again.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use portfolio_engine::history;
use portfolio_engine::request::{Assumptions, DEFAULT_SCENARIOS, MAX_SCENARIOS, MAX_YEARS};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Problem};

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

static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    // The page's script reads the model's limits and the historical assumptions (the defaults
    // of every blank field) from this JSON block, so its checks and hints match the API's.
    let defaults = serde_json::json!({
        "assumptions": Assumptions::historical(),
        "table_years": history::table().len(),
        "first_table_year": history::table().first().map(|y| y.year),
        "max_years": MAX_YEARS,
        "max_scenarios": MAX_SCENARIOS,
        "default_scenarios": DEFAULT_SCENARIOS,
    });
    let html = include_str!("../../web/index.html")
        .replace("{{defaults}}", &defaults.to_string().replace("</", "<\\/"));
    Asset::new(HTML, html)
});

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
#[utoipa::path(get, path = "/", tag = "web",
    responses((status = 200, description = "HTML page", content_type = "text/html")))]
pub async fn index(req: HttpRequest) -> HttpResponse {
    INDEX.respond(&req)
}

/// The operators' dashboard: queue, throughput, latency, error rate, workers, failures.
#[utoipa::path(get, path = "/dashboard", tag = "web",
    responses((status = 200, description = "HTML page", content_type = "text/html")))]
pub async fn dashboard(req: HttpRequest) -> HttpResponse {
    DASHBOARD.respond(&req)
}

/// A script or style sheet of the pages.
#[utoipa::path(get, path = "/assets/{name}", tag = "web",
    params(("name" = String, Path, description = "app.js, common.js, dashboard.js or style.css")),
    responses(
        (status = 200, description = "The file"),
        (status = 404, description = "No such asset", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn asset(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ASSETS
        .iter()
        .find(|(n, _)| *n == name.as_str())
        .map(|(_, asset)| asset.respond(&req))
        .ok_or_else(|| ApiError::NotFound(format!("no asset {:?}", name.as_str())))
}

//! The key given to the API from a secret (`BOOTSTRAP_API_KEY`: ECS `secrets`, a Kubernetes
//! `Secret`), so a deployment has a first operator key without anyone running the CLI against
//! its database. Recorded at start, in the background (the API starts while Postgres is still
//! away), unless a key with its prefix exists: a revoked bootstrap key stays revoked.

use std::time::Duration;

use actix_web::web;
use portfolio_shared::settings::ExposeSecret;
use portfolio_shared::store::{self, NewApiKey};

use super::Scope;
use super::key::PresentedKey;
use crate::state::AppState;

/// The bootstrap key's tenant.
pub(crate) const TENANT: &str = "bootstrap";

/// Checks the configured key's form; the process refuses to start with a malformed one.
pub(crate) fn configured(state: &AppState) -> anyhow::Result<Option<PresentedKey>> {
    let Some(raw) = &state.settings.auth.bootstrap_key else { return Ok(None) };
    PresentedKey::parse(raw.expose_secret().trim()).map(Some).ok_or_else(|| {
        anyhow::anyhow!(
            "environment variable BOOTSTRAP_API_KEY: not an API key of the form \
             pmc_<8 lowercase letters or digits>_<40 letters or digits> (make one with \
             `portfolio-api keys create`, or leave it unset)"
        )
    })
}

/// Records `key`: once before the API serves (so the key works from its first request), then,
/// if Postgres did not answer, in the background every few seconds until it does.
pub(crate) async fn record(
    state: web::Data<AppState>,
    key: PresentedKey,
) -> Option<tokio::task::JoinHandle<()>> {
    if try_record(&state, &key).await {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            if try_record(&state, &key).await {
                return;
            }
        }
    }))
}

async fn try_record(state: &AppState, key: &PresentedKey) -> bool {
    let key = key.clone();
    let ensured = state
        .write_in_background(move |conn| {
            let digest = key.digest();
            let scopes: Vec<String> = Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect();
            store::ensure_key(
                conn,
                &NewApiKey {
                    name: TENANT,
                    prefix: key.prefix(),
                    secret_sha256: &digest,
                    scopes: &scopes,
                },
            )
        })
        .await;
    match ensured {
        Ok(made) => {
            tracing::info!(made, "the bootstrap API key is recorded");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not record the bootstrap API key yet; retrying");
            false
        }
    }
}

//! Who a presented key belongs to: its row on the primary, read at every request, and this
//! process's memory of the keys it found valid in the last minute.
//!
//! The memory never lets a request in by itself. Most requests are looked up on the primary
//! every time, so a revoked key stops working at once on every replica. Two start on a
//! remembered key, and have it checked by their own statement instead:
//! - a submit reads its body and is counted against the remembered tenant's budget without
//!   waiting for the lookup (0.2–0.5 ms of a small job's answer), and the statement that
//!   records its job checks in the same round trip that the key is not revoked
//!   (`store::insert_job`);
//! - a read of one job, where reads go to the primary, reads it with a statement that checks
//!   the key as well (`store::find_job_checking_key`): one round trip to Postgres per read
//!   instead of two.
//!
//! Anything else such a request answers waits for a lookup first
//! ([`super::admission::Admission::verified`]), and the guard looks a remembered key up before
//! any answer that was not so checked, so a revoked key gets `401` whatever it sends.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServiceRequest;
use actix_web::http::header;
use chrono::Utc;
use portfolio_shared::store;

use super::key::PresentedKey;
use super::{Caller, Scope};
use crate::error::ApiError;
use crate::state::AppState;

/// How long a key found valid is remembered. It bounds how stale `last_used_at` gets (only a
/// lookup touches it) and how long a tenant's scopes are taken from memory.
const REMEMBERED_FOR: Duration = Duration::from_secs(60);
/// Far more keys than a deployment has: the memory cannot grow without bound.
const MOST_REMEMBERED: u64 = 10_000;

/// A key this process found valid, by its public prefix.
#[derive(Clone)]
pub(crate) struct VerifiedKeys {
    by_prefix: moka::sync::Cache<String, Arc<Verified>>,
}

struct Verified {
    secret_sha256: String,
    caller: Caller,
}

impl VerifiedKeys {
    pub(crate) fn new() -> Self {
        let by_prefix = moka::sync::Cache::builder()
            .max_capacity(MOST_REMEMBERED)
            .time_to_live(REMEMBERED_FOR)
            .build();
        Self { by_prefix }
    }

    /// The caller `presented` was found to be, if it was, recently, with this very secret.
    pub(crate) fn recall(&self, presented: &PresentedKey) -> Option<Caller> {
        let verified = self.by_prefix.get(presented.prefix())?;
        presented.matches(&verified.secret_sha256).then(|| verified.caller.clone())
    }

    /// Remembers a key just found valid, unless it already is: every read looks its key up,
    /// and rewriting the same entry each time would only be work. An entry is thus at most a
    /// minute older than its first lookup, and expires then.
    fn remember(&self, presented: &PresentedKey, secret_sha256: String, caller: &Caller) {
        self.by_prefix
            .entry(presented.prefix().to_owned())
            .or_insert_with(|| Arc::new(Verified { secret_sha256, caller: caller.clone() }));
    }

    /// Drops what is remembered of a key found revoked.
    pub(crate) fn forget(&self, presented: &PresentedKey) {
        self.by_prefix.invalidate(presented.prefix());
    }
}

/// The key of `Authorization: Bearer <key>`, if the header holds one of the key's form.
pub(crate) fn presented(req: &ServiceRequest) -> Result<PresentedKey, ApiError> {
    // Two keys: which one counts would be a guess (a proxy in front may have read the other).
    if req.headers().get_all(header::AUTHORIZATION).nth(1).is_some() {
        return Err(ApiError::Unauthorized);
    }
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .and_then(PresentedKey::parse)
        .ok_or(ApiError::Unauthorized)
}

/// `presented` checked against its row on the primary; remembered when valid, forgotten when
/// not.
pub(crate) async fn look_up(state: &AppState, presented: PresentedKey) -> Result<Caller, ApiError> {
    let key = presented.clone();
    let row = state
        .read_primary(move |conn| {
            // Only a valid key counts as used: a guess at a known prefix touches nothing.
            let row = store::find_key(conn, key.prefix())?
                .filter(|row| row.revoked_at.is_none() && key.matches(&row.secret_sha256));
            if let Some(row) = &row
                && row.last_used_at.is_none_or(|at| Utc::now() - at > chrono::Duration::minutes(1))
            {
                store::touch_key(conn, row.id)?;
            }
            Ok(row)
        })
        .await?;
    let Some(row) = row else {
        state.verified_keys.forget(&presented);
        return Err(ApiError::Unauthorized);
    };
    let scopes = row.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
    let caller = Caller::new(row.name, Some(row.id), scopes);
    state.verified_keys.remember(&presented, row.secret_sha256, &caller);
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn a_key_is_read_from_one_authorization_header_and_two_are_refused() {
        let (a, b) = (PresentedKey::generate(), PresentedKey::generate());
        let bearer = |k: &PresentedKey| format!("Bearer {}", k.reveal());
        let one = TestRequest::default()
            .insert_header((header::AUTHORIZATION, bearer(&a)))
            .to_srv_request();
        assert_eq!(presented(&one).expect("one key").prefix(), a.prefix());
        let two = TestRequest::default()
            .append_header((header::AUTHORIZATION, bearer(&a)))
            .append_header((header::AUTHORIZATION, bearer(&b)))
            .to_srv_request();
        assert!(matches!(presented(&two), Err(ApiError::Unauthorized)));
    }

    #[test]
    fn a_remembered_key_is_recalled_only_with_its_own_secret_and_not_once_forgotten() {
        let keys = VerifiedKeys::new();
        let key = PresentedKey::generate();
        assert!(keys.recall(&key).is_none(), "nothing is remembered at first");
        let caller = Caller::new("alice".into(), Some(7), vec![Scope::Simulate]);
        keys.remember(&key, key.digest(), &caller);
        let recalled = keys.recall(&key).expect("remembered");
        assert_eq!((recalled.tenant.as_str(), recalled.key_id), ("alice", Some(7)));
        assert!(recalled.has(Scope::Simulate) && !recalled.has(Scope::Operator));

        // The same public prefix with another secret is a guess, not the key.
        let raw = key.reveal();
        let guess = format!("{}{}", &raw[..13], "x".repeat(raw.len() - 13));
        let guess = PresentedKey::parse(&guess).expect("well formed");
        assert_eq!(guess.prefix(), key.prefix());
        assert!(keys.recall(&guess).is_none());

        keys.forget(&key);
        assert!(keys.recall(&key).is_none());
    }
}

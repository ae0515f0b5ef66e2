//! What lets a request in, as the handler sees it: its count against its tenant's budget for
//! the minute, and whether its key is known valid yet.
//!
//! Every request but a submit is counted before its handler runs: the guard waits for Redis's
//! answer. A submit does not wait idle for it. The guard starts the count and lets the handler
//! read and check the body and ask Redis for the result cache and the queue depth meanwhile
//! (one round trip, about 0.3 ms of a small job's answer, saved). The handler waits for the
//! decision before anything a refused submit must not cause: it records, replays, serves from
//! the cache or queues nothing until [`Admission::admitted`] says yes. A handler that answers
//! without asking (a body it refused) has caused nothing, and if the budget was spent the
//! guard puts the `429` in its answer's place, so a refused submit is answered `429` whatever
//! its body, as before.
//!
//! A submit, or a read of one job on the primary, may also start on a key this process
//! remembers as valid, before it is looked up again ([`super::lookup`]). Its job's insert or
//! read then checks the key in the same statement ([`Admission::key_checked`]); anything else
//! it would answer waits for [`Admission::verified`], and the guard looks the key up before
//! letting out any answer of a key still unchecked, so a revoked key is answered `401` first,
//! as everywhere.

use std::cell::Cell;
use std::future::{Future, Ready, ready};
use std::rc::Rc;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload};
use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, Shared};
use portfolio_shared::rate_limit::{Budget, Decision};

use super::key::PresentedKey;
use super::lookup;
use crate::error::ApiError;
use crate::state::AppState;

/// The decision about one request, shared by the guard and the handler. `None` when the
/// limiter could not be asked (Redis away): the request goes through.
#[derive(Clone)]
pub(crate) struct Admission {
    decision: Shared<LocalBoxFuture<'static, Option<Decision>>>,
    budget: Budget,
    setting: &'static str,
    /// Whether the handler asked (and so answered a refusal itself).
    asked: Rc<Cell<bool>>,
    /// The key presented, when identity is on.
    key: Option<PresentedKey>,
    key_check: Rc<Cell<KeyCheck>>,
}

/// What is known of the request's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyCheck {
    /// Looked up on the primary (or identity is off), or checked by the statement that recorded
    /// or read the job.
    Valid,
    /// Remembered as valid, not looked up for this request: nothing may be answered on it.
    Remembered,
    /// Found revoked or gone.
    Refused,
}

impl Admission {
    /// A decision already taken.
    pub(crate) fn decided(
        decision: Option<Decision>,
        budget: Budget,
        setting: &'static str,
    ) -> Self {
        Self::new(ready(decision).boxed_local(), budget, setting)
    }

    /// Starts asking now, on this thread's runtime; every waiter gets the one answer.
    pub(crate) fn start(
        decision: impl Future<Output = Option<Decision>> + 'static,
        budget: Budget,
        setting: &'static str,
    ) -> Self {
        let admission = Self::new(decision.boxed_local(), budget, setting);
        actix_web::rt::spawn(admission.decision.clone());
        admission
    }

    fn new(
        decision: LocalBoxFuture<'static, Option<Decision>>,
        budget: Budget,
        setting: &'static str,
    ) -> Self {
        Self {
            decision: decision.shared(),
            budget,
            setting,
            asked: Rc::new(Cell::new(false)),
            key: None,
            key_check: Rc::new(Cell::new(KeyCheck::Valid)),
        }
    }

    /// The request presented `key`, just looked up (`remembered` false) or only remembered as
    /// valid ([`super::lookup::VerifiedKeys`]).
    pub(crate) fn with_key(mut self, key: PresentedKey, remembered: bool) -> Self {
        self.key = Some(key);
        self.key_check.set(if remembered { KeyCheck::Remembered } else { KeyCheck::Valid });
        self
    }

    /// `Ok` once the key is known valid: at once if it was looked up or checked, else after a
    /// lookup now; `401` if it is revoked or gone.
    pub(crate) async fn verified(&self, state: &AppState) -> Result<(), ApiError> {
        if let (KeyCheck::Remembered, Some(key)) = (self.key_check.get(), &self.key) {
            match lookup::look_up(state, key.clone()).await {
                Ok(_) => self.key_check.set(KeyCheck::Valid),
                Err(ApiError::Unauthorized) => self.key_check.set(KeyCheck::Refused),
                // Not known either way (the primary away): nothing is answered on it.
                Err(e) => return Err(e),
            }
        }
        match self.key_check.get() {
            KeyCheck::Refused => Err(ApiError::Unauthorized),
            _ => Ok(()),
        }
    }

    /// The statement that recorded or read the job checked the key (`store::insert_job`,
    /// `store::find_job_checking_key`): `valid` is what it found. A key found revoked is
    /// forgotten.
    pub(crate) fn key_checked(&self, state: &AppState, valid: bool) {
        self.key_check.set(if valid { KeyCheck::Valid } else { KeyCheck::Refused });
        if let (false, Some(key)) = (valid, &self.key) {
            state.verified_keys.forget(key);
        }
    }

    /// Whether the key was looked up or checked for this request (or identity is off).
    pub(crate) fn key_checked_yet(&self) -> bool {
        self.key_check.get() == KeyCheck::Valid
    }

    /// Takes the key for unchecked again (a request that lasted long enough for it to have
    /// been revoked since its check): the guard then looks it up before the answer goes out.
    pub(crate) fn check_key_again(&self) {
        if self.key.is_some() && self.key_check.get() == KeyCheck::Valid {
            self.key_check.set(KeyCheck::Remembered);
        }
    }

    /// Whether the key is still only remembered: the guard looks it up before answering.
    pub(crate) fn key_unchecked(&self) -> bool {
        self.key_check.get() == KeyCheck::Remembered
    }

    pub(crate) fn key_refused(&self) -> bool {
        self.key_check.get() == KeyCheck::Refused
    }

    pub(crate) fn budget(&self) -> Budget {
        self.budget
    }

    pub(crate) async fn decision(&self) -> Option<Decision> {
        self.decision.clone().await
    }

    /// `Ok` when the request may go on; the `429` naming the budget and its setting when the
    /// budget is spent.
    pub(crate) async fn admitted(&self) -> Result<(), ApiError> {
        self.asked.set(true);
        match self.decision().await {
            Some(decision) if !decision.accepted => Err(self.refusal(decision)),
            _ => Ok(()),
        }
    }

    pub(crate) fn was_asked(&self) -> bool {
        self.asked.get()
    }

    pub(crate) fn refusal(&self, decision: Decision) -> ApiError {
        ApiError::RateLimited {
            budget: self.budget.name,
            limit: self.budget.limit,
            setting: self.setting,
            retry_after_secs: whole_seconds(decision.reset).max(1),
        }
    }
}

pub(crate) fn whole_seconds(d: std::time::Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

impl FromRequest for Admission {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    /// The guard puts one in every request it lets through; a handler that finds none (a
    /// route left outside the guard by mistake) refuses rather than go uncounted.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Admission>().cloned().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "a request reached its handler without an admission"
            ))
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const BUDGET: Budget = Budget { name: "submits", limit: 5 };

    fn decision(accepted: bool) -> Decision {
        Decision { accepted, remaining: 0, reset: Duration::from_millis(1_200) }
    }

    #[actix_web::test]
    async fn a_spent_budget_is_a_429_naming_its_setting_and_remembers_it_was_asked() {
        let refused = Admission::decided(Some(decision(false)), BUDGET, "SETTING_NAME");
        assert!(!refused.was_asked());
        match refused.admitted().await {
            Err(ApiError::RateLimited { budget, limit, setting, retry_after_secs }) => {
                assert_eq!(
                    (budget, limit, setting, retry_after_secs),
                    ("submits", 5, "SETTING_NAME", 2)
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(refused.was_asked());
        let accepted = Admission::decided(Some(decision(true)), BUDGET, "SETTING_NAME");
        assert!(accepted.admitted().await.is_ok());
        // The limiter could not be asked: the request goes through.
        assert!(Admission::decided(None, BUDGET, "SETTING_NAME").admitted().await.is_ok());
    }

    #[actix_web::test]
    async fn a_started_decision_runs_without_anyone_waiting_and_answers_every_waiter_once() {
        let runs = Rc::new(Cell::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let counted = runs.clone();
        let admission = Admission::start(
            async move {
                counted.set(counted.get() + 1);
                let _ = tx.send(());
                Some(decision(true))
            },
            BUDGET,
            "SETTING_NAME",
        );
        // Nobody waits on the admission, yet the count is made.
        rx.await.expect("the decision ran on its own");
        assert_eq!(admission.decision().await, Some(decision(true)));
        assert_eq!(admission.clone().decision().await, Some(decision(true)));
        assert_eq!(runs.get(), 1, "asked once, whoever waits");
    }
}

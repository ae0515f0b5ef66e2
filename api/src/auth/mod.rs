//! Who is calling: every route but the public ones (the pages, their assets, the health checks
//! and the OpenAPI document) needs `Authorization: Bearer <API key>` ([`guard`]), and a
//! handler learns from [`Caller`] which tenant it acts for and what it may do. The tenant owns
//! the jobs it submits; scopes decide the rest (docs/security.md).

pub(crate) mod admission;
pub(crate) mod bootstrap;
pub(crate) mod guard;
pub mod key;
pub mod keys_cli;
pub(crate) mod lookup;

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload};
use portfolio_shared::settings::LOCAL_TENANT;
use portfolio_shared::store::Viewer;

use crate::error::ApiError;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Submit, read and cancel the tenant's own jobs.
    Simulate,
    /// Queue statistics, the dashboard's data, and every tenant's jobs, read-only.
    Operator,
}

impl Scope {
    pub(crate) const ALL: [Scope; 2] = [Scope::Simulate, Scope::Operator];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Simulate => "simulate",
            Self::Operator => "operator",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// The tenant and key a request acts for, put in the request's extensions by [`guard`].
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) tenant: String,
    /// `None` under `AUTH_MODE=disabled`.
    pub(crate) key_id: Option<i64>,
    scopes: Vec<Scope>,
}

impl Caller {
    pub(crate) fn new(tenant: String, key_id: Option<i64>, scopes: Vec<Scope>) -> Self {
        Self { tenant, key_id, scopes }
    }

    /// Everything is one local tenant's when identity is off.
    pub(crate) fn local() -> Self {
        Self::new(LOCAL_TENANT.to_owned(), None, Scope::ALL.to_vec())
    }

    pub(crate) fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// `Ok` if the key has `scope`; a 403 naming it otherwise.
    pub(crate) fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this route needs an API key with the `{}` scope",
                scope.as_str()
            )))
        }
    }

    /// Whose jobs this caller reads: an operator's reads see every tenant's.
    pub(crate) fn viewer(&self) -> Viewer<'_> {
        if self.has(Scope::Operator) { Viewer::Operator } else { Viewer::Tenant(&self.tenant) }
    }

    /// Reads of jobs need either scope.
    pub(crate) fn require_reader(&self) -> Result<(), ApiError> {
        if self.has(Scope::Operator) { Ok(()) } else { self.require(Scope::Simulate) }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    /// A handler behind the guard always finds its caller; one that does not (a route left
    /// public by mistake) refuses rather than act for nobody.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Caller>().cloned().ok_or(ApiError::Unauthorized))
    }
}

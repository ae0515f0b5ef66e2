//! A simulation request, parsed at the edge: JSON bytes become a [`SimulationRequest`] that
//! cannot hold an invalid value, or a list of [`FieldError`]s naming each field and rule.
//!
//! The API parses a body with this module before anything touches Postgres or Redis, and the
//! worker parses the stored copy again, so both sides apply exactly the same rules.
//!
//! - `input`: the wire format serde decodes (every field optional, unknown fields refused);
//! - `decode`: serde's decoding errors in JSON's terms, naming the field;
//! - `duplicate_keys`: keys given twice in one object, which a tree would hide;
//! - `rules`: every rule in one table (bounds, defaults, messages);
//! - `validate`: the checks, by that table, reporting every broken rule;
//! - `shape`: arrays refused where an object is expected (serde would take them);
//! - `whole`: whole-number fields that take `28.0` as JSON Schema does;
//! - `checked`, `correlation`: the types only the checks build;
//! - `schema`, `document`: the rules published, as the OpenAPI schema of the body and as the
//!   document the web page checks its form by.

mod checked;
mod correlation;
mod decode;
mod document;
mod duplicate_keys;
mod input;
#[cfg(test)]
mod markdown;
pub(crate) mod rules;
mod schema;
mod shape;
mod validate;
mod whole;

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use checked::Assumptions;
pub use checked::SimulationRequest;
pub(crate) use checked::{ReturnModel, Withdrawal, historical_windows};
pub(crate) use decode::related;
pub use decode::repeated_key;
pub use document::document;
pub(crate) use input::Rebalancing;
pub use input::SimulationRequestInput;
pub use rules::MAX_SCENARIOS;
pub use schema::request_schema;

use crate::FieldError;

/// What a body that is JSON but no object is told, at the field `body`.
const NOT_AN_OBJECT: &str = "must be a JSON object (the simulation request)";

/// Limits that depend on the deployment rather than on the model.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest `n_scenarios` accepted (at most [`MAX_SCENARIOS`]).
    pub max_scenarios: u32,
    /// The most cells a sweep may have (`crate::sweep`).
    pub max_sweep_cells: u32,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self { max_scenarios: MAX_SCENARIOS, max_sweep_cells: crate::sweep::DEFAULT_MAX_CELLS }
    }
}

/// Why a body could not become a [`SimulationRequest`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON at all (a syntax error outside any field).
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but fields break the rules; every offending field is listed.
    #[error("{} field(s) are invalid", .0.len())]
    Invalid(Vec<FieldError>),
}

impl SimulationRequest {
    /// Parses and checks a JSON body.
    pub fn from_json(body: &[u8], limits: &RequestLimits) -> Result<Self, RequestError> {
        // serde reads a struct from a list too, field by position: a list is no request,
        // whatever it holds, and its items are not the fields to name.
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(RequestError::Invalid(vec![FieldError::new("body", NOT_AN_OBJECT)]));
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let decoded = serde_path_to_error::deserialize::<_, SimulationRequestInput>(&mut de);
        let input = match decoded {
            Ok(input) => input,
            Err(refused) => return Self::salvaged(body, refused, limits),
        };
        de.end().map_err(|e| RequestError::Malformed(decode::strip_position(&e.to_string())))?;
        // The body decoded, so it is JSON; read it again as a tree to check its shape.
        let tree: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| RequestError::Malformed(decode::strip_position(&e.to_string())))?;
        let misshapen = shape::arrays_for_objects(&tree);
        if !misshapen.is_empty() {
            return Err(RequestError::Invalid(misshapen));
        }
        Self::from_input(input, limits)
    }

    /// A body serde refused at one field: every other refused field and every broken rule of
    /// what is left are found too, so a client fixes them all after one answer.
    fn salvaged(
        body: &[u8],
        refused: serde_path_to_error::Error<serde_json::Error>,
        limits: &RequestLimits,
    ) -> Result<Self, RequestError> {
        let first = decode::classify_decode_error(&refused);
        let category = refused.inner().classify();
        if category != serde_json::error::Category::Data {
            return Err(first);
        }
        // Not JSON after all (the refusal came before a syntax error further on).
        let Ok(mut tree) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Err(Self::with_syntax_error(body, first));
        };
        if !tree.is_object() {
            return Err(first);
        }
        let repeated = duplicate_keys::find(body).unwrap_or_default();
        let decode::Salvaged { input, errors: mut named, taken_out, retold } =
            match decode::salvage(&mut tree, refused, &repeated) {
                Ok(salvaged) => salvaged,
                Err(RequestError::Invalid(named)) if named.is_empty() => return Err(first),
                Err(e) => return Err(e),
            };
        let misshapen = shape::arrays_for_objects(&tree);
        // A rule's view of a field already refused, or of an array where an object belongs,
        // would only say the same thing again in other words.
        let said = |e: &FieldError| {
            taken_out.iter().any(|t| decode::related(t, &e.field))
                || misshapen.iter().any(|m| decode::related(&m.field, &e.field))
        };
        let broken = match Self::from_input(input, limits) {
            Ok(_) => Vec::new(),
            Err(RequestError::Invalid(broken)) => broken.into_iter().filter(|e| !said(e)).collect(),
            Err(malformed) => return Err(malformed),
        };
        let broken = decode::retell(broken, retold);
        named.extend(misshapen);
        named.extend(broken);
        if named.is_empty() {
            // Every stand-in is beyond its rule's bound, so this cannot happen; if it did, the
            // first refusal is still the truth.
            return Err(first);
        }
        Err(RequestError::Invalid(named))
    }

    /// A body refused at a field (`first`) before a syntax error further on: the syntax error
    /// is named too, at its path. A refused `sweep` is not named: the field is read apart
    /// (`crate::sweep`), from bodies that are JSON, so this one reached the plan's reader only
    /// for its syntax error.
    fn with_syntax_error(body: &[u8], first: RequestError) -> RequestError {
        let mut de = serde_json::Deserializer::from_slice(body);
        let syntax = match serde_path_to_error::deserialize::<_, serde_json::Value>(&mut de) {
            Err(syntax) => decode::classify_decode_error(&syntax),
            // One JSON value, then more: not a JSON document either.
            Ok(_) => match de.end() {
                Err(e) => RequestError::Malformed(decode::strip_position(&e.to_string())),
                Ok(()) => return first,
            },
        };
        match (first, syntax) {
            (RequestError::Invalid(mut named), RequestError::Invalid(syntax)) => {
                named.retain(|e| !(e.field == "sweep" && e.message.starts_with("unknown field")));
                named.extend(syntax);
                RequestError::Invalid(named)
            }
            (_, malformed @ RequestError::Malformed(_)) => malformed,
            (first, _) => first,
        }
    }

    /// Checks a decoded body against every rule, collecting all violations.
    pub fn from_input(
        input: SimulationRequestInput,
        limits: &RequestLimits,
    ) -> Result<Self, RequestError> {
        validate::validate(input, limits)
    }
}

/// Every key of `body` given twice in its object, as field errors (none when the body is not
/// JSON). For readers of a tree, which keeps one of the two without a word.
pub(crate) fn repeated_keys(body: &[u8]) -> Vec<FieldError> {
    decode::repeated_errors(&duplicate_keys::find(body).unwrap_or_default())
}

/// A fresh seed for requests that did not bring one. Drawn below 2^53 (any seed up to 2^63 − 1
/// is accepted) so that JavaScript clients, whose numbers are doubles, can read it back exactly
/// and reproduce the result.
pub fn draw_seed() -> u64 {
    rand::random::<u64>() >> 11
}

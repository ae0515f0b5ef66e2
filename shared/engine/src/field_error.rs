//! The unit of every validation answer: which field, and which rule it breaks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One broken rule: the JSON path of the field and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// JSON path of the offending field, e.g. `allocation.stocks` or `income[0].end_year`.
    #[schema(example = "years")]
    pub field: String,
    /// The rule it breaks.
    #[schema(example = "must be an integer from 1 to 100")]
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

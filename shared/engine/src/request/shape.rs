//! Objects must be JSON objects. serde's derived `Deserialize` also builds a struct from an
//! array, member by member in declaration order, so `"assumptions": {"stocks": [0.1, 0.2]}` or
//! even a whole body `[1000000, 4000, 30]` would pass as if it were written with names. The
//! published schema says `object` for each of them, so an array there is refused, naming the
//! field, by the rules table's own list of object fields.

use serde_json::Value;

use super::rules::{self, Kind};
use crate::FieldError;

/// The fields (with their indices) where the rules table wants an object and the body has an
/// array.
pub(super) fn arrays_for_objects(body: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if body.is_array() {
        errors.push(FieldError::new("body", "must be a JSON object (the simulation request)"));
        return errors;
    }
    for field in rules::fields() {
        if matches!(field.kind, Kind::Object { .. }) {
            visit(body, field.path, String::new(), &mut errors);
        }
    }
    errors
}

/// Follows `path` (`a.b`, `a[].b`) from `value`, over every item of a list.
fn visit(value: &Value, path: &str, at: String, errors: &mut Vec<FieldError>) {
    if path.is_empty() {
        if value.is_array() {
            errors.push(FieldError::new(at, "invalid type: array, expected an object"));
        }
        return;
    }
    let (segment, rest) = path.split_once('.').unwrap_or((path, ""));
    let (name, list) = match segment.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (segment, false),
    };
    let Some(child) = value.get(name) else { return };
    let at = if at.is_empty() { name.to_owned() } else { format!("{at}.{name}") };
    match (list, child) {
        (true, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                visit(item, rest, format!("{at}[{i}]"), errors);
            }
        }
        (true, _) => {}
        (false, child) => visit(child, rest, at, errors),
    }
}

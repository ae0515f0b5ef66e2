//! From serde's decoding errors to what a client can act on: a body that is not JSON at all is
//! `Malformed`; JSON whose field has the wrong type, or an unknown field, is a field error
//! naming that field by its JSON path, in JSON's terms rather than Rust's.

use super::RequestError;
use crate::FieldError;

pub(super) fn classify_decode_error(
    err: serde_path_to_error::Error<serde_json::Error>,
) -> RequestError {
    let path = err.path().to_string();
    let inner = err.inner();
    let message = strip_position(&inner.to_string());
    let at_root = path.is_empty() || path == ".";
    match inner.classify() {
        // A truncated document, or one that is not JSON from its first byte, is not a
        // request at all.
        serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            RequestError::Malformed(message)
        }
        serde_json::error::Category::Syntax if at_root => RequestError::Malformed(message),
        category => {
            // The path already ends with the offending key, unknown keys included.
            let field = if at_root { "body".to_owned() } else { path };
            let message = if category == serde_json::error::Category::Syntax {
                // A bare NaN / Infinity inside a field is a syntax error at that field; say
                // so in words a client can act on.
                format!("must be a valid JSON value (finite numbers only): {message}")
            } else if at_root {
                "must be a JSON object (the simulation request)".to_owned()
            } else {
                in_json_terms(&message)
            };
            RequestError::Invalid(vec![FieldError::new(field, message)])
        }
    }
}

/// serde names what it expected in Rust's terms ("expected u32", "expected struct Allocation");
/// clients write JSON, so say it in JSON's.
fn in_json_terms(message: &str) -> String {
    let Some((found, expected)) = message.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number ≥ 0",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a sequence" => "an array",
        "a map" => "an object",
        e if e.starts_with("struct ") => "an object",
        e if e.starts_with("a tuple of size ") || e.starts_with("an array of length ") => {
            return format!("{found}, expected an array of {}", e.rsplit(' ').next().unwrap_or(e));
        }
        _ => return message.to_owned(),
    };
    format!("{found}, expected {expected}")
}

/// serde_json appends " at line L column C"; clients get the field path instead.
pub(super) fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

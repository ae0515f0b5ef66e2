//! From serde's decoding errors to what a client can act on: a body that is not JSON at all is
//! `Malformed`; JSON whose field has the wrong type, or an unknown field, is a field error
//! naming that field by its JSON path, in JSON's terms rather than Rust's. serde stops at the
//! first field it refuses; `salvage` goes on without it, so one answer names every refused
//! field and every broken rule of the rest.

use serde_json::Value;
use serde_path_to_error::Segment;

use super::RequestError;
use super::input::SimulationRequestInput;
use crate::FieldError;

pub(super) fn classify_decode_error(
    err: &serde_path_to_error::Error<serde_json::Error>,
) -> RequestError {
    let path = err.path().to_string();
    let inner = err.inner();
    let message = strip_position(&inner.to_string());
    let at_root = path.is_empty() || path == ".";
    if let Some(key) = duplicate_key(err) {
        let field = if at_root { key } else { format!("{path}.{key}") };
        return RequestError::Invalid(vec![FieldError::new(field, DUPLICATE_KEY)]);
    }
    match inner.classify() {
        // A truncated document, or one that is not JSON from its first byte, is not a
        // request at all.
        serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            RequestError::Malformed(message)
        }
        // Where serde cannot name the field (`?`: a key that is not a JSON string, a missing
        // colon), there is no field to name either: the body is not JSON.
        serde_json::error::Category::Syntax
            if at_root || err.path().iter().any(|s| matches!(s, Segment::Unknown)) =>
        {
            RequestError::Malformed(message)
        }
        category => {
            let top_level_key = !at_root && !path.contains(['.', '[']);
            // The path already ends with the offending key, unknown keys included.
            let field = if at_root { "body".to_owned() } else { path };
            let message = if category == serde_json::error::Category::Syntax {
                // A bare NaN / Infinity inside a field is a syntax error at that field ("expected
                // value"); say so in words a client can act on. Other syntax errors there (a
                // bad escape in a string) are told as serde tells them.
                if message.starts_with("expected value") {
                    format!("must be a valid JSON value (finite numbers only): {message}")
                } else {
                    format!("must be a valid JSON value: {message}")
                }
            } else if at_root {
                super::NOT_AN_OBJECT.to_owned()
            } else if let Some(key) = missing_field(&message) {
                // serde names the object that lacks the field (a tag: `return_model`'s `kind`,
                // `withdrawal`'s `strategy`); the answer names the field, as for any other.
                return RequestError::Invalid(vec![FieldError::new(
                    format!("{field}.{key}"),
                    super::rules::REQUIRED,
                )]);
            } else if top_level_key && message.starts_with("unknown field") {
                // The plan's fields, as serde lists them; a body may also carry a `sweep`,
                // which is read apart (crate::sweep).
                format!("{message}, or `sweep`")
            } else {
                in_json_terms(&message)
            };
            RequestError::Invalid(vec![FieldError::new(field, message)])
        }
    }
}

/// The field serde says an object lacks (`missing field `kind``).
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// What a key given twice in one object is told. serde_json keeps the last of the two when it
/// reads a tree, other parsers the first: which value counts would be a guess.
pub(super) const DUPLICATE_KEY: &str = "is given more than once in its object; give each key once";

/// One error per key given twice (a key given three times is named once).
pub(super) fn repeated_errors(repeated: &[Vec<Segment>]) -> Vec<FieldError> {
    let mut errors: Vec<FieldError> = Vec::new();
    for path in repeated.iter().map(|segments| path_string(segments)) {
        if !errors.iter().any(|known| related(&known.field, &path)) {
            errors.push(FieldError::new(path, DUPLICATE_KEY));
        }
    }
    errors
}

/// The key serde refused for appearing twice in one object (its error names the object).
fn duplicate_key(err: &serde_path_to_error::Error<serde_json::Error>) -> Option<String> {
    repeated_key(&err.inner().to_string()).map(str::to_owned)
}

/// The key a serde error message (any format's: JSON bodies, query strings) refuses for
/// appearing twice, from serde's own wording, `duplicate field `key``.
pub fn repeated_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("duplicate field `")?;
    rest.find('`').map(|end| &rest[..end])
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

/// What a visitor of a whole-number field says it expected (`whole`); a refused number there
/// is told by its rule instead when it is whole but outside the type's range.
pub(super) const WHOLE_NUMBER: &str = "a whole number ≥ 0";

/// Stand-ins for a whole number outside its type's range: the largest value of each type,
/// beyond every rule's bound (no integer rule allows more than `MAX_SEED` < `u64::MAX`, or a
/// million < `u32::MAX`), so the rule refuses it in its own words.
const OUT_OF_RANGE: [u64; 2] = [u64::MAX, u32::MAX as u64];

/// Most decodings of one body (each of at most 64 KiB) spent on naming its refused fields;
/// past them, the answer names those found so far.
const MAX_DECODINGS: usize = 32;

/// A body that decoded once every field serde refused was taken out of it.
pub(super) struct Salvaged {
    pub(super) input: SimulationRequestInput,
    /// What serde said of each refused field, in the order it met them.
    pub(super) errors: Vec<FieldError>,
    /// The paths taken out: the rules say nothing of them (a missing `years` is not news when
    /// its type was wrong) nor of what contains them (the sum of an allocation with a weight
    /// taken out).
    pub(super) taken_out: Vec<String>,
    /// Whole-number fields that held no whole number (`3.5`, `"5"`, `true`), stood in for so
    /// that their rule gives its range ([`retell`]).
    pub(super) retold: Vec<Retold>,
}

/// A whole-number field that held no whole number, and was stood in for.
pub(super) struct Retold {
    path: String,
    /// What serde said the field held (`invalid type: floating point `3.5``).
    held: String,
    /// What serde said in all: the answer when no rule speaks of the field (the rules stopped
    /// short of it, or what holds it was refused).
    refused: FieldError,
}

/// The rules' errors (`broken`), those at a retold field told as `{what it held}; {the rule}`;
/// a retold field no rule's error names is told what serde said of it.
pub(super) fn retell(mut broken: Vec<FieldError>, retold: Vec<Retold>) -> Vec<FieldError> {
    for field in retold {
        match broken.iter_mut().find(|e| e.field == field.path) {
            // Only a rule of the number's range: "not a parameter of this kind" says it all.
            Some(error) if error.message.starts_with("must be an integer") => {
                error.message = format!("{}; {}", field.held, error.message);
            }
            Some(_) => {}
            None => broken.push(field.refused),
        }
    }
    broken
}

/// After `first` refused a field of `tree`: decodes the tree again and again, each time
/// without the field that was refused, so that one answer names every refused field and the
/// rules still check everything else. A whole number outside its type's range (`-5` or
/// `5000000000` scenarios) is not taken out but replaced by a stand-in its rule refuses, so
/// the answer gives the allowed range. A refusal of the body itself ends it there; so does
/// running out of decodings, with the fields named so far (none, if all were stand-ins).
///
/// `repeated` are the keys given twice in their object (the tree kept one of each): they go
/// first, so serde's refusal of the first of them (`first`) is not heard again.
pub(super) fn salvage(
    tree: &mut Value,
    first: serde_path_to_error::Error<serde_json::Error>,
    repeated: &[Vec<Segment>],
) -> Result<Salvaged, RequestError> {
    let mut errors = repeated_errors(repeated);
    let mut taken_out: Vec<String> = repeated.iter().filter_map(|s| take_out(tree, s)).collect();
    let mut retold = Vec::new();
    let mut error = first;
    if !repeated.is_empty() {
        match serde_path_to_error::deserialize::<_, SimulationRequestInput>(&*tree) {
            Ok(input) => return Ok(Salvaged { input, errors, taken_out, retold }),
            Err(again) => error = again,
        }
    }
    // A whole number being stood in for: its path, the stand-in tried, and what serde said of
    // the number itself (the answer if no stand-in fits).
    let mut standing_in: Option<(String, usize, Vec<FieldError>)> = None;
    for _ in 0..MAX_DECODINGS {
        let segments: Vec<Segment> = error.path().iter().cloned().collect();
        let path = error.path().to_string();
        let said = match classify_decode_error(&error) {
            RequestError::Invalid(said) => said,
            malformed => return Err(malformed),
        };
        let attempt = match standing_in.take() {
            Some((at, tried, original)) if at == path => Some((tried + 1, original)),
            _ if refused_as_whole_number(&error) => {
                if !is_whole(tree, &segments)
                    && let Some(refused) = said.first()
                    && let Some(held) = refused.message.split(", expected ").next()
                {
                    let held = held.to_owned();
                    retold.push(Retold { path: path.clone(), held, refused: refused.clone() });
                }
                Some((0, said.clone()))
            }
            _ => None,
        };
        match attempt {
            Some((k, original)) if k < OUT_OF_RANGE.len() => {
                if let Some(slot) = value_at(tree, &segments) {
                    *slot = Value::from(OUT_OF_RANGE[k]);
                }
                standing_in = Some((path, k, original));
            }
            attempt => {
                let said = attempt.map_or(said, |(_, original)| original);
                for e in said {
                    // `return_model: missing field kind` after `return_model.kind` was refused
                    // says nothing new.
                    if !errors.iter().any(|known| related(&known.field, &e.field)) {
                        errors.push(e);
                    }
                }
                let Some(cut) = take_out(tree, &segments) else {
                    return Err(RequestError::Invalid(errors));
                };
                taken_out.push(cut);
            }
        }
        match serde_path_to_error::deserialize::<_, SimulationRequestInput>(&*tree) {
            Ok(input) => return Ok(Salvaged { input, errors, taken_out, retold }),
            Err(again) => error = again,
        }
    }
    Err(RequestError::Invalid(errors))
}

/// Whether serde refused what a whole-number field held: a whole number outside the field's
/// type, a fraction or another type. A whole float past 2^53 is not one of these: its error
/// is its own (`whole`), and says nothing of what was expected.
fn refused_as_whole_number(error: &serde_path_to_error::Error<serde_json::Error>) -> bool {
    error.inner().to_string().contains(&format!("expected {WHOLE_NUMBER}"))
}

/// Whether the value at `segments` is a whole number.
fn is_whole(tree: &mut Value, segments: &[Segment]) -> bool {
    match value_at(tree, segments) {
        Some(Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|x| x.fract() == 0.0)
        }
        _ => false,
    }
}

/// The value at `segments`, if the tree has one there.
fn value_at<'v>(tree: &'v mut Value, segments: &[Segment]) -> Option<&'v mut Value> {
    segments.iter().try_fold(tree, |value, segment| match segment {
        Segment::Map { key } => value.get_mut(key.as_str()),
        Segment::Seq { index } => value.get_mut(*index),
        Segment::Enum { .. } | Segment::Unknown => None,
    })
}

/// Removes the innermost object member that holds the refused value (a list with a refused
/// item goes whole: taking the item out would renumber the rest) and returns its path.
fn take_out(tree: &mut Value, segments: &[Segment]) -> Option<String> {
    let last_key = segments.iter().rposition(|s| matches!(s, Segment::Map { .. }))?;
    let (parent, key) = (&segments[..last_key], &segments[last_key]);
    let Segment::Map { key } = key else { return None };
    let Some(Value::Object(members)) = value_at(tree, parent) else { return None };
    members.remove(key)?;
    Some(path_string(&segments[..=last_key]))
}

/// `income[0].end_year`, as `FieldError`s name fields.
pub(super) fn path_string(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// Whether one of two field paths contains the other (or they are the same field).
pub(crate) fn related(a: &str, b: &str) -> bool {
    let within = |inner: &str, outer: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    within(a, b) || within(b, a)
}

//! The rules as one JSON document for clients that check a request before sending it (the web
//! page, served as `/assets/rules.json`): for each field its kind, bounds, default and the
//! exact message the API gives, the messages of the rules between fields, the deployment's
//! limits and the historical assumptions that blank fields take. A client that checks by it
//! says what the API would say.

use serde_json::{Map, Value, json};

use super::RequestLimits;
use super::checked::Assumptions;
use super::rules::{
    self, CROSS_RULES, DEFAULT_SCENARIOS, Field, IntegerDefault, Kind, Limit, MATRIX_TOLERANCE,
    MAX_CASH_FLOWS, MAX_YEARS, SUM_TOLERANCE,
};
use crate::history;

/// The rules document under a deployment's limits. A message whose bound depends on the
/// request (`income[].end_year` ≤ `years`) keeps `{max}` for the reader to fill in, and that
/// bound is `"maximum": "years"`.
pub fn document(limits: &RequestLimits) -> Value {
    let mut fields = Map::new();
    for field in rules::fields() {
        fields.insert(field.path.to_owned(), describe(&field, limits));
    }
    let messages: Map<String, Value> =
        CROSS_RULES.iter().map(|r| (r.id.to_owned(), json!(r.message))).collect();
    let table = history::table();
    json!({
        "fields": fields,
        "messages": Value::Object(messages),
        "required": rules::REQUIRED,
        "limits": {
            "max_years": MAX_YEARS,
            "max_scenarios": limits.max_scenarios,
            "default_scenarios": DEFAULT_SCENARIOS.min(limits.max_scenarios),
            "table_years": table.len(),
            "first_table_year": table.first().map(|y| y.year),
            "max_cash_flows": MAX_CASH_FLOWS,
            "sum_tolerance": SUM_TOLERANCE,
            "matrix_tolerance": MATRIX_TOLERANCE,
        },
        "assumptions": Assumptions::historical(),
    })
}

fn describe(field: &Field, limits: &RequestLimits) -> Value {
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.to_owned(), value);
    };
    put("required", json!(field.required()));
    if let Some(default) = rules::default_value(&field.kind, limits.max_scenarios) {
        put("default", default);
    }
    let only_for = field.only_for().names();
    if !only_for.is_empty() {
        put("only_for", json!(only_for));
    }
    match &field.kind {
        Kind::Number(rule) | Kind::Matrix { cell: rule, .. } => {
            put(
                "kind",
                json!(if matches!(field.kind, Kind::Matrix { .. }) { "matrix" } else { "number" }),
            );
            put("minimum", json!(rule.min));
            put("exclusive_minimum", json!(rule.min_open));
            put("maximum", json!(rule.max));
            put("exclusive_maximum", json!(rule.max_open));
            put("message", json!(rule.message()));
            if rule.max_open {
                put("message_at_maximum", json!(rule.message_at_max()));
            }
        }
        Kind::Integer(rule) => {
            put("kind", json!("integer"));
            put("minimum", json!(rule.min));
            let (maximum, message) = match rule.max {
                Limit::Fixed(max) => (json!(max), rule.message_with_max(&max)),
                Limit::TableYears => {
                    let max = rules::table_years();
                    (json!(max), rule.message_with_max(&max))
                }
                Limit::Scenarios => {
                    (json!(limits.max_scenarios), rule.message_with_max(&limits.max_scenarios))
                }
                Limit::Horizon => (json!("years"), rule.message_with_max(&"{max}")),
            };
            // JavaScript's numbers hold integers exactly only up to 2^53; a seed's bound is
            // above that, so the bound is given in digits too.
            if let Some(max) = maximum.as_u64() {
                put("maximum_text", json!(max.to_string()));
            }
            put("maximum", maximum);
            put("message", json!(message));
            if let IntegerDefault::Horizon = rule.default {
                put("default", json!("years"));
            }
        }
        Kind::Choice { names, .. } => {
            put("kind", json!("choice"));
            put("choices", json!(names));
        }
        Kind::Flag { .. } => put("kind", json!("flag")),
        Kind::Text(rule) => {
            put("kind", json!("text"));
            put("max_length", json!(rule.max_chars));
            put("message", json!(rule.message()));
            put("message_control", json!(rules::CONTROL_CHARACTERS));
        }
        Kind::List(rule) => {
            put("kind", json!("list"));
            put("max_items", json!(rule.max_items));
            put("message", json!(rule.message()));
        }
        Kind::Object { .. } => put("kind", json!("object")),
    }
    Value::Object(out)
}

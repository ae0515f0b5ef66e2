//! docs/model.md's table of the request's rules, written from `rules` (tests keep the document
//! in step with it).

use super::rules::{self, Field, IntegerDefault, Kind, Limit, NumberDefault};

/// A bound as the documentation writes it: powers of ten from 10⁵ up as `1e12`.
fn figure(x: f64) -> String {
    if x.abs() >= 1e5 && x == 10f64.powi(x.abs().log10().round() as i32) {
        format!("{x:e}")
    } else {
        format!("{x}").replace('-', "−")
    }
}

fn code_list(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn rule_words(field: &Field) -> String {
    let mut words = Vec::new();
    if field.required() {
        words.push("required".to_owned());
    }
    words.push(match &field.kind {
        Kind::Number(rule) | Kind::Matrix { cell: rule, .. } => {
            let (min, max) = (figure(rule.min), figure(rule.max));
            let range = match (rule.min_open, rule.max_open) {
                (false, false) => format!("{min} … {max}"),
                (true, false) => format!("> {min} and ≤ {max}"),
                (false, true) => format!("≥ {min} and < {max}"),
                (true, true) => format!("strictly between {min} and {max}"),
            };
            match field.kind {
                Kind::Matrix { .. } => format!("entries {range}"),
                _ => range,
            }
        }
        Kind::Integer(rule) => {
            let max = match rule.max {
                Limit::Fixed(max) => max.to_string(),
                Limit::TableYears => format!("{} (the table's years)", rules::table_years()),
                Limit::Scenarios => {
                    format!("{} (a deployment may lower the cap)", rules::MAX_SCENARIOS)
                }
                Limit::Horizon => "`years`".to_owned(),
            };
            format!("integer {} … {max}", rule.min)
        }
        Kind::Choice { names, .. } => code_list(names),
        Kind::Flag { .. } => "boolean".to_owned(),
        Kind::Text(rule) => {
            format!("text of at most {} characters, no control characters", rule.max_chars)
        }
        Kind::List(rule) => format!("at most {} items", rule.max_items),
        Kind::Object { .. } => "object".to_owned(),
    });
    let only_for = field.only_for().names();
    if !only_for.is_empty() {
        words.push(format!("only with {}", code_list(&only_for)));
    }
    words.extend(field.cross_rules().iter().map(|r| r.rule.to_owned()));
    words.join("; ")
}

fn default_words(field: &Field) -> String {
    let from_table = "the table's, below";
    match &field.kind {
        Kind::Number(rule) => match rule.default {
            NumberDefault::Required => "—".to_owned(),
            NumberDefault::Value(x) => figure(x),
            NumberDefault::Historical(_) => from_table.to_owned(),
        },
        Kind::Integer(rule) => match rule.default {
            IntegerDefault::Required => "—".to_owned(),
            IntegerDefault::Value(x) => x.to_string(),
            IntegerDefault::Scenarios => {
                format!("{} (at most the cap)", rules::DEFAULT_SCENARIOS)
            }
            IntegerDefault::Horizon => "`years`".to_owned(),
            IntegerDefault::Absent(words) => words.to_owned(),
        },
        Kind::Choice { default, .. } => default.map_or("—".to_owned(), |d| format!("`{d}`")),
        Kind::Flag { default } => format!("`{default}`"),
        Kind::Text(_) | Kind::List(_) => "none".to_owned(),
        Kind::Matrix { .. } => from_table.to_owned(),
        Kind::Object { default: None, .. } => "none".to_owned(),
        Kind::Object { default: Some(_), .. } if field.source == "embedded table" => {
            from_table.to_owned()
        }
        Kind::Object { default: Some(value), .. } => format!("`{value}`"),
    }
}

/// The table, one row per field (the objects that only group others left out).
pub(super) fn rules_table() -> String {
    let mut out = String::from(
        "| Field | Rule | Default | Source of the default |\n| --- | --- | --- | --- |\n",
    );
    for field in rules::fields() {
        let grouping = matches!(field.kind, Kind::Object { .. })
            && (field.about.is_empty() || field.path.ends_with("[]"));
        if grouping {
            continue;
        }
        let source = if field.source.is_empty() { "—" } else { field.source };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            field.path,
            rule_words(&field),
            default_words(&field),
            source
        ));
    }
    out
}

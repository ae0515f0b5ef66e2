//! The rules at work: each rule's message for the field it names, the decoding errors in
//! JSON's terms, and the normalised form.

use serde_json::{Value, json};

use super::rules::{DEFAULT_SCENARIOS, MAX_SEED};
use super::*;
use crate::FieldError;

fn only_error(body: &str) -> FieldError {
    match SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default()) {
        Err(RequestError::Invalid(mut errors)) if errors.len() == 1 => errors.remove(0),
        other => panic!("expected one field error for {body}, got {other:?}"),
    }
}

/// A sweep is read apart, from bodies that are JSON; one that is not reaches the plan's reader,
/// which must name the syntax error where it is, not the `sweep` it does not read.
#[test]
fn a_syntax_error_in_a_body_with_a_sweep_is_named_where_it_is() {
    let base = r#""starting_portfolio": 1000000, "monthly_spending": 4000, "years": 30"#;
    let axes = r#"{"axes": [{"field": "annual_fee", "values": [0, 0.01]}]}"#;
    let bad_axes = r#"{"axes": [{"field": "annual_fee", "values": [0, 0.01, NaN]}]}"#;
    let inside = only_error(&format!(r#"{{{base}, "sweep": {bad_axes}}}"#));
    assert_eq!(inside.field, "sweep.axes[0].values[2]");
    assert!(inside.message.contains("finite numbers only"), "{}", inside.message);
    let after = only_error(&format!(
        r#"{{"sweep": {axes}, "starting_portfolio": NaN, "monthly_spending": 1, "years": 3}}"#
    ));
    assert_eq!(after.field, "starting_portfolio");
    assert!(after.message.contains("finite numbers only"), "{}", after.message);
    // More after the document: not JSON, as without a sweep.
    for body in [format!(r#"{{{base}, "sweep": {axes}}} trailing"#), format!(r#"{{{base}}} }}"#)] {
        match SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default()) {
            Err(RequestError::Malformed(m)) => assert!(m.contains("trailing"), "{m}"),
            other => panic!("{body}: expected a malformed body, got {other:?}"),
        }
    }
}

#[test]
fn a_body_whose_keys_are_not_json_is_not_json_at_all() {
    for body in [
        "{bad json",
        "{'starting_portfolio': 1000000}",
        r#"{"starting_portfolio": 1, bad}"#,
        r#"{"starting_portfolio" 1}"#,
        r#"{"allocation": {stocks: 1}}"#,
    ] {
        match SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default()) {
            Err(RequestError::Malformed(_)) => {}
            other => panic!("{body}: expected a malformed body, got {other:?}"),
        }
    }
}

#[test]
fn a_key_with_a_question_mark_is_still_a_field_to_name() {
    let body = r#"{"starting_portfolio": 1, "monthly_spending": 1, "years": 1, "what?": NaN}"#;
    match SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default()) {
        Err(RequestError::Invalid(errors)) => assert!(errors.iter().all(|e| e.field == "what?")),
        other => panic!("expected the field named, got {other:?}"),
    }
}

#[test]
fn an_unknown_top_level_field_is_told_every_known_one_sweep_included() {
    let error =
        only_error(r#"{"starting_portfolio": 1, "monthly_spending": 1, "years": 1, "colour": 1}"#);
    assert_eq!(error.field, "colour");
    assert!(
        error.message.contains("`solve`") && error.message.ends_with("or `sweep`"),
        "{}",
        error.message
    );
    let nested = only_error(
        r#"{"starting_portfolio": 1, "monthly_spending": 1, "years": 1, "allocation": {"gold": 1}}"#,
    );
    assert!(!nested.message.contains("sweep"), "{}", nested.message);
}

#[test]
fn a_body_that_is_a_list_is_no_request_whatever_it_holds() {
    for body in ["[]", " [[1]]", "[1000000, 4000, 30]", "[{}]"] {
        let error = only_error(body);
        assert_eq!(
            (error.field.as_str(), error.message.as_str()),
            ("body", NOT_AN_OBJECT),
            "{body}"
        );
    }
    assert_eq!(only_error("7").field, "body");
}

#[test]
fn a_field_that_is_not_json_is_named_and_told_why() {
    let nan = only_error(r#"{"starting_portfolio": NaN, "monthly_spending": 1, "years": 10}"#);
    assert_eq!(nan.field, "starting_portfolio");
    assert!(nan.message.contains("finite numbers only"), "{}", nan.message);
    // A bad escape in a string has nothing to do with numbers.
    let escape = only_error(
        r#"{"starting_portfolio": 1, "monthly_spending": 1, "years": 10,
            "income": [{"name": "\ud800x", "monthly_amount": 1}]}"#,
    );
    assert!(escape.message.starts_with("must be a valid JSON value: "), "{}", escape.message);
    assert!(!escape.message.contains("finite"), "{}", escape.message);
}

#[test]
fn type_errors_name_the_field_and_what_json_it_takes_not_rust_types() {
    let base = r#""starting_portfolio": 1000, "monthly_spending": 1"#;
    let cases = [
        (
            format!(r#"{{{base}, "years": 3.5}}"#),
            "years",
            "invalid type: floating point `3.5`; must be an integer from 1 to 100",
        ),
        (
            format!(r#"{{{base}, "years": true}}"#),
            "years",
            "invalid type: boolean `true`; must be an integer from 1 to 100",
        ),
        (
            format!(
                r#"{{{base}, "years": 3, "income": [{{"monthly_amount": 1, "start_year": "z"}}]}}"#
            ),
            "income[0].start_year",
            "invalid type: string \"z\"; must be an integer from 1 to 3",
        ),
        (format!(r#"{{{base}, "years": 3, "annual_fee": "x"}}"#), "annual_fee", "a number"),
        (format!(r#"{{{base}, "years": 3, "allocation": [1]}}"#), "allocation", "an object"),
        (format!(r#"{{{base}, "years": 3, "income": {{}}}}"#), "income", "an array"),
        (
            format!(r#"{{{base}, "years": 3, "rebalancing": 3}}"#),
            "rebalancing",
            "expected one of `monthly`, `annual`, `none`",
        ),
        (
            format!(r#"{{{base}, "years": 3, "return_model": {{"kind": "gaussian"}}}}"#),
            "return_model.kind",
            "`lognormal`, `normal`, `student_t`, `bootstrap`, `historical`",
        ),
        (
            format!(
                r#"{{{base}, "years": 3, "withdrawal": {{"strategy": "guardrails", "cut": "x"}}}}"#
            ),
            "withdrawal.cut",
            "expected a number",
        ),
        ("[]".to_owned(), "body", "must be a JSON object"),
        ("null".to_owned(), "body", "must be a JSON object"),
    ];
    for (body, field, says) in cases {
        let error = only_error(&body);
        assert_eq!(error.field, field, "{body}");
        assert!(error.message.contains(says), "{body}: {}", error.message);
        for rust in ["u32", "f64", "struct", "sequence", "Input"] {
            assert!(!error.message.contains(rust), "{body}: {}", error.message);
        }
    }
}

#[test]
fn a_whole_number_written_with_a_zero_fraction_is_the_integer_as_json_schema_says() {
    let base = r#""starting_portfolio": 1000, "monthly_spending": 1"#;
    let limits = RequestLimits::default();
    let parse = |tail: &str| {
        SimulationRequest::from_json(format!("{{{base}, {tail}}}").as_bytes(), &limits).unwrap()
    };
    let floats = parse(
        r#""years": 28.0, "n_scenarios": 1e3, "seed": 1e15,
        "income": [{"monthly_amount": 1, "start_year": 2.0, "end_year": 3.0}]"#,
    );
    let integers = parse(
        r#""years": 28, "n_scenarios": 1000, "seed": 1000000000000000,
        "income": [{"monthly_amount": 1, "start_year": 2, "end_year": 3}]"#,
    );
    assert_eq!(floats, integers);
    // A fraction is still refused as no whole number, and told its rule's range as a whole
    // number beyond the type (`-1`, `1e10`) is (the test after the next).
    for (tail, field) in [(r#""years": 28.5"#, "years"), (r#""years": 3, "seed": 0.5"#, "seed")] {
        let error = only_error(&format!("{{{base}, {tail}}}"));
        assert_eq!(error.field, field, "{tail}");
        assert!(
            error.message.starts_with("invalid type: floating point"),
            "{tail}: {}",
            error.message
        );
        assert!(error.message.contains("; must be an integer from "), "{tail}: {}", error.message);
    }
    // Past 2^53 a float need not be the number written (the first reads as ...904): refused,
    // where the same number as an integer is taken as it is.
    for seed in ["4611686018427387905.0", "1e18", "9007199254740993.0"] {
        let error = only_error(&format!(r#"{{{base}, "years": 3, "seed": {seed}}}"#));
        assert_eq!(error.field, "seed", "{seed}");
        assert!(error.message.contains("2^53"), "{seed}: {}", error.message);
    }
    let exact = parse(r#""years": 3, "seed": 4611686018427387905"#);
    assert_eq!(exact.seed, Some(4_611_686_018_427_387_905));
}

#[test]
fn a_number_just_below_an_open_bound_is_read_exactly_and_accepted() {
    // 0.9999999999999999 is the float just below 1; a parser that rounds it to 1.0 would
    // refuse a target the schema (exclusiveMaximum 1) allows.
    let body = r#"{"starting_portfolio": 1000, "monthly_spending": 1, "years": 3,
        "solve": {"target_success": 0.9999999999999999}}"#;
    let request = SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default())
        .expect("a target below 1 is accepted");
    let stored = request.to_json();
    assert_eq!(stored["solve"]["target_success"], json!(0.9999999999999999));
    assert!(stored["solve"]["target_success"].as_f64().unwrap() < 1.0);
}

#[test]
fn an_array_where_an_object_is_expected_is_refused_naming_the_field() {
    let base = r#""starting_portfolio": 1000, "monthly_spending": 1, "years": 3"#;
    for (tail, field) in [
        (r#""assumptions": {"stocks": [null, null]}"#, "assumptions.stocks"),
        (r#""assumptions": [null]"#, "assumptions"),
        (r#""allocation": [0.6, 0.4, 0]"#, "allocation"),
        (r#""income": [{"monthly_amount": 1}, [null, 1]]"#, "income[1]"),
        (r#""withdrawal": ["constant_real"]"#, "withdrawal"),
        (r#""solve": [0.9]"#, "solve"),
    ] {
        let error = only_error(&format!("{{{base}, {tail}}}"));
        assert_eq!(error.field, field, "{tail}");
        assert!(error.message.contains("expected an object"), "{tail}: {}", error.message);
    }
    let error = only_error("[1000, 1, 3]");
    assert_eq!(error.field, "body");
}

#[test]
fn a_parameter_of_another_kind_or_strategy_is_refused_naming_it() {
    let base = r#""starting_portfolio": 1000, "monthly_spending": 1, "years": 3"#;
    let error = only_error(&format!(
        r#"{{{base}, "withdrawal": {{"strategy": "percent_of_portfolio", "cut": 0.1}}}}"#
    ));
    assert_eq!(error.field, "withdrawal.cut");
    assert!(error.message.contains("`percent_of_portfolio`"), "{}", error.message);
    let error =
        only_error(&format!(r#"{{{base}, "return_model": {{"kind": "normal", "df": 4}}}}"#));
    assert_eq!(error.field, "return_model.df");
    assert!(error.message.contains("its parameters: none"), "{}", error.message);
}

#[test]
fn the_stored_normalised_form_parses_back_to_the_same_request() {
    let body = r#"{"starting_portfolio": 1000, "monthly_spending": 1, "years": 3,
        "return_model": {"kind": "student_t", "df": 4},
        "withdrawal": {"strategy": "floor_ceiling", "monthly_floor": 0.5},
        "rebalancing": "annual"}"#;
    let limits = RequestLimits::default();
    let request = SimulationRequest::from_json(body.as_bytes(), &limits).unwrap();
    let stored = request.to_json().to_string();
    let again = SimulationRequest::from_json(stored.as_bytes(), &limits).unwrap();
    assert_eq!(again, request);
}

/// `patch` merged into `base`: objects member by member, a `null` member removed, anything
/// else replaced.
fn merged(mut base: Value, patch: &Value) -> Value {
    match (base.as_object_mut(), patch.as_object()) {
        (Some(b), Some(p)) => {
            for (key, value) in p {
                if value.is_null() {
                    b.remove(key);
                } else {
                    let old = b.remove(key).unwrap_or(Value::Null);
                    b.insert(
                        key.clone(),
                        if old.is_object() { merged(old, value) } else { value.clone() },
                    );
                }
            }
            base
        }
        _ => patch.clone(),
    }
}

fn base() -> Value {
    json!({"starting_portfolio": 1000, "monthly_spending": 1, "years": 30})
}

fn errors_of(body: &Value, limits: &RequestLimits) -> Vec<FieldError> {
    match SimulationRequest::from_json(body.to_string().as_bytes(), limits) {
        Err(RequestError::Invalid(errors)) => errors,
        other => panic!("expected field errors for {body}, got {other:?}"),
    }
}

/// One broken rule: the patch to a valid request that breaks it, the field named and the
/// exact message, and whether the OpenAPI schema can say it (a rule between fields, or a
/// bound set by another field, it cannot).
struct Case {
    patch: Value,
    field: &'static str,
    message: &'static str,
    in_schema: bool,
}

const fn case(patch: Value, field: &'static str, message: &'static str) -> Case {
    Case { patch, field, message, in_schema: true }
}

const fn between(patch: Value, field: &'static str, message: &'static str) -> Case {
    Case { patch, field, message, in_schema: false }
}

fn many(n: usize, item: Value) -> Value {
    Value::Array(vec![item; n])
}

/// Every rule of `rules`, broken once (and some at both ends).
fn cases() -> Vec<Case> {
    let fee = "must be a finite number ≥ 0 and ≤ 0.1";
    let weight = "must be a finite number ≥ 0 and ≤ 1";
    let mean = "must be a finite number ≥ -0.5 and ≤ 1";
    let in_horizon = "must be an integer from 1 to 30";
    let spending = "must be a finite number ≥ 0 and ≤ 10000000000";
    let amount = "must be a finite number ≥ 0 and ≤ 1000000000000";
    let rm = |x: Value| json!({"return_model": x});
    let w = |x: Value| json!({"withdrawal": x});
    let gr = |x: Value| w(merged(json!({"strategy": "guardrails"}), &x));
    let fc = |x: Value| w(merged(json!({"strategy": "floor_ceiling"}), &x));
    let income = |x: Value| json!({"income": [merged(json!({"monthly_amount": 10}), &x)]});
    let corr = |m: Value| json!({"assumptions": {"correlation": m}});
    let too_long = "must be at most 100 characters";
    let control = rules::CONTROL_CHARACTERS;
    vec![
        case(json!({"starting_portfolio": null}), "starting_portfolio", "is required"),
        case(
            json!({"starting_portfolio": 0}),
            "starting_portfolio",
            "must be a finite number > 0 and ≤ 1000000000000",
        ),
        case(
            json!({"starting_portfolio": 2e12}),
            "starting_portfolio",
            "must be a finite number > 0 and ≤ 1000000000000",
        ),
        case(json!({"monthly_spending": null}), "monthly_spending", "is required"),
        case(json!({"monthly_spending": -1}), "monthly_spending", spending),
        case(json!({"monthly_spending": 2e10}), "monthly_spending", spending),
        case(json!({"years": null}), "years", "is required"),
        case(json!({"years": 0}), "years", "must be an integer from 1 to 100"),
        case(json!({"years": 101}), "years", "must be an integer from 1 to 100"),
        case(json!({"n_scenarios": 0}), "n_scenarios", "must be an integer from 1 to 1000000"),
        case(
            json!({"n_scenarios": 1_000_001}),
            "n_scenarios",
            "must be an integer from 1 to 1000000",
        ),
        case(
            json!({"seed": 9_223_372_036_854_775_808u64}),
            "seed",
            "must be an integer from 0 to 2^63-1 (9223372036854775807)",
        ),
        case(json!({"allocation": {"stocks": 1.2}}), "allocation.stocks", weight),
        case(json!({"allocation": {"stocks": 0.5, "bonds": -0.2}}), "allocation.bonds", weight),
        case(json!({"allocation": {"stocks": 0.5, "cash": 2}}), "allocation.cash", weight),
        between(
            json!({"allocation": {"stocks": 0.5, "bonds": 0.4}}),
            "allocation",
            "weights must sum to 1 (± 1e-6); they sum to 0.9",
        ),
        case(
            json!({"assumptions": {"stocks": {"mean_return": -0.6}}}),
            "assumptions.stocks.mean_return",
            mean,
        ),
        case(
            json!({"assumptions": {"bonds": {"mean_return": 1.5}}}),
            "assumptions.bonds.mean_return",
            mean,
        ),
        case(
            json!({"assumptions": {"cash": {"mean_return": -1}}}),
            "assumptions.cash.mean_return",
            mean,
        ),
        case(
            json!({"assumptions": {"stocks": {"volatility": -0.1}}}),
            "assumptions.stocks.volatility",
            weight,
        ),
        case(
            json!({"assumptions": {"bonds": {"volatility": 1.1}}}),
            "assumptions.bonds.volatility",
            weight,
        ),
        case(
            json!({"assumptions": {"cash": {"volatility": 2}}}),
            "assumptions.cash.volatility",
            weight,
        ),
        case(
            json!({"assumptions": {"inflation": {"mean": 0.6}}}),
            "assumptions.inflation.mean",
            "must be a finite number ≥ -0.1 and ≤ 0.5",
        ),
        case(
            json!({"assumptions": {"inflation": {"volatility": 0.3}}}),
            "assumptions.inflation.volatility",
            "must be a finite number ≥ 0 and ≤ 0.2",
        ),
        case(
            corr(json!([[1, 0], [0, 1]])),
            "assumptions.correlation",
            "must be a 3×3 matrix (rows and columns: stocks, bonds, cash)",
        ),
        case(
            corr(json!([[1, 0, 0], [0, 1, 0], [0, 0]])),
            "assumptions.correlation",
            "must be a 3×3 matrix (rows and columns: stocks, bonds, cash)",
        ),
        case(
            corr(json!([[1, 2, 0], [2, 1, 0], [0, 0, 1]])),
            "assumptions.correlation[0][1]",
            "must be a number from -1 to 1",
        ),
        between(
            corr(json!([[1, 0, 0], [0, 0.9, 0], [0, 0, 1]])),
            "assumptions.correlation[1][1]",
            "the diagonal must be 1",
        ),
        between(
            corr(json!([[1, 0.5, 0], [0.4, 1, 0], [0, 0, 1]])),
            "assumptions.correlation[0][1]",
            "the matrix must be symmetric: [0][1] ≠ [1][0]",
        ),
        between(
            corr(json!([[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]])),
            "assumptions.correlation",
            "must be positive semi-definite (a valid correlation matrix)",
        ),
        case(json!({"annual_fee": -0.01}), "annual_fee", fee),
        case(json!({"annual_fee": 0.2}), "annual_fee", fee),
        case(
            rm(json!({"kind": "student_t", "df": 2})),
            "return_model.df",
            "must be a finite number > 2 and ≤ 1e6",
        ),
        case(
            rm(json!({"kind": "student_t", "df": 2e6})),
            "return_model.df",
            "must be a finite number > 2 and ≤ 1e6",
        ),
        case(
            rm(json!({"kind": "bootstrap", "block_years": 0})),
            "return_model.block_years",
            "must be an integer from 1 to 97",
        ),
        case(
            rm(json!({"kind": "bootstrap", "block_years": 98})),
            "return_model.block_years",
            "must be an integer from 1 to 97",
        ),
        case(
            rm(json!({"kind": "normal", "df": 4})),
            "return_model.df",
            "is not a parameter of kind `normal` (its parameters: none)",
        ),
        case(
            rm(json!({"kind": "bootstrap", "df": 4})),
            "return_model.df",
            "is not a parameter of kind `bootstrap` (its parameters: `block_years`)",
        ),
        case(
            rm(json!({"kind": "student_t", "block_years": 4})),
            "return_model.block_years",
            "is not a parameter of kind `student_t` (its parameters: `df`)",
        ),
        between(
            merged(rm(json!({"kind": "historical"})), &json!({"years": 98})),
            "years",
            "must be at most 97 for the historical model (the table covers 97 years)",
        ),
        case(
            w(json!({"strategy": "percent_of_portfolio", "rate": 0})),
            "withdrawal.rate",
            "must be a finite number > 0 and ≤ 1",
        ),
        case(fc(json!({"rate": 1.5})), "withdrawal.rate", "must be a finite number > 0 and ≤ 1"),
        case(
            gr(json!({"upper_guardrail": 0})),
            "withdrawal.upper_guardrail",
            "must be a finite number > 0 and ≤ 10",
        ),
        case(
            gr(json!({"lower_guardrail": 1})),
            "withdrawal.lower_guardrail",
            "must be a finite number > 0 and ≤ 0.99",
        ),
        case(gr(json!({"cut": 1})), "withdrawal.cut", "must be a finite number ≥ 0 and ≤ 0.99"),
        case(gr(json!({"raise": 11})), "withdrawal.raise", "must be a finite number ≥ 0 and ≤ 10"),
        case(fc(json!({"monthly_floor": -1})), "withdrawal.monthly_floor", spending),
        case(fc(json!({"monthly_ceiling": 2e10})), "withdrawal.monthly_ceiling", spending),
        between(
            fc(json!({"monthly_floor": 5000, "monthly_ceiling": 4000})),
            "withdrawal.monthly_ceiling",
            "must be ≥ withdrawal.monthly_floor",
        ),
        case(
            w(json!({"strategy": "constant_real", "rate": 0.04})),
            "withdrawal.rate",
            "is not a parameter of strategy `constant_real` (its parameters: none)",
        ),
        case(
            w(json!({"strategy": "percent_of_portfolio", "cut": 0.1})),
            "withdrawal.cut",
            "is not a parameter of strategy `percent_of_portfolio` (its parameters: `rate`)",
        ),
        case(
            gr(json!({"rate": 0.04})),
            "withdrawal.rate",
            "is not a parameter of strategy `guardrails` (its parameters: `upper_guardrail`, \
             `lower_guardrail`, `cut`, `raise`)",
        ),
        case(
            fc(json!({"raise": 0.1})),
            "withdrawal.raise",
            "is not a parameter of strategy `floor_ceiling` (its parameters: `rate`, \
             `monthly_floor`, `monthly_ceiling`)",
        ),
        case(
            json!({"income": many(51, json!({"monthly_amount": 1}))}),
            "income",
            "at most 50 streams",
        ),
        case(income(json!({"name": "x".repeat(101)})), "income[0].name", too_long),
        case(income(json!({"name": "a\u{0}b"})), "income[0].name", control),
        case(income(json!({"name": "line\nbreak"})), "income[0].name", control),
        case(
            json!({"expenses": [{"name": "é".repeat(101), "year": 1, "amount": 1}]}),
            "expenses[0].name",
            too_long,
        ),
        case(
            json!({"expenses": [{"name": "\u{7f}", "year": 1, "amount": 1}]}),
            "expenses[0].name",
            control,
        ),
        case(
            json!({"inflows": [{"name": "🏠".repeat(101), "year": 1, "amount": 1}]}),
            "inflows[0].name",
            too_long,
        ),
        case(
            json!({"inflows": [{"name": "tab\there", "year": 1, "amount": 1}]}),
            "inflows[0].name",
            control,
        ),
        case(income(json!({"monthly_amount": null})), "income[0].monthly_amount", "is required"),
        case(income(json!({"monthly_amount": -1})), "income[0].monthly_amount", spending),
        case(income(json!({"monthly_amount": 2e10})), "income[0].monthly_amount", spending),
        case(income(json!({"start_year": 0})), "income[0].start_year", in_horizon),
        between(income(json!({"start_year": 31})), "income[0].start_year", in_horizon),
        case(income(json!({"end_year": 0})), "income[0].end_year", in_horizon),
        between(income(json!({"end_year": 31})), "income[0].end_year", in_horizon),
        between(
            income(json!({"start_year": 10, "end_year": 9})),
            "income[0].end_year",
            "must be ≥ start_year",
        ),
        case(
            json!({"expenses": many(51, json!({"year": 1, "amount": 1}))}),
            "expenses",
            "at most 50 items",
        ),
        case(json!({"expenses": [{"amount": 1}]}), "expenses[0].year", "is required"),
        case(json!({"expenses": [{"year": 0, "amount": 1}]}), "expenses[0].year", in_horizon),
        between(json!({"expenses": [{"year": 31, "amount": 1}]}), "expenses[0].year", in_horizon),
        case(json!({"expenses": [{"year": 1}]}), "expenses[0].amount", "is required"),
        case(json!({"expenses": [{"year": 1, "amount": -1}]}), "expenses[0].amount", amount),
        case(
            json!({"inflows": many(51, json!({"year": 1, "amount": 1}))}),
            "inflows",
            "at most 50 items",
        ),
        case(json!({"inflows": [{"amount": 1}]}), "inflows[0].year", "is required"),
        case(json!({"inflows": [{"year": 0, "amount": 1}]}), "inflows[0].year", in_horizon),
        between(json!({"inflows": [{"year": 31, "amount": 1}]}), "inflows[0].year", in_horizon),
        case(json!({"inflows": [{"year": 1}]}), "inflows[0].amount", "is required"),
        case(json!({"inflows": [{"year": 1, "amount": 2e12}]}), "inflows[0].amount", amount),
        case(json!({"solve": {}}), "solve.target_success", "is required"),
        case(rm(json!({"df": 5})), "return_model.kind", "is required"),
        case(w(json!({"rate": 0.04})), "withdrawal.strategy", "is required"),
        case(
            json!({"solve": {"target_success": 0}}),
            "solve.target_success",
            "must be a finite number > 0 and < 1",
        ),
        case(
            json!({"solve": {"target_success": 1.5}}),
            "solve.target_success",
            "must be a finite number > 0 and < 1",
        ),
        case(
            json!({"solve": {"target_success": 1}}),
            "solve.target_success",
            "must be strictly between 0 and 1",
        ),
        between(
            merged(gr(json!({})), &json!({"solve": {"target_success": 0.9}})),
            "solve",
            "the solver finds a constant real monthly_spending; use withdrawal.strategy \
             constant_real with it",
        ),
    ]
}

/// A name's rule on its own: how it counts characters and which ones it refuses.
#[test]
fn a_name_is_at_most_100_characters_none_of_them_a_control_character() {
    let rule = rules::INCOME_NAME;
    let long = format!("must be at most {} characters", rules::MAX_NAME_CHARS);
    let control = Err(rules::CONTROL_CHARACTERS.to_owned());
    let table: Vec<(String, Result<(), String>)> = vec![
        (String::new(), Ok(())),
        ("Social security".to_owned(), Ok(())),
        ("x".repeat(100), Ok(())),
        ("x".repeat(101), Err(long.clone())),
        // Characters, not bytes: 100 four-byte characters are 100 characters.
        ("🏠".repeat(100), Ok(())),
        ("🏠".repeat(101), Err(long.clone())),
        ("é".repeat(100), Ok(())),
        ("\u{0}".to_owned(), control.clone()),
        ("nul\u{0}inside".to_owned(), control.clone()),
        ("\u{1f}".to_owned(), control.clone()),
        ("\r\n".to_owned(), control.clone()),
        ("\t".to_owned(), control.clone()),
        ("\u{7f}".to_owned(), control.clone()),
        ("\u{85}".to_owned(), control.clone()),
        ("\u{9f}".to_owned(), control.clone()),
        // Not category Cc: format characters and the replacement character are text.
        ("\u{a0}\u{200b}\u{fffd}".to_owned(), Ok(())),
        // Too long is said first, whatever else is wrong.
        (format!("{}\u{0}", "x".repeat(100)), Err(long)),
    ];
    for (text, expected) in table {
        assert_eq!(rule.check(&text).map(|_| ()), expected, "{text:?}");
    }
}

#[test]
fn each_rule_names_its_field_with_its_exact_message() {
    for case in cases() {
        let body = merged(base(), &case.patch);
        let errors = errors_of(&body, &RequestLimits::default());
        assert_eq!(errors, vec![FieldError::new(case.field, case.message)], "{body}");
    }
}

/// A path with its indices taken out: `income[3].end_year` → `income[].end_year`.
fn bare(path: &str) -> String {
    let mut out = String::new();
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            c if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

#[test]
fn every_rule_of_the_table_has_a_case() {
    let cases = cases();
    let broken: Vec<(String, &str)> = cases.iter().map(|c| (bare(c.field), c.message)).collect();
    for field in rules::fields() {
        let bounded = matches!(
            field.kind,
            rules::Kind::Number(_)
                | rules::Kind::Integer(_)
                | rules::Kind::List(_)
                | rules::Kind::Text(_)
        );
        if bounded {
            let path = field.path.replace("[][]", "");
            assert!(broken.iter().any(|(f, _)| *f == path), "no case breaks {}", field.path);
        }
    }
    for rule in rules::CROSS_RULES {
        let start = rule.message.split('{').next().unwrap_or(rule.message);
        assert!(
            broken.iter().any(|(_, m)| m.starts_with(start)),
            "no case breaks the rule {}",
            rule.id
        );
    }
}

#[test]
fn every_broken_rule_of_a_request_is_reported_at_once() {
    let body = json!({
        "years": 0,
        "allocation": {"stocks": 2},
        "withdrawal": {"strategy": "guardrails", "cut": 1, "raise": -1},
        "income": [{"monthly_amount": 1, "start_year": 101}, {"end_year": 0}],
        "expenses": [{"year": 1}],
        "solve": {"target_success": 1},
    });
    let fields: Vec<String> =
        errors_of(&body, &RequestLimits::default()).into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "starting_portfolio",
            "monthly_spending",
            "years",
            "allocation.stocks",
            "withdrawal.cut",
            "withdrawal.raise",
            "income[0].start_year",
            "income[1].monthly_amount",
            "income[1].end_year",
            "expenses[0].amount",
            "solve.target_success",
        ]
    );
}

#[test]
fn the_deployments_cap_bounds_n_scenarios_and_its_default() {
    let limits = RequestLimits { max_scenarios: 5_000, ..Default::default() };
    let errors = errors_of(&merged(base(), &json!({"n_scenarios": 5_001})), &limits);
    assert_eq!(errors, vec![FieldError::new("n_scenarios", "must be an integer from 1 to 5000")]);
    let request = SimulationRequest::from_json(base().to_string().as_bytes(), &limits).unwrap();
    assert_eq!(request.n_scenarios(), 5_000);
    let request =
        SimulationRequest::from_json(base().to_string().as_bytes(), &RequestLimits::default());
    assert_eq!(request.unwrap().n_scenarios(), DEFAULT_SCENARIOS);
}

#[test]
fn a_request_that_leaves_everything_out_takes_the_tables_defaults() {
    let request =
        SimulationRequest::from_json(base().to_string().as_bytes(), &RequestLimits::default())
            .unwrap()
            .to_json();
    let historical = serde_json::to_value(Assumptions::historical()).unwrap();
    assert_eq!(request["allocation"], json!({"stocks": 0.6, "bonds": 0.4, "cash": 0.0}));
    assert_eq!(request["assumptions"], historical);
    assert_eq!(request["annual_fee"], 0.0);
    assert_eq!(request["return_model"], json!({"kind": "lognormal"}));
    assert_eq!(request["withdrawal"], json!({"strategy": "constant_real"}));
    assert_eq!(request["rebalancing"], "monthly");
    assert_eq!(request["income"], json!([]));
    assert!(request.get("seed").is_none() && request.get("solve").is_none());
    let with = |patch: Value| {
        SimulationRequest::from_json(
            merged(base(), &patch).to_string().as_bytes(),
            &RequestLimits::default(),
        )
        .unwrap()
        .to_json()
    };
    let r = with(
        json!({"return_model": {"kind": "student_t"}, "withdrawal": {"strategy": "guardrails"}}),
    );
    assert_eq!(r["return_model"], json!({"kind": "student_t", "df": 5.0}));
    assert_eq!(
        r["withdrawal"],
        json!({"strategy": "guardrails", "upper_guardrail": 0.2, "lower_guardrail": 0.2, "cut": 0.1, "raise": 0.1})
    );
    let r = with(
        json!({"return_model": {"kind": "bootstrap"}, "withdrawal": {"strategy": "floor_ceiling"},
        "income": [{"monthly_amount": 5}], "allocation": {"stocks": 1}}),
    );
    assert_eq!(r["return_model"], json!({"kind": "bootstrap", "block_years": 1}));
    assert_eq!(
        r["withdrawal"],
        json!({"strategy": "floor_ceiling", "rate": 0.04, "monthly_floor": 0.0, "monthly_ceiling": 1e10})
    );
    assert_eq!(
        r["income"],
        json!([{"monthly_amount": 5.0, "start_year": 1, "end_year": 30, "inflation_adjusted": true}])
    );
    assert_eq!(r["allocation"], json!({"stocks": 1.0, "bonds": 0.0, "cash": 0.0}));
    let partial =
        with(json!({"assumptions": {"stocks": {"volatility": 0.3}}}))["assumptions"].clone();
    assert_eq!(partial["stocks"]["volatility"], 0.3);
    assert_eq!(partial["stocks"]["mean_return"], historical["stocks"]["mean_return"]);
    assert_eq!(partial["correlation"], historical["correlation"]);
}

// ---------------------------------------------------------------------------------------------
// The rules as published: the OpenAPI schema, the page's rules document, docs/model.md.
// ---------------------------------------------------------------------------------------------

/// The request schema under `limits`, compiled by a JSON Schema (2020-12) validator.
fn compiled_schema(limits: &RequestLimits) -> (boon::Schemas, boon::SchemaIndex) {
    let schema = serde_json::to_value(request_schema(limits)).unwrap();
    let mut compiler = boon::Compiler::new();
    compiler.set_default_draft(boon::Draft::V2020_12);
    compiler.add_resource("request.json", schema).unwrap();
    let mut schemas = boon::Schemas::new();
    let index = compiler.compile("request.json", &mut schemas).unwrap();
    (schemas, index)
}

/// Valid requests that between them give every field, and `null` for each optional one.
fn valid_requests() -> Vec<Value> {
    let everything = json!({
        "starting_portfolio": 1e6, "monthly_spending": 4000, "years": 30, "n_scenarios": 1000,
        "seed": 9_223_372_036_854_775_807u64,
        "allocation": {"stocks": 0.5, "bonds": 0.3, "cash": 0.2},
        "assumptions": {
            "stocks": {"mean_return": 0.08, "volatility": 0.18},
            "bonds": {"mean_return": 0.04, "volatility": 0.07},
            "cash": {"mean_return": 0.02, "volatility": 0.01},
            "correlation": [[1, 0.1, 0], [0.1, 1, 0.2], [0, 0.2, 1]],
            "inflation": {"mean": 0.02, "volatility": 0.02},
        },
        "annual_fee": 0.001,
        "return_model": {"kind": "student_t", "df": 6},
        "withdrawal": {"strategy": "floor_ceiling", "rate": 0.05, "monthly_floor": 1000,
            "monthly_ceiling": 9000},
        "income": [{"name": "pension — Ünïcode 🏠", "monthly_amount": 900, "start_year": 5, "end_year": 30,
            "inflation_adjusted": false}],
        "expenses": [{"name": "roof", "year": 4, "amount": 20000, "inflation_adjusted": true}],
        "inflows": [{"name": "🏠".repeat(100), "year": 12, "amount": 200000, "inflation_adjusted": false}],
        "rebalancing": "none",
    });
    let nulls = json!({
        "starting_portfolio": 1, "monthly_spending": 0, "years": 1, "n_scenarios": null,
        "seed": null, "allocation": null, "assumptions": {"stocks": null, "correlation": null,
        "inflation": {"mean": null}}, "annual_fee": null, "rebalancing": null, "solve": null,
        "return_model": {"kind": "bootstrap", "block_years": null, "df": null},
        "withdrawal": {"strategy": "guardrails", "cut": null, "rate": null},
        "income": [{"monthly_amount": 0, "name": null, "start_year": null, "end_year": null,
            "inflation_adjusted": null}],
        "expenses": null, "inflows": [],
    });
    let mut out = vec![base(), everything, nulls];
    for (kind, extra) in [
        ("lognormal", json!({})),
        ("normal", json!({})),
        ("bootstrap", json!({"block_years": 97})),
        ("historical", json!({})),
    ] {
        out.push(merged(base(), &json!({"return_model": merged(json!({"kind": kind}), &extra)})));
    }
    for (strategy, extra) in [
        ("constant_real", json!({})),
        ("percent_of_portfolio", json!({"rate": 1})),
        (
            "guardrails",
            json!({"upper_guardrail": 10, "lower_guardrail": 0.99, "cut": 0.99,
            "raise": 10}),
        ),
    ] {
        out.push(merged(
            base(),
            &json!({"withdrawal": merged(json!({"strategy": strategy}), &extra)}),
        ));
    }
    out.push(merged(base(), &json!({"solve": {"target_success": 0.95}, "rebalancing": "annual"})));
    out
}

#[test]
fn the_openapi_schema_accepts_what_the_validator_accepts_and_refuses_what_it_can_say() {
    let limits = RequestLimits::default();
    let (schemas, index) = compiled_schema(&limits);
    let examples = serde_json::to_value(request_schema(&limits)).unwrap()["examples"].clone();
    let examples = examples.as_array().cloned().unwrap_or_default();
    assert!(!examples.is_empty(), "the schema gives an example");
    for body in valid_requests().into_iter().chain(examples) {
        SimulationRequest::from_json(body.to_string().as_bytes(), &limits)
            .unwrap_or_else(|e| panic!("{body}: {e:?}"));
        if let Err(e) = schemas.validate(&body, index) {
            panic!("the schema refuses a valid request {body}: {e}");
        }
    }
    // The validator compares numbers as doubles, in which 2^63 − 1 and 2^63 are one number; the
    // next test checks that the schema's bound is exact.
    for case in cases().into_iter().filter(|c| c.field != "seed") {
        let body = merged(base(), &case.patch);
        let refused = schemas.validate(&body, index).is_err();
        assert_eq!(refused, case.in_schema, "schema on {} ({}): {body}", case.field, case.message);
    }
    // What fails decoding fails the schema too.
    for patch in [
        json!({"years": 3.5}),
        json!({"years": "ten"}),
        json!({"seed": -1}),
        json!({"colour": "blue"}),
        json!({"allocation": {"gold": 0.1}}),
        json!({"rebalancing": "weekly"}),
        json!({"return_model": {"kind": "gaussian"}}),
        json!({"return_model": {}}),
        json!({"withdrawal": {"rate": 0.04}}),
        json!({"income": [null]}),
        json!({"assumptions": {"correlation": [[1, 0, 0], [0, 1, 0], [0, 0, "x"]]}}),
    ] {
        let body = merged(base(), &patch);
        assert!(SimulationRequest::from_json(body.to_string().as_bytes(), &limits).is_err());
        assert!(schemas.validate(&body, index).is_err(), "the schema accepts {body}");
    }
}

#[test]
fn the_openapi_schema_carries_the_deployments_cap_and_every_rule_of_the_table() {
    let schema = serde_json::to_value(request_schema(&RequestLimits {
        max_scenarios: 5_000,
        ..Default::default()
    }));
    let schema = schema.unwrap();
    let props = &schema["properties"];
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], json!(["starting_portfolio", "monthly_spending", "years"]));
    assert_eq!(props["starting_portfolio"]["exclusiveMinimum"], 0.0);
    assert_eq!(props["starting_portfolio"]["maximum"], 1e12);
    assert_eq!(props["starting_portfolio"]["type"], "number");
    assert_eq!(props["years"]["type"], "integer");
    assert_eq!(props["n_scenarios"]["maximum"], 5_000);
    assert_eq!(props["n_scenarios"]["default"], 5_000);
    assert_eq!(props["n_scenarios"]["type"], json!(["integer", "null"]));
    assert_eq!(props["seed"]["maximum"], json!(MAX_SEED));
    assert_eq!(props["annual_fee"]["default"], 0.0);
    assert_eq!(props["income"]["maxItems"], 50);
    assert_eq!(props["income"]["items"]["required"], json!(["monthly_amount"]));
    assert_eq!(props["expenses"]["items"]["required"], json!(["year", "amount"]));
    assert_eq!(props["income"]["items"]["additionalProperties"], false);
    assert_eq!(props["rebalancing"]["enum"], json!(["monthly", "annual", "none", null]));
    assert_eq!(props["rebalancing"]["default"], "monthly");
    assert_eq!(props["solve"]["properties"]["target_success"]["exclusiveMaximum"], 1.0);
    let variants = props["return_model"]["oneOf"].as_array().unwrap();
    assert_eq!(variants.len(), 6, "five kinds, or null");
    let student_t = variants.iter().find(|v| v["title"] == "student_t").unwrap();
    assert_eq!(student_t["properties"]["df"]["default"], 5.0);
    assert_eq!(student_t["properties"]["block_years"]["type"], "null");
    assert_eq!(student_t["required"], json!(["kind"]));
    assert_eq!(props["return_model"]["default"], json!({"kind": "lognormal"}));
    // Every bound of the table is in the schema, as its rule says.
    for field in rules::fields() {
        let rules::Kind::Number(rule) = field.kind else { continue };
        let mut node = &schema;
        for part in field.path.split('.') {
            let (name, item) = match part.strip_suffix("[]") {
                Some(name) => (name, true),
                None => (part, false),
            };
            node = &node["properties"][name];
            if let Some(variant) = node["oneOf"].as_array().and_then(|v| v.first()) {
                node = if rule.only_for.names().is_empty() {
                    variant
                } else {
                    let chosen = rule.only_for.names()[0];
                    node["oneOf"].as_array().unwrap().iter().find(|v| v["title"] == chosen).unwrap()
                };
            }
            if item {
                node = &node["items"];
            }
        }
        let lower = if rule.min_open { "exclusiveMinimum" } else { "minimum" };
        let upper = if rule.max_open { "exclusiveMaximum" } else { "maximum" };
        assert_eq!(node[lower], rule.min, "{}: {node}", field.path);
        assert_eq!(node[upper], rule.max, "{}: {node}", field.path);
    }
}

#[test]
fn the_rules_document_gives_the_page_the_apis_own_messages_and_this_deployments_cap() {
    let doc = document(&RequestLimits::default());
    let f = &doc["fields"];
    let messages: Vec<(String, String)> = cases()
        .into_iter()
        .filter(|c| c.message != rules::REQUIRED)
        .filter(|c| {
            let between = |r: &&rules::CrossRule| {
                c.message.starts_with(r.message.split('{').next().unwrap_or(r.message))
            };
            !rules::CROSS_RULES.iter().any(between)
        })
        .map(|c| (bare(c.field).replace("[][]", ""), c.message.to_owned()))
        .collect();
    // Each bound's message, as the document gives it (horizon bounds filled in as the page
    // does), is the one the API gives.
    for (field, message) in &messages {
        let rule = &f[field.as_str()];
        let given = rule["message"].as_str().unwrap().replace("{max}", "30");
        let other = |key: &str| rule.get(key).and_then(Value::as_str);
        let at_max = other("message_at_maximum");
        let control = other("message_control");
        assert!(
            given == *message
                || at_max == Some(message.as_str())
                || control == Some(message.as_str()),
            "{field}: the document says {given:?}, the API {message:?}"
        );
    }
    let doc = document(&RequestLimits { max_scenarios: 5_000, ..Default::default() });
    let f = &doc["fields"];
    assert_eq!(f["n_scenarios"]["message"], "must be an integer from 1 to 5000");
    assert_eq!(f["n_scenarios"]["maximum"], 5_000);
    assert_eq!(f["n_scenarios"]["default"], 5_000);
    assert_eq!(f["income[].end_year"]["maximum"], "years");
    assert_eq!(f["income[].end_year"]["default"], "years");
    assert_eq!(f["starting_portfolio"]["required"], true);
    assert_eq!(f["withdrawal.rate"]["only_for"], json!(["percent_of_portfolio", "floor_ceiling"]));
    assert_eq!(f["income"]["message"], "at most 50 streams");
    assert_eq!(doc["required"], "is required");
    assert_eq!(doc["messages"]["allocation_sum"], rules::ALLOCATION_SUM.message);
    assert_eq!(doc["limits"]["table_years"], 97);
    assert_eq!(doc["limits"]["max_years"], 100);
    assert_eq!(doc["assumptions"], serde_json::to_value(Assumptions::historical()).unwrap());
}

/// docs/model.md, between its markers, is the table `markdown::rules_table` writes.
#[test]
fn docs_model_md_states_the_rules_of_the_table() {
    const BEGIN: &str = "<!-- rules:begin -->\n";
    const END: &str = "<!-- rules:end -->";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/model.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc.find(BEGIN).expect("docs/model.md has the rules:begin marker") + BEGIN.len();
    let end = start + doc[start..].find(END).expect("docs/model.md has the rules:end marker");
    let table = super::markdown::rules_table();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap();
    } else {
        assert!(
            doc[start..end] == table,
            "docs/model.md's table of rules is not the table of shared/engine/src/request/rules.rs; \
             regenerate it with `UPDATE_DOCS=1 cargo test -p portfolio-engine \
             docs_model_md_states_the_rules_of_the_table`"
        );
    }
}

fn errors_in(body: &str) -> Vec<FieldError> {
    match SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default()) {
        Err(RequestError::Invalid(errors)) => errors,
        other => panic!("expected field errors for {body}, got {other:?}"),
    }
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn one_answer_names_every_refused_field_and_every_broken_rule_of_the_rest() {
    let body = r#"{"starting_portfolio": -5, "monthly_spending": "x", "years": "y",
        "allocation": {"stocks": "a", "bonds": 0.4, "cash": 0}, "bogus": 1, "annual_fee": 2}"#;
    let errors = errors_in(body);
    let mut named = fields(&errors);
    named.sort_unstable();
    // Not `allocation` (its sum, with a weight taken out) nor `years` / `monthly_spending`
    // again as missing: those were refused already.
    assert_eq!(
        named,
        [
            "allocation.stocks",
            "annual_fee",
            "bogus",
            "monthly_spending",
            "starting_portfolio",
            "years"
        ],
        "{errors:?}"
    );
    let said = |field: &str| &errors.iter().find(|e| e.field == field).unwrap().message;
    assert!(said("monthly_spending").contains("expected a number"), "{errors:?}");
    assert_eq!(said("years"), "invalid type: string \"y\"; must be an integer from 1 to 100");
    assert!(said("bogus").starts_with("unknown field `bogus`"), "{errors:?}");
    // The rules' own words, as when they are the only errors.
    assert_eq!(
        said("starting_portfolio"),
        &only_error(r#"{"starting_portfolio": -5, "monthly_spending": 1, "years": 3}"#).message
    );
    assert_eq!(
        said("annual_fee"),
        &only_error(
            r#"{"starting_portfolio": 5, "monthly_spending": 1, "years": 3, "annual_fee": 2}"#
        )
        .message
    );
}

#[test]
fn a_whole_number_beyond_its_type_is_told_by_its_rule_like_any_other_number_past_the_bound() {
    let base = r#""starting_portfolio": 1000, "monthly_spending": 1"#;
    let body = |field: &str, value: &str| match field {
        "years" => format!(r#"{{{base}, "years": {value}}}"#),
        "n_scenarios" | "seed" => format!(r#"{{{base}, "years": 30, "{field}": {value}}}"#),
        "return_model.block_years" => format!(
            r#"{{{base}, "years": 30, "return_model": {{"kind": "bootstrap", "block_years": {value}}}}}"#
        ),
        "income[0].start_year" => format!(
            r#"{{{base}, "years": 30, "income": [{{"monthly_amount": 1, "start_year": {value}}}]}}"#
        ),
        "income[0].end_year" => format!(
            r#"{{{base}, "years": 30, "income": [{{"monthly_amount": 1, "end_year": {value}}}]}}"#
        ),
        "expenses[0].year" => {
            format!(r#"{{{base}, "years": 30, "expenses": [{{"amount": 1, "year": {value}}}]}}"#)
        }
        "inflows[0].year" => {
            format!(r#"{{{base}, "years": 30, "inflows": [{{"amount": 1, "year": {value}}}]}}"#)
        }
        other => unreachable!("{other}"),
    };
    // Past every rule's bound, yet within the type: what the rule says there is the oracle.
    let cases = [
        ("years", "1000000000", &["5000000000", "-5", "1e30", "-1.0"][..]),
        ("n_scenarios", "1000000000", &["5000000000", "-1", "1e30"]),
        ("seed", "9223372036854775808", &["-1", "1e20", "-1e30", "18446744073709551616"]),
        ("return_model.block_years", "1000000000", &["5000000000", "-2"]),
        ("income[0].start_year", "1000000000", &["4294967296", "-1"]),
        ("income[0].end_year", "1000000000", &["4294967296", "-1"]),
        ("expenses[0].year", "1000000000", &["99999999999", "-3"]),
        ("inflows[0].year", "1000000000", &["1e12", "-7"]),
    ];
    for (field, past_the_bound, values) in cases {
        let rule = only_error(&body(field, past_the_bound));
        assert_eq!(rule.field, field);
        for value in values {
            let error = only_error(&body(field, value));
            assert_eq!(error, rule, "{field} = {value}");
        }
    }
    // A fraction is not a whole number at all: told so, and then the rule.
    assert_eq!(
        only_error(&body("years", "3.5")).message,
        "invalid type: floating point `3.5`; must be an integer from 1 to 100"
    );
}

#[test]
fn a_refused_list_item_or_variant_is_named_once_beside_the_other_errors() {
    let base = r#""starting_portfolio": 1000, "monthly_spending": 1"#;
    let errors =
        errors_in(&format!(r#"{{{base}, "years": 0, "income": [{{"monthly_amount": 1}}, 5]}}"#));
    assert_eq!(fields(&errors), ["income[1]", "years"], "{errors:?}");
    assert!(errors[0].message.contains("expected an object"), "{errors:?}");

    let errors = errors_in(&format!(
        r#"{{{base}, "years": 3, "return_model": {{"kind": "gaussian"}}, "annual_fee": 2, "rebalancing": "weekly"}}"#
    ));
    assert_eq!(fields(&errors), ["return_model.kind", "rebalancing", "annual_fee"], "{errors:?}");

    // Refused inside a list item: the item's other fields are still checked.
    let errors = errors_in(&format!(
        r#"{{{base}, "years": 3, "income": [{{"monthly_amount": "x", "start_year": 2, "end_year": 1}}]}}"#
    ));
    assert_eq!(fields(&errors), ["income[0].monthly_amount", "income[0].end_year"], "{errors:?}");
}

#[test]
fn a_body_refused_at_more_fields_than_are_named_still_gets_a_list_of_them() {
    // Every item's years beyond their type: each takes a stand-in, and there are more of them
    // than one answer decodes the body for.
    let items: Vec<String> = (0..80)
        .map(|_| r#"{"monthly_amount": 1, "start_year": -1, "end_year": 5000000000}"#.to_owned())
        .collect();
    let body = format!(
        r#"{{"starting_portfolio": 1000, "monthly_spending": 1, "years": 30, "income": [{}]}}"#,
        items.join(",")
    );
    let errors = errors_in(&body);
    assert!(!errors.is_empty());
    assert!(errors.iter().all(|e| e.field.starts_with("income")), "{errors:?}");
    // And unknown fields past the budget: the first ones are named.
    let unknown: Vec<String> = (0..200).map(|i| format!(r#""x{i}": 1"#)).collect();
    let errors = errors_in(&format!("{{{}}}", unknown.join(",")));
    assert!(errors.len() >= 16 && errors.iter().all(|e| e.field.starts_with('x')), "{errors:?}");
}

#[test]
fn a_key_given_twice_is_named_as_the_field_not_as_a_body_that_is_no_object() {
    let base = r#""monthly_spending": 1, "years": 3"#;
    // At the top: the field itself, and nothing else (not "is required" once it is taken out).
    let errors = errors_in(&format!(
        r#"{{"starting_portfolio": 1000, "starting_portfolio": 2000, {base}}}"#
    ));
    assert_eq!(fields(&errors), ["starting_portfolio"], "{errors:?}");
    assert_eq!(errors[0].message, decode::DUPLICATE_KEY);
    // Inside an object and a list item, beside the other errors of the body.
    let errors = errors_in(&format!(
        r#"{{"starting_portfolio": 1000, {base}, "annual_fee": 2,
            "allocation": {{"stocks": 1, "stocks": 0, "bonds": 0, "cash": 0}},
            "income": [{{"monthly_amount": 1, "start_year": 1, "start_year": 2}}]}}"#
    ));
    assert_eq!(
        fields(&errors),
        ["allocation.stocks", "income[0].start_year", "annual_fee"],
        "{errors:?}"
    );
    assert!(errors[..2].iter().all(|e| e.message == decode::DUPLICATE_KEY), "{errors:?}");
}

#[test]
fn a_whole_number_field_holding_no_number_is_named_even_where_its_rule_is_not_reached() {
    let base = r#""starting_portfolio": 1000, "monthly_spending": 1, "years": 30"#;
    let named = |tail: &str| -> Vec<(String, String)> {
        let mut errors: Vec<(String, String)> = errors_in(&format!("{{{base}, {tail}}}"))
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect();
        errors.sort();
        errors
    };
    // Another parameter the kind does not take stops the model's checks before its own.
    let model = named(r#""return_model": {"kind": "bootstrap", "df": 3, "block_years": "x"}"#);
    let fields: Vec<&str> = model.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["return_model.block_years", "return_model.df"], "{model:?}");
    assert!(model[0].1.starts_with("invalid type: string \"x\""), "{model:?}");
    // A list over its length is not checked item by item.
    let flows = (0..60)
        .map(|i| {
            format!(
                r#"{{"monthly_amount": 1, "start_year": {}}}"#,
                if i == 0 { "2.5" } else { "1" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let long = named(&format!(r#""income": [{flows}]"#));
    let fields: Vec<&str> = long.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["income", "income[0].start_year"], "{long:?}");
    // An item of the wrong type later in the same list takes the list out of the rules' view.
    let mixed = named(r#""income": [{"monthly_amount": 1, "start_year": 2.5}, 5]"#);
    let fields: Vec<&str> = mixed.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["income[0].start_year", "income[1]"], "{mixed:?}");
    assert!(mixed[0].1.starts_with("invalid type: floating point `2.5`"), "{mixed:?}");
    // A kind that does not take the parameter says so, without the number's wording.
    let other = named(r#""return_model": {"kind": "lognormal", "block_years": "x"}"#);
    assert_eq!(other.len(), 1, "{other:?}");
    assert!(!other[0].1.contains("invalid type"), "{other:?}");
}

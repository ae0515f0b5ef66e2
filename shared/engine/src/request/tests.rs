//! The rules at work: each rule's message for the field it names, the decoding errors in
//! JSON's terms, and the normalised form.

use super::*;

fn only_error(body: &str) -> FieldError {
    match SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default()) {
        Err(RequestError::Invalid(mut errors)) if errors.len() == 1 => errors.remove(0),
        other => panic!("expected one field error for {body}, got {other:?}"),
    }
}

#[test]
fn type_errors_name_the_field_and_what_json_it_takes_not_rust_types() {
    let base = r#""starting_portfolio": 1000, "monthly_spending": 1"#;
    let cases = [
        (format!(r#"{{{base}, "years": 3.5}}"#), "years", "a whole number ≥ 0"),
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

//! A route's query string, read by the handler rather than an extractor, so that a bad one is
//! a 422 naming the parameter (an extractor's refusal would be a plain-text 400).

use actix_web::HttpRequest;
use actix_web::error::QueryPayloadError;
use actix_web::web;
use portfolio_engine::request::repeated_key;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, shortened};

/// What a parameter given twice is told: which of the two counts would be a guess.
pub(crate) const REPEATED: &str = "is given more than once; give it once";

/// The query of `req` as `T`, whose parameters are all optional text (each handler checks
/// its own values and names them); what can still go wrong is a parameter given twice, or one
/// the route does not take (`T` denies unknown fields): a misspelt `wait` would otherwise
/// turn a long-poll into an answer at once, without a word.
pub(crate) fn parse<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string()).map(web::Query::into_inner).map_err(|e| {
        let said = match &e {
            QueryPayloadError::Deserialize(inner) => inner.to_string(),
            other => other.to_string(),
        };
        if let Some(name) = repeated_key(&said) {
            return ApiError::validation(name, REPEATED);
        }
        match unknown_key(&said) {
            Some((name, takes)) => ApiError::validation(
                shortened(name),
                format!("is not a parameter of this route, which takes {takes}"),
            ),
            None => ApiError::validation("query", said),
        }
    })
}

/// The parameter serde refused as unknown and the ones it named instead, from its wording:
/// ``unknown field `wiat`, expected `wait` `` (or `expected one of ...`).
fn unknown_key(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, rest) = rest.split_once('`')?;
    let takes = rest.strip_prefix(", expected ")?;
    Some((name, takes.strip_prefix("one of ").unwrap_or(takes)))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;
    use crate::routes::results::JobQuery;

    #[test]
    fn a_parameter_given_twice_is_named_and_a_single_one_is_read() {
        let req = TestRequest::get().uri("/results/x?wait=1&wait=2").to_http_request();
        let Err(ApiError::Validation(errors)) = parse::<JobQuery>(&req) else {
            panic!("a repeated parameter must be refused")
        };
        assert_eq!((errors[0].field.as_str(), errors[0].message.as_str()), ("wait", REPEATED));
        let req = TestRequest::get().uri("/results/x?wait=1").to_http_request();
        assert_eq!(parse::<JobQuery>(&req).unwrap().wait.as_deref(), Some("1"));
    }

    #[test]
    fn a_parameter_the_route_does_not_take_is_named_with_those_it_does() {
        let req = TestRequest::get().uri("/results/x?wiat=30").to_http_request();
        let Err(ApiError::Validation(errors)) = parse::<JobQuery>(&req) else {
            panic!("an unknown parameter must be refused")
        };
        assert_eq!(
            (errors[0].field.as_str(), errors[0].message.as_str()),
            ("wiat", "is not a parameter of this route, which takes `wait`")
        );
    }
}

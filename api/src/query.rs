//! A route's query string, read by the handler rather than an extractor, so that a bad one is
//! a 422 naming the parameter (an extractor's refusal would be a plain-text 400).

use actix_web::HttpRequest;
use actix_web::error::QueryPayloadError;
use actix_web::web;
use portfolio_engine::request::repeated_key;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// What a parameter given twice is told: which of the two counts would be a guess.
pub(crate) const REPEATED: &str = "is given more than once; give it once";

/// The query of `req` as `T`, whose parameters are all optional text (each handler checks
/// its own values and names them); what can still go wrong is a parameter given twice.
pub(crate) fn parse<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string()).map(web::Query::into_inner).map_err(|e| {
        let said = match &e {
            QueryPayloadError::Deserialize(inner) => inner.to_string(),
            other => other.to_string(),
        };
        match repeated_key(&said) {
            Some(name) => ApiError::validation(name, REPEATED),
            None => ApiError::validation("query", said),
        }
    })
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
}

//! The `Prefer` request header (RFC 7240), of which the API honours `wait=N` on a submit: wait
//! up to N seconds for the job to end and answer with its result. Preferences are hints, so a
//! malformed one is ignored rather than refused, as the RFC asks.

use actix_web::http::header::HeaderMap;

pub(crate) const PREFER: &str = "prefer";
pub(crate) const PREFERENCE_APPLIED: &str = "preference-applied";

/// The seconds of the first well-formed `wait` preference, across every `Prefer` header.
pub(crate) fn wait_secs(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(PREFER)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|preference| {
            // Parameters after `;` belong to the preference; `wait` takes none.
            let (name, value) = preference.split(';').next()?.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            seconds(value.trim().trim_matches('"'))
        })
}

/// RFC 7240's delta-seconds: digits, read as the longest wait when they overflow (the wait is
/// cut to `MAX_WAIT_SECS` anyway, and a huge ask is a wish to wait as long as allowed).
fn seconds(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(HeaderName::from_static(PREFER), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn wait_is_read_among_other_preferences_and_headers() {
        assert_eq!(wait_secs(&headers(&["wait=10"])), Some(10));
        assert_eq!(wait_secs(&headers(&["respond-async, Wait = 5"])), Some(5));
        assert_eq!(wait_secs(&headers(&["handling=lenient", "wait=\"7\""])), Some(7));
        assert_eq!(wait_secs(&headers(&["wait=3; foo=bar"])), Some(3));
    }

    #[test]
    fn a_wait_too_long_for_a_u64_is_the_longest_wait() {
        assert_eq!(wait_secs(&headers(&["wait=99999999999999999999"])), Some(u64::MAX));
    }

    #[test]
    fn a_malformed_or_absent_wait_is_ignored() {
        assert_eq!(wait_secs(&headers(&[])), None);
        assert_eq!(wait_secs(&headers(&["respond-async"])), None);
        assert_eq!(
            wait_secs(&headers(&["wait=soon", "wait=-1", "wait", "wait=+5", "wait="])),
            None
        );
        assert_eq!(wait_secs(&headers(&["waiting=4"])), None);
    }
}

//! A Postgres connection string checked by libpq's own parser at start. Without it a
//! `DATABASE_URL` libpq cannot read starts the process anyway: `/health` answers, every pool
//! connect fails for ever, and the log names no variable. libpq's parser, not ours, so what
//! passes here is exactly what the pools will accept (URIs and `key=value` strings alike).

use std::ffi::{CStr, CString, c_char};

/// Why libpq refuses `conninfo`, if it does. The quoted parts of libpq's message are left out:
/// they quote the string itself, which may hold a password.
#[expect(unsafe_code, reason = "libpq's own parser, through the pq-sys bindings diesel links")]
pub(crate) fn refusal(conninfo: &str) -> Option<String> {
    // Read trimmed, as the settings keep it (a trailing newline from a secrets file is common).
    let conninfo = conninfo.trim();
    if conninfo.is_empty() {
        return Some("is empty".to_owned());
    }
    let Ok(text) = CString::new(conninfo) else {
        return Some("holds a NUL byte".to_owned());
    };
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: `text` is NUL-terminated and outlives the call; libpq allocates the options and
    // the message it returns, and each is freed below with libpq's own free, once.
    let options = unsafe { pq_sys::PQconninfoParse(text.as_ptr(), &mut error) };
    if !options.is_null() {
        // SAFETY: `options` came from PQconninfoParse and is freed once.
        unsafe { pq_sys::PQconninfoFree(options) };
        return None;
    }
    let message = if error.is_null() {
        "could not be parsed by libpq".to_owned()
    } else {
        // SAFETY: libpq's message is a NUL-terminated string it allocated; copied, then freed.
        let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
        unsafe { pq_sys::PQfreemem(error.cast()) };
        unquoted(message.trim())
    };
    Some(format!(
        "is not a connection string libpq accepts ({message}); write it as \
         postgres://user[:password]@host[:port]/database[?param=value], or as key=value pairs"
    ))
}

/// libpq's message up to its first quote: what follows quotes the string itself, which may hold
/// a password, and libpq does not escape a quote inside it, so no quoted part can be told apart
/// from the rest safely.
fn unquoted(text: &str) -> String {
    let before = text.split('"').next().unwrap_or_default().trim_end_matches([' ', ':']);
    if before.is_empty() { "libpq gave no reason".to_owned() } else { format!("{before} …") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_takes_both_forms_and_refuses_what_it_cannot_read() {
        for good in [
            "postgres://postgres@127.0.0.1:5432/portfolio_mc?sslmode=disable",
            "postgresql://app:s3cret@db.internal/x?sslmode=verify-full",
            "host=db dbname=x user=app",
        ] {
            assert_eq!(refusal(good), None, "{good}");
        }
        let refused = refusal("mysql://root:hunter2@db/x").expect("not libpq's");
        assert!(refused.contains("(missing …)"), "{refused}");
        // libpq quotes the string without escaping a quote inside it: nothing after the first
        // quote of its message is repeated.
        for leaky in [
            "mysql://root:hunter2@db/x",
            "postgres://app:hunter2@[::1]\"/db",
            "postgres://app:a\"b%zzhunter2@db/x",
            "host=db password=hunter2 \"junk",
        ] {
            let refused = refusal(leaky).expect("refused");
            assert!(!refused.contains("hunter2"), "{leaky}: {refused}");
        }
        assert!(refusal("postgres://db/x?nosuchparam=1").is_some());
        assert_eq!(refusal("  ").as_deref(), Some("is empty"));
    }
}

//! A Postgres connection string checked by libpq's own parser at start. Without it a
//! `DATABASE_URL` libpq cannot read starts the process anyway: `/health` answers, every pool
//! connect fails for ever, and the log names no variable. libpq's parser, not ours, reads the
//! string (URIs and `key=value` strings alike). It checks the names of the parameters, not
//! their values, which libpq checks only when it connects: the values of the parameters that
//! take a number or one of a few words, and that libpq checks on every connection, are checked
//! here as libpq would then (`sslmode=bogus`, `port=abc`); the values of any other are left to
//! it.

use std::ffi::{CStr, CString, c_char};

/// Why libpq refuses `conninfo`, if it does. The quoted parts of libpq's message are left out:
/// they quote the string itself, which may hold a password.
pub(crate) fn refusal(conninfo: &str) -> Option<String> {
    // Read trimmed, as the settings keep it (a trailing newline from a secrets file is common).
    let conninfo = conninfo.trim();
    if conninfo.is_empty() {
        return Some("is empty".to_owned());
    }
    if conninfo.contains('\0') {
        return Some("holds a NUL byte".to_owned());
    }
    match given_options(conninfo) {
        Ok(given) => given
            .iter()
            .find_map(|(keyword, value)| value_refusal(keyword, value))
            .map(|why| format!("is not a connection string libpq can use: {why}")),
        Err(message) => Some(format!(
            "is not a connection string libpq accepts ({message}); write it as \
             postgres://user[:password]@host[:port]/database[?param=value], or as key=value pairs"
        )),
    }
}

/// The parameters `conninfo` sets itself, as (keyword, value), read by libpq's own parser
/// (`PQconninfoParse` fills in no default); or libpq's reason, without its quoted parts.
#[expect(unsafe_code, reason = "libpq's own parser, through the pq-sys bindings diesel links")]
fn given_options(conninfo: &str) -> Result<Vec<(String, String)>, String> {
    let text = CString::new(conninfo).map_err(|_| "a NUL byte".to_owned())?;
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: `text` is NUL-terminated and outlives the call; libpq allocates the options and
    // the message it returns, and each is freed below with libpq's own free, once.
    let options = unsafe { pq_sys::PQconninfoParse(text.as_ptr(), &mut error) };
    if options.is_null() {
        if error.is_null() {
            return Err("could not be parsed by libpq".to_owned());
        }
        // SAFETY: libpq's message is a NUL-terminated string it allocated; copied, then freed.
        let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
        unsafe { pq_sys::PQfreemem(error.cast()) };
        return Err(unquoted(message.trim()));
    }
    let mut given = Vec::new();
    let mut option = options;
    // SAFETY: the array ends with an entry whose keyword is NULL; every string in it is
    // NUL-terminated and lives until the array is freed, once, after the last read.
    unsafe {
        while !(*option).keyword.is_null() {
            if !(*option).val.is_null() {
                let keyword = CStr::from_ptr((*option).keyword).to_string_lossy().into_owned();
                let value = CStr::from_ptr((*option).val).to_string_lossy().into_owned();
                given.push((keyword, value));
            }
            option = option.add(1);
        }
        pq_sys::PQconninfoFree(options);
    }
    Ok(given)
}

/// TCP settings every pooled connection gets unless its connection string sets them: libpq's
/// own defaults wait on a peer that vanished without a reset (a database host lost with its
/// zone, while the DNS name moved to the standby) for as long as the kernel retransmits, about
/// a quarter of an hour, holding a pooled connection, and the request on it, all that time.
/// Sent data unacknowledged for 10 s fails the statement; an idle connection is probed after
/// 30 s and dropped after three unanswered probes 10 s apart; a connect gives up after 5 s.
/// Over a Unix socket libpq ignores all but `connect_timeout`.
const TCP_DEFAULTS: [(&str, &str); 5] = [
    ("connect_timeout", "5"),
    ("tcp_user_timeout", "10000"),
    ("keepalives_idle", "30"),
    ("keepalives_interval", "10"),
    ("keepalives_count", "3"),
];

/// `conninfo` with each of [`TCP_DEFAULTS`] it does not set itself, in its own form (URI
/// query parameters, or `key=value` pairs). A string libpq cannot read is returned as it is
/// (the settings refuse it at start).
pub fn with_tcp_defaults(conninfo: &str) -> String {
    let Ok(given) = given_options(conninfo) else { return conninfo.to_owned() };
    let mut out = conninfo.trim().to_owned();
    for (key, value) in TCP_DEFAULTS {
        if !given.iter().any(|(g, _)| g == key) {
            append(&mut out, key, value);
        }
    }
    out
}

/// Adds `key=value` to a connection string in its own form (a URI's query, or a pair).
fn append(conninfo: &mut String, key: &str, value: &str) {
    let uri = conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://");
    let separator = match (uri, conninfo.contains('?')) {
        (true, false) => "?",
        (true, true) => "&",
        (false, _) => " ",
    };
    conninfo.push_str(&format!("{separator}{key}={value}"));
}

/// `conninfo` with `fallback_application_name` set to this process's executable name
/// (`portfolio-api`, `portfolio-worker`) unless it sets one itself: `pg_stat_activity` then
/// tells the API's connections from the workers', which share one connection string. An
/// `application_name` in the string, or `PGAPPNAME`, still wins (libpq's rule).
pub fn with_application_name(conninfo: &str) -> String {
    let Ok(given) = given_options(conninfo) else { return conninfo.to_owned() };
    if given.iter().any(|(key, _)| key == "fallback_application_name") {
        return conninfo.to_owned();
    }
    let name: String = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(63)
        .collect();
    if name.is_empty() {
        return conninfo.to_owned();
    }
    let mut out = conninfo.trim().to_owned();
    append(&mut out, "fallback_application_name", &name);
    out
}

/// `conninfo` as this process connects with it: [`with_tcp_defaults`], and named after the
/// process ([`with_application_name`]). Every pool and the leader's lock connection use it.
pub fn for_this_process(conninfo: &str) -> String {
    with_application_name(&with_tcp_defaults(conninfo))
}

/// Why libpq would refuse `value` for `keyword` whenever it connects, for the parameters whose
/// values are a number or one of a few words (libpq 15–17). The value itself is never quoted:
/// it may be a password given under a name we do not know.
fn value_refusal(keyword: &str, value: &str) -> Option<String> {
    // An empty value is libpq's to judge (for most parameters it means the default).
    if value.is_empty() {
        return None;
    }
    // libpq compares these with `strcmp`, but the TLS versions without regard to case.
    let in_any_case = keyword.starts_with("ssl_") && keyword.ends_with("_protocol_version");
    let one_of = |allowed: &[&str]| {
        let taken =
            allowed.iter().any(|a| *a == value || (in_any_case && a.eq_ignore_ascii_case(value)));
        (!taken).then(|| format!("{keyword} takes one of {}", allowed.join(", ")))
    };
    let whole = |v: &str| v.trim().parse::<i64>().is_ok();
    match keyword {
        "sslmode" => one_of(&["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
        "gssencmode" | "channel_binding" => one_of(&["disable", "prefer", "require"]),
        "sslcertmode" => one_of(&["disable", "allow", "require"]),
        "target_session_attrs" => {
            one_of(&["any", "read-write", "read-only", "primary", "standby", "prefer-standby"])
        }
        "load_balance_hosts" => one_of(&["disable", "random"]),
        "sslnegotiation" => one_of(&["postgres", "direct"]),
        "ssl_min_protocol_version" | "ssl_max_protocol_version" => {
            one_of(&["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"])
        }
        // One port per host, or one for all; an empty one is the default.
        "port" => value
            .split(',')
            .any(|p| {
                !p.trim().is_empty()
                    && !p.trim().parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
            })
            .then(|| "port takes numbers from 1 to 65535".to_owned()),
        // (The TCP keepalive settings are read only for a TCP connection, so a value libpq
        // would refuse there passes over a Unix socket: left to libpq.)
        "connect_timeout" => (!whole(value)).then(|| format!("{keyword} takes a whole number")),
        _ => None,
    }
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
        // The TCP defaults go where each form takes them, and never over a value given.
        assert_eq!(
            with_tcp_defaults("postgres://u@db/x"),
            "postgres://u@db/x?connect_timeout=5&tcp_user_timeout=10000&keepalives_idle=30\
             &keepalives_interval=10&keepalives_count=3"
        );
        assert_eq!(
            with_tcp_defaults("postgres://u@db/x?sslmode=require&tcp_user_timeout=500"),
            "postgres://u@db/x?sslmode=require&tcp_user_timeout=500&connect_timeout=5\
             &keepalives_idle=30&keepalives_interval=10&keepalives_count=3"
        );
        assert_eq!(
            with_tcp_defaults("host=db dbname=x connect_timeout=2 keepalives_idle=60\n"),
            "host=db dbname=x connect_timeout=2 keepalives_idle=60 tcp_user_timeout=10000 \
             keepalives_interval=10 keepalives_count=3"
        );
        for with_defaults in
            [with_tcp_defaults("postgres://u@db/x"), with_tcp_defaults("host=db dbname=x")]
        {
            assert_eq!(refusal(&with_defaults), None, "{with_defaults}");
        }
        assert_eq!(with_tcp_defaults("mysql://nope"), "mysql://nope");
        // The process's name is the fallback application name, unless the string gives one.
        let exe = std::env::current_exe().unwrap();
        let stem = exe.file_stem().unwrap().to_string_lossy();
        let named: String =
            stem.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect();
        assert_eq!(
            with_application_name("postgres://u@db/x?sslmode=require"),
            format!("postgres://u@db/x?sslmode=require&fallback_application_name={named}")
        );
        assert_eq!(
            with_application_name("host=db dbname=x"),
            format!("host=db dbname=x fallback_application_name={named}")
        );
        let given = "postgres://u@db/x?fallback_application_name=mine";
        assert_eq!(with_application_name(given), given);
        assert_eq!(refusal(&with_application_name("postgres://u@db/x")), None);
        // Values libpq checks only when it connects, named by their parameter, never quoted.
        for (bad, named) in [
            ("postgres://db/x?sslmode=bogus", "sslmode"),
            ("host=db dbname=x sslmode=Require-ish", "sslmode"),
            ("postgres://db/x?port=abc", "port"),
            ("postgres://db:99999/x", "port"),
            ("host=a,b port=5432,x", "port"),
            ("postgres://db/x?connect_timeout=soon", "connect_timeout"),
            ("postgres://db/x?target_session_attrs=writable", "target_session_attrs"),
        ] {
            let refused = refusal(bad).unwrap_or_else(|| panic!("{bad} taken"));
            assert!(refused.contains(named), "{bad}: {refused}");
            assert!(!refused.contains("bogus") && !refused.contains("soon"), "{refused}");
        }
        for good in [
            "postgres://db/x?sslmode=verify-full&ssl_min_protocol_version=tlsv1.2&connect_timeout=5&target_session_attrs=read-write",
            "host=a,b port=5432,5433 dbname=x keepalives_idle=30",
            // Read by libpq only for TCP: over a Unix socket it connects whatever they say.
            "host=/var/run/postgresql dbname=x keepalives_idle=abc",
            "host=a,b port=,5433 dbname=x",
            "postgres://db/x?sslmode=",
        ] {
            assert_eq!(refusal(good), None, "{good}");
        }
        assert_eq!(refusal("  ").as_deref(), Some("is empty"));
    }
}

//! The one answer to "is this database error worth trying again?", for the API (503 or 500) and
//! the worker (retry, or fail the job with the message) alike. It goes by the SQLSTATE class,
//! the only stable description of a Postgres error: connection exceptions (08), operator
//! intervention (57: admin shutdown, cannot connect now), insufficient resources (53) and
//! transaction rollbacks (40: serialization failure, deadlock) pass; data exceptions (22),
//! integrity violations (23), syntax and permissions (42) and everything else do not.
//!
//! diesel 2.3 does not expose the SQLSTATE: `DatabaseErrorInformation` has no accessor for it
//! (upstream: diesel-rs/diesel#5232, open), and its `DatabaseErrorKind` names only a handful of
//! codes, lumping deadlocks, a full disk and a data error together as `Unknown`. Its Postgres
//! backend boxes one of two types as that information: a `String`, for errors libpq made up
//! itself (a lost connection, a command it could not send), or a private struct holding only
//! the failed statement's `PGresult`. [`sqlstate`] tells them apart by size and reads field
//! `C` of the `PGresult` through pq-sys, the bindings diesel itself links.

use std::ffi::CStr;
use std::fmt;
use std::os::raw::c_int;
use std::ptr::NonNull;

use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};

/// A five-character Postgres error code (`22023`, `40P01`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState([u8; 5]);

impl SqlState {
    pub fn new(code: &str) -> Option<Self> {
        let bytes: [u8; 5] = code.as_bytes().try_into().ok()?;
        bytes.iter().all(u8::is_ascii_alphanumeric).then_some(Self(bytes))
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("checked ASCII")
    }

    /// The first two characters: the class the code belongs to.
    pub(crate) fn class(&self) -> &str {
        &self.as_str()[..2]
    }

    /// Whether this code reports a data exception (class 22: a value the database refuses,
    /// such as NUL in `jsonb` or a number out of a column's range): the input's fault, the
    /// same on every try.
    pub fn is_data_exception(&self) -> bool {
        self.class() == "22"
    }

    /// Whether the condition this code reports may be gone on the next try. A write refused
    /// as read-only (25006) is one: it reached a server that is, or is becoming, a standby in a
    /// failover (a DNS name or a virtual IP that still points at the old primary, an Aurora
    /// writer being replaced), and the next connection reaches the new primary. Refused for
    /// good instead, a computed result was thrown away and its job failed.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self.class(), "08" | "40" | "53" | "57") || self.as_str() == "25006"
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether trying the same call again later may succeed.
pub fn is_transient(e: &DieselError) -> bool {
    match e {
        // The connection is gone, whatever the server said last: a fresh one may work.
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        DieselError::DatabaseError(_, info) => match pg_sqlstate(info.as_ref()) {
            Some(code) => code.is_transient(),
            // No code: libpq's own report, not the server's verdict on the statement. A
            // statement whose write failed on a connection the server had cut (one larger than
            // the socket takes at once) is reported so while the connection still looks open,
            // and diesel calls it `Unknown`.
            None => tells_of_a_lost_connection(info.message()),
        },
        // A commit refused with a serialization failure is as worth retrying as a statement.
        DieselError::RollbackErrorOnCommit { commit_error, .. } => is_transient(commit_error),
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}

/// Whether a statement that failed with `e` may still have taken effect: the connection was
/// lost or the server ended the session (SQLSTATE classes 08 and 57) while the statement was
/// in flight, perhaps after its commit. A transaction the server rolled back (a deadlock or a
/// serialisation failure, class 40; out of resources, class 53; a cancel, 57014) did not, nor
/// did a command libpq could not send, nor anything that is not transient.
pub fn outcome_unknown(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _) => false,
        DieselError::DatabaseError(_, info) => match pg_sqlstate(info.as_ref()) {
            Some(code) => matches!(code.class(), "08" | "57") && code.as_str() != "57014",
            None => tells_of_a_lost_connection(info.message()),
        },
        DieselError::RollbackErrorOnCommit { commit_error, .. } => outcome_unknown(commit_error),
        _ => false,
    }
}

/// Whether libpq's message says the connection to the server is gone (libpq's wording, which
/// carries no code; fe-misc.c, fe-secure.c, fe-exec.c). Other errors of libpq's own (a bind it
/// cannot encode, too many parameters) are the same on every try. The wording is libpq's in
/// English: the images set no locale, and a process run with a translated libpq (`LANG` of
/// another language, its messages installed) would take these for lasting errors again.
fn tells_of_a_lost_connection(message: &str) -> bool {
    const LOST: [&str; 8] = [
        "server closed the connection unexpectedly",
        "no connection to the server",
        "could not receive data from server",
        "could not send data to server",
        "connection not open",
        "SSL SYSCALL error",
        "SSL connection has been closed unexpectedly",
        "lost synchronization with server",
    ];
    LOST.iter().any(|lost| message.contains(lost))
}

/// The SQLSTATE of `e` when it is a data exception (class 22): Postgres refused a value.
pub fn data_exception(e: &DieselError) -> Option<SqlState> {
    sqlstate(e).filter(SqlState::is_data_exception)
}

/// The SQLSTATE Postgres reported for `e`, when it reported one.
pub fn sqlstate(e: &DieselError) -> Option<SqlState> {
    match e {
        DieselError::DatabaseError(_, info) => pg_sqlstate(info.as_ref()),
        DieselError::RollbackErrorOnCommit { commit_error, .. } => sqlstate(commit_error),
        _ => None,
    }
}

/// Field `C` of the `PGresult` behind diesel's Postgres error information.
#[expect(
    unsafe_code,
    reason = "diesel 2.3 hides the PGresult of a failed statement; see the module docs"
)]
fn pg_sqlstate(info: &(dyn DatabaseErrorInformation + Send + Sync)) -> Option<SqlState> {
    // diesel's private `PgErrorInformation { result: RawResult(NonNull<PGresult>) }` is the
    // only implementation of the trait in the dependency tree of this size; the other one,
    // `String`, is three words. (Cargo.toml pins diesel to 2.3 for this reason.)
    type Result = NonNull<pq_sys::PGresult>;
    if size_of_val(info) != size_of::<Result>() || align_of_val(info) != align_of::<Result>() {
        return None;
    }
    let data = std::ptr::from_ref(info).cast::<Result>();
    // SAFETY: by the check above, `info` is diesel's `PgErrorInformation`, whose only field is
    // the non-null `PGresult` it owns; `info` borrows it, so the result outlives this call.
    let result = unsafe { data.read() }.as_ptr().cast_const();
    let field = |code: u8| {
        // SAFETY: `result` is a live `PGresult`; libpq returns null or a NUL-terminated string
        // owned by the result.
        let ptr = unsafe { pq_sys::PQresultErrorField(result, c_int::from(code)) };
        // SAFETY: see above.
        (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) })
    };
    // The primary message diesel returned is that same field of that same result: if diesel's
    // layout ever changed under the pin, this tells, rather than a wrong code.
    let primary = field(pq_sys::PG_DIAG_MESSAGE_PRIMARY)?;
    if primary.as_ptr().cast::<u8>() != info.message().as_ptr() {
        return None;
    }
    SqlState::new(field(pq_sys::PG_DIAG_SQLSTATE)?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_that_can_pass_are_transient_and_the_rest_are_not() {
        for code in ["08006", "08P01", "40001", "40P01", "53100", "53300", "57P01", "57P03"] {
            assert!(SqlState::new(code).unwrap().is_transient(), "{code}");
        }
        for code in ["22023", "22P02", "23505", "42601", "42501", "25P02", "XX000", "P0001"] {
            assert!(!SqlState::new(code).unwrap().is_transient(), "{code}");
        }
        for code in ["22P05", "22021", "22003", "22023"] {
            assert!(SqlState::new(code).unwrap().is_data_exception(), "{code}");
        }
        for code in ["23505", "40001", "08006", "42601"] {
            assert!(!SqlState::new(code).unwrap().is_data_exception(), "{code}");
        }
    }

    #[test]
    fn only_a_connection_lost_in_flight_leaves_a_statement_s_outcome_unknown() {
        let error =
            |kind, message: &str| DieselError::DatabaseError(kind, Box::new(message.to_owned()));
        for unknown in [
            error(DatabaseErrorKind::ClosedConnection, "server closed the connection"),
            error(DatabaseErrorKind::Unknown, "could not receive data from server: reset"),
        ] {
            assert!(outcome_unknown(&unknown), "{unknown}");
        }
        for known in [
            // Nothing reached the server; or the server rolled the transaction back.
            error(DatabaseErrorKind::UnableToSendCommand, "could not send data to server"),
            error(DatabaseErrorKind::SerializationFailure, "could not serialize access"),
            error(DatabaseErrorKind::UniqueViolation, "duplicate key value"),
            DieselError::NotFound,
        ] {
            assert!(!outcome_unknown(&known), "{known}");
        }
    }

    #[test]
    fn a_code_is_five_ascii_letters_or_digits() {
        assert_eq!(SqlState::new("40P01").unwrap().class(), "40");
        assert!(SqlState::new("4000").is_none());
        assert!(SqlState::new("40 01").is_none());
    }

    #[test]
    fn errors_libpq_made_up_have_no_code_and_lost_connections_are_transient() {
        let lost = DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection unexpectedly".to_owned()),
        );
        assert_eq!(sqlstate(&lost), None);
        assert!(is_transient(&lost));
        let unknown = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("something libpq said".to_owned()),
        );
        assert!(!is_transient(&unknown));
        // A write that failed on a connection the server had cut: libpq's words, kind Unknown
        // (tests/it/faults_infra.rs makes it happen against a real server).
        let cut = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(
                "server closed the connection unexpectedly\n\tThis probably means the server \
                 terminated abnormally\n\tbefore or while processing the request.\n"
                    .to_owned(),
            ),
        );
        assert!(is_transient(&cut));
        assert!(!is_transient(&DieselError::NotFound));
    }
}

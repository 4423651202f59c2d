//! `pgi_code` (the core's error kinds, plus the ABI's argument errors) and `pgi_error`.

use std::ffi::{c_char, CString};
use std::ptr;

use pgisolate::ErrorKind;

use crate::guard::{free_handle, guard_or};

/// What kind of failure a `pgi_error` reports: the core's error kinds with their numbers
/// (never reused; 16 is retired), plus the ABI's own argument errors (13, 14).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pgi_code {
    /// A configuration value is invalid.
    Config = 1,
    /// A connection string could not be parsed or scoped.
    Conninfo = 2,
    /// PostgreSQL binaries (initdb, postgres, pg_dump) were not found.
    Binaries = 3,
    /// The embedded server could not be started.
    Server = 4,
    /// The database server could not be reached or refused the login (`pgi_error_sqlstate`
    /// says why when the server did: 28P01, 28000, 53300, …).
    Connect = 5,
    /// A statement failed on the server (`pgi_error_sqlstate` has its SQLSTATE).
    Db = 6,
    /// A migration failed while building a template (`pgi_error_sqlstate` has the failed
    /// statement's SQLSTATE when the engine ran it).
    Migration = 7,
    /// A file could not be read or written.
    Io = 8,
    /// An operation did not finish within its deadline.
    Timeout = 9,
    /// No unique schema name could be found.
    Name = 10,
    /// The engine refused to touch something it does not own.
    Refused = 11,
    /// The engine or object is closed or already released.
    Closed = 12,
    /// A required pointer argument was NULL.
    NullArgument = 13,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 14,
    /// A bug in pgisolate (a panic caught at the ABI boundary): please report it.
    Internal = 15,
    /// The cache server (Redis) failed or refused a command.
    Cache = 17,
    /// The engine could not take its owner lease, or lost it.
    Lease = 18,
}

impl From<ErrorKind> for pgi_code {
    fn from(k: ErrorKind) -> pgi_code {
        match k {
            ErrorKind::Config => pgi_code::Config,
            ErrorKind::ConnInfo => pgi_code::Conninfo,
            ErrorKind::BinariesNotFound => pgi_code::Binaries,
            ErrorKind::Server => pgi_code::Server,
            ErrorKind::Connect => pgi_code::Connect,
            ErrorKind::Db => pgi_code::Db,
            ErrorKind::Migration => pgi_code::Migration,
            ErrorKind::Io => pgi_code::Io,
            ErrorKind::Timeout => pgi_code::Timeout,
            ErrorKind::NameExhausted => pgi_code::Name,
            ErrorKind::Refused => pgi_code::Refused,
            ErrorKind::Closed => pgi_code::Closed,
            ErrorKind::Internal => pgi_code::Internal,
            ErrorKind::Cache => pgi_code::Cache,
            ErrorKind::Lease => pgi_code::Lease,
        }
    }
}

/// An error: a code, a message and, when the server sent one, its SQLSTATE. Owned by the
/// caller: free with `pgi_error_free`. Any thread may read or free it (one at a time).
#[derive(Debug)]
pub struct pgi_error {
    pub(crate) code: pgi_code,
    pub(crate) message: CString,
    pub(crate) sqlstate: Option<CString>,
}

/// The error's code; `PGI_CODE_NULL_ARGUMENT` for a NULL `err`.
#[no_mangle]
pub unsafe extern "C" fn pgi_error_code(err: *const pgi_error) -> pgi_code {
    guard_or(pgi_code::Internal, || {
        // SAFETY: documented contract: a live error or NULL.
        match unsafe { err.as_ref() } {
            Some(e) => e.code,
            None => pgi_code::NullArgument,
        }
    })
}

/// The error's message, borrowed: valid until `pgi_error_free(err)`. Never NULL for a
/// non-NULL `err`.
#[no_mangle]
pub unsafe extern "C" fn pgi_error_message(err: *const pgi_error) -> *const c_char {
    guard_or(c"(panic reading a pgi_error)".as_ptr(), || {
        // SAFETY: documented contract: a live error or NULL.
        match unsafe { err.as_ref() } {
            Some(e) => e.message.as_ptr(),
            None => c"(null pgi_error)".as_ptr(),
        }
    })
}

/// The server's SQLSTATE (five characters, e.g. `28P01`, `42P01`, `55P03`) when the error came
/// from the server (codes CONNECT, DB, MIGRATION), else NULL. Borrowed: valid until
/// `pgi_error_free(err)`. NULL for a NULL `err`.
#[no_mangle]
pub unsafe extern "C" fn pgi_error_sqlstate(err: *const pgi_error) -> *const c_char {
    guard_or(ptr::null(), || {
        // SAFETY: documented contract: a live error or NULL.
        match unsafe { err.as_ref() }.and_then(|e| e.sqlstate.as_ref()) {
            Some(s) => s.as_ptr(),
            None => ptr::null(),
        }
    })
}

/// Frees an error. Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn pgi_error_free(err: *mut pgi_error) {
    // SAFETY: a pgi_error from this library or NULL, freed once.
    unsafe { free_handle(err) }
}

#[cfg(test)]
mod tests {
    use super::pgi_code;
    use pgisolate::ErrorKind;

    /// The C codes are the core's kinds, number for number.
    #[test]
    fn codes_are_the_core_kinds() {
        for k in ErrorKind::ALL {
            assert_eq!(pgi_code::from(k) as u32, k as u32, "{k}");
        }
    }
}

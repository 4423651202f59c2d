//! The engine's one error type.

use std::fmt;

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of an [`Error`], with a stable number: the C ABI's `pgi_code`, Go's `Code`, Python's
/// `.kind` and Node's `.kind` carry the same numbers. A number is never reused: a kind that is
/// retired keeps its number reserved (16, once "other", is reserved; 13 and 14 are the C ABI's
/// own argument errors, NULL and invalid UTF-8).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A configuration value (environment, option or argument) is invalid.
    Config = 1,
    /// A connection string could not be parsed or scoped.
    ConnInfo = 2,
    /// PostgreSQL binaries (initdb, postgres, pg_dump) were not found.
    BinariesNotFound = 3,
    /// The embedded server could not be started or reached.
    Server = 4,
    /// The database server could not be reached or refused the login.
    Connect = 5,
    /// A statement failed on the server.
    Db = 6,
    /// A migration failed while building a template.
    Migration = 7,
    /// A file could not be read or written.
    Io = 8,
    /// An operation did not finish within its deadline.
    Timeout = 9,
    /// No unique schema name could be found for an identity.
    NameExhausted = 10,
    /// The engine refused an operation that would harm objects it does not own.
    Refused = 11,
    /// The engine (or the object) was already closed.
    Closed = 12,
    /// A bug in pgisolate (a panic caught at a boundary): please report it.
    Internal = 15,
    /// The cache server (Redis) failed or refused a command.
    Cache = 17,
    /// The engine could not take its owner lease, or lost it.
    Lease = 18,
}

impl ErrorKind {
    /// Every kind, in number order.
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::Config,
        ErrorKind::ConnInfo,
        ErrorKind::BinariesNotFound,
        ErrorKind::Server,
        ErrorKind::Connect,
        ErrorKind::Db,
        ErrorKind::Migration,
        ErrorKind::Io,
        ErrorKind::Timeout,
        ErrorKind::NameExhausted,
        ErrorKind::Refused,
        ErrorKind::Closed,
        ErrorKind::Internal,
        ErrorKind::Cache,
        ErrorKind::Lease,
    ];

    /// The stable short name (`config`, `conninfo`, `binaries`, `server`, `connect`, `db`,
    /// `migration`, `io`, `timeout`, `name`, `refused`, `closed`, `internal`, `cache`, `lease`):
    /// Python's and Node's `.code`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::ConnInfo => "conninfo",
            ErrorKind::BinariesNotFound => "binaries",
            ErrorKind::Server => "server",
            ErrorKind::Connect => "connect",
            ErrorKind::Db => "db",
            ErrorKind::Migration => "migration",
            ErrorKind::Io => "io",
            ErrorKind::Timeout => "timeout",
            ErrorKind::NameExhausted => "name",
            ErrorKind::Refused => "refused",
            ErrorKind::Closed => "closed",
            ErrorKind::Internal => "internal",
            ErrorKind::Cache => "cache",
            ErrorKind::Lease => "lease",
        }
    }

    /// The class Python and Node raise for this kind (`ConfigError`, …; Go's `errors.Is`
    /// targets are named in tests/vectors/errors.json).
    pub fn class_name(self) -> &'static str {
        match self {
            ErrorKind::Config => "ConfigError",
            ErrorKind::ConnInfo => "ConnInfoError",
            ErrorKind::BinariesNotFound => "BinariesNotFoundError",
            ErrorKind::Server => "ServerError",
            ErrorKind::Connect => "ConnectError",
            ErrorKind::Db => "DatabaseError",
            ErrorKind::Migration => "MigrationError",
            ErrorKind::Io => "FileError",
            ErrorKind::Timeout => "OperationTimeoutError",
            ErrorKind::NameExhausted => "NameExhaustedError",
            ErrorKind::Refused => "RefusedError",
            ErrorKind::Closed => "ClosedError",
            ErrorKind::Internal => "InternalError",
            ErrorKind::Cache => "CacheError",
            ErrorKind::Lease => "LeaseError",
        }
    }

    /// The kind whose class this kind's class extends (binaries not found is a server error);
    /// None: the base class (`Error`, `PgIsolateError`).
    pub fn parent(self) -> Option<ErrorKind> {
        match self {
            ErrorKind::BinariesNotFound => Some(ErrorKind::Server),
            _ => None,
        }
    }

    /// One line saying what the kind means: its class's doc in every binding.
    pub fn doc(self) -> &'static str {
        match self {
            ErrorKind::Config => "A configuration value is invalid.",
            ErrorKind::ConnInfo => "A connection string could not be parsed.",
            ErrorKind::BinariesNotFound => "PostgreSQL binaries were not found.",
            ErrorKind::Server => "The embedded server could not be started or reached.",
            ErrorKind::Connect => "The database server could not be reached.",
            ErrorKind::Db => "A statement failed on the server; `.sqlstate` is its code.",
            ErrorKind::Migration => "A migration failed while building a template.",
            ErrorKind::Io => "A file could not be read or written.",
            ErrorKind::Timeout => "An operation did not finish within its deadline.",
            ErrorKind::NameExhausted => "No unique schema name could be found.",
            ErrorKind::Refused => "The engine refused to touch something it does not own.",
            ErrorKind::Closed => "The engine or object is closed.",
            ErrorKind::Internal => "A bug in pgisolate (a panic caught at the boundary): please report it.",
            ErrorKind::Cache => "The cache server (Redis) failed or refused a command.",
            ErrorKind::Lease => "The engine could not take its owner lease, or lost it.",
        }
    }

    /// The kind with this number, if any.
    pub fn from_number(n: u32) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| *k as u32 == n)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The error a statement or a login failed with (tokio-postgres's), kept as the source.
type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the engine. Messages say what happened and what to do;
/// [`Error::kind`] classifies, [`Error::sqlstate`] carries the server's code.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value (environment, option or argument) is invalid.
    Config(String),
    /// A connection string could not be parsed or scoped.
    ConnInfo(String),
    /// PostgreSQL binaries were not found.
    BinariesNotFound(String),
    /// The embedded server could not be started or reached.
    Server(String),
    /// The database server could not be reached or refused the connection.
    Connect {
        /// Where the engine tried to connect, without the password.
        target: String,
        /// SQLSTATE code, when the server sent one (28P01 for a wrong password, 53300 for no
        /// free connection slot, …).
        code: Option<String>,
        /// The server's or the network's message.
        message: String,
        /// The driver's error.
        source: Option<Source>,
    },
    /// A statement failed on the server; carries the server's message, SQLSTATE and detail.
    Db {
        /// What the engine was doing.
        context: String,
        /// SQLSTATE code, when the server sent one.
        code: Option<String>,
        /// The server's message with its detail and hint.
        message: String,
        /// The driver's error.
        source: Option<Source>,
    },
    /// A migration file or SQL text failed while building a template.
    Migration {
        /// The file (or `<sql>`) that failed.
        source_name: String,
        /// SQLSTATE code of the failed statement, when known.
        code: Option<String>,
        /// The server's message.
        message: String,
    },
    /// A file could not be read or written.
    Io {
        /// The path or operation.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An operation did not finish within its deadline.
    Timeout(String),
    /// No unique schema name could be found for an identity.
    NameExhausted(String),
    /// The engine refused an operation that would harm objects it does not own.
    Refused(String),
    /// The engine (or the object) was already closed.
    Closed(String),
    /// A bug in pgisolate (a panic caught at a boundary).
    Internal(String),
    /// The cache server (Redis) failed or refused a command.
    Cache(String),
    /// The engine could not take its owner lease, or lost it.
    Lease(String),
}

impl Error {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::Config,
            Error::ConnInfo(_) => ErrorKind::ConnInfo,
            Error::BinariesNotFound(_) => ErrorKind::BinariesNotFound,
            Error::Server(_) => ErrorKind::Server,
            Error::Connect { .. } => ErrorKind::Connect,
            Error::Db { .. } => ErrorKind::Db,
            Error::Migration { .. } => ErrorKind::Migration,
            Error::Io { .. } => ErrorKind::Io,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::NameExhausted(_) => ErrorKind::NameExhausted,
            Error::Refused(_) => ErrorKind::Refused,
            Error::Closed(_) => ErrorKind::Closed,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Cache(_) => ErrorKind::Cache,
            Error::Lease(_) => ErrorKind::Lease,
        }
    }

    /// The kind's stable short name (see [`ErrorKind::code`]).
    pub fn code(&self) -> &'static str {
        self.kind().code()
    }

    /// The server's SQLSTATE, when the error came from the server (a failed login, a failed
    /// statement, a failed migration).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Db { code, .. } | Error::Connect { code, .. } | Error::Migration { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Wraps a tokio-postgres error with what the engine was doing, keeping the server's
    /// message, SQLSTATE, detail and hint (tokio-postgres alone prints only "db error").
    pub fn db(context: impl Into<String>, e: tokio_postgres::Error) -> Error {
        let (code, message) = describe_pg(&e);
        Error::Db { context: context.into(), code, message, source: Some(Box::new(e)) }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}

/// The SQLSTATE and a full message of a tokio-postgres error.
pub(crate) fn describe_pg(e: &tokio_postgres::Error) -> (Option<String>, String) {
    if let Some(db) = e.as_db_error() {
        let mut m = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            m.push_str(&format!(" (detail: {d})"));
        }
        if let Some(h) = db.hint() {
            m.push_str(&format!(" (hint: {h})"));
        }
        return (Some(db.code().code().to_owned()), m);
    }
    let mut m = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        m.push_str(": ");
        m.push_str(&s.to_string());
        src = s.source();
    }
    (e.code().map(|c| c.code().to_owned()), m)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m)
            | Error::ConnInfo(m)
            | Error::BinariesNotFound(m)
            | Error::Server(m)
            | Error::Timeout(m)
            | Error::NameExhausted(m)
            | Error::Refused(m)
            | Error::Closed(m)
            | Error::Internal(m)
            | Error::Cache(m)
            | Error::Lease(m) => f.write_str(m),
            Error::Connect { target, message, .. } => write!(
                f,
                "cannot connect to PostgreSQL at {target}: {message} \
                 (check PGISOLATE_DATABASE_URL, or unset it to use the embedded server)"
            ),
            Error::Db { context, code: Some(code), message, .. } => write!(f, "{context}: {message} [SQLSTATE {code}]"),
            Error::Db { context, code: None, message, .. } => write!(f, "{context}: {message}"),
            Error::Migration { source_name, code: Some(code), message } => {
                write!(f, "migration {source_name} failed: {message} [SQLSTATE {code}]")
            }
            Error::Migration { source_name, code: None, message } => {
                write!(f, "migration {source_name} failed: {message}")
            }
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Db { source: Some(s), .. } | Error::Connect { source: Some(s), .. } => Some(s.as_ref()),
            _ => None,
        }
    }
}

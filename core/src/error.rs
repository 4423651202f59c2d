//! The engine's one error type.

use std::fmt;

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine. Messages say what happened and what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value (environment, option or argument) is invalid.
    Config(String),
    /// A connection string could not be parsed or scoped.
    ConnInfo(String),
    /// PostgreSQL binaries for the embedded server were not found.
    BinariesNotFound(String),
    /// The embedded server could not be started or reached.
    Server(String),
    /// The database server could not be reached or refused the connection.
    Connect {
        /// Where the engine tried to connect, without the password.
        target: String,
        /// The server's or the network's message.
        message: String,
    },
    /// A statement failed on the server; carries the server's message, SQLSTATE and detail.
    Db {
        /// What the engine was doing.
        context: String,
        /// SQLSTATE code, when the server sent one.
        code: Option<String>,
        /// The server's message with its detail and hint.
        message: String,
    },
    /// A migration file or SQL text failed while building a template.
    Migration {
        /// The file (or `<sql>`) that failed.
        source_name: String,
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
}

impl Error {
    /// A short stable code for bindings: `config`, `conninfo`, `binaries`, `server`, `connect`,
    /// `db`, `migration`, `io`, `timeout`, `name`, `refused`, `closed`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::ConnInfo(_) => "conninfo",
            Error::BinariesNotFound(_) => "binaries",
            Error::Server(_) => "server",
            Error::Connect { .. } => "connect",
            Error::Db { .. } => "db",
            Error::Migration { .. } => "migration",
            Error::Io { .. } => "io",
            Error::Timeout(_) => "timeout",
            Error::NameExhausted(_) => "name",
            Error::Refused(_) => "refused",
            Error::Closed(_) => "closed",
        }
    }

    /// The SQLSTATE of a database error, if any.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Db { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Wraps a tokio-postgres error with what the engine was doing, keeping the server's
    /// message, SQLSTATE, detail and hint (tokio-postgres alone prints only "db error").
    pub fn db(context: impl Into<String>, e: tokio_postgres::Error) -> Error {
        let (code, message) = describe_pg(&e);
        Error::Db { context: context.into(), code, message }
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
            | Error::Closed(m) => f.write_str(m),
            Error::Connect { target, message } => write!(
                f,
                "cannot connect to PostgreSQL at {target}: {message} \
                 (check PGISOLATE_DATABASE_URL, or unset it to use the embedded server)"
            ),
            Error::Db { context, code: Some(code), message } => write!(f, "{context}: {message} [SQLSTATE {code}]"),
            Error::Db { context, code: None, message } => write!(f, "{context}: {message}"),
            Error::Migration { source_name, message } => write!(f, "migration {source_name} failed: {message}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

//! Quoting for SQL text the engine writes: literals and identifiers. A leaf.

/// Placeholder for the target schema in captured DDL and rows.
pub(crate) const PLACEHOLDER: &str = "__pgisolate_target_schema__";

/// A string as an SQL escape-string literal (`E'…'`), safe whatever
/// `standard_conforming_strings` is. NUL characters, which PostgreSQL text cannot hold, become
/// U+FFFD.
pub(crate) fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''").replace('\0', "\u{FFFD}"))
}

/// An identifier, always double-quoted.
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

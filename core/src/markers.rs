//! Schema markers: every schema the engine creates carries a comment
//! `pgisolate:v1:<kind> owner=<key> t=<unix seconds>`. gc drops only schemas whose marker is
//! this version's, whose kind is a test schema, a build, a pool schema or a tombstone, and
//! whose owner is gone (fenced: lease free and unseen for the grace period). Anything else (no marker, another version's
//! marker, `public`, templates) is never touched. A leaf: it depends on nothing but the SQL
//! quoting helpers.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::sql::{ident, literal};

/// Marker prefix of this engine version.
pub(crate) const MARKER_PREFIX: &str = "pgisolate:v1:";

/// What a marked schema is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A test schema in use.
    Schema,
    /// A test schema kept by the keep policy.
    Kept,
    /// A template being built.
    Build,
    /// A published template.
    Template,
    /// A released schema being dropped.
    Tomb,
    /// A ready schema in an engine's warm pool.
    Pool,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Schema => "schema",
            Kind::Kept => "kept",
            Kind::Build => "build",
            Kind::Template => "template",
            Kind::Tomb => "tomb",
            Kind::Pool => "pool",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "schema" => Kind::Schema,
            "kept" => Kind::Kept,
            "build" => Kind::Build,
            "template" => Kind::Template,
            "tomb" => Kind::Tomb,
            "pool" => Kind::Pool,
            _ => return None,
        })
    }
}

/// A parsed marker comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    /// The kind of schema.
    pub kind: Kind,
    /// Owner key, 0 for templates.
    pub owner: i64,
    /// Creation time, unix seconds.
    pub created: u64,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The marker text for a new schema of `kind` owned by `owner`.
pub(crate) fn marker(kind: Kind, owner: i32) -> String {
    format!("{MARKER_PREFIX}{} owner={owner} t={}", kind.as_str(), unix_now())
}

/// `COMMENT ON SCHEMA` setting a marker.
pub(crate) fn comment_sql(schema: &str, kind: Kind, owner: i32) -> String {
    format!("COMMENT ON SCHEMA {} IS {};", ident(schema), literal(&marker(kind, owner)))
}

/// Parses a marker of this version; `None` for anything else.
pub(crate) fn parse_marker(s: &str) -> Option<Marker> {
    let rest = s.strip_prefix(MARKER_PREFIX)?;
    let mut parts = rest.split(' ');
    let kind = Kind::parse(parts.next()?)?;
    let (mut owner, mut created) = (None, None);
    for p in parts {
        match p.split_once('=') {
            Some(("owner", v)) => owner = v.parse().ok(),
            Some(("t", v)) => created = v.parse().ok(),
            _ => {}
        }
    }
    Some(Marker { kind, owner: owner?, created: created? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_foreign_ones_are_ignored() {
        let m = parse_marker(&marker(Kind::Tomb, 42)).unwrap();
        assert_eq!((m.kind, m.owner), (Kind::Tomb, 42));
        assert!(parse_marker("pgisolate:v0:schema owner=1 t=1").is_none());
        assert!(parse_marker("pgisolate:v1:schema t=1").is_none());
        assert!(parse_marker("pgisolate:v1:other owner=1 t=1").is_none());
        assert!(parse_marker("my own comment").is_none());
    }
}

//! Templates: the application's schema, built once per (server, database, fingerprint).
//!
//! A build runs under a session advisory lock (so many processes on many hosts build it once)
//! into a `tpl_build_*` schema marked as a build, and is published by one transaction that
//! renames it to `tpl_<fingerprint>`, marks it as a template and records it in
//! `pgisolate.templates`: a half-built template is never used, and a builder killed mid-build
//! leaves only a build schema that gc reaps.
//!
//! New schemas are made from a template by replaying its final DDL and rows, captured once with
//! `pg_dump` and stored in the registry so other processes reuse it. When no `pg_dump` can
//! capture it, SQL templates fall back to re-running their migrations (and say so).

pub(crate) mod capture_cache;
pub(crate) mod check;
pub(crate) mod extensions;
pub mod layout;
pub(crate) mod outside;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::naming::sha256_hex;

pub(crate) use crate::sql::PLACEHOLDER;

/// Where a template's schema comes from.
#[derive(Debug, Clone)]
pub enum Migrations {
    /// A migration tool's directory (plain numbered SQL, golang-migrate, sqlx, goose, dbmate,
    /// Flyway, Prisma): up parts only, in version order ([`layout`]).
    Dir(PathBuf),
    /// These files, in this order.
    Files(Vec<PathBuf>),
    /// SQL text.
    Sql(String),
}

impl Migrations {
    /// The migrations of a tool's directory, detected by [`layout`]: up parts only, in
    /// version order.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Migrations::Dir(dir.into())
    }

    /// These files, in order.
    pub fn files<P: Into<PathBuf>>(files: impl IntoIterator<Item = P>) -> Self {
        Migrations::Files(files.into_iter().map(Into::into).collect())
    }

    /// SQL text.
    pub fn sql(sql: impl Into<String>) -> Self {
        Migrations::Sql(sql.into())
    }

    /// What the template is built from, for listing and pruning templates: the directory's
    /// absolute path, the first file's, or `sql`.
    pub fn source(&self) -> String {
        let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
        match self {
            Migrations::Dir(d) => abs(d),
            Migrations::Files(fs) => fs.first().map(|f| abs(f)).unwrap_or_default(),
            Migrations::Sql(_) => "sql".to_owned(),
        }
    }

    /// The migration steps: (name, SQL).
    pub fn load(&self) -> Result<Vec<(String, String)>> {
        let read = |p: &Path| -> Result<(String, String)> {
            let sql =
                std::fs::read_to_string(p).map_err(|e| Error::io(format!("read migration {}", p.display()), e))?;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok((name, sql))
        };
        match self {
            Migrations::Sql(s) => Ok(vec![("<sql>".to_owned(), s.clone())]),
            Migrations::Files(fs) => {
                if fs.is_empty() {
                    return Err(Error::Config("no migration files given".into()));
                }
                fs.iter().map(|p| read(p)).collect()
            }
            Migrations::Dir(d) => Ok(layout::load_dir(d)?.1),
        }
    }
}

/// Fingerprint of migration steps: sha256 over each step's name and SQL, length-prefixed.
pub fn fingerprint(steps: &[(String, String)]) -> String {
    let mut buf = Vec::new();
    // v2: templates carry the write triggers (crate::recycle::reset); v1 templates are never reused.
    buf.extend_from_slice(b"pgisolate/migrations/v2");
    for (name, sql) in steps {
        for part in [name.as_bytes(), sql.as_bytes()] {
            buf.extend_from_slice(&(part.len() as u64).to_be_bytes());
            buf.extend_from_slice(part);
        }
    }
    sha256_hex(&buf)
}

/// Fingerprint for a template built by the caller's own migration tool.
pub(crate) fn caller_fingerprint(key: &str) -> String {
    sha256_hex(format!("pgisolate/caller/v2\0{key}").as_bytes())
}

/// Names skipped when hashing input directories: caches and tool state that do not change
/// what a migration does.
const SKIPPED_INPUTS: &[&str] = &[".git", "__pycache__", "node_modules", ".pytest_cache", ".mypy_cache", "target"];

/// The key of a caller-run build whose inputs are files and directories: `key` (may be empty)
/// plus a sha256 over every input file's path and contents (directories walked recursively in
/// name order, caches such as `__pycache__` and `node_modules` skipped). Any change to a
/// migration gives a new key, so a template cannot go stale. A missing input is an error.
pub(crate) fn inputs_key<P: AsRef<Path>>(key: &str, inputs: &[P]) -> Result<String> {
    if inputs.is_empty() {
        return Ok(key.to_owned());
    }
    fn walk(path: &Path, shown: &str, buf: &mut Vec<u8>) -> Result<()> {
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::io(format!("template input {} (give existing migration files or directories)", path.display()), e)
        })?;
        if meta.is_dir() {
            let mut names: Vec<(String, PathBuf)> = std::fs::read_dir(path)
                .map_err(|e| Error::io(format!("read template input {}", path.display()), e))?
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .filter(|(n, _)| !SKIPPED_INPUTS.contains(&n.as_str()) && !n.ends_with(".pyc"))
                .collect();
            names.sort();
            for (n, p) in names {
                walk(&p, &format!("{shown}/{n}"), buf)?;
            }
        } else {
            let data =
                std::fs::read(path).map_err(|e| Error::io(format!("read template input {}", path.display()), e))?;
            for part in [shown.as_bytes(), &data] {
                buf.extend_from_slice(&(part.len() as u64).to_be_bytes());
                buf.extend_from_slice(part);
            }
        }
        Ok(())
    }
    let mut buf = b"pgisolate/inputs/v1".to_vec();
    for (i, p) in inputs.iter().enumerate() {
        let p = p.as_ref();
        let base = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| format!("input{i}"));
        walk(p, &base, &mut buf)?;
    }
    let digest = sha256_hex(&buf);
    Ok(if key.is_empty() { format!("inputs:{}", &digest[..32]) } else { format!("{key}+inputs:{}", &digest[..32]) })
}

/// Name of the published template schema for a fingerprint.
pub(crate) fn template_schema(fingerprint: &str) -> String {
    format!("tpl_{}", &fingerprint[..16])
}

/// Name of a build schema for a fingerprint and owner.
pub(crate) fn build_schema(fingerprint: &str, owner: i32) -> String {
    format!("tpl_build_{}_{owner:x}", &fingerprint[..16])
}

/// How new schemas are filled from a template.
#[derive(Debug, Clone)]
pub(crate) enum Replay {
    /// Captured DDL and rows with [`PLACEHOLDER`] for the target schema.
    Captured(String),
    /// Re-run the migrations with the target schema first in `search_path`.
    Migrations(Vec<(String, String)>),
}

/// A published template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Fingerprint of its migrations (or of the caller's key).
    pub(crate) fingerprint: String,
    /// Name of the published template schema.
    pub(crate) schema: String,
    /// How schemas are made from it.
    pub(crate) replay: Replay,
    /// Whether this call built it (false when another process or an earlier call had).
    pub(crate) built_here: bool,
    /// Its rows and sequence positions as SQL ([`PLACEHOLDER`] for the target schema), for
    /// resetting a recycled schema; `None` when it could not be captured.
    pub(crate) seed_sql: Option<String>,
    /// How a recycled copy is reset: its tables, rows, sequences, foreign keys and triggers.
    pub(crate) reset: std::sync::Arc<crate::recycle::reset::Plan>,
}

impl Template {
    /// The template schema's name (`pgi_tpl_<fingerprint>`).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The fingerprint of its migrations (or of the caller's key).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether the call that returned it built it (false when another process or an earlier
    /// call had).
    pub fn built_here(&self) -> bool {
        self.built_here
    }

    /// Its tables (quoted identifiers).
    pub fn tables(&self) -> &[String] {
        self.reset.tables()
    }

    /// The SQL that fills `target` (already created) from this template, run inside the
    /// acquiring transaction.
    pub(crate) fn replay_sql(&self, target: &str) -> String {
        match &self.replay {
            Replay::Captured(sql) => format!(
                "SET LOCAL check_function_bodies = off; SELECT pg_catalog.set_config('search_path', '', true);\n{}",
                sql.replace(PLACEHOLDER, target)
            ),
            Replay::Migrations(steps) => {
                let mut s = format!("SET LOCAL search_path TO {};\n", crate::admin::ident(target));
                for (_, sql) in steps {
                    s.push_str(sql);
                    s.push_str("\n;\n");
                }
                s
            }
        }
    }
}

/// The major version a PostgreSQL tool reports (`pg_dump (PostgreSQL) 17.2 …`).
fn tool_major(tool: &Path) -> Option<u32> {
    let out = std::process::Command::new(tool).arg("--version").stdin(std::process::Stdio::null()).output().ok()?;
    parse_major(&String::from_utf8_lossy(&out.stdout))
}

fn parse_major(version_line: &str) -> Option<u32> {
    let version = version_line.split(')').nth(1)?.split_whitespace().next()?;
    version.split(['.', 'b', 'r']).next()?.parse().ok()
}

/// The `pg_dump` to capture a server of major version `server` with. pg_dump dumps servers of
/// its own version and older ones, never newer: the server's own version wins, else the oldest
/// newer one. `explicit` (PGISOLATE_PG_DUMP) is used when it is new enough; otherwise the
/// binaries directory, `PATH` and the system's PostgreSQL directories are searched. The error
/// says what was found and what to install.
pub(crate) fn pg_dump_for(
    server: u32,
    explicit: Option<&Path>,
    bin_dir: Option<&Path>,
) -> std::result::Result<PathBuf, String> {
    if let Some(p) = explicit {
        return match tool_major(p) {
            Some(v) if v >= server => Ok(p.to_owned()),
            Some(v) => Err(format!(
                "PGISOLATE_PG_DUMP={} is pg_dump {v}, which cannot dump a PostgreSQL {server} server: point it at pg_dump {server} or newer",
                p.display()
            )),
            None => Err(format!("PGISOLATE_PG_DUMP={} does not run as pg_dump", p.display())),
        };
    }
    let mut candidates: Vec<PathBuf> = bin_dir.map(|d| d.join("pg_dump")).filter(|p| p.is_file()).into_iter().collect();
    candidates.extend(crate::server::tool_candidates("pg_dump"));
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for c in candidates {
        let real = std::fs::canonicalize(&c).unwrap_or(c);
        if found.iter().any(|(_, p)| *p == real) {
            continue;
        }
        if let Some(v) = tool_major(&real) {
            found.push((v, real));
        }
    }
    if let Some((_, p)) = found.iter().filter(|(v, _)| *v >= server).min_by_key(|(v, _)| *v) {
        return Ok(p.clone());
    }
    let seen = if found.is_empty() {
        "none was found".to_owned()
    } else {
        let list: Vec<String> = found.iter().map(|(v, p)| format!("{v} at {}", p.display())).collect();
        format!("found only {}", list.join(", "))
    };
    Err(format!(
        "no pg_dump of version {server} or newer to capture templates of this PostgreSQL {server} server ({seen}); \
         install PostgreSQL {server}'s client tools or set PGISOLATE_PG_DUMP"
    ))
}

/// Captures schema `schema` as replayable SQL with `pg_dump` (see [`pg_dump_for`]): its DDL
/// and rows, or with `data_only` its rows and sequence positions. Returns a reason when capture
/// is not possible.
pub(crate) fn capture(
    url: &str,
    schema: &str,
    pg_dump: &std::result::Result<PathBuf, String>,
    data_only: bool,
) -> std::result::Result<String, String> {
    let pg_dump = pg_dump.as_ref().map_err(Clone::clone)?;
    let mut cmd = std::process::Command::new(pg_dump);
    if data_only {
        cmd.arg("--data-only");
    }
    let out = cmd
        .args([
            "--schema",
            schema,
            "--no-owner",
            "--no-privileges",
            "--no-comments",
            "--inserts",
            "--rows-per-insert=500",
        ])
        .args(["--no-publications", "--no-subscriptions", "--no-security-labels", "--no-tablespaces"])
        .arg("--dbname")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", pg_dump.display()))?;
    if !out.status.success() {
        return Err(format!("pg_dump failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let text = String::from_utf8(out.stdout).map_err(|_| "pg_dump output is not UTF-8".to_owned())?;
    let create = format!("CREATE SCHEMA {schema};");
    // Drop the preamble (session SETs, search_path ''), psql meta-commands and the
    // statements that would outlive the transaction; data lines are kept as they are.
    let mut sql = String::with_capacity(text.len());
    let mut preamble = true;
    for line in text.lines() {
        if line.starts_with("\\restrict ") || line.starts_with("\\unrestrict ") {
            continue;
        }
        if preamble {
            let t = line.trim();
            if t.is_empty()
                || t.starts_with("--")
                || t.starts_with("SET ")
                || t.starts_with("SELECT pg_catalog.set_config(")
            {
                continue;
            }
            preamble = false;
        }
        if line == create || line == "SET default_tablespace = '';" || line == "SET default_table_access_method = heap;"
        {
            continue;
        }
        sql.push_str(&line.replace(schema, PLACEHOLDER));
        sql.push('\n');
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_major_version_of_a_tool() {
        assert_eq!(super::parse_major("pg_dump (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n"), Some(15));
        assert_eq!(super::parse_major("pg_dump (PostgreSQL) 17.10"), Some(17));
        assert_eq!(super::parse_major("pg_dump (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(super::parse_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(super::parse_major("something else"), None);
    }

    use super::*;

    #[test]
    fn fingerprint_depends_on_names_and_order() {
        let a = vec![("1.sql".to_owned(), "x".to_owned()), ("2.sql".to_owned(), "y".to_owned())];
        let b = vec![("2.sql".to_owned(), "y".to_owned()), ("1.sql".to_owned(), "x".to_owned())];
        let c = vec![("1.sql".to_owned(), "xy".to_owned())];
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(template_schema(&fingerprint(&a)).len(), 20);
    }
}

//! Migration directory layouts: which files a migration tool would apply, in which order, and
//! which part of each file is the "up" migration.
//!
//! Detected from the file names and markers the tools themselves use:
//!
//! | layout | files | up part |
//! |---|---|---|
//! | plain numbered SQL (and sqlx simple) | `<ver>_<name>.sql` | the whole file |
//! | golang-migrate, sqlx reversible | `<ver>_<name>.up.sql` / `.down.sql` | the `.up.sql` file |
//! | goose | `<ver>_<name>.sql` with `-- +goose Up` | between `-- +goose Up` and `-- +goose Down` |
//! | dbmate | `<ver>_<name>.sql` with `-- migrate:up` | between `-- migrate:up` and `-- migrate:down` |
//! | Flyway | `V<ver>__<desc>.sql`, then `R__<desc>.sql` | the whole file (`U<ver>__` undo files ignored) |
//! | Prisma | `<ts>_<name>/migration.sql` | the whole file |
//!
//! Versions are compared as numbers (`10_` after `2_`; Flyway's `1.10` after `1.9`), never as
//! bytes. A directory mixing layouts, two migrations with one version, or files whose order
//! cannot be told is an error that names the files. The rules are pinned by
//! `tests/vectors/migrations.json`.

use std::cmp::Ordering;
use std::path::Path;

use crate::error::{Error, Result};

/// A migration tool's directory layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `<ver>_<name>.sql`, whole files (plain SQL, sqlx simple migrations).
    Plain,
    /// `<ver>_<name>.up.sql` / `.down.sql` (golang-migrate, sqlx reversible).
    UpDown,
    /// goose annotations (`-- +goose Up` / `-- +goose Down`).
    Goose,
    /// dbmate markers (`-- migrate:up` / `-- migrate:down`).
    Dbmate,
    /// Flyway `V<ver>__*.sql` then `R__*.sql`.
    Flyway,
    /// Prisma `<ts>_<name>/migration.sql`.
    Prisma,
}

impl Layout {
    /// The layout's name in messages and vectors.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Plain => "plain",
            Layout::UpDown => "golang-migrate",
            Layout::Goose => "goose",
            Layout::Dbmate => "dbmate",
            Layout::Flyway => "flyway",
            Layout::Prisma => "prisma",
        }
    }
}

/// One file of a directory: its path relative to the directory, and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative path with `/` separators (`001_init.sql`, `20240101_x/migration.sql`).
    pub name: String,
    /// The file's text.
    pub text: String,
}

/// Reads the candidate files of `dir`: top-level `*.sql` and `*.go` files, and each
/// subdirectory's `migration.sql`.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("read migrations directory {} (set the migrations path)", dir.display()), e))?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io(format!("read migration {}", p.display()), e));
        if path.is_dir() {
            let inner = path.join("migration.sql");
            if inner.is_file() {
                files.push(SourceFile { name: format!("{name}/migration.sql"), text: read(&inner)? });
            }
        } else if name.ends_with(".sql") {
            files.push(SourceFile { name, text: read(&path)? });
        } else if name.ends_with(".go") && !name.ends_with("_test.go") {
            files.push(SourceFile { name, text: String::new() });
        }
    }
    Ok(files)
}

/// The migrations of a directory as (name, up SQL) steps in the order the tool applies them.
pub fn load_dir(dir: &Path) -> Result<(Layout, Vec<(String, String)>)> {
    let files = read_dir(dir)?;
    plan(&files).map_err(|e| match e {
        Error::Config(m) => Error::Config(format!("migrations directory {}: {m}", dir.display())),
        other => other,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Prisma,
    Up,
    Down,
    FlywayV,
    FlywayR,
    FlywayIgnored,
    Goose,
    Dbmate,
    Numbered,
    Unversioned,
    GoCode,
}

fn leading_digits(s: &str) -> &str {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    &s[..end]
}

/// Whether a line is a marker comment `-- <word>` (spacing as the tools accept it).
fn marker<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let t = line.trim_start();
    let rest = t.strip_prefix("--")?.trim_start();
    let lower = rest.to_ascii_lowercase();
    lower.starts_with(&word.to_ascii_lowercase()).then(|| &rest[word.len()..])
}

fn is_goose_marker(line: &str, what: &str) -> bool {
    marker(line, "+goose")
        .is_some_and(|rest| rest.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case(what)))
}

fn is_dbmate_marker(line: &str, what: &str) -> bool {
    marker(line, "migrate:")
        .is_some_and(|rest| rest.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case(what)))
}

fn classify(f: &SourceFile) -> Class {
    let n = f.name.as_str();
    if n.ends_with("/migration.sql") {
        return Class::Prisma;
    }
    if n.ends_with(".go") {
        return if leading_digits(n).is_empty() { Class::Unversioned } else { Class::GoCode };
    }
    let flyway_version = |rest: &str| {
        rest.split_once("__").is_some_and(|(v, d)| {
            !v.is_empty()
                && !d.is_empty()
                && v.starts_with(|c: char| c.is_ascii_digit())
                && v.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'_')
        })
    };
    if let Some(rest) = n.strip_prefix('V') {
        if flyway_version(rest) {
            return Class::FlywayV;
        }
    }
    if n.starts_with("R__") && n.len() > "R__.sql".len() {
        return Class::FlywayR;
    }
    if let Some(rest) = n.strip_prefix('U').or_else(|| n.strip_prefix('B')) {
        if flyway_version(rest) {
            return Class::FlywayIgnored;
        }
    }
    let digits = leading_digits(n);
    if digits.is_empty() {
        return Class::Unversioned;
    }
    if n.ends_with(".up.sql") {
        return Class::Up;
    }
    if n.ends_with(".down.sql") {
        return Class::Down;
    }
    if f.text.lines().any(|l| is_goose_marker(l, "up")) {
        return Class::Goose;
    }
    if f.text.lines().any(|l| is_dbmate_marker(l, "up")) {
        return Class::Dbmate;
    }
    Class::Numbered
}

/// Compares decimal digit strings by value.
fn cmp_number(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Flyway versions: parts split on `.` or `_`, compared as numbers, missing parts are zero.
fn cmp_flyway(a: &str, b: &str) -> Ordering {
    let pa: Vec<&str> = a.split(['.', '_']).collect();
    let pb: Vec<&str> = b.split(['.', '_']).collect();
    for i in 0..pa.len().max(pb.len()) {
        let o = cmp_number(pa.get(i).copied().unwrap_or("0"), pb.get(i).copied().unwrap_or("0"));
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// The text between the up marker and the down marker (or the end).
fn section(text: &str, is_up: impl Fn(&str) -> bool, is_down: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        if is_up(line) {
            inside = true;
            continue;
        }
        if is_down(line) {
            if inside {
                break;
            }
            continue;
        }
        if inside {
            out.push_str(line);
        }
    }
    out
}

fn list(names: &[&SourceFile]) -> String {
    let mut shown: Vec<&str> = names.iter().take(3).map(|f| f.name.as_str()).collect();
    if names.len() > 3 {
        shown.push("…");
    }
    shown.join(", ")
}

/// The plan for a set of files: the layout and its (name, up SQL) steps in order.
pub fn plan<'a>(files: &'a [SourceFile]) -> Result<(Layout, Vec<(String, String)>)> {
    let classed: Vec<(Class, &SourceFile)> = files.iter().map(|f| (classify(f), f)).collect();
    let of = |c: Class| classed.iter().filter(|(k, _)| *k == c).map(|(_, f)| *f).collect::<Vec<_>>();
    if !classed.iter().any(|(_, f)| f.name.ends_with(".sql")) {
        return Err(Error::Config(
            "no migrations found: expected *.sql files (plain numbered, golang-migrate, sqlx, goose, dbmate, Flyway) \
             or Prisma's <timestamp>_<name>/migration.sql directories"
                .into(),
        ));
    }
    // Which layouts are present (undo/down files count with their layout).
    let mut updown = of(Class::Up);
    updown.extend(of(Class::Down));
    let mut flyway = of(Class::FlywayV);
    flyway.extend(of(Class::FlywayR));
    flyway.extend(of(Class::FlywayIgnored));
    let kinds: Vec<(Layout, Vec<&SourceFile>)> = vec![
        (Layout::Prisma, of(Class::Prisma)),
        (Layout::UpDown, updown),
        (Layout::Flyway, flyway),
        (Layout::Goose, of(Class::Goose)),
        (Layout::Dbmate, of(Class::Dbmate)),
        (Layout::Plain, of(Class::Numbered)),
    ]
    .into_iter()
    .filter(|(_, fs)| !fs.is_empty())
    .collect();
    let unversioned: Vec<&SourceFile> =
        of(Class::Unversioned).into_iter().filter(|f| f.name.ends_with(".sql")).collect();
    if kinds.len() > 1 {
        let parts: Vec<String> = kinds.iter().map(|(l, fs)| format!("{} ({})", l.as_str(), list(fs))).collect();
        return Err(Error::Config(format!(
            "mixes migration layouts: {}; keep one tool's migrations per directory",
            parts.join(" and ")
        )));
    }
    let Some((layout, _)) = kinds.first().cloned() else {
        // Only unversioned files: one is unambiguous, several have no order.
        if unversioned.len() == 1 {
            let f = unversioned[0];
            return Ok((Layout::Plain, vec![(f.name.clone(), f.text.clone())]));
        }
        return Err(Error::Config(format!(
            "cannot tell the order of {}: name migrations with a version prefix (001_init.sql, 002_users.sql) \
             or pass the files in order",
            list(&unversioned)
        )));
    };
    if !unversioned.is_empty() && layout != Layout::Prisma {
        return Err(Error::Config(format!(
            "{} {} no version prefix, so its place among the {} migrations is unknown: rename it \
             (<version>_<name>.sql) or move it out of the directory",
            list(&unversioned),
            if unversioned.len() == 1 { "has" } else { "have" },
            layout.as_str()
        )));
    }
    if !unversioned.is_empty() {
        return Err(Error::Config(format!(
            "{} sit beside Prisma's migration directories: move them out",
            list(&unversioned)
        )));
    }
    if layout == Layout::Goose {
        let go = of(Class::GoCode);
        if !go.is_empty() {
            return Err(Error::Config(format!(
                "goose Go migrations ({}) cannot be applied as SQL: build the template with goose itself \
                 (template_begin / TemplateFunc with the directory as an input)",
                list(&go)
            )));
        }
    }
    let versioned = |fs: Vec<&'a SourceFile>,
                     version: &dyn Fn(&str) -> String,
                     cmp: &dyn Fn(&str, &str) -> Ordering,
                     strict: bool| { sort_versions(layout, fs, version, cmp, strict) };
    let digits = |n: &str| leading_digits(n).to_owned();
    let steps: Vec<(String, String)> = match layout {
        Layout::Prisma => {
            let mut v = of(Class::Prisma);
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v.into_iter().map(|f| (f.name.clone(), f.text.clone())).collect()
        }
        Layout::Plain => versioned(of(Class::Numbered), &digits, &cmp_number, false)?
            .into_iter()
            .map(|(_, f)| (f.name.clone(), f.text.clone()))
            .collect(),
        Layout::UpDown => versioned(of(Class::Up), &digits, &cmp_number, true)?
            .into_iter()
            .map(|(_, f)| (f.name.clone(), f.text.clone()))
            .collect(),
        Layout::Goose | Layout::Dbmate => {
            let (class, marker): (Class, fn(&str, &str) -> bool) = match layout {
                Layout::Goose => (Class::Goose, is_goose_marker),
                _ => (Class::Dbmate, is_dbmate_marker),
            };
            versioned(of(class), &digits, &cmp_number, true)?
                .into_iter()
                .map(|(_, f)| (f.name.clone(), section(&f.text, |l| marker(l, "up"), |l| marker(l, "down"))))
                .collect()
        }
        Layout::Flyway => {
            let version = |n: &str| n[1..].split_once("__").map(|(v, _)| v.to_owned()).unwrap_or_default();
            let mut out: Vec<(String, String)> = versioned(of(Class::FlywayV), &version, &cmp_flyway, true)?
                .into_iter()
                .map(|(_, f)| (f.name.clone(), f.text.clone()))
                .collect();
            let mut repeatable = of(Class::FlywayR);
            repeatable.sort_by(|a, b| a.name.cmp(&b.name));
            out.extend(repeatable.into_iter().map(|f| (f.name.clone(), f.text.clone())));
            out
        }
    };
    if steps.is_empty() {
        return Err(Error::Config(format!("no {} up migrations found", layout.as_str())));
    }
    Ok((layout, steps))
}

/// Files sorted by version (then name); with `strict`, two files with one version are an error.
fn sort_versions<'a>(
    layout: Layout,
    fs: Vec<&'a SourceFile>,
    version: &dyn Fn(&str) -> String,
    cmp: &dyn Fn(&str, &str) -> Ordering,
    strict: bool,
) -> Result<Vec<(String, &'a SourceFile)>> {
    let mut v: Vec<(String, &SourceFile)> = fs.into_iter().map(|f| (version(&f.name), f)).collect();
    v.sort_by(|a, b| cmp(&a.0, &b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    if strict {
        for w in v.windows(2) {
            if cmp(&w[0].0, &w[1].0) == Ordering::Equal {
                return Err(Error::Config(format!(
                    "{} and {} have the same version {}: {} refuses duplicate versions",
                    w[0].1.name,
                    w[1].1.name,
                    w[0].0,
                    layout.as_str()
                )));
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, text: &str) -> SourceFile {
        SourceFile { name: name.into(), text: text.into() }
    }

    #[test]
    fn numeric_order_and_down_files_skipped() {
        let (l, s) =
            plan(&[f("10_c.up.sql", "c"), f("2_b.up.sql", "b"), f("2_b.down.sql", "x"), f("1_a.up.sql", "a")]).unwrap();
        assert_eq!(l, Layout::UpDown);
        assert_eq!(s.iter().map(|x| x.1.as_str()).collect::<String>(), "abc");
    }

    #[test]
    fn flyway_versions_compare_by_part() {
        assert_eq!(cmp_flyway("1.10", "1.9"), Ordering::Greater);
        assert_eq!(cmp_flyway("1_1", "1.1"), Ordering::Equal);
        assert_eq!(cmp_flyway("2", "1.99"), Ordering::Greater);
    }
}

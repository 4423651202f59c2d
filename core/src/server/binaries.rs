//! Finding PostgreSQL's binaries: `PGISOLATE_PG_BIN`, `PATH`, then where packages install them.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Binaries {
    /// Directory holding initdb, pg_ctl, postgres, psql.
    pub dir: PathBuf,
}

impl Binaries {
    /// Path of one tool: in the binaries directory, else (a server-only distribution, such as
    /// the zonky binaries, has no psql) the first found on `PATH` or where packages install
    /// PostgreSQL.
    pub fn tool(&self, name: &str) -> PathBuf {
        let own = self.dir.join(name);
        if own.is_file() {
            return own;
        }
        tool_candidates(name).into_iter().next().unwrap_or(own)
    }
}

/// Every `name` executable on `PATH`, then in the system's PostgreSQL directories (newest
/// version first).
pub(crate) fn tool_candidates(name: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    let mut versioned: Vec<(u32, PathBuf)> = system_bin_dirs(Path::new("/"))
        .into_iter()
        .map(|(v, d)| (v, d.join(name)))
        .filter(|(_, p)| p.is_file())
        .collect();
    versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
    out.extend(versioned.into_iter().map(|(_, p)| p));
    out
}

/// The versioned PostgreSQL bin directories under `root` ([`SYSTEM_LAYOUTS`]), with their
/// major versions, in no particular order.
pub(super) fn system_bin_dirs(root: &Path) -> Vec<(u32, PathBuf)> {
    let mut dirs = Vec::new();
    for (parent, prefix, sub) in SYSTEM_LAYOUTS {
        for e in fs::read_dir(root.join(parent)).into_iter().flatten().flatten() {
            let entry = e.file_name().to_string_lossy().into_owned();
            let Some(v) = entry.strip_prefix(prefix).and_then(|v| v.parse::<u32>().ok()) else { continue };
            dirs.push((v, if sub.is_empty() { e.path() } else { e.path().join(sub) }));
        }
    }
    dirs
}

/// Where packages put PostgreSQL's server binaries, outside `PATH`: (directory, prefix of the
/// versioned entry, subdirectory). The newest version found wins.
pub(super) const SYSTEM_LAYOUTS: &[(&str, &str, &str)] = &[
    ("usr/lib/postgresql", "", "bin"), // Debian, Ubuntu: /usr/lib/postgresql/16/bin
    ("usr", "pgsql-", "bin"),          // PGDG RPMs (Fedora, RHEL): /usr/pgsql-16/bin
    ("usr/libexec", "postgresql", ""), // Alpine: /usr/libexec/postgresql16
    ("opt/homebrew/opt", "postgresql@", "bin"), // Homebrew on Apple silicon
    ("usr/local/opt", "postgresql@", "bin"), // Homebrew on Intel
];

/// What to do when no binaries are found, for every common platform.
pub(super) const INSTALL_ADVICE: &str =
    "install PostgreSQL's server package (Debian/Ubuntu: apt-get install postgresql; \
     Fedora/RHEL: dnf install postgresql-server; Alpine: apk add postgresql; macOS: brew install postgresql@17), \
     set PGISOLATE_PG_BIN to the directory holding initdb, pg_ctl and postgres, or set PGISOLATE_DATABASE_URL to \
     a server you run (for example docker run -d -p 5432:5432 -e POSTGRES_PASSWORD=pw postgres:17, then \
     PGISOLATE_DATABASE_URL=postgres://postgres:pw@127.0.0.1:5432/postgres)";

/// Finds initdb/pg_ctl/postgres: `PGISOLATE_PG_BIN`, then `PATH`, then the newest version in
/// the places packages install them (`SYSTEM_LAYOUTS`).
pub fn find_binaries(explicit: Option<&Path>) -> Result<Binaries> {
    find_binaries_in(explicit, std::env::var_os("PATH").as_deref(), Path::new("/"))
}

pub(super) fn has_binaries(d: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"].iter().all(|t| d.join(t).is_file())
}

/// [`find_binaries`] with the `PATH` and the file system root given (tests use a fake tree).
pub fn find_binaries_in(explicit: Option<&Path>, path: Option<&std::ffi::OsStr>, root: &Path) -> Result<Binaries> {
    if let Some(d) = explicit {
        if has_binaries(d) {
            return Ok(Binaries { dir: d.to_owned() });
        }
        return Err(Error::BinariesNotFound(format!(
            "PGISOLATE_PG_BIN={} does not contain initdb, pg_ctl and postgres: point it at PostgreSQL's bin directory",
            d.display()
        )));
    }
    for d in path.map(std::env::split_paths).into_iter().flatten() {
        let initdb = d.join("initdb");
        if initdb.is_file() {
            let real = fs::canonicalize(&initdb).unwrap_or(initdb);
            if let Some(dir) = real.parent() {
                if has_binaries(dir) {
                    return Ok(Binaries { dir: dir.to_owned() });
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> =
        system_bin_dirs(root).into_iter().filter(|(_, bin)| has_binaries(bin)).collect();
    versions.sort();
    match versions.pop() {
        Some((_, dir)) => Ok(Binaries { dir }),
        None => Err(Error::BinariesNotFound(format!(
            "the embedded server needs PostgreSQL's binaries (initdb, pg_ctl, postgres), and none were found on PATH \
             or in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, /usr/libexec/postgresql*, Homebrew's opt/postgresql@*: \
             {INSTALL_ADVICE}"
        ))),
    }
}

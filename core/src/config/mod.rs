//! Engine configuration, from the environment or built in code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::naming;

mod settings;

pub use settings::{Setting, SETTINGS};

/// The unit each test gets ([`Config::isolation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// A schema per test, made from a template schema (the default).
    #[default]
    Schema,
    /// A database per test, cloned from a template database: for apps whose migrations reach
    /// beyond one schema (another schema, tables in `public`, database-level settings).
    Database,
}

/// What to do with a schema when its test ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Always drop (or recycle) it.
    #[default]
    Never,
    /// Keep it when the test failed, for inspection.
    Failed,
    /// Always keep it.
    Always,
}

impl Keep {
    /// Parses `never`, `failed` or `always` (case-insensitive).
    pub fn parse(s: &str) -> Result<Keep> {
        match s.trim().to_ascii_lowercase().as_str() {
            "never" | "" => Ok(Keep::Never),
            "failed" => Ok(Keep::Failed),
            "always" => Ok(Keep::Always),
            other => Err(Error::Config(format!(
                "keep policy {other:?} is not one of never, failed, always (PGISOLATE_KEEP)"
            ))),
        }
    }

    /// Whether a schema whose test ended with `failed` is kept.
    pub fn keeps(self, failed: bool) -> bool {
        match self {
            Keep::Never => false,
            Keep::Failed => failed,
            Keep::Always => true,
        }
    }
}

/// A callback told about slow steps (initdb, server start, template build), for progress output.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// Everything an [`crate::Engine`] needs. `Config::default()` is the documented defaults;
/// [`Config::from_env`] reads the `PGISOLATE_*` variables.
#[derive(Clone)]
pub struct Config {
    /// Server to use (URL or key/value); `None` boots the embedded server. Several
    /// `postgres://` URLs separated by whitespace spread the processes of a run over those
    /// servers ([`Config::servers`], [`Config::server_for_worker`]).
    pub url: Option<String>,
    /// This process's worker in its test runner (`PGISOLATE_WORKER`, else pytest-xdist's
    /// `PYTEST_XDIST_WORKER`, Jest's `JEST_WORKER_ID`, Vitest's `VITEST_POOL_ID`): with several
    /// servers, worker N uses server N modulo their count.
    pub worker: Option<String>,
    /// What each test gets: its own schema (the default) or its own database.
    pub isolation: Isolation,
    /// Schema name prefix (`test_`).
    pub prefix: String,
    /// Hex characters of the identity hash in a name (8..=32, default 8).
    pub hash_len: usize,
    /// Keep policy for released schemas.
    pub keep: Keep,
    /// Schemas placed after the test schema in `search_path` (default `public`; see
    /// [`Config::search_path_tail_set`]).
    pub search_path_tail: Vec<String>,
    /// Whether `search_path_tail` was chosen by the user. The default tail leaves `public` out
    /// when the engine's role can create in it and no extension lives there (R16): a test
    /// whose schema vanished, or a leaked connection reconnecting after release, would
    /// otherwise write there silently. A tail the user sets is used as given.
    pub search_path_tail_set: bool,
    /// Directory of PostgreSQL binaries for the embedded server.
    pub pg_bin: Option<PathBuf>,
    /// The `pg_dump` that captures templates for replay; must be of the server's major version
    /// or newer (pg_dump refuses newer servers). Unset: the server's own version found in
    /// `pg_bin`, on `PATH` or where packages install PostgreSQL, else the oldest newer one.
    pub pg_dump: Option<PathBuf>,
    /// Binaries to use when none are found on `PATH` or where packages install them (those
    /// of a registry package the user installed, such as npm's `@embedded-postgres/*`).
    pub pg_bin_fallback: Option<PathBuf>,
    /// Run identity shared by the processes of one run; generated when unset.
    pub run_id: Option<String>,
    /// gc reaps an owner's schemas once its lease is free and it went unseen (its engine
    /// beats every second, and at every hand-out) for this long: a restart or a network blip
    /// shorter than this costs nothing.
    pub gc_grace: Duration,
    /// Whether `Engine::start` runs gc.
    pub gc_on_start: bool,
    /// Most admin connections the engine opens at once (fewer when the server is shared:
    /// see the connection budget).
    pub max_admin_connections: usize,
    /// Connections each worker's tests hold at once (`PGISOLATE_TEST_CONNECTIONS`, default 1):
    /// the room the engines leave for them on the server.
    pub test_connections: usize,
    /// How long a release may take before it gives up and leaves the rest to gc.
    pub release_timeout: Duration,
    /// Ready schemas kept per template (`PGISOLATE_POOL_SIZE`, default 2; 0 turns the pool off).
    pub pool_size: usize,
    /// Reset and reuse released schemas whose DDL did not change (`PGISOLATE_RECYCLE`, default on).
    pub recycle: bool,
    /// Drop released schemas in the background after renaming them away (default on).
    pub defer_drop: bool,
    /// Extensions created once per database in the `extensions` schema, which then joins every
    /// schema's `search_path` (`PGISOLATE_EXTENSIONS`, comma-separated).
    pub extensions: Vec<String>,
    /// Redis whose keys under each schema's cache prefix are deleted on release and by gc
    /// (`PGISOLATE_REDIS_URL`, `redis://[user[:password]@]host[:port][/db]`, `rediss://…` for
    /// TLS; a cluster member's URL covers the whole cluster). Needs the `redis` feature.
    pub redis_url: Option<String>,
    /// PEM file with the CA certificate(s) that signed a `rediss://` server's certificate,
    /// trusted instead of the system's roots (`PGISOLATE_REDIS_CA_FILE`).
    pub redis_ca_file: Option<PathBuf>,
    /// Keep the embedded server, and the templates in it, up between runs for this long after
    /// its last user (`PGISOLATE_REUSE`: `on` is 30 minutes, or a duration; off by default:
    /// it stops seconds after the run). `pgisolate server stop` stops it sooner.
    pub reuse: Option<Duration>,
    /// Run the hand-out check ([`crate::Schema::verify`]) on every acquire (`PGISOLATE_VERIFY`,
    /// default off: it costs a connection).
    pub verify_handout: bool,
    /// Least privilege (`PGISOLATE_LOGIN_ROLE`, default off): each schema gets a LOGIN role of
    /// its own that owns it and may use nothing else but the shared `extensions`, with its
    /// `search_path` set on the role; the handed-out strings log in as that role (no startup
    /// `options`, so poolers that reject them work). The role is dropped with the schema.
    /// Needs CREATEROLE (or superuser). A recycled schema gets a fresh role: a role is never
    /// reused, so a leaked connection of an earlier test cannot log in again.
    pub login_role: bool,
    /// Test hook: accept hash lengths below 8 (to force name collisions).
    #[doc(hidden)]
    pub unchecked_hash_len: bool,
    /// Told about slow steps.
    pub progress: Option<Progress>,
    /// Told about warnings (leaked connections, fallbacks); `None` prints them to stderr,
    /// or queues them when `collect_warnings` is set.
    pub on_warning: Option<Progress>,
    /// Queue warnings for [`crate::Engine::take_warnings`] instead of printing them: bindings
    /// set it and hand each warning to their test runner (pytest warnings, Node
    /// `process.emitWarning`, Go `t.Log`).
    pub collect_warnings: bool,
    /// gc drops templates not used for this long, and superseded ones (a newer template from
    /// the same source exists) not used for ten minutes (`PGISOLATE_TEMPLATE_MAX_AGE`, seconds
    /// or `<n>d`/`<n>h`/`<n>m`; default 7 days; `0` keeps every template).
    pub template_max_age: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url.as_deref().map(crate::conninfo::redact))
            .field("isolation", &self.isolation)
            .field("prefix", &self.prefix)
            .field("hash_len", &self.hash_len)
            .field("keep", &self.keep)
            .field("search_path_tail", &self.search_path_tail)
            .field("search_path_tail_set", &self.search_path_tail_set)
            .field("login_role", &self.login_role)
            .field("pg_bin", &self.pg_bin)
            .field("pg_dump", &self.pg_dump)
            .field("pg_bin_fallback", &self.pg_bin_fallback)
            .field("run_id", &self.run_id)
            .field("gc_grace", &self.gc_grace)
            .field("max_admin_connections", &self.max_admin_connections)
            .field("test_connections", &self.test_connections)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: None,
            worker: None,
            isolation: Isolation::Schema,
            prefix: naming::DEFAULT_PREFIX.to_owned(),
            hash_len: naming::DEFAULT_HASH_LEN,
            keep: Keep::Never,
            search_path_tail: vec!["public".to_owned()],
            search_path_tail_set: false,
            pg_bin: None,
            pg_dump: None,
            pg_bin_fallback: None,
            run_id: None,
            gc_grace: Duration::from_secs(5),
            gc_on_start: true,
            max_admin_connections: 8,
            test_connections: 1,
            release_timeout: Duration::from_secs(8),
            pool_size: 2,
            recycle: true,
            defer_drop: true,
            extensions: Vec::new(),
            redis_url: None,
            redis_ca_file: None,
            reuse: None,
            verify_handout: false,
            login_role: false,
            unchecked_hash_len: false,
            progress: None,
            on_warning: None,
            collect_warnings: false,
            template_max_age: Duration::from_secs(7 * 86400),
        }
    }
}

/// Parses a duration: seconds (`5`, `0.5`), or a number with `ms`, `s`, `m`, `h` or `d`.
pub fn parse_age(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit() && *c != '.') {
        Some((i, _)) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: f64 = num.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

impl Config {
    /// Defaults overridden by the `PGISOLATE_*` variables of [`SETTINGS`]. Empty variables count
    /// as unset, except `PGISOLATE_SEARCH_PATH_TAIL` (empty: no tail).
    pub fn from_env() -> Result<Config> {
        let worker = ["PYTEST_XDIST_WORKER", "JEST_WORKER_ID", "VITEST_POOL_ID"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
        let mut c = Config { worker, ..Config::default() };
        for s in SETTINGS {
            let Ok(v) = std::env::var(s.env) else { continue };
            if v.trim().is_empty() && s.key != "search_path_tail" {
                continue;
            }
            c.set(s.key, &v).map_err(|e| match e {
                Error::Config(m) => Error::Config(format!("{} ({}): {m}", s.env, s.takes)),
                other => other,
            })?;
        }
        c.validate()?;
        Ok(c)
    }

    /// The servers `url` lists: several `postgres://` (or `postgresql://`) URLs separated by
    /// whitespace, or one URL or key/value string. Empty when `url` is unset (the embedded
    /// server).
    pub fn servers(&self) -> Vec<String> {
        let Some(u) = self.url.as_deref() else { return Vec::new() };
        let parts: Vec<&str> = u.split_whitespace().collect();
        let is_url = |p: &str| p.starts_with("postgres://") || p.starts_with("postgresql://") || p.contains("+psycopg");
        if parts.len() > 1 && parts.iter().all(|p| is_url(p)) {
            parts.into_iter().map(str::to_owned).collect()
        } else {
            vec![u.trim().to_owned()]
        }
    }

    /// The server this process uses, of [`Config::servers`]: worker N (the digits of
    /// [`Config::worker`]) gets server N modulo their count, so the workers of a run spread
    /// evenly and each stays on one server; without a worker id, a hash of host and process id
    /// picks. `None` for the embedded server.
    pub fn server_for_worker(&self) -> Option<String> {
        let servers = self.servers();
        if servers.len() < 2 {
            return servers.into_iter().next();
        }
        let digits: String = self.worker.as_deref().unwrap_or("").chars().filter(char::is_ascii_digit).collect();
        let n = match digits.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let me = format!("{}:{}", crate::naming::host_name(), std::process::id());
                u64::from_str_radix(&crate::naming::sha256_hex(me.as_bytes())[..12], 16).unwrap_or(0)
            }
        };
        let count = servers.len() as u64;
        servers.into_iter().nth((n % count) as usize)
    }

    /// Checks every value, with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        let servers = self.servers();
        if servers.len() > 1 {
            for u in &servers {
                crate::conninfo::ConnInfo::parse(u).map_err(|e| {
                    Error::Config(format!(
                        "PGISOLATE_DATABASE_URL lists several servers; {}: {e}",
                        crate::conninfo::redact(u)
                    ))
                })?;
            }
        }
        naming::validate_prefix(&self.prefix)?;
        if !(self.unchecked_hash_len && (1..=32).contains(&self.hash_len)) {
            naming::validate_hash_len(self.hash_len)?;
        }
        for x in &self.extensions {
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(Error::Config(format!("extension name {x:?} is not valid (PGISOLATE_EXTENSIONS)")));
            }
        }
        for t in &self.search_path_tail {
            if t.contains('\0') || t.len() > naming::MAX_IDENTIFIER {
                return Err(Error::Config(format!(
                    "search_path tail entry {t:?} is not a valid schema name (PGISOLATE_SEARCH_PATH_TAIL)"
                )));
            }
        }
        if let Some(r) = &self.redis_url {
            crate::cache::Redis::check_url(r)?;
        }
        if self.redis_ca_file.is_some() && !self.redis_url.as_deref().is_some_and(|u| u.starts_with("rediss://")) {
            return Err(Error::Config(
                "PGISOLATE_REDIS_CA_FILE is set, but PGISOLATE_REDIS_URL is not a rediss:// (TLS) URL".into(),
            ));
        }
        if self.max_admin_connections == 0 {
            return Err(Error::Config("max_admin_connections must be at least 1".into()));
        }
        if let Some(r) = &self.run_id {
            if r.len() > 200 {
                return Err(Error::Config("PGISOLATE_RUN_ID is longer than 200 characters".into()));
            }
        }
        if let Some(u) = &self.url {
            crate::conninfo::ConnInfo::parse(u)?;
        }
        Ok(())
    }
}

impl Config {
    /// Whether released schemas should be recycled into a warm pool (`recycle` on and a pool):
    /// the engine does when the server also lets it watch DDL.
    pub(crate) fn wants_recycling(&self) -> bool {
        self.recycle && self.pool_size > 0
    }
}

impl Keep {
    /// The policy's name as accepted by [`Keep::parse`].
    pub fn as_str(self) -> &'static str {
        match self {
            Keep::Never => "never",
            Keep::Failed => "failed",
            Keep::Always => "always",
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn several_servers_spread_workers_by_their_number() {
        let mut c = super::Config {
            url: Some("postgres://a@h1:5432/db  postgresql://a@h2:5433/db".into()),
            ..Default::default()
        };
        assert_eq!(c.servers().len(), 2);
        for (w, host) in [("gw0", "h1"), ("gw1", "h2"), ("gw2", "h1"), ("3", "h2")] {
            c.worker = Some(w.into());
            assert!(c.server_for_worker().unwrap().contains(host), "{w}");
        }
        c.worker = None;
        assert!(c.server_for_worker().is_some());
        // One URL, or a key/value string with spaces, is one server.
        c.url = Some("host=h1 port=5432 dbname=db".into());
        assert_eq!(c.servers(), vec!["host=h1 port=5432 dbname=db".to_owned()]);
        c.url = Some("postgres://a@h1/db postgres://a@h2/db?sslmode=%zz".into());
        assert!(c.validate().is_err());
        c.url = None;
        assert!(c.servers().is_empty() && c.server_for_worker().is_none());
    }
}

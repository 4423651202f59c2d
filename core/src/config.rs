//! Engine configuration, from the environment or built in code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::naming;

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
    /// Server to use (URL or key/value); `None` boots the embedded server.
    pub url: Option<String>,
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
    /// Binaries to use when none are found on `PATH` or where packages install them (those
    /// of a registry package the user installed, such as npm's `@embedded-postgres/*`).
    pub pg_bin_fallback: Option<PathBuf>,
    /// Run identity shared by the processes of one run; generated when unset.
    pub run_id: Option<String>,
    /// gc leaves a dead owner's schemas alone until they are this old.
    pub gc_grace: Duration,
    /// Whether `Engine::start` runs gc.
    pub gc_on_start: bool,
    /// Most admin connections the engine opens at once.
    pub max_admin_connections: usize,
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
    /// (`PGISOLATE_REDIS_URL`, `redis://[:password@]host[:port][/db]`).
    pub redis_url: Option<String>,
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
            .field("prefix", &self.prefix)
            .field("hash_len", &self.hash_len)
            .field("keep", &self.keep)
            .field("search_path_tail", &self.search_path_tail)
            .field("search_path_tail_set", &self.search_path_tail_set)
            .field("login_role", &self.login_role)
            .field("pg_bin", &self.pg_bin)
            .field("pg_bin_fallback", &self.pg_bin_fallback)
            .field("run_id", &self.run_id)
            .field("gc_grace", &self.gc_grace)
            .field("max_admin_connections", &self.max_admin_connections)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: None,
            prefix: naming::DEFAULT_PREFIX.to_owned(),
            hash_len: naming::DEFAULT_HASH_LEN,
            keep: Keep::Never,
            search_path_tail: vec!["public".to_owned()],
            search_path_tail_set: false,
            pg_bin: None,
            pg_bin_fallback: None,
            run_id: None,
            gc_grace: Duration::from_secs(5),
            gc_on_start: true,
            max_admin_connections: 8,
            release_timeout: Duration::from_secs(8),
            pool_size: 2,
            recycle: true,
            defer_drop: true,
            extensions: Vec::new(),
            redis_url: None,
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

/// Parses an age: seconds, or a number with `d`, `h`, `m` or `s`.
pub fn parse_age(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(mult)?))
}

impl Config {
    /// Defaults overridden by `PGISOLATE_DATABASE_URL`, `PGISOLATE_SCHEMA_PREFIX`,
    /// `PGISOLATE_HASH_LEN`, `PGISOLATE_KEEP`, `PGISOLATE_SEARCH_PATH_TAIL`, `PGISOLATE_PG_BIN`
    /// and `PGISOLATE_RUN_ID`. Empty variables count as unset.
    pub fn from_env() -> Result<Config> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut c = Config { url: var("PGISOLATE_DATABASE_URL"), ..Config::default() };
        if let Some(p) = var("PGISOLATE_SCHEMA_PREFIX") {
            c.prefix = p;
        }
        if let Some(l) = var("PGISOLATE_HASH_LEN") {
            c.hash_len = l
                .trim()
                .parse()
                .map_err(|_| Error::Config(format!("PGISOLATE_HASH_LEN={l:?} is not a number: use 8..=32")))?;
        }
        if let Some(k) = var("PGISOLATE_KEEP") {
            c.keep = Keep::parse(&k)?;
        }
        if let Ok(t) = std::env::var("PGISOLATE_SEARCH_PATH_TAIL") {
            c.search_path_tail = t.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
            c.search_path_tail_set = true;
        }
        c.pg_bin = var("PGISOLATE_PG_BIN").map(PathBuf::from);
        c.pg_bin_fallback = var("PGISOLATE_PG_BIN_FALLBACK").map(PathBuf::from);
        if let Some(n) = var("PGISOLATE_POOL_SIZE") {
            c.pool_size = n.trim().parse().map_err(|_| {
                Error::Config(format!("PGISOLATE_POOL_SIZE={n:?} is not a number: use 0 (off) or more"))
            })?;
        }
        c.redis_url = var("PGISOLATE_REDIS_URL");
        c.verify_handout =
            matches!(var("PGISOLATE_VERIFY").as_deref().map(str::trim), Some("1" | "on" | "true" | "yes"));
        if let Some(v) = var("PGISOLATE_LOGIN_ROLE") {
            c.login_role = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "on" | "yes" => true,
                "0" | "false" | "off" | "no" | "" => false,
                _ => return Err(Error::Config(format!("PGISOLATE_LOGIN_ROLE={v:?}: use on or off"))),
            };
        }
        if let Some(x) = var("PGISOLATE_EXTENSIONS") {
            c.extensions = x.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(r) = var("PGISOLATE_RECYCLE") {
            c.recycle = match r.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "on" | "yes" => true,
                "0" | "false" | "off" | "no" => false,
                _ => return Err(Error::Config(format!("PGISOLATE_RECYCLE={r:?}: use on or off"))),
            };
        }
        c.run_id = var("PGISOLATE_RUN_ID");
        if let Some(a) = var("PGISOLATE_TEMPLATE_MAX_AGE") {
            c.template_max_age = parse_age(&a).ok_or_else(|| {
                Error::Config(format!(
                    "PGISOLATE_TEMPLATE_MAX_AGE={a:?}: use seconds or <n>d, <n>h, <n>m (0 keeps all)"
                ))
            })?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks every value, with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
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
            crate::cache_key::RedisTarget::parse(r)?;
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

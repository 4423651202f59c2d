//! The settings table (key, environment variable, what each takes) and setting one by key:
//! what every binding's option names and docs/configuration.md are checked against.

use std::path::PathBuf;
use std::time::Duration;

use super::{parse_age, Config, Isolation, Keep};
use crate::error::{Error, Result};

/// One setting: the key every binding uses (`Config::set`, `pgi_config_set`, Python keyword,
/// Node option in camelCase, Go `Config.Settings`), its environment variable, and what it takes.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The key: `hash_len`.
    pub key: &'static str,
    /// The environment variable `Config::from_env` reads: `PGISOLATE_HASH_LEN`.
    pub env: &'static str,
    /// What values it takes, and its default.
    pub takes: &'static str,
}

/// Every setting, in the order docs/configuration.md lists them (a test checks the table against it).
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "url",
        env: "PGISOLATE_DATABASE_URL",
        takes: "a postgres:// URL or key/value string, or several URLs separated by spaces; unset: the embedded server",
    },
    Setting {
        key: "worker",
        env: "PGISOLATE_WORKER",
        takes: "this process's worker id, for spreading over several servers (the runner's: PYTEST_XDIST_WORKER, JEST_WORKER_ID, VITEST_POOL_ID)",
    },
    Setting {
        key: "isolation",
        env: "PGISOLATE_ISOLATION",
        takes: "what each test gets: schema or database (a database per test, for migrations that reach beyond one schema) (schema)",
    },
    Setting { key: "prefix", env: "PGISOLATE_SCHEMA_PREFIX", takes: "schema name prefix (test_)" },
    Setting {
        key: "hash_len",
        env: "PGISOLATE_HASH_LEN",
        takes: "hex characters of the identity hash in a name, 8..=32 (8)",
    },
    Setting { key: "keep", env: "PGISOLATE_KEEP", takes: "never, failed or always (never)" },
    Setting {
        key: "search_path_tail",
        env: "PGISOLATE_SEARCH_PATH_TAIL",
        takes: "schemas after the test's, comma-separated; empty: none (public, left out when every role can write it)",
    },
    Setting {
        key: "extensions",
        env: "PGISOLATE_EXTENSIONS",
        takes: "extensions created once in schema extensions, comma-separated (none)",
    },
    Setting {
        key: "pg_bin",
        env: "PGISOLATE_PG_BIN",
        takes: "directory of initdb, pg_ctl, postgres (PATH, then where packages install them)",
    },
    Setting {
        key: "pg_dump",
        env: "PGISOLATE_PG_DUMP",
        takes: "the pg_dump that captures templates, of the server's version or newer (found: the server's version, \
                else the oldest newer one)",
    },
    Setting {
        key: "pg_bin_fallback",
        env: "PGISOLATE_PG_BIN_FALLBACK",
        takes: "binaries used only when none are found (unset)",
    },
    Setting {
        key: "run_id",
        env: "PGISOLATE_RUN_ID",
        takes: "run identity shared by workers, at most 200 characters (generated)",
    },
    Setting { key: "gc_on_start", env: "PGISOLATE_GC_ON_START", takes: "on or off: gc when an engine starts (on)" },
    Setting { key: "gc_grace", env: "PGISOLATE_GC_GRACE", takes: "duration: gc leaves younger orphans alone (5s)" },
    Setting {
        key: "template_max_age",
        env: "PGISOLATE_TEMPLATE_MAX_AGE",
        takes: "duration: gc drops templates unused this long; 0 keeps all (7d)",
    },
    Setting { key: "pool_size", env: "PGISOLATE_POOL_SIZE", takes: "ready schemas per template; 0: no pool (2)" },
    Setting { key: "recycle", env: "PGISOLATE_RECYCLE", takes: "on or off: reset and reuse released schemas (on)" },
    Setting {
        key: "max_admin_connections",
        env: "PGISOLATE_MAX_ADMIN_CONNECTIONS",
        takes: "admin connections at most, 1 or more (8)",
    },
    Setting {
        key: "test_connections",
        env: "PGISOLATE_TEST_CONNECTIONS",
        takes: "connections each worker's tests hold at once, the room engines leave them on the server (1)",
    },
    Setting {
        key: "release_timeout",
        env: "PGISOLATE_RELEASE_TIMEOUT",
        takes: "duration: a release gives up after this, leaving the rest to gc (8s)",
    },
    Setting {
        key: "login_role",
        env: "PGISOLATE_LOGIN_ROLE",
        takes: "on or off: a LOGIN role per schema, needs CREATEROLE (off)",
    },
    Setting {
        key: "verify",
        env: "PGISOLATE_VERIFY",
        takes: "on or off: check each handed-out string lands in its schema (off)",
    },
    Setting {
        key: "redis_url",
        env: "PGISOLATE_REDIS_URL",
        takes: "redis://[user[:password]@]host[:port][/db] (rediss:// for TLS; a cluster member finds the rest) whose keys under each cache prefix are deleted (unset)",
    },
    Setting {
        key: "redis_ca_file",
        env: "PGISOLATE_REDIS_CA_FILE",
        takes: "PEM file of the CA that signed a rediss:// server's certificate (unset: the system's roots)",
    },
    Setting {
        key: "reuse",
        env: "PGISOLATE_REUSE",
        takes: "on (30 minutes), off, or a duration: keep the embedded server and its templates up that long after the run (off)",
    },
    Setting {
        key: "collect_warnings",
        env: "PGISOLATE_COLLECT_WARNINGS",
        takes: "on or off: queue warnings for take_warnings instead of stderr (off; bindings turn it on)",
    },
];

/// `on`/`off` and the usual spellings.
fn flag(v: &str) -> std::result::Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => Err("use on or off (true/false, 1/0, yes/no)".into()),
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

fn number(v: &str, what: &str) -> std::result::Result<usize, String> {
    v.trim().parse().map_err(|_| format!("not a number: {what}"))
}

fn duration(v: &str) -> std::result::Result<Duration, String> {
    parse_age(v).ok_or_else(|| "not a duration: use seconds, or <n>ms, <n>s, <n>m, <n>h, <n>d".into())
}

impl Config {
    /// Sets one setting by its key ([`SETTINGS`]); the value is parsed as every binding and the
    /// environment give it (text). The error names the key, the value and what it takes. Call
    /// [`Config::validate`] once all are set.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let v = value.trim();
        let opt = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let parsed: std::result::Result<(), String> = (|| {
            match key {
                "url" => self.url = opt(v),
                "worker" => self.worker = opt(v),
                "isolation" => {
                    self.isolation = match v.to_ascii_lowercase().as_str() {
                        "" | "schema" => Isolation::Schema,
                        "database" => Isolation::Database,
                        _ => return Err("use schema (the default) or database".into()),
                    }
                }
                "prefix" => self.prefix = v.to_owned(),
                "hash_len" => self.hash_len = number(v, "use 8..=32")?,
                "keep" => self.keep = Keep::parse(v).map_err(|e| e.to_string())?,
                "search_path_tail" => {
                    self.search_path_tail = list(v);
                    self.search_path_tail_set = true;
                }
                "extensions" => self.extensions = list(v),
                "pg_bin" => self.pg_bin = opt(v).map(PathBuf::from),
                "pg_bin_fallback" => self.pg_bin_fallback = opt(v).map(PathBuf::from),
                "pg_dump" => self.pg_dump = opt(v).map(PathBuf::from),
                "run_id" => self.run_id = opt(v),
                "gc_on_start" => self.gc_on_start = flag(v)?,
                "gc_grace" => self.gc_grace = duration(v)?,
                "template_max_age" => self.template_max_age = duration(v)?,
                "pool_size" => self.pool_size = number(v, "use 0 (no pool) or more")?,
                "recycle" => self.recycle = flag(v)?,
                "max_admin_connections" => self.max_admin_connections = number(v, "use 1 or more")?,
                "test_connections" => self.test_connections = number(v, "use 0 or more")?,
                "release_timeout" => self.release_timeout = duration(v)?,
                "login_role" => self.login_role = flag(v)?,
                "verify" => self.verify_handout = flag(v)?,
                "redis_url" => self.redis_url = opt(v),
                "redis_ca_file" => self.redis_ca_file = opt(v).map(PathBuf::from),
                "reuse" => {
                    self.reuse = match flag(v) {
                        Ok(true) => Some(Duration::from_secs(30 * 60)),
                        Ok(false) => None,
                        Err(_) => Some(duration(v).map_err(|_| {
                            "use on (30 minutes), off, or how long to keep the server after its last user (30m, 2h)"
                                .to_owned()
                        })?),
                    }
                }
                "collect_warnings" => self.collect_warnings = flag(v)?,
                _ => {
                    let keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
                    return Err(format!("unknown setting; the settings are {}", keys.join(", ")));
                }
            }
            Ok(())
        })();
        parsed.map_err(|why| Error::Config(format!("{key}={value:?}: {why}")))
    }

    /// The error `set(key, value)` then `validate` would give on the defaults, without
    /// building anything: what every binding's `check_setting` reports.
    pub fn check_setting(key: &str, value: &str) -> Result<()> {
        let mut cfg = Config::default();
        cfg.set(key, value)?;
        cfg.validate()
    }
}

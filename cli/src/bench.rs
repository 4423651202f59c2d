//! `pgisolate bench`: every isolation strategy on the same server, side by side.
//!
//! For each strategy, N tests run one after another; each test acquires an isolated database
//! object, writes a row, and releases it. Measured: acquire latency (p50/p99), release latency,
//! wall time per test including background work (the run ends with a flush), and server time
//! per test: CPU seconds the PostgreSQL processes spent, read from /proc (postmaster plus its
//! children, exited ones included), when the server is the local embedded one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgisolate::{Config, Engine, Identity, Migrations, Template};
use tokio_postgres::{Client, NoTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One strategy's numbers.
#[derive(Debug, Clone)]
pub struct Row {
    pub strategy: &'static str,
    pub what: &'static str,
    pub tests: usize,
    pub acquire_p50: f64,
    pub acquire_p99: f64,
    pub release_p50: f64,
    pub wall_per_test: f64,
    pub server_per_test: Option<f64>,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CPU time (ms) used so far by the server whose data directory is `data`: the postmaster,
/// its exited children (cutime/cstime) and its live children.
fn server_cpu_ms(data: &Path) -> Option<f64> {
    let pm: u32 = std::fs::read_to_string(data.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let fields = |pid: u32| -> Option<Vec<String>> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &s[s.rfind(')')? + 2..];
        Some(rest.split_whitespace().map(str::to_owned).collect())
    };
    // After ")": state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let f = fields(pm)?;
    let num = |f: &[String], i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let mut ticks = num(&f, 11) + num(&f, 12) + num(&f, 13) + num(&f, 14);
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Some(c) = fields(pid) {
            if c.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pm) {
                ticks += num(&c, 11) + num(&c, 12);
            }
        }
    }
    Some(ticks * 1000.0 / hz)
}

async fn connect(url: &str) -> Result<Client, BoxError> {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);
    Ok(c)
}

struct Sample {
    acquire: Vec<f64>,
    release: Vec<f64>,
}

/// Runs `tests` cycles of (acquire, body, release) and returns the row.
async fn measure<A, R, FA, FR, T>(
    strategy: &'static str,
    what: &'static str,
    tests: usize,
    data: Option<&Path>,
    mut acquire: A,
    mut release: R,
    flush: impl std::future::Future<Output = ()>,
) -> Result<Row, BoxError>
where
    A: FnMut(usize) -> FA,
    R: FnMut(T) -> FR,
    FA: std::future::Future<Output = Result<T, BoxError>>,
    FR: std::future::Future<Output = Result<(), BoxError>>,
{
    let mut s = Sample { acquire: Vec::with_capacity(tests), release: Vec::with_capacity(tests) };
    let cpu0 = data.and_then(server_cpu_ms);
    let t0 = Instant::now();
    for i in 0..tests {
        let t = Instant::now();
        let h = acquire(i).await?;
        s.acquire.push(ms(t.elapsed()));
        let t = Instant::now();
        release(h).await?;
        s.release.push(ms(t.elapsed()));
    }
    flush.await;
    let wall = ms(t0.elapsed());
    let cpu1 = data.and_then(server_cpu_ms);
    Ok(Row {
        strategy,
        what,
        tests,
        acquire_p50: pct(&mut s.acquire.clone(), 0.5),
        acquire_p99: pct(&mut s.acquire, 0.99),
        release_p50: pct(&mut s.release, 0.5),
        wall_per_test: wall / tests as f64,
        server_per_test: cpu0.zip(cpu1).map(|(a, b)| (b - a) / tests as f64),
    })
}

fn engine_cfg(base: &Config, pool: usize, recycle: bool, defer: bool) -> Config {
    let mut c = base.clone();
    c.pool_size = pool;
    c.recycle = recycle;
    c.defer_drop = defer;
    c.gc_on_start = false;
    c
}

/// An engine strategy: acquire/release through pgisolate with the given settings.
async fn engine_strategy(
    strategy: &'static str,
    what: &'static str,
    cfg: Config,
    migrations: &Path,
    tests: usize,
    data: Option<&Path>,
) -> Result<Row, BoxError> {
    let engine = Engine::start(cfg).await?;
    let tpl = engine.template(Migrations::dir(migrations)).await?;
    engine.flush().await;
    let admin = connect(engine.url()).await?;
    let warm = |engine: Engine, tpl: Template| async move {
        for i in 0..5 {
            let s = engine.acquire(&tpl, Identity::new(format!("bench warm-up {strategy}"), i.to_string())).await?;
            s.release().await?;
        }
        engine.flush().await;
        Ok::<_, BoxError>(())
    };
    warm(engine.clone(), tpl.clone()).await?;
    let (e1, e2, e3) = (engine.clone(), engine.clone(), engine.clone());
    let admin = &admin;
    let row = measure(
        strategy,
        what,
        tests,
        data,
        |i| {
            let (e, t) = (e1.clone(), tpl.clone());
            async move {
                let s = e.acquire(&t, Identity::new(format!("bench {strategy}"), format!("test {i}"))).await?;
                Ok::<_, BoxError>(s)
            }
        },
        |s| {
            let _ = &e2;
            async move {
                admin
                    .execute(&format!("insert into \"{}\".users (email) values ('bench@example.com')", s.name()), &[])
                    .await?;
                s.release().await?;
                Ok(())
            }
        },
        async move { e3.flush().await },
    )
    .await?;
    engine.close().await?;
    Ok(row)
}

/// What `pgisolate bench` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The migrations every strategy builds from.
    pub migrations: PathBuf,
    /// Tests per strategy.
    pub tests: usize,
    /// Tests of the two-worker suite.
    pub suite_tests: usize,
    /// Where bench.csv and bench.svg go.
    pub out_dir: PathBuf,
    /// Tables of the generated schema the reset comparison uses; 0 skips it.
    pub schema_tables: usize,
    /// Run as a plain role owning its database.
    pub no_superuser: bool,
}

/// The role `--no-superuser` runs as, and its database.
const OWNER_ROLE: &str = "pgi_bench_owner";

/// Runs every strategy, the reset comparison and the two-worker suite; writes CSV and SVG.
pub async fn run(opts: Options) -> Result<bool, BoxError> {
    let Options { migrations, tests, suite_tests, out_dir, schema_tables, no_superuser } = opts;
    let mut base = Config::from_env()?;
    let probe = Engine::start(engine_cfg(&base, 0, false, false)).await?;
    let data = probe.server().map(|s| s.dir.join("data"));
    let data = data.as_deref();
    let mut url = probe.url().to_owned();
    let superuser_admin = connect(&url).await?;
    if no_superuser {
        // A plain role that owns its database: no superuser, no CREATEDB, no CREATEROLE.
        // One statement per call: DROP/CREATE DATABASE refuse to run in a multi-statement batch.
        for sql in [
            format!("DROP DATABASE IF EXISTS {OWNER_ROLE} WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS {OWNER_ROLE}"),
            format!("CREATE ROLE {OWNER_ROLE} LOGIN"),
            format!("CREATE DATABASE {OWNER_ROLE} OWNER {OWNER_ROLE}"),
        ] {
            superuser_admin.batch_execute(&sql).await?;
        }
        let mut ci = pgisolate::conninfo::ConnInfo::parse(&url)?.to_keyvalue()?;
        ci.set("user", OWNER_ROLE);
        ci.set("dbname", OWNER_ROLE);
        url = ci.to_string();
        base.url = Some(url.clone());
    }
    let steps = Migrations::dir(&migrations).load()?;
    let migration_sql: String = steps.iter().map(|(_, sql)| format!("{sql}\n;\n")).collect();
    let admin = connect(&url).await?;
    let mut rows = Vec::new();
    eprintln!(
        "pgisolate bench: {tests} tests per strategy on {}{}",
        pgisolate::conninfo::redact(&url),
        if no_superuser { " as a plain role owning its database" } else { "" }
    );

    // 1. Fresh schema + migrations, then DROP SCHEMA … CASCADE.
    let admin_ref = &admin;
    let sql_ref = &migration_sql;
    rows.push(
        measure(
            "fresh",
            "CREATE SCHEMA + migrations; DROP SCHEMA CASCADE",
            tests,
            data,
            |i| async move {
                let name = format!("bench_fresh_{i}");
                migrated_schema(admin_ref, &name, sql_ref).await?;
                Ok::<_, BoxError>(name)
            },
            |name| async move {
                admin_ref
                    .execute(&format!("insert into {name}.users (email) values ('bench@example.com')"), &[])
                    .await?;
                admin_ref.batch_execute(&format!("DROP SCHEMA {name} CASCADE")).await?;
                Ok(())
            },
            async {},
        )
        .await?,
    );

    // 2–4. The engine: replay only, warm pool, pool + recycling.
    for (strategy, what, pool, recycle, defer) in [
        ("replay", "pgisolate, captured DDL replayed, synchronous drop", 0, false, false),
        ("pool", "pgisolate, warm pool (4), deferred drop", 4, false, true),
        ("recycle", "pgisolate, warm pool (4) + recycling (default)", 4, true, true),
    ] {
        let cfg = engine_cfg(&base, pool, recycle, defer);
        rows.push(engine_strategy(strategy, what, cfg, &migrations, tests, data).await?);
    }

    // 5. CREATE DATABASE … TEMPLATE + DROP DATABASE (pgtestdb, pytest-postgresql, IntegreSQL),
    // which a role without CREATEDB cannot do.
    if !no_superuser {
        rows.push(template_db(&admin, &url, &migration_sql, tests, data).await?);
    }

    // 6. The floor: one transaction rolled back (no isolation of committed data).
    let tx_schema = format!("bench_rollback_{}", std::process::id());
    migrated_schema(&admin, &tx_schema, &migration_sql).await?;
    let ts = &tx_schema;
    rows.push(
        measure(
            "rollback",
            "BEGIN; INSERT; ROLLBACK (the floor)",
            tests,
            data,
            |_| async move {
                admin_ref.batch_execute("BEGIN").await?;
                Ok::<_, BoxError>(())
            },
            |_| async move {
                admin_ref.execute(&format!("insert into {ts}.users (email) values ('bench@example.com')"), &[]).await?;
                admin_ref.batch_execute("ROLLBACK").await?;
                Ok(())
            },
            async {},
        )
        .await?,
    );
    admin.batch_execute(&format!("DROP SCHEMA {tx_schema} CASCADE")).await?;

    let resets = if schema_tables > 0 {
        Some(reset_comparison(&base, &migrations, schema_tables, tests, data).await?)
    } else {
        None
    };
    let suite = two_worker_suite(&base, &migrations, &migration_sql, suite_tests, data).await?;
    let cold = {
        let m = migrations.clone();
        tokio::task::spawn_blocking(move || cold_start(&m)).await??
    };
    drop(admin);
    if no_superuser {
        superuser_admin.batch_execute(&format!("DROP DATABASE {OWNER_ROLE} WITH (FORCE)")).await?;
        superuser_admin.batch_execute(&format!("DROP ROLE {OWNER_ROLE}")).await?;
    }
    probe.close().await?;

    print_and_write(&rows, resets.as_ref(), &cold, &suite, &out_dir)
}

/// Creates schema `name` by running the migrations in it, in one transaction: what a suite
/// without pgisolate has.
async fn migrated_schema(admin: &Client, name: &str, migration_sql: &str) -> Result<(), BoxError> {
    admin
        .batch_execute(&format!(
            "BEGIN; CREATE SCHEMA {name}; SET LOCAL search_path TO {name}, public;\n{migration_sql}\nCOMMIT;"
        ))
        .await?;
    Ok(())
}

async fn template_db(
    admin: &Client,
    url: &str,
    migration_sql: &str,
    tests: usize,
    data: Option<&Path>,
) -> Result<Row, BoxError> {
    admin.batch_execute("DROP DATABASE IF EXISTS pgi_bench_tpl").await?;
    admin.batch_execute("CREATE DATABASE pgi_bench_tpl").await?;
    {
        let mut tpl_url = pgisolate::conninfo::ConnInfo::parse(url)?.to_keyvalue()?;
        tpl_url.set("dbname", "pgi_bench_tpl");
        let c = connect(&tpl_url.to_string()).await?;
        c.batch_execute(migration_sql).await?;
    }
    let row = measure(
        "template-db",
        "CREATE DATABASE … TEMPLATE; DROP DATABASE",
        tests.min(100),
        data,
        |i| async move {
            let name = format!("pgi_bench_db_{i}");
            admin.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE pgi_bench_tpl")).await?;
            Ok::<_, BoxError>(name)
        },
        |name| async move {
            admin.batch_execute(&format!("DROP DATABASE {name}")).await?;
            Ok(())
        },
        async {},
    )
    .await?;
    admin.batch_execute("DROP DATABASE IF EXISTS pgi_bench_tpl").await?;
    Ok(row)
}

/// A generated schema of `n` tables for the reset comparison, as a migration: each table has
/// a bigserial key, text, a checked integer, a timestamp default and a flag; two in three
/// reference one of the twenty tables before them (nullable, indexed); one in four has a
/// unique code; one in twenty without a reference has three seed rows.
pub fn generated_schema(n: usize) -> String {
    let mut sql = format!("-- pgisolate bench: a generated schema of {n} tables\n");
    for i in 0..n {
        let mut cols = vec![
            "id bigserial PRIMARY KEY".to_owned(),
            "name text NOT NULL DEFAULT ''".to_owned(),
            "amount integer NOT NULL DEFAULT 0 CHECK (amount >= 0)".to_owned(),
            "created_at timestamptz NOT NULL DEFAULT now()".to_owned(),
            "active boolean NOT NULL DEFAULT true".to_owned(),
        ];
        // A deterministic spread of references: every run builds the same schema.
        let parent = (i % 3 != 0).then(|| i - 1 - (i * 7 % 20).min(i - 1));
        if let Some(p) = parent {
            cols.push(format!("t{p:04}_id bigint REFERENCES t{p:04} (id)"));
        }
        if i % 4 == 0 {
            cols.push("code text UNIQUE".to_owned());
        }
        sql.push_str(&format!("CREATE TABLE t{i:04} (\n    {}\n);\n", cols.join(",\n    ")));
        if let Some(p) = parent {
            sql.push_str(&format!("CREATE INDEX t{i:04}_parent ON t{i:04} (t{p:04}_id);\n"));
        }
        if i % 20 == 0 && parent.is_none() {
            sql.push_str(&format!("INSERT INTO t{i:04} (name, amount) VALUES ('a', 1), ('b', 2), ('c', 3);\n"));
        }
    }
    sql
}

/// Cold starts: `pgisolate demo --scenarios 1` against a new embedded server in a home of its
/// own, three times (the server stopped between runs): the first run on a machine (initdb,
/// migrations, capture), then runs that find the pristine cluster and the captured template
/// cached. Returns (run, ms from process start to the first test's end).
pub fn cold_start(migrations: &Path) -> Result<Vec<(&'static str, f64)>, BoxError> {
    use std::io::BufRead;
    let shm = Path::new("/dev/shm");
    let parent = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let home = parent.join(format!("pgisolate-cold-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let exe = std::env::current_exe()?;
    let mut out = Vec::new();
    let result = (|| {
        for label in ["first run on this machine", "second run", "third run"] {
            let t = Instant::now();
            let mut child = std::process::Command::new(&exe)
                .args(["demo", "--scenarios", "1", "--migrations"])
                .arg(migrations)
                .env("PGISOLATE_HOME", &home)
                .env_remove("PGISOLATE_DATABASE_URL")
                .env_remove("PGISOLATE_REUSE")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            let mut first = None;
            if let Some(stdout) = child.stdout.take() {
                for line in std::io::BufReader::new(stdout).lines() {
                    // The scenario table's first row: the test ran.
                    if first.is_none() && line?.starts_with("1 ") {
                        first = Some(ms(t.elapsed()));
                    }
                }
            }
            let status = child.wait()?;
            let _ = std::process::Command::new(&exe)
                .args(["server", "stop"])
                .env("PGISOLATE_HOME", &home)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            match first {
                Some(v) if status.success() => out.push((label, v)),
                _ => return Err(format!("cold start ({label}): the demo failed ({status})").into()),
            }
        }
        Ok::<_, BoxError>(())
    })();
    let _ = std::fs::remove_dir_all(&home);
    result.map(|()| out)
}

/// The long-suite check: `n` tests on `workers` concurrent workers of one engine, each test
/// acquiring, writing a row and releasing.
pub struct Scale {
    pub tests: usize,
    pub workers: usize,
    /// Mean acquire + release time (ms) of the first and the last tenth of the tests.
    pub first_ms: f64,
    pub last_ms: f64,
    /// (registry rows, write notes, relations in the database) before and after.
    pub before: (i64, i64, i64),
    pub after: (i64, i64, i64),
}

async fn catalog_sizes(admin: &Client) -> Result<(i64, i64, i64), BoxError> {
    let r = admin
        .query_one(
            "select (select count(*) from pgisolate.leases), (select count(*) from pgisolate.written), \
             (select count(*) from pg_class)",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

/// Runs the long-suite check.
pub async fn scale(base: &Config, migrations: &Path, n: usize, workers: usize) -> Result<Scale, BoxError> {
    let mut cfg = base.clone();
    cfg.gc_on_start = false;
    let engine = Engine::start(cfg).await?;
    let tpl = engine.template(Migrations::dir(migrations)).await?;
    engine.flush().await;
    let admin = std::sync::Arc::new(connect(engine.url()).await?);
    let before = catalog_sizes(&admin).await?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (engine, tpl, admin, next) = (engine.clone(), tpl.clone(), admin.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let s = engine.acquire(&tpl, Identity::new(format!("scale worker {w}"), format!("test {i}"))).await?;
                let mut spent = t.elapsed();
                admin
                    .execute(&format!("insert into \"{}\".users (email) values ('scale@example.com')", s.name()), &[])
                    .await?;
                let t = Instant::now();
                s.release().await?;
                spent += t.elapsed();
                done.push((i, ms(spent)));
            }
            Ok::<_, BoxError>(done)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    engine.flush().await;
    all.sort_by_key(|(i, _)| *i);
    let tenth = (n / 10).max(1);
    let mean = |v: &[(usize, f64)]| v.iter().map(|(_, m)| m).sum::<f64>() / v.len().max(1) as f64;
    let after = catalog_sizes(&admin).await?;
    engine.close().await?;
    Ok(Scale {
        tests: n,
        workers,
        first_ms: mean(&all[..tenth.min(all.len())]),
        last_ms: mean(&all[all.len().saturating_sub(tenth)..]),
        before,
        after,
    })
}

/// Recycled tests writing three tables, on the example schema and on a generated one of `n`
/// tables: (small, big).
async fn reset_comparison(
    base: &Config,
    migrations: &Path,
    n: usize,
    tests: usize,
    data: Option<&Path>,
) -> Result<(Row, Row), BoxError> {
    let dir = std::env::temp_dir().join(format!("pgisolate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("001_generated.sql"), generated_schema(n))?;
    let mid = n / 2;
    let big_writes: Vec<String> =
        (mid..(mid + 3).min(n)).map(|i| format!("insert into {{s}}.t{i:04} (name) values ('x')")).collect();
    let small_writes = vec![
        "with u as (insert into {s}.users (email) values ('bench@example.com') returning id) \
         insert into {s}.sessions (user_id, token, expires_at) select id, 'token', now() from u"
            .to_owned(),
        "insert into {s}.audit_log (entity, action) values ('bench', 'write')".to_owned(),
    ];
    let cfg = engine_cfg(base, 4, true, true);
    let small = writing_strategy(
        ("reset-11", "recycled tests writing 3 of the example's 11 tables"),
        cfg.clone(),
        migrations,
        &small_writes,
        tests,
        data,
        false,
    )
    .await;
    let big = writing_strategy(
        ("reset-big", "recycled tests writing 3 tables of the generated schema"),
        cfg,
        &dir,
        &big_writes,
        tests,
        data,
        true,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((small?, big?))
}

/// The recycle strategy with a body running `writes` (`{s}` is the schema) on an admin
/// connection (a connection per test would cost more than all the rest).
async fn writing_strategy(
    (strategy, what): (&'static str, &'static str),
    cfg: Config,
    migrations: &Path,
    writes: &[String],
    tests: usize,
    data: Option<&Path>,
    drop_template: bool,
) -> Result<Row, BoxError> {
    let engine = Engine::start(cfg).await?;
    let tpl = engine.template(Migrations::dir(migrations)).await?;
    engine.flush().await;
    let admin = connect(engine.url()).await?;
    let admin = &admin;
    let run = |i: usize, label: &'static str| {
        let (e, t) = (engine.clone(), tpl.clone());
        async move {
            let s = e.acquire(&t, Identity::new(format!("bench {strategy} {label}"), format!("test {i}"))).await?;
            Ok::<_, BoxError>(s)
        }
    };
    let body = |s: pgisolate::Schema| async move {
        let q = format!("\"{}\"", s.name());
        let sql: Vec<String> = writes.iter().map(|w| w.replace("{s}", &q)).collect();
        admin.batch_execute(&sql.join(";\n")).await?;
        s.release().await?;
        Ok(())
    };
    for i in 0..5 {
        body(run(i, "warm-up").await?).await?;
    }
    engine.flush().await;
    let e = engine.clone();
    let row = measure(strategy, what, tests, data, |i| run(i, "test"), body, async move { e.flush().await }).await?;
    engine.close().await?;
    if drop_template {
        // The generated schema's template is of no use after the run.
        admin
            .batch_execute(&format!(
                "BEGIN; DROP SCHEMA IF EXISTS \"{t}\" CASCADE; DELETE FROM pgisolate.templates WHERE schema_name = '{t}'; COMMIT;",
                t = tpl.schema()
            ))
            .await?;
    }
    Ok(row)
}

/// The synthetic suite: `n` tests on 2 workers, each connecting, writing and reading; once
/// without isolation (one shared schema, unique rows), once with a schema per test.
pub struct Suite {
    pub tests: usize,
    pub base_ms: f64,
    pub isolated_ms: f64,
    /// CPU per test (ms) of this process and of the server, without and with isolation
    /// (medians over the rounds); `None` when the server's processes cannot be read.
    pub cpu: Option<[f64; 4]>,
}

/// CPU time (ms) this process has used so far.
fn own_cpu_ms() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else { return 0.0 };
    let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) * 1000.0 / hz
}

/// Rounds of the synthetic suite, each without and then with isolation.
const SUITE_ROUNDS: usize = 3;

async fn two_worker_suite(
    base: &Config,
    migrations: &Path,
    migration_sql: &str,
    n: usize,
    data: Option<&Path>,
) -> Result<Suite, BoxError> {
    let mut cfg = base.clone();
    cfg.gc_on_start = false;
    cfg.pool_size = 4;
    let engine = Engine::start(cfg).await?;
    let tpl = engine.template(Migrations::dir(migrations)).await?;
    // Without isolation: the migrations in a plain schema (no pgisolate in it at all, so its
    // write triggers count as isolation's cost), every test's rows side by side.
    let plain = format!("bench_suite_{}", std::process::id());
    let admin = connect(engine.url()).await?;
    migrated_schema(&admin, &plain, migration_sql).await?;
    let shared_url = pgisolate::conninfo::scoped(engine.url(), &plain, &["public".to_owned()])?;
    engine.flush().await;

    async fn body(url: &str, email: &str) -> Result<(), BoxError> {
        let c = connect(url).await?;
        c.execute("insert into users (email) values ($1)", &[&email]).await?;
        let _: i64 = c.query_one("select count(*) from users where email = $1", &[&email]).await?.get(0);
        Ok(())
    }

    let per_worker = n / 2;
    // Rounds alternate without and with isolation (the machine's noise hits both alike); the
    // medians are reported.
    let mut base_runs = Vec::new();
    let mut isolated_runs = Vec::new();
    let mut cpu_runs: [Vec<f64>; 4] = Default::default();
    let cpu_now = || (own_cpu_ms(), data.and_then(server_cpu_ms));
    let record = |runs: &mut [Vec<f64>; 4], offset: usize, before: (f64, Option<f64>), after: (f64, Option<f64>)| {
        let tests = (per_worker * 2) as f64;
        runs[offset].push((after.0 - before.0) / tests);
        if let (Some(a), Some(b)) = (after.1, before.1) {
            runs[offset + 1].push((a - b) / tests);
        }
    };
    let mut acq = Vec::new();
    let mut rel = Vec::new();
    for round in 0..SUITE_ROUNDS {
        // Without isolation.
        let c0 = cpu_now();
        let t = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..2 {
            let url = shared_url.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per_worker {
                    body(&url, &format!("r{round}-w{w}-{i}@example.com")).await?;
                }
                Ok::<_, BoxError>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        base_runs.push(ms(t.elapsed()));
        record(&mut cpu_runs, 0, c0, cpu_now());
        // With a schema per test.
        let c0 = cpu_now();
        let t = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..2 {
            let (engine, tpl) = (engine.clone(), tpl.clone());
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_worker);
                for i in 0..per_worker {
                    let t = Instant::now();
                    let id = Identity::new(format!("suite worker {w}"), format!("round {round} test {i}"));
                    let s = engine.acquire(&tpl, id).await?;
                    let acquired = ms(t.elapsed());
                    body(s.url(), "alice@example.com").await?;
                    let t = Instant::now();
                    s.release().await?;
                    times.push((acquired, ms(t.elapsed())));
                }
                Ok::<_, BoxError>(times)
            }));
        }
        for t in tasks {
            for (a, r) in t.await?? {
                acq.push(a);
                rel.push(r);
            }
        }
        engine.flush().await;
        isolated_runs.push(ms(t.elapsed()));
        record(&mut cpu_runs, 2, c0, cpu_now());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (base_ms, isolated_ms) = (median(&mut base_runs), median(&mut isolated_runs));
    let cpu = if cpu_runs.iter().all(|v| !v.is_empty()) {
        let [a, b, c, d] = &mut cpu_runs;
        Some([median(a), median(b), median(c), median(d)])
    } else {
        None
    };

    eprintln!(
        "suite with isolation: acquire p50 {:.2} ms p99 {:.2} ms, release p50 {:.2} ms p99 {:.2} ms",
        pct(&mut acq.clone(), 0.5),
        pct(&mut acq, 0.99),
        pct(&mut rel.clone(), 0.5),
        pct(&mut rel, 0.99)
    );
    admin.batch_execute(&format!("DROP SCHEMA {plain} CASCADE")).await?;
    engine.close().await?;
    Ok(Suite { tests: per_worker * 2, base_ms, isolated_ms, cpu })
}

/// One strategy's columns in the printed table (the ratios or a description follow).
fn table_row(r: &Row) -> String {
    format!(
        "{:<12} {:>7} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>10.2}ms {:>10}ms",
        r.strategy,
        r.tests,
        r.acquire_p50,
        r.acquire_p99,
        r.release_p50,
        r.wall_per_test,
        r.server_per_test.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into()),
    )
}

/// One strategy as a line of bench.csv; `ratios` fills the last two columns.
fn csv_row(r: &Row, ratios: &str) -> String {
    format!(
        "{},\"{}\",{},{:.3},{:.3},{:.3},{:.3},{},{ratios}\n",
        r.strategy,
        r.what,
        r.tests,
        r.acquire_p50,
        r.acquire_p99,
        r.release_p50,
        r.wall_per_test,
        r.server_per_test.map(|v| format!("{v:.3}")).unwrap_or_default(),
    )
}

fn print_and_write(
    rows: &[Row],
    resets: Option<&(Row, Row)>,
    cold: &[(&str, f64)],
    suite: &Suite,
    out_dir: &Path,
) -> Result<bool, BoxError> {
    let get = |s: &str| rows.iter().find(|r| r.strategy == s);
    let cost = |r: &Row| r.server_per_test.unwrap_or(r.wall_per_test);
    let fresh = get("fresh").map(cost).unwrap_or(f64::NAN);
    let tdb = get("template-db").map(cost).unwrap_or(f64::NAN);
    let basis = if rows.iter().all(|r| r.server_per_test.is_some()) { "server CPU" } else { "wall" };
    println!();
    println!(
        "{:<12} {:>7} {:>10} {:>10} {:>10} {:>12} {:>12} {:>9} {:>9}",
        "strategy", "tests", "acq p50", "acq p99", "rel p50", "wall/test", "server/test", "÷fresh", "÷tpl-db"
    );
    let mut csv = String::from(
        "strategy,description,tests,acquire_p50_ms,acquire_p99_ms,release_p50_ms,wall_ms_per_test,server_ms_per_test,ratio_to_fresh,ratio_to_template_db\n",
    );
    for r in rows {
        let c = cost(r);
        println!("{} {:>9.3} {:>9.3}", table_row(r), c / fresh, c / tdb);
        csv.push_str(&csv_row(r, &format!("{:.4},{:.4}", c / fresh, c / tdb)));
    }
    if let Some((small, big)) = resets {
        println!();
        for r in [small, big] {
            println!("{}  {}", table_row(r), r.what);
            csv.push_str(&csv_row(r, ","));
        }
    }
    println!();
    for (label, v) in cold {
        println!("cold start, {label}: first test done {v:.0} ms after the process started");
        csv.push_str(&format!("cold-start,\"{label}\",1,,,,{v:.1},,,\n"));
    }
    let overhead = (suite.isolated_ms - suite.base_ms) / (suite.tests as f64 / 2.0);
    println!();
    println!(
        "suite: {} tests on 2 workers (median of 3 alternating rounds): {:.0} ms without isolation, {:.0} ms with a schema per test: +{:.2} ms per test",
        suite.tests, suite.base_ms, suite.isolated_ms, overhead
    );
    if let Some([cb, sb, ci, si]) = suite.cpu {
        println!(
            "suite CPU per test: client {cb:.2} -> {ci:.2} ms, server {sb:.2} -> {si:.2} ms (+{:.2} ms in all, on 2 cores)",
            (ci + si) - (cb + sb)
        );
    }
    csv.push_str(&format!(
        "suite-2-workers,{} tests without / with isolation,{},,,,{:.3},{:.3},,\n",
        suite.tests, suite.tests, suite.base_ms, suite.isolated_ms
    ));

    let recycle = get("recycle");
    let pool = get("pool");
    let mut ok = true;
    let mut check = |name: &str, pass: bool, detail: String| {
        println!("target {name}: {} ({detail})", if pass { "met" } else { "NOT met" });
        ok &= pass;
    };
    if let Some(p) = recycle {
        check("acquire p50 <= 1 ms", p.acquire_p50 <= 1.0, format!("{:.2} ms", p.acquire_p50));
        check("acquire p99 <= 10 ms", p.acquire_p99 <= 10.0, format!("{:.2} ms", p.acquire_p99));
        check(
            "server time <= 1/4 fresh",
            cost(p) * 4.0 <= fresh,
            format!("{:.3} of fresh, by {basis}", cost(p) / fresh),
        );
        if tdb.is_finite() {
            check(
                "server time <= 1/8 template-db",
                cost(p) * 8.0 <= tdb,
                format!("{:.3} of template-db, by {basis}", cost(p) / tdb),
            );
        }
    }
    if let Some((small, big)) = resets {
        let ratio = cost(big) / cost(small);
        check(
            "recycled test writing 3 tables: big schema <= 1.5x the 11-table one",
            ratio <= 1.5,
            format!("{ratio:.2}x: {:.2} vs {:.2} ms, by {basis}", cost(big), cost(small)),
        );
    }
    if let Some(p) = pool {
        println!("(pool without recycling: acquire p50 {:.2} ms, {:.3} of fresh)", p.acquire_p50, cost(p) / fresh);
    }
    check("suite overhead <= 2 ms per test", overhead <= 2.0, format!("{overhead:.2} ms"));
    if let [(_, first), (_, second), ..] = cold {
        check("first run ever: first test <= 3 s", *first <= 3000.0, format!("{first:.0} ms"));
        check("second run: first test <= 1 s", *second <= 1000.0, format!("{second:.0} ms"));
    }

    std::fs::create_dir_all(out_dir)?;
    std::fs::write(out_dir.join("bench.csv"), &csv)?;
    std::fs::write(out_dir.join("bench.svg"), svg(rows, basis))?;
    println!("wrote {} and {}", out_dir.join("bench.csv").display(), out_dir.join("bench.svg").display());
    Ok(ok)
}

/// A horizontal bar chart of server time per test (log-free, labelled).
fn svg(rows: &[Row], basis: &str) -> String {
    let cost = |r: &Row| r.server_per_test.unwrap_or(r.wall_per_test);
    let max = rows.iter().map(cost).fold(0.0_f64, f64::max).max(0.001);
    let (w, bar_h, left, top) = (760.0, 34.0, 130.0, 50.0);
    let h = top + rows.len() as f64 * (bar_h + 12.0) + 40.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"28\" font-size=\"16\" font-weight=\"bold\">{basis} time per test (ms), lower is better</text>\n"
    );
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * (bar_h + 12.0);
        let v = cost(r);
        let bw = ((w - left - 140.0) * v / max).max(1.0);
        let color = match r.strategy {
            "recycle" | "pool" | "replay" => "#2b7bb9",
            "rollback" => "#999999",
            _ => "#d9822b",
        };
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n<rect x=\"{left}\" y=\"{y}\" width=\"{bw:.1}\" height=\"{bar_h}\" fill=\"{color}\"/>\n<text x=\"{}\" y=\"{}\">{v:.2} ms (acquire p50 {:.2} ms)</text>\n",
            left - 8.0,
            y + bar_h * 0.65,
            r.strategy,
            left + bw + 6.0,
            y + bar_h * 0.65,
            r.acquire_p50
        ));
    }
    s.push_str("</svg>\n");
    s
}

//! `pgisolate`: demo, run, ls, gc, url, templates, bench. A library so that the wheel and the
//! npm package carry the same command (`pgisolate._pgisolate.cli_main`, `cliMain`) as the
//! binary.

mod bench;
mod progress;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use pgisolate::{Config, Engine, Identity, Migrations};

use crate::progress::Spinner;

#[derive(Parser)]
#[command(name = "pgisolate", version, about = "One PostgreSQL schema per test: demo, run, ls, gc, url")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Template from migrations, 8 concurrent scenarios registering the same email, each in
    /// its own schema; prints what each saw and the leftovers (0).
    Demo {
        /// Migrations directory.
        #[arg(long, default_value = "examples/migrations")]
        migrations: PathBuf,
        /// Number of concurrent scenarios.
        #[arg(long, default_value_t = 8)]
        scenarios: usize,
    },
    /// Start (or reuse) the server, export PGISOLATE_DATABASE_URL and PGISOLATE_RUN_ID, run
    /// the command, then gc and print a summary. Exits with the command's status.
    Run {
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// List live and kept schemas: name, identity, owner, age.
    Ls,
    /// Drop schemas whose owner is gone.
    Gc {
        /// Grace period in seconds: an owner whose lease is free is gone once not seen for this
        /// long (a heartbeat refreshes it every second while its engine is connected).
        #[arg(long, default_value_t = 5)]
        grace: u64,
        /// Also drop kept schemas of owners that are gone.
        #[arg(long)]
        kept: bool,
    },
    /// Print the server URL (configured, or the running embedded server's).
    Url,
    /// The embedded server: `start` keeps it (and its templates) up between runs until `stop`
    /// or --idle after its last user; `status` shows it.
    Server {
        /// start, stop or status.
        #[arg(value_parser = ["start", "stop", "status"])]
        action: String,
        /// For start: how long it stays up after its last user (30m, 2h, 1d).
        #[arg(long, default_value = "30m")]
        idle: String,
    },
    /// List templates: schema, size, built, last used, superseded, source. `templates prune`
    /// drops unused and superseded ones.
    Templates {
        /// `prune`: drop templates not used for --max-age and superseded ones not used for ten
        /// minutes.
        action: Option<String>,
        /// For prune: age such as 7d, 12h, 30m or seconds.
        #[arg(long, default_value = "7d")]
        max_age: String,
    },
    /// Every isolation strategy on the same server: acquire p50/p99, server time per test,
    /// ratios; writes bench.csv and bench.svg.
    Bench {
        /// Migrations directory.
        #[arg(long, default_value = "examples/migrations")]
        migrations: PathBuf,
        /// Tests per strategy.
        #[arg(long, default_value_t = 300)]
        tests: usize,
        /// Tests in the two-worker synthetic suite.
        #[arg(long, default_value_t = 1000)]
        suite_tests: usize,
        /// Where to write bench.csv and bench.svg.
        #[arg(long, default_value = "docs/bench")]
        out: PathBuf,
        /// Exit with status 3 when a target is not met.
        #[arg(long)]
        strict: bool,
        /// Tables of the generated schema for the reset comparison (FKs, indexes, sequences,
        /// a few seed rows); 0 skips it.
        #[arg(long, default_value_t = 300)]
        schema_tables: usize,
        /// Run as a plain role that only owns its database (no superuser, no CREATEDB), as on
        /// managed PostgreSQL: no event triggers, no template databases.
        #[arg(long)]
        no_superuser: bool,
        /// Instead of the comparison: N tests on --workers workers of one engine, the
        /// overhead of the first and last tenth, registry and catalog sizes before and after.
        #[arg(long)]
        scale: Option<usize>,
        /// Workers for --scale.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
}

/// Runs the command line `args` (the program name first) and returns the exit status. Prints
/// help, errors and results itself.
pub fn main_from(args: Vec<OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgisolate: cannot start the async runtime: {e}");
            return 2;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Driver errors print "db error" and keep the server's message in their source.
            let mut msg = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                let text = s.to_string();
                if !msg.contains(&text) {
                    msg.push_str(": ");
                    msg.push_str(&text);
                }
                source = s.source();
            }
            eprintln!("pgisolate: error: {msg}");
            1
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn config(spinner: &Spinner) -> Result<Config, BoxError> {
    let mut cfg = Config::from_env()?;
    let s = spinner.clone();
    cfg.progress = Some(Arc::new(move |m: &str| s.set(m)));
    Ok(cfg)
}

/// For commands that only inspect: the configured URL or the running embedded server, else None.
fn existing_server() -> Result<Option<Config>, BoxError> {
    let mut cfg = Config::from_env()?;
    if cfg.url.is_none() {
        match pgisolate::server::running_url() {
            Some(u) => cfg.url = Some(u),
            None => return Ok(None),
        }
    }
    cfg.gc_on_start = false;
    Ok(Some(cfg))
}

/// One configuration per server `ls`, `gc` and `templates` cover: each of the servers
/// PGISOLATE_DATABASE_URL lists, else the running embedded server; empty when neither.
fn existing_servers() -> Result<Vec<Config>, BoxError> {
    let Some(cfg) = existing_server()? else { return Ok(Vec::new()) };
    let servers = cfg.servers();
    Ok(servers
        .into_iter()
        .map(|u| {
            let mut c = cfg.clone();
            c.url = Some(u);
            c
        })
        .collect())
}

/// `pgisolate templates [prune]` on one server.
async fn templates(cfg: Config, action: Option<&str>, max_age: &str) -> Result<u8, BoxError> {
    let engine = Engine::start(cfg).await?;
    match action {
        None | Some("ls") | Some("list") => {
            let list = engine.templates().await?;
            if list.is_empty() {
                println!("no templates");
            } else {
                println!("{:<22} {:>10} {:>9} {:>9} {:<10}  source", "template", "size", "built", "used", "state");
                for t in &list {
                    println!(
                        "{:<22} {:>8}kB {:>8}s {:>8}s {:<10}  {}",
                        t.schema,
                        t.size_bytes / 1024,
                        t.built_secs_ago,
                        t.used_secs_ago,
                        if t.superseded { "superseded" } else { "current" },
                        t.source
                    );
                }
            }
        }
        Some("prune") => {
            let age = pgisolate::config::parse_age(max_age)
                .ok_or_else(|| format!("--max-age {max_age:?}: use seconds or <n>d, <n>h, <n>m"))?;
            let dropped = engine.prune_templates(age).await?;
            for d in &dropped {
                println!("dropped {d}");
            }
            println!("templates prune: {} dropped", dropped.len());
        }
        Some(other) => {
            engine.close().await?;
            return Err(format!("unknown templates action {other:?}: use `templates` or `templates prune`").into());
        }
    }
    engine.close().await?;
    Ok(0)
}

/// `pgisolate ls`'s connections: the server's slots, then each live engine's (this command's
/// own engine marked).
fn print_connections(c: &pgisolate::Connections, me: i32) {
    let own: i64 = c.engines.iter().map(|e| e.own).sum();
    let tests: i64 = c.engines.iter().map(|e| e.tests).sum();
    println!(
        "connections: {} of max_connections {} in use: engines' own {own}, their tests' {tests}, waiting engines {}, \
         other clients {}",
        c.in_use, c.max_connections, c.waiting, c.others
    );
    println!("{:<12} {:<28} {:>5} {:>6}  run", "engine", "process", "own", "tests");
    for e in &c.engines {
        let this = if e.owner_key == me { " (this ls)" } else { "" };
        println!(
            "{:<12} {:<28} {:>5} {:>6}  {}{this}",
            e.owner_key,
            format!("{}@{}", e.pid, e.host),
            e.own,
            e.tests,
            e.run_id
        );
    }
}

/// With several servers, a line naming the one whose output follows.
fn server_header(cfg: &Config, count: usize) {
    if count > 1 {
        println!("server {}:", pgisolate::conninfo::redact(cfg.url.as_deref().unwrap_or_default()));
    }
}

async fn run(cli: Cli) -> Result<u8, BoxError> {
    match cli.command {
        Command::Demo { migrations, scenarios } => demo(migrations, scenarios).await,
        Command::Run { cmd } => run_cmd(cmd).await,
        Command::Ls => {
            let servers = existing_servers()?;
            if servers.is_empty() {
                println!("no server configured and no embedded server running: nothing to list");
                return Ok(0);
            }
            for cfg in &servers {
                server_header(cfg, servers.len());
                let engine = Engine::start(cfg.clone()).await?;
                let entries = engine.list().await?;
                if entries.is_empty() {
                    println!("no live schemas");
                } else {
                    println!("{:<40} {:<8} {:<28} {:>8}  identity", "schema", "state", "owner", "age");
                    for e in &entries {
                        let owner = format!("{}@{} ({})", e.pid, e.host, if e.owner_alive { "alive" } else { "gone" });
                        let ident: String = e.identity.chars().take(60).collect();
                        println!("{:<40} {:<8} {:<28} {:>7}s  {}", e.schema, e.state, owner, e.age.as_secs(), ident);
                    }
                }
                print_connections(&engine.connections().await?, engine.owner());
                engine.close().await?;
            }
            Ok(0)
        }
        Command::Gc { grace, kept } => {
            let servers = existing_servers()?;
            if servers.is_empty() {
                println!("no server configured and no embedded server running: nothing to collect");
                return Ok(0);
            }
            let mut failed = 0;
            for cfg in &servers {
                server_header(cfg, servers.len());
                let engine = Engine::start(cfg.clone()).await?;
                let r = engine.gc_with(Duration::from_secs(grace), kept).await?;
                for k in &r.fenced_owners {
                    println!("fenced owner {k} (lease free, not seen for {grace} s)");
                }
                for s in &r.dropped {
                    println!("dropped {s}");
                }
                for (s, why) in &r.failed {
                    println!("could not drop {s}: {why}");
                }
                println!(
                    "gc: {} dropped, {} stale registry rows removed, {} failed",
                    r.dropped.len(),
                    r.pruned_rows,
                    r.failed.len()
                );
                failed += r.failed.len();
                engine.close().await?;
            }
            Ok(if failed == 0 { 0 } else { 1 })
        }
        Command::Templates { action, max_age } => {
            let servers = existing_servers()?;
            if servers.is_empty() {
                println!("no server configured and no embedded server running: no templates");
                return Ok(0);
            }
            for cfg in &servers {
                server_header(cfg, servers.len());
                templates(cfg.clone(), action.as_deref(), &max_age).await?;
            }
            Ok(0)
        }
        Command::Bench { migrations, scale: Some(n), workers, .. } => {
            let base = pgisolate::Config::from_env()?;
            let r = bench::scale(&base, &migrations, n.max(10), workers.max(1)).await?;
            println!(
                "scale: {} tests on {} workers: acquire+release {:.3} ms per test in the first tenth, {:.3} ms in the last ({:.2}x)",
                r.tests,
                r.workers,
                r.first_ms,
                r.last_ms,
                r.last_ms / r.first_ms
            );
            println!(
                "registry rows {} -> {}, write notes {} -> {}, relations in the database {} -> {}",
                r.before.0, r.after.0, r.before.1, r.after.1, r.before.2, r.after.2
            );
            Ok(0)
        }
        Command::Bench { migrations, tests, suite_tests, out, strict, schema_tables, no_superuser, .. } => {
            let opts = bench::Options {
                migrations,
                tests: tests.max(10),
                suite_tests: suite_tests.max(2),
                out_dir: out,
                schema_tables,
                no_superuser,
            };
            let met = bench::run(opts).await?;
            Ok(if met || !strict { 0 } else { 3 })
        }
        Command::Server { action, idle } => server_cmd(&action, &idle).await,
        Command::Url => match existing_server()? {
            Some(cfg) => {
                println!("{}", cfg.url.unwrap_or_default());
                Ok(0)
            }
            None => {
                eprintln!(
                    "pgisolate: no embedded server is running; start one for a command with `pgisolate run -- CMD`"
                );
                Ok(1)
            }
        },
    }
}

async fn server_cmd(action: &str, idle: &str) -> Result<u8, BoxError> {
    match action {
        "start" => {
            let idle = pgisolate::config::parse_age(idle)
                .ok_or_else(|| format!("--idle {idle:?}: use a duration such as 30m, 2h or 1d"))?;
            let bin = Config::from_env()?.pg_bin;
            let url =
                tokio::task::spawn_blocking(move || pgisolate::server::start_kept_up(bin.as_deref(), idle)).await??;
            println!("{url}");
            eprintln!(
                "pgisolate: the embedded server stays up {} after its last user (reuse: runs find it, and their \
                 templates, warm); `pgisolate server stop` stops it",
                human(idle)
            );
            Ok(0)
        }
        "stop" => {
            let stopped = tokio::task::spawn_blocking(pgisolate::server::stop).await??;
            eprintln!(
                "pgisolate: {}",
                if stopped { "embedded server stopped" } else { "no embedded server was running" }
            );
            Ok(0)
        }
        _ => {
            let Some(st) = pgisolate::server::status() else {
                println!("embedded server: not running");
                return Ok(1);
            };
            println!("embedded server: running at {}", pgisolate::conninfo::redact(&st.url));
            println!("directory: {}", st.dir.display());
            println!("stays up: {} after its last user", human(std::time::Duration::from_secs(st.idle_limit)));
            match st.keeper_pid {
                Some(pid) => println!("keeper: pid {pid}"),
                None => println!("keeper: not running (the next engine starts one)"),
            }
            let mut cfg = Config::from_env()?;
            cfg.url = Some(st.url);
            cfg.gc_on_start = false;
            let engine = Engine::start(cfg).await?;
            let entries = engine.list().await?;
            let kept = entries.iter().filter(|e| e.state == "kept").count();
            let live = entries.iter().filter(|e| e.state == "live" && e.owner_alive).count();
            let templates = engine.templates().await?.len();
            engine.close().await?;
            println!("schemas: {live} live, {kept} kept; templates: {templates}");
            Ok(0)
        }
    }
}

fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86400 && s % 86400 == 0 => format!("{}d", s / 86400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

async fn demo(migrations: PathBuf, scenarios: usize) -> Result<u8, BoxError> {
    let spinner = Spinner::start();
    let t0 = Instant::now();
    let engine = Engine::start(config(&spinner)?).await?;
    let started = t0.elapsed();
    // Whatever fails, the run's schemas are released and the engine closed: a failed demo
    // leaves nothing on the server.
    let outcome = demo_on(&engine, &spinner, migrations, scenarios, started).await;
    engine.flush().await;
    let closed = engine.close().await;
    let code = outcome?;
    closed?;
    Ok(code)
}

async fn demo_on(
    engine: &Engine,
    spinner: &Spinner,
    migrations: PathBuf,
    scenarios: usize,
    started: Duration,
) -> Result<u8, BoxError> {
    let t1 = Instant::now();
    spinner.set("building template");
    let tpl = engine.template(Migrations::dir(&migrations)).await?;
    let built = t1.elapsed();
    spinner.stop();
    println!(
        "server: {} ({}), ready in {} ms",
        pgisolate::conninfo::redact(engine.url()),
        if engine.is_embedded() { "embedded" } else { "configured" },
        started.as_millis()
    );
    println!(
        "template: {} from {} ({} in {} ms)",
        tpl.schema(),
        migrations.display(),
        if tpl.built_here() { "built" } else { "reused" },
        built.as_millis()
    );
    let mut tasks = Vec::new();
    let where_sql = match engine.config().isolation {
        pgisolate::Isolation::Schema => "select current_schema()::text",
        pgisolate::Isolation::Database => "select current_database()::text",
    };
    for i in 0..scenarios {
        let engine = engine.clone();
        let tpl = tpl.clone();
        tasks.push(tokio::spawn(async move {
            let identity = Identity::new("features/signup.feature", format!("Scenario {}: alice registers", i + 1));
            let t = Instant::now();
            let schema = engine.acquire(&tpl, identity).await?;
            let acquire_ms = t.elapsed().as_secs_f64() * 1000.0;
            let seen = async {
                let (client, conn) = tokio_postgres::connect(schema.url(), tokio_postgres::NoTls).await?;
                let driver = tokio::spawn(conn);
                client.execute("insert into users (email, name) values ('alice@example.com', 'Alice')", &[]).await?;
                let rows: i64 =
                    client.query_one("select count(*) from users where email = 'alice@example.com'", &[]).await?.get(0);
                // Where the test landed: its schema, or in database isolation its database.
                let current: String = client.query_one(where_sql, &[]).await?.get(0);
                drop(client);
                let _ = driver.await;
                Ok::<_, tokio_postgres::Error>((rows, current))
            }
            .await;
            let key = schema.cache_key("user:alice");
            let name = schema.name().to_owned();
            // Released even when the scenario failed.
            let released = schema.release().await;
            let (rows, current) = seen.map_err(|e| {
                // tokio-postgres prints a server error as "db error": say what the server said.
                let said = e.as_db_error().map(|d| format!("{}: {}", d.code().code(), d.message()));
                format!("scenario {} in schema {name}: {}", i + 1, said.unwrap_or_else(|| e.to_string()))
            })?;
            released?;
            Ok::<_, BoxError>((i + 1, name, current, acquire_ms, rows, key))
        }));
    }
    println!();
    println!("{:<10} {:<16} {:>11} {:>10}  cache key", "scenario", "schema", "acquire ms", "rows seen");
    let mut ok = true;
    let mut failed = None;
    // Every scenario is waited for (each releases its schema) before a failure is reported.
    for t in tasks {
        match t.await? {
            Ok((i, name, current, ms, rows, key)) => {
                if current != name || rows != 1 {
                    ok = false;
                }
                println!("{:<10} {:<16} {:>11.1} {:>10}  {}", i, name, ms, rows, key);
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    // Releases rename a schema to a tombstone and may finish the drop in the background (when
    // it is not recycled): the run's end waits for those before counting what is left.
    let report = engine.end_of_run(None).await?;
    println!();
    println!("leftover schemas: {}", report.left.len() + report.kept.len());
    if !ok || !report.left.is_empty() || !report.kept.is_empty() {
        eprintln!("pgisolate: demo failed: a scenario saw another's rows or a schema was left behind");
        return Ok(1);
    }
    Ok(0)
}

async fn run_cmd(cmd: Vec<String>) -> Result<u8, BoxError> {
    let spinner = Spinner::start();
    let cfg = config(&spinner)?;
    // Several servers: the command gets the whole list (each of its workers picks one), and gc
    // covers each at the end.
    let servers = cfg.servers();
    let engine = Engine::start(cfg.clone()).await?;
    spinner.stop();
    let t = Instant::now();
    let status = tokio::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .envs(engine.worker_env())
        .status()
        .await
        .map_err(|e| format!("cannot run {:?}: {e}", cmd[0]))?;
    let took = t.elapsed();
    // On the embedded server every owner is a process of this machine: what is left of the
    // run's crashed processes goes now. A shared server's owners get the grace period (an
    // engine of another host may be reconnecting).
    let grace = if engine.is_embedded() { Duration::ZERO } else { cfg.gc_grace };
    let (mut dropped, mut left) = (0, 0);
    for server in if servers.len() > 1 { servers } else { vec![String::new()] } {
        let e = if server.is_empty() {
            engine.clone()
        } else {
            let run_id = Some(engine.run_id().to_owned());
            Engine::start(Config { url: Some(server.clone()), gc_on_start: false, run_id, ..cfg.clone() }).await?
        };
        // The run's end, as every runner reports it (kept schemas count as left here).
        let report = e.end_of_run(Some(grace)).await?;
        dropped += report.dropped.len();
        left += report.left.len() + report.kept.len();
        if !server.is_empty() {
            e.close().await?;
        }
    }
    eprintln!(
        "pgisolate run: {:?} exited with {} after {:.1} s; gc dropped {} orphaned schema(s); {} schema(s) of this run left (kept ones included)",
        cmd.join(" "),
        status,
        took.as_secs_f64(),
        dropped,
        left
    );
    engine.close().await?;
    Ok(match status.code() {
        Some(0) => 0,
        Some(c) => u8::try_from(c).unwrap_or(1),
        None => 1,
    })
}

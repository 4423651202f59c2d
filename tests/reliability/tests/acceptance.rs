//! Acceptance suite for the faults in RELIABILITY.md, against real PostgreSQL 15. Each case
//! runs under a hard deadline and asserts its expected outcome; the suite prints a table
//! (case, outcome, time) and fails if any case failed.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::time::{Duration, Instant};

use pgisolate::{Config, Engine, Identity, Migrations};
use tokio_postgres::{Client, NoTls};

type Outcome = Result<String, String>;
type Case = (&'static str, &'static str, u64, fn() -> Pin<Box<dyn Future<Output = Outcome> + Send>>);

fn migrations() -> Migrations {
    Migrations::dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/migrations"))
}

fn config(url: Option<String>) -> Config {
    let mut c = Config::from_env().unwrap();
    if url.is_some() {
        c.url = url;
    }
    c.gc_on_start = false;
    c
}

async fn connect(url: &str) -> Result<Client, String> {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(conn);
    Ok(c)
}

fn check(cond: bool, what: impl Into<String>) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// Warnings the engine started with `cfg` reports, collected for assertions.
fn collect_warnings(cfg: &mut Config) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let w = warnings.clone();
    cfg.on_warning = Some(std::sync::Arc::new(move |m: &str| w.lock().unwrap().push(m.to_owned())));
    warnings
}

/// The server's major version.
async fn server_major(c: &Client) -> i32 {
    c.query_one("select current_setting('server_version_num')::int / 10000", &[]).await.unwrap().get(0)
}

/// Tombstones (released schemas not dropped yet) on the server.
async fn tombstones(c: &Client) -> i64 {
    c.query_one("select count(*) from pg_namespace where nspname like 'pgi_tomb_%'", &[]).await.unwrap().get(0)
}

async fn exists(c: &Client, schema: &str) -> bool {
    c.query_one("select exists (select 1 from pg_namespace where nspname = $1)", &[&schema])
        .await
        .map(|r| r.get(0))
        .unwrap_or(true)
}

/// A unique string: time, process, counter.
fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{:x}{:x}{:x}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

fn private(settings: &'static [(&'static str, &'static str)]) -> Result<pgisolate::server::PrivateServer, String> {
    let dir = std::env::temp_dir().join(format!("pgisolate-rel-{}-{}", std::process::id(), unique()));
    pgisolate::server::start_private(&dir, settings).map_err(|e| e.to_string())
}

/// R1: 5,000 plain + 2,000 serial/text tables (about 33k locks) on default max_locks_per_transaction.
fn r1() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let srv = tokio::task::spawn_blocking(|| private(&[])).await.unwrap()?;
        let engine = Engine::start(config(Some(srv.url.clone()))).await.map_err(|e| e.to_string())?;
        let admin = connect(&srv.url).await?;
        let locks: String = admin.query_one("show max_locks_per_transaction", &[]).await.unwrap().get(0);
        check(locks == "64", format!("expected the default 64 locks, got {locks}"))?;
        let tpl = engine.template(Migrations::sql("create table seed (id int);")).await.map_err(|e| e.to_string())?;
        let s = engine.acquire(&tpl, Identity::new("R1", "many tables")).await.map_err(|e| e.to_string())?;
        let name = s.name().to_owned();
        let c = connect(s.url()).await?;
        for chunk in 0..10 {
            c.batch_execute(&format!(
                "do $$ begin for i in {} .. {} loop execute format('create table p%s (id int)', i); end loop; end $$;",
                chunk * 500,
                chunk * 500 + 499
            ))
            .await
            .map_err(|e| format!("create plain tables: {e}"))?;
        }
        for chunk in 0..8 {
            c.batch_execute(&format!(
                "do $$ begin for i in {} .. {} loop execute format('create table s%s (id serial primary key, t text)', i); end loop; end $$;",
                chunk * 250,
                chunk * 250 + 249
            ))
            .await
            .map_err(|e| format!("create serial tables: {e}"))?;
        }
        drop(c);
        let t = Instant::now();
        s.release().await.map_err(|e| format!("release: {e}"))?;
        engine.flush().await;
        check(!exists(&admin, &name).await, "schema survived")?;
        let tombs = tombstones(&admin).await;
        check(tombs == 0, format!("{tombs} tombstones left: a batch failed"))?;
        let rows: i64 = admin
            .query_one("select count(*) from pgisolate.leases where state <> 'released'", &[])
            .await
            .unwrap()
            .get(0);
        check(rows == 0, format!("{rows} registry rows left"))?;
        engine.close().await.map_err(|e| e.to_string())?;
        drop(admin);
        drop(srv);
        Ok(format!("7,000 tables dropped in batches in {:.1} s, no 53200", t.elapsed().as_secs_f64()))
    })
}

/// R3: the embedded server's settings.
fn r3() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let engine = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        check(engine.is_embedded(), "R3 needs the embedded server (the harness ignores it when a URL is set)")?;
        let c = connect(engine.url()).await?;
        let mut seen = Vec::new();
        let mut keys = vec!["max_locks_per_transaction", "idle_in_transaction_session_timeout"];
        match server_major(&c).await {
            // PostgreSQL 14 brought it; before that a dead client's query runs to its end.
            m if m < 14 => seen.push(format!("client_connection_check_interval: not in PostgreSQL {m}")),
            _ => keys.push("client_connection_check_interval"),
        }
        for k in keys {
            let v: String = c.query_one(&format!("show {k}"), &[]).await.unwrap().get(0);
            let ok = if k == "max_locks_per_transaction" { v.parse::<i64>().unwrap_or(0) >= 1024 } else { v != "0" };
            check(ok, format!("{k} = {v}"))?;
            seen.push(format!("{k}={v}"));
        }
        engine.close().await.map_err(|e| e.to_string())?;
        Ok(seen.join(", "))
    })
}

/// R9: foreign schemas are never dropped; dropping public is refused.
fn r9() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let engine = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        let c = connect(engine.url()).await?;
        c.batch_execute(
            "create schema if not exists test_deadbeef; create schema if not exists \"Test_X\"; \
             create schema if not exists tpl_users_own; create schema if not exists test_v2marker; \
             comment on schema test_v2marker is 'pgisolate:v2:schema owner=1 t=1'",
        )
        .await
        .unwrap();
        let report = engine.gc_with(Duration::ZERO, true).await.map_err(|e| e.to_string())?;
        for s in ["test_deadbeef", "Test_X", "tpl_users_own", "test_v2marker", "public", "information_schema"] {
            check(!report.dropped.iter().any(|d| d == s) && exists(&c, s).await, format!("{s} was dropped"))?;
        }
        check(engine.drop_schema("public").await.is_err(), "drop(\"public\") was not refused")?;
        c.batch_execute("drop schema test_deadbeef, \"Test_X\", tpl_users_own, test_v2marker").await.unwrap();
        engine.close().await.map_err(|e| e.to_string())?;
        Ok("none of 6 foreign schemas dropped; drop(public) refused".into())
    })
}

/// R10: 64 concurrent engines needing pgcrypto and uuid-ossp on a fresh database.
fn r10() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let srv = tokio::task::spawn_blocking(|| private(&[("max_connections", "400")])).await.unwrap()?;
        let mut tasks = Vec::new();
        for i in 0..64 {
            let url = srv.url.clone();
            tasks.push(tokio::spawn(async move {
                let mut cfg = config(Some(url));
                cfg.extensions = vec!["pgcrypto".into(), "uuid-ossp".into()];
                cfg.pool_size = 0;
                cfg.max_admin_connections = 2;
                let engine = Engine::start(cfg).await.map_err(|e| format!("engine {i}: {e}"))?;
                let tpl = engine
                    .template(Migrations::sql("create table ids (id uuid primary key default uuid_generate_v4(), h text default encode(digest('x', 'sha256'), 'hex'));"))
                    .await
                    .map_err(|e| format!("template {i}: {e}"))?;
                let s = engine.acquire(&tpl, Identity::new("R10", i.to_string())).await.map_err(|e| format!("acquire {i}: {e}"))?;
                let c = connect(s.url()).await?;
                c.execute("insert into ids default values", &[]).await.map_err(|e| format!("uuid in {}: {e}", s.name()))?;
                let _: String = c.query_one("select uuid_generate_v4()::text", &[]).await.map_err(|e| e.to_string())?.get(0);
                drop(c);
                s.release().await.map_err(|e| e.to_string())?;
                engine.close().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            }));
        }
        for t in tasks {
            t.await.unwrap()?;
        }
        let admin = connect(&srv.url).await?;
        let where_: Vec<String> = admin
            .query("select e.extname || '@' || n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname in ('pgcrypto', 'uuid-ossp') order by 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        check(where_ == ["pgcrypto@extensions", "uuid-ossp@extensions"], format!("extensions at {where_:?}"))?;
        drop(admin);
        drop(srv);
        Ok("64 engines, no 23505/XX000; both extensions once, in schema extensions".into())
    })
}

/// R13: forced collisions (1 hex character) never share a schema.
fn r13() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let mut cfg = config(None);
        cfg.unchecked_hash_len = true;
        cfg.hash_len = 1;
        let engine = Engine::start(cfg).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let mut held = Vec::new();
        for i in 0..40 {
            held.push(
                engine.acquire(&tpl, Identity::new("R13", format!("identity {i}"))).await.map_err(|e| e.to_string())?,
            );
        }
        let mut names: Vec<&str> = held.iter().map(|s| s.name()).collect();
        names.sort();
        names.dedup();
        check(names.len() == 40, format!("{} distinct names for 40 identities", names.len()))?;
        let short = held.iter().filter(|s| s.name().len() == "test_".len() + 1).count();
        for s in held {
            s.release().await.map_err(|e| e.to_string())?;
        }
        engine.close().await.map_err(|e| e.to_string())?;
        Ok(format!("40 identities on 16 one-character names: 40 distinct schemas ({short} kept the short name, the rest disambiguated)"))
    })
}

/// R12: hostile names give distinct valid names and inject nothing.
fn r12() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let engine = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let ids = [
            Identity::new("", ""),
            Identity::new("f", "x".repeat(10_240)),
            Identity::new("f", "🐘✨"),
            Identity::new("f", "caf\u{e9}"),
            Identity::new("f", "cafe\u{301}"),
            Identity::new("f", "'\";DROP SCHEMA public;--"),
            Identity::new("f", "x -c default_transaction_read_only=on"),
            Identity::new("a:b", "c"),
            Identity::new("a", "b:c"),
            Identity::new("o", "outline").with_discriminator("1"),
            Identity::new("o", "outline").with_discriminator("2"),
            Identity::new("one", "same title"),
            Identity::new("two", "same title"),
        ];
        let mut held = Vec::new();
        for id in ids {
            let s = engine.acquire(&tpl, id).await.map_err(|e| e.to_string())?;
            let ok = s.name().len() <= 63
                && s.name().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            check(ok, format!("invalid name {}", s.name()))?;
            let c = connect(s.url()).await?;
            let ro: String = c.query_one("show default_transaction_read_only", &[]).await.unwrap().get(0);
            check(ro == "off", "options injection")?;
            held.push(s);
        }
        let mut names: Vec<String> = held.iter().map(|s| s.name().to_owned()).collect();
        names.sort();
        names.dedup();
        check(names.len() == 13, "two hostile identities shared a name")?;
        for s in held {
            s.release().await.map_err(|e| e.to_string())?;
        }
        engine.close().await.map_err(|e| e.to_string())?;
        Ok("13 hostile identities: 13 distinct valid names, read_only stays off".into())
    })
}

/// R4: a leaked idle-in-transaction connection holding AccessShare does not hang teardown.
fn r4() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let mut cfg = config(None);
        let warnings = collect_warnings(&mut cfg);
        let engine = Engine::start(cfg).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let s = engine.acquire(&tpl, Identity::new("R4", "leaks a transaction")).await.map_err(|e| e.to_string())?;
        let leaked = connect(s.url()).await?;
        leaked.batch_execute("begin; select count(*) from users").await.map_err(|e| e.to_string())?;
        // Another test is not blocked meanwhile.
        let other = engine.acquire(&tpl, Identity::new("R4", "bystander")).await.map_err(|e| e.to_string())?;
        let t = Instant::now();
        s.release().await.map_err(|e| e.to_string())?;
        engine.flush().await;
        let took = t.elapsed();
        check(took < Duration::from_secs(10), format!("teardown took {took:?}"))?;
        check(leaked.simple_query("select 1").await.is_err(), "the leaked backend is still alive")?;
        let w = warnings.lock().unwrap().join(" ");
        check(
            w.contains("leaked connection") && w.contains("leaks a transaction"),
            format!("no warning naming the test: {w:?}"),
        )?;
        other.release().await.map_err(|e| e.to_string())?;
        engine.close().await.map_err(|e| e.to_string())?;
        Ok(format!("teardown in {} ms, leaked backend terminated, warning names the test", took.as_millis()))
    })
}

/// R5: a leaked pool keeps reconnecting with the test's URL during and after teardown: teardown
/// completes, and the reconnections never reach the next run's schema of the same scenario.
fn r5() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let engine = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let id = Identity::new("R5", "leaked pool reconnects");
        let s = engine.acquire(&tpl, id.clone()).await.map_err(|e| e.to_string())?;
        let (first, url) = (s.name().to_owned(), s.url().to_owned());
        let held = connect(&url).await?;
        held.execute("insert into users (email) values ('first@run')", &[]).await.map_err(|e| e.to_string())?;
        // The leaked pool: reconnects and queries in a loop, recording where it landed.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Each attempt records whether it started connecting after release returned: a session
        // that connected before may still finish a statement on the old schema's tables.
        let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(bool, Result<String, String>)>::new()));
        let leak = {
            let (stop, seen, url, released) = (stop.clone(), seen.clone(), url.clone(), released.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let after_release = released.load(std::sync::atomic::Ordering::SeqCst);
                    let r = match tokio_postgres::connect(&url, NoTls).await {
                        Ok((c, conn)) => {
                            tokio::spawn(conn);
                            c.query_one(
                                "select current_schema()::text, (select string_agg(email, ',') from users)",
                                &[],
                            )
                            .await
                            .map(|r| format!("{:?}:{:?}", r.get::<_, Option<String>>(0), r.get::<_, Option<String>>(1)))
                            .map_err(|e| e.as_db_error().map(|d| d.message().to_owned()).unwrap_or(e.to_string()))
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    seen.lock().unwrap().push((after_release, r));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        s.release().await.map_err(|e| e.to_string())?;
        let release_ms = t.elapsed().as_millis();
        released.store(true, std::sync::atomic::Ordering::SeqCst);
        // The next run of the same scenario, in this engine and in another live one.
        let next = engine.acquire(&tpl, id.clone()).await.map_err(|e| e.to_string())?;
        let other = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        let next_other = other.acquire(&tpl, id.clone()).await.map_err(|e| e.to_string())?;
        for n in [&next, &next_other] {
            let c = connect(n.url()).await?;
            c.execute("insert into users (email) values ('next@run')", &[]).await.map_err(|e| e.to_string())?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        leak.await.unwrap();
        // The release gives the test's sessions up to a second to close on their own before it
        // ends them.
        let t = Instant::now();
        while held.simple_query("select 1").await.is_ok() && t.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        check(held.simple_query("select 1").await.is_err(), "the leaked connection held at release is still alive")?;
        check(next.name() != first && next_other.name() != first, format!("{first} was handed out again"))?;
        let seen = seen.lock().unwrap().clone();
        let after: Vec<&Result<String, String>> = seen.iter().filter(|(a, _)| *a).map(|(_, r)| r).collect();
        check(after.len() >= 10, format!("the leaked pool reconnected only {} times", after.len()))?;
        for r in &after {
            match r {
                Ok(v) => return Err(format!("a reconnection after release landed somewhere: {v}")),
                Err(e) => check(e.contains("does not exist"), format!("unexpected error: {e}"))?,
            }
        }
        check(
            !seen.iter().any(|(_, r)| r.as_ref().is_ok_and(|v| v.contains("next@run"))),
            "the leaked pool saw the next run",
        )?;
        engine.flush().await;
        let admin = connect(engine.url()).await?;
        check(!exists(&admin, &first).await, "the released schema is still there")?;
        let tombs = tombstones(&admin).await;
        check(tombs == 0, "the tombstone was not dropped")?;
        let (n1, n2) = (next.name().to_owned(), next_other.name().to_owned());
        next.release().await.map_err(|e| e.to_string())?;
        next_other.release().await.map_err(|e| e.to_string())?;
        other.close().await.map_err(|e| e.to_string())?;
        engine.close().await.map_err(|e| e.to_string())?;
        Ok(format!(
            "release in {release_ms} ms; {} reconnections after it all got \"relation does not exist\"; next runs got {n1} and {n2}, not {first}",
            after.len()
        ))
    })
}

/// R11: the same scenario acquired twice at once gets two schemas and two cache prefixes.
fn r11() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let engine = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let id = Identity::new("R11", "repeated");
        let (a, b) = tokio::join!(engine.acquire(&tpl, id.clone()), engine.acquire(&tpl, id.clone()));
        let (a, b) = (a.map_err(|e| e.to_string())?, b.map_err(|e| e.to_string())?);
        check(a.name() != b.name() && a.cache_prefix() != b.cache_prefix(), "shared a schema or prefix")?;
        let cb = connect(b.url()).await?;
        cb.execute("insert into users (email) values ('b@x')", &[]).await.map_err(|e| e.to_string())?;
        let (an, bn) = (a.name().to_owned(), b.name().to_owned());
        a.release().await.map_err(|e| e.to_string())?;
        let n: i64 = cb.query_one("select count(*) from users", &[]).await.map_err(|e| e.to_string())?.get(0);
        check(n == 1, "releasing one touched the other")?;
        drop(cb);
        b.release().await.map_err(|e| e.to_string())?;
        engine.close().await.map_err(|e| e.to_string())?;
        Ok(format!("{an} and {bn}; releasing one left the other intact"))
    })
}

/// R14: every handed-out URL and key/value string lands in its schema with libpq (psql) and
/// tokio-postgres; the URL carries %3D/%20 and never '+'. (pgx, lib/pq, psycopg, asyncpg and
/// node-postgres are checked by their bindings' suites.)
fn r14() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let engine = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let s = engine.acquire(&tpl, Identity::new("R14", "drivers")).await.map_err(|e| e.to_string())?;
        check(
            s.url().contains("%3D") && s.url().contains("%20") && !s.url().contains('+'),
            format!("URL encoding: {}", s.url()),
        )?;
        for dsn in [s.url(), s.conninfo()] {
            let c = connect(dsn).await?;
            let got: String =
                c.query_one("select current_schema()::text", &[]).await.map_err(|e| e.to_string())?.get(0);
            check(got == s.name(), format!("tokio-postgres landed in {got}"))?;
            let out = std::process::Command::new("psql")
                .args([dsn, "-XAtqc", "select current_schema()"])
                .output()
                .map_err(|e| e.to_string())?;
            let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            check(got == s.name(), format!("psql landed in {got:?}: {}", String::from_utf8_lossy(&out.stderr)))?;
        }
        s.release().await.map_err(|e| e.to_string())?;
        engine.close().await.map_err(|e| e.to_string())?;
        Ok("URL and key/value land in the schema with psql and tokio-postgres".into())
    })
}

/// R15: the schema is dropped behind the engine's back before hand-out.
fn r15() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let engine = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let s =
            engine.acquire(&tpl, Identity::new("R15", "dropped behind our back")).await.map_err(|e| e.to_string())?;
        s.verify().await.map_err(|e| format!("a healthy schema failed the check: {e}"))?;
        let admin = connect(engine.url()).await?;
        admin.batch_execute(&format!("drop schema {} cascade", s.name())).await.unwrap();
        let t = Instant::now();
        let err = match s.verify().await {
            Ok(()) => return Err("the hand-out check passed for a dropped schema".into()),
            Err(e) => e.to_string(),
        };
        check(err.contains("hand-out check failed") && err.contains(s.name()), format!("unclear message: {err}"))?;
        let in_public: bool =
            admin.query_one("select to_regclass('public.users') is not null", &[]).await.unwrap().get(0);
        check(!in_public, "something landed in public")?;
        s.release().await.map_err(|e| e.to_string())?;
        engine.close().await.map_err(|e| e.to_string())?;
        Ok(format!("refused in {} ms: {}", t.elapsed().as_millis(), err.chars().take(90).collect::<String>()))
    })
}

/// Marked schemas whose marker names `owner`.
async fn owned_by(c: &Client, owner: i32) -> i64 {
    c.query_one(
        "select count(*) from pg_namespace where obj_description(oid, 'pg_namespace') like 'pgisolate:v1:%' \
         and obj_description(oid, 'pg_namespace') like '% owner=' || $1::text || ' %'",
        &[&owner.to_string()],
    )
    .await
    .unwrap()
    .get(0)
}

/// Waits until a collected warning contains `needle`; how long that took.
async fn wait_warning(w: &std::sync::Mutex<Vec<String>>, needle: &str, timeout: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if w.lock().unwrap().iter().any(|m| m.contains(needle)) {
            return Ok(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("no warning containing {needle:?} within {timeout:?}: {:?}", w.lock().unwrap()))
}

/// A driver error with the server's message (tokio-postgres's Display says only "db error").
fn pg(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// R22: an engine cut off from the server for longer than the grace period (what a network
/// partition looks like to the server: its sessions end and it cannot connect). Before the
/// grace period gc leaves it alone; after, gc fences it and reaps its schemas; when the link
/// is back the engine knows it lost its lease, fails the release of the schema its test held
/// with the reason, writes nothing into reaped schemas, and hands out new schemas. (The
/// netns suite, tests/hosts, does this with a real link.)
fn r22() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let srv = tokio::task::spawn_blocking(|| private(&[])).await.unwrap()?;
        let admin = connect(&srv.url).await?;
        admin.batch_execute("create role pgi_host_a superuser login").await.map_err(pg)?;
        let grace = Duration::from_secs(2);
        let mut cfg = config(Some(srv.url.replacen("postgres@", "pgi_host_a@", 1)));
        cfg.gc_grace = grace;
        let warnings = collect_warnings(&mut cfg);
        let a = Engine::start(cfg).await.map_err(|e| e.to_string())?;
        let mut bcfg = config(Some(srv.url.clone()));
        bcfg.gc_grace = grace;
        let b = Engine::start(bcfg).await.map_err(|e| e.to_string())?;
        let tpl = a.template(migrations()).await.map_err(|e| e.to_string())?;
        let held = a.acquire(&tpl, Identity::new("R22", "held across the cut")).await.map_err(|e| e.to_string())?;
        let kept = b.acquire(&tpl, Identity::new("R22", "host B's")).await.map_err(|e| e.to_string())?;
        let held_name = held.name().to_owned();
        a.flush().await; // the pool is full
        let old = a.owner();
        check(owned_by(&admin, old).await >= 2, "host A has no pool to lose")?;
        // The cut: no new session (committed before any is ended: in one batch, A could log in
        // again between the terminations and the commit), then every session ended, twice (a
        // login that read the role just before the commit shows up a moment later).
        admin.batch_execute("alter role pgi_host_a nologin").await.map_err(pg)?;
        for _ in 0..2 {
            admin
                .batch_execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = 'pgi_host_a'")
                .await
                .map_err(pg)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let noticed = wait_warning(&warnings, "lost the lease connection", Duration::from_secs(5)).await?;
        let early = b.gc().await.map_err(|e| e.to_string())?;
        check(
            early.dropped.is_empty() && early.fenced_owners.is_empty(),
            format!("gc within the grace period: {early:?}"),
        )?;
        check(exists(&admin, &held_name).await, "A's held schema reaped within the grace period")?;
        // A test of A's asks for a schema while the link is down: it waits for the lease.
        let a2 = a.clone();
        let tpl2 = tpl.clone();
        let waiting = tokio::spawn(async move { a2.acquire(&tpl2, Identity::new("R22", "after the cut")).await });
        tokio::time::sleep(grace + Duration::from_millis(700)).await;
        let late = b.gc().await.map_err(|e| e.to_string())?;
        check(
            late.fenced_owners == vec![old],
            format!("gc past the grace period fenced {:?}, not [{old}]", late.fenced_owners),
        )?;
        check(late.dropped.contains(&held_name), format!("gc did not reap A's held schema: {late:?}"))?;
        check(!waiting.is_finished(), "A handed out a schema while cut off")?;
        // The link is back.
        let back = Instant::now();
        admin.batch_execute("alter role pgi_host_a login").await.map_err(pg)?;
        let next = waiting.await.unwrap().map_err(|e| format!("acquire after the link came back: {e}"))?;
        let recovered = back.elapsed();
        check(a.owner() != old, "A kept its fenced owner key")?;
        let c = connect(next.url()).await?;
        c.batch_execute("insert into users (email) values ('after@example.com')").await.map_err(pg)?;
        let err = match held.release().await {
            Ok(r) => return Err(format!("the lost schema's release succeeded ({r:?})")),
            Err(e) => e,
        };
        let msg = err.to_string();
        check(
            err.kind() == pgisolate::ErrorKind::Lease && msg.contains(&held_name) && msg.contains("grace period"),
            format!("unclear error for the lost schema: {msg}"),
        )?;
        next.release().await.map_err(|e| e.to_string())?;
        a.flush().await;
        // Nothing of the fenced owner was written into or made again: all of it is gone.
        check(!exists(&admin, &held_name).await, "the lost schema came back")?;
        let left = owned_by(&admin, old).await;
        check(left == 0, format!("{left} schemas of the fenced owner left"))?;
        check(exists(&admin, kept.name()).await, "host B's live schema was reaped")?;
        kept.release().await.map_err(|e| e.to_string())?;
        a.close().await.map_err(|e| e.to_string())?;
        b.close().await.map_err(|e| e.to_string())?;
        Ok(format!(
            "cut noticed in {:.2} s; gc left A alone within the 2 s grace, fenced and reaped it after; link back → \
             new lease and a schema in {:.2} s; the held schema's release failed with the reason",
            noticed.as_secs_f64(),
            recovered.as_secs_f64()
        ))
    })
}

/// R23: the server restarts mid-run (a private server, then the embedded one): the test in
/// flight sees its connection end; the engine re-takes its lease; its schema is intact and
/// released normally; a gc right after the restart reaps nothing of a live engine's; later
/// tests pass.
fn r23() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let srv = tokio::task::spawn_blocking(|| private(&[])).await.unwrap()?;
        let mut out = Vec::new();
        let external = restart_case(config(Some(srv.url.clone())), {
            let srv = std::sync::Arc::new(srv);
            move || {
                let srv = srv.clone();
                Box::pin(async move { tokio::task::spawn_blocking(move || srv.restart()).await.unwrap() })
            }
        })
        .await?;
        out.push(format!("external: {external}"));
        if std::env::var_os("PGISOLATE_DATABASE_URL").is_none() {
            let mut pcfg = config(None);
            let _quiet = collect_warnings(&mut pcfg);
            let probe = Engine::start(pcfg).await.map_err(|e| e.to_string())?;
            let server = probe.server().cloned().ok_or("no embedded server")?;
            let embedded = restart_case(config(None), move || {
                let server = server.clone();
                Box::pin(async move { tokio::task::spawn_blocking(move || server.restart()).await.unwrap() })
            })
            .await?;
            probe.close().await.map_err(|e| e.to_string())?;
            out.push(format!("embedded: {embedded}"));
        }
        Ok(out.join("; "))
    })
}

type Restart = Box<dyn Fn() -> Pin<Box<dyn Future<Output = pgisolate::Result<()>> + Send>> + Send + Sync>;

async fn restart_case(
    mut cfg: Config,
    restart: impl Fn() -> Pin<Box<dyn Future<Output = pgisolate::Result<()>> + Send>> + Send + Sync + 'static,
) -> Result<String, String> {
    let restart: Restart = Box::new(restart);
    cfg.gc_grace = Duration::from_secs(5);
    let warnings = collect_warnings(&mut cfg);
    let a = Engine::start(cfg.clone()).await.map_err(|e| e.to_string())?;
    let tpl = a.template(migrations()).await.map_err(|e| e.to_string())?;
    let s = a.acquire(&tpl, Identity::new("R23", unique())).await.map_err(|e| e.to_string())?;
    let c = connect(s.url()).await?;
    c.batch_execute("insert into users (email) values ('before@example.com')").await.map_err(pg)?;
    a.flush().await;
    let owner = a.owner();
    let t = Instant::now();
    restart().await.map_err(|e| format!("restart: {e}"))?;
    let down = t.elapsed();
    // The test in flight: its connection is gone, with the server's message.
    let e = match c.batch_execute("select 1").await {
        Ok(()) => return Err("the test's connection survived the restart".into()),
        Err(e) => pg(e),
    };
    // Another engine's gc right after the restart (the lease lock is free until A re-takes
    // it): A was seen within the grace period, so nothing of it goes.
    let mut gcfg = cfg.clone();
    gcfg.on_warning = None;
    let other = Engine::start(gcfg).await.map_err(|e| e.to_string())?;
    let report = other.gc().await.map_err(|e| e.to_string())?;
    check(report.dropped.is_empty(), format!("gc after the restart reaped {:?}", report.dropped))?;
    // A later test passes.
    let next =
        a.acquire(&tpl, Identity::new("R23", unique())).await.map_err(|e| format!("acquire after restart: {e}"))?;
    let recovered = t.elapsed();
    check(a.owner() == owner, "the engine took a new owner key: it thought its lease was lost")?;
    let c2 = connect(next.url()).await?;
    let n: i64 = c2.query_one("select count(*) from users", &[]).await.map_err(pg)?.get(0);
    check(n == 0, format!("a new schema has {n} rows"))?;
    let c3 = connect(s.url()).await?;
    let kept: i64 = c3.query_one("select count(*) from users", &[]).await.map_err(pg)?.get(0);
    check(kept == 1, format!("the in-flight schema has {kept} rows after the restart, not 1"))?;
    drop((c2, c3));
    s.release().await.map_err(|e| format!("release after restart: {e}"))?;
    next.release().await.map_err(|e| e.to_string())?;
    let reconnected = wait_warning(&warnings, "lost the lease connection", Duration::from_secs(1)).await.is_ok();
    check(reconnected, "the engine never noticed the restart")?;
    other.close().await.map_err(|e| e.to_string())?;
    a.close().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "restart took {:.2} s; the test in flight got \"{}\"; next schema handed out {:.2} s after the restart began; \
         nothing reaped",
        down.as_secs_f64(),
        e.chars().take(60).collect::<String>(),
        recovered.as_secs_f64()
    ))
}

/// Opens connections to `url` into `hogs` until the server refuses one (at most 20).
async fn fill_server(url: &str, hogs: &mut Vec<tokio_postgres::Client>) -> Result<(), String> {
    loop {
        match tokio_postgres::connect(url, NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                hogs.push(c);
            }
            Err(_) => return Ok(()),
        }
        check(hogs.len() < 20, "max_connections was not reached")?;
    }
}

/// R21: max_connections nearly exhausted: a new engine waits 10 s for a slot, then fails with an actionable 53300
/// message; a running engine still tears down and reaps with the connections it holds.
fn r21() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let srv = tokio::task::spawn_blocking(|| {
            private(&[("max_connections", "12"), ("superuser_reserved_connections", "1")])
        })
        .await
        .unwrap()?;
        let mut cfg = config(Some(srv.url.clone()));
        cfg.pool_size = 0;
        let engine = Engine::start(cfg.clone()).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let s = engine.acquire(&tpl, Identity::new("R21", "crowded")).await.map_err(|e| e.to_string())?;
        let name = s.name().to_owned();
        // The engine's pooled admin connections go away: only its reserved one is left.
        {
            let c = connect(&srv.url).await?;
            let n: i64 = c
                .query_one(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name like 'pgisolate-admin%'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            check(n >= 1, "the engine held no pooled admin connection")?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut hogs = Vec::new();
        fill_server(&srv.url, &mut hogs).await?;
        // A full server: a new engine waits 10 s for a slot (another run may be ending), then
        // fails saying what a run needs.
        let t = Instant::now();
        let err = Engine::start(cfg.clone()).await.err().map(|e| e.to_string()).unwrap_or_default();
        let waited = t.elapsed();
        check(
            err.contains("no free connection slots") && err.contains("max_connections") && err.contains("waited 10 s"),
            format!("not actionable: {err}"),
        )?;
        check(
            waited >= Duration::from_secs(9) && waited < Duration::from_secs(14),
            format!("took {waited:?} to fail (it waits 10 s for a slot)"),
        )?;
        // Slots freed while an engine waits let it in: after a second, enough hogs leave for a
        // second engine and its test (3) beside the first (its lease, an admin connection and
        // its test: 3).
        let freed: Vec<_> = hogs.drain(..hogs.len().saturating_sub(5)).collect();
        let t = Instant::now();
        let (started, ()) = tokio::join!(Engine::start(cfg.clone()), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(freed);
        });
        let let_in = t.elapsed();
        let late = started.map_err(|e| format!("an engine waiting for freed slots: {e}"))?;
        check(let_in >= Duration::from_secs(1), format!("started in {let_in:?}, before the slots were freed"))?;
        late.close().await.map_err(|e| e.to_string())?;
        // Full again, for the teardown below.
        tokio::time::sleep(Duration::from_millis(200)).await;
        fill_server(&srv.url, &mut hogs).await?;
        s.release().await.map_err(|e| format!("teardown with a full server: {e}"))?;
        engine.flush().await;
        engine.gc_with(Duration::ZERO, false).await.map_err(|e| format!("reaping with a full server: {e}"))?;
        let gone: bool = hogs[0]
            .query_one(
                "select not exists (select 1 from pg_namespace where nspname = $1 or nspname like 'pgi_tomb_%')",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        check(gone, "the schema was not dropped through the reserved connection")?;
        drop(hogs);
        engine.close().await.map_err(|e| e.to_string())?;
        drop(srv);
        Ok(format!(
            "a new engine waited {:.1} s for a slot, then was refused with the 53300 advice; one waiting while slots \
             were freed after 1 s started in {:.1} s; pooled admin connections killed, the reserved one released, \
             dropped and reaped",
            waited.as_secs_f64(),
            let_in.as_secs_f64()
        ))
    })
}

/// Child processes: this test binary re-run with `PGI_REL_CHILD=<mode>` (see `child_entry`).
fn spawn_child(mode: &str, env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.env("PGI_REL_CHILD", mode).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// The rest of the first stdout line containing `tag` (stdout keeps being drained).
fn read_tagged(child: &mut std::process::Child, tag: &str, timeout: Duration) -> Result<String, String> {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = tag.to_owned();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(at) = line.find(&wanted) {
                let _ = tx.send(line[at + wanted.len()..].trim().to_owned());
            }
        }
    });
    rx.recv_timeout(timeout).map_err(|_| format!("child did not print {tag}"))
}

fn sigkill(child: &mut std::process::Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

/// Entry point of child processes (`main` calls it when `PGI_REL_CHILD` is set).
fn child_entry(mode: String) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let engine = Engine::start(config(None)).await.unwrap();
        match mode.as_str() {
            "hold" => {
                let tpl = engine.template(migrations()).await.unwrap();
                let mut names = Vec::new();
                let mut held = Vec::new();
                for i in 0..3 {
                    let s = engine.acquire(&tpl, Identity::new("R8 doomed run", i.to_string())).await.unwrap();
                    names.push(s.name().to_owned());
                    held.push(s);
                }
                println!("SCHEMAS {}", names.join(","));
                tokio::time::sleep(Duration::from_secs(120)).await;
            }
            "release_blocked" => {
                // R7: acquire, wait for the go file, release (its drop then waits on a lock held
                // by the parent), and idle until SIGKILLed.
                let tpl = engine.template(migrations()).await.unwrap();
                let s = engine.acquire(&tpl, Identity::new("R7", "ghost drop")).await.unwrap();
                println!("SCHEMA {}", s.name());
                let go = std::path::PathBuf::from(std::env::var("PGI_REL_GO").unwrap());
                while !go.exists() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                s.release().await.unwrap();
                tokio::time::sleep(Duration::from_secs(120)).await;
            }
            "build" => {
                let sql = std::env::var("PGI_REL_SQL").unwrap();
                let t = engine.template(Migrations::sql(sql)).await.unwrap();
                println!("BUILT {} {}", t.built_here(), t.schema());
                engine.close().await.unwrap();
            }
            other => panic!("unknown child mode {other}"),
        }
    });
}

/// R8: a test process SIGKILLed mid-test while another run is live: gc reaps only the dead
/// run's schemas.
fn r8() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let engine = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let mine = engine.acquire(&tpl, Identity::new("R8 live run", "survives")).await.map_err(|e| e.to_string())?;
        let mut child = spawn_child("hold", &[]);
        let theirs = tokio::task::spawn_blocking(move || {
            let r = read_tagged(&mut child, "SCHEMAS", Duration::from_secs(60));
            (r, child)
        })
        .await
        .unwrap();
        let (names, mut child) = theirs;
        let names: Vec<String> = names?.split(',').map(str::to_owned).collect();
        let before = engine.gc_with(Duration::ZERO, false).await.map_err(|e| e.to_string())?;
        check(names.iter().all(|n| !before.dropped.contains(n)), "gc reaped a live owner's schema")?;
        sigkill(&mut child);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = engine.gc_with(Duration::ZERO, false).await.map_err(|e| e.to_string())?;
        check(
            names.iter().all(|n| after.dropped.contains(n)),
            format!("not reaped: {names:?} vs {:?}", after.dropped),
        )?;
        check(!after.dropped.contains(&mine.name().to_owned()), "the live run's schema was reaped")?;
        let c = connect(mine.url()).await?;
        c.execute("insert into users (email) values ('alive@x')", &[]).await.map_err(|e| e.to_string())?;
        drop(c);
        mine.release().await.map_err(|e| e.to_string())?;
        engine.close().await.map_err(|e| e.to_string())?;
        Ok(format!("reaped exactly the killed run's {} schemas; the live run's schema kept working", names.len()))
    })
}

/// The server's deadlock count for the current database.
async fn deadlocks(c: &Client) -> i64 {
    c.query_one("select deadlocks from pg_stat_database where datname = current_database()", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// Waits until a backend matching `filter` (a WHERE clause on pg_stat_activity) exists; its pid.
async fn wait_backend(c: &Client, filter: &str, timeout: Duration) -> Result<i32, String> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if let Some(r) = c
            .query_opt(&format!("select pid from pg_stat_activity where {filter} limit 1"), &[])
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(r.get(0));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("no backend with {filter} within {timeout:?}"))
}

/// Waits until backend `pid` is gone; how long that took.
async fn wait_gone(c: &Client, pid: i32, timeout: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        let alive: bool = c
            .query_one("select exists (select 1 from pg_stat_activity where pid = $1)", &[&pid])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if !alive {
            return Ok(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("backend {pid} still there after {timeout:?}"))
}

/// R2: 4 workers tear down at once, each schema with 400 serial-PK tables, every DROP delayed
/// 1 s before commit; meanwhile an unrelated test creates 1,000 tables in one transaction.
fn r2() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let srv = tokio::task::spawn_blocking(|| private(&[])).await.unwrap()?;
        let admin = connect(&srv.url).await?;
        let locks: String = admin.query_one("show max_locks_per_transaction", &[]).await.unwrap().get(0);
        check(locks == "64", format!("expected the default 64 locks, got {locks}"))?;
        // The injected commit delay: every DROP of a test schema's objects sleeps 1 s before
        // its transaction can commit, so the 4 teardowns hold their locks at the same time.
        admin
            .batch_execute(
                "create function slow_drop() returns event_trigger language plpgsql as $$ begin \
                   if exists (select 1 from pg_event_trigger_dropped_objects() where schema_name like 'pgi_tomb_%' \
                              or schema_name like 'test_%') then perform pg_sleep(1); end if; end $$; \
                 create event trigger r2_slow_drop on sql_drop execute function slow_drop();",
            )
            .await
            .unwrap();
        let mut cfg = config(Some(srv.url.clone()));
        let warnings = collect_warnings(&mut cfg);
        cfg.pool_size = 0;
        let tpl_sql = "create table seed (id serial primary key);";
        let mut workers = Vec::new();
        for i in 0..4 {
            let engine = Engine::start(cfg.clone()).await.map_err(|e| e.to_string())?;
            let tpl = engine.template(Migrations::sql(tpl_sql)).await.map_err(|e| e.to_string())?;
            let s =
                engine.acquire(&tpl, Identity::new("R2", format!("worker {i}"))).await.map_err(|e| e.to_string())?;
            let c = connect(s.url()).await?;
            for chunk in 0..4 {
                c.batch_execute(&format!(
                    "do $$ begin for i in {} .. {} loop execute format('create table s%s (id serial primary key)', i); end loop; end $$;",
                    chunk * 100,
                    chunk * 100 + 99
                ))
                .await
                .map_err(|e| format!("worker {i} creates its tables: {e}"))?;
            }
            drop(c);
            workers.push((engine, s));
        }
        let bystander_engine = Engine::start(cfg.clone()).await.map_err(|e| e.to_string())?;
        let btpl = bystander_engine.template(Migrations::sql(tpl_sql)).await.map_err(|e| e.to_string())?;
        let bystander =
            bystander_engine.acquire(&btpl, Identity::new("R2", "bystander")).await.map_err(|e| e.to_string())?;
        let bc = connect(bystander.url()).await?;
        let names: Vec<String> = workers.iter().map(|(_, s)| s.name().to_owned()).collect();
        let t = Instant::now();
        let mut teardowns = Vec::new();
        for (engine, s) in workers {
            teardowns.push(tokio::spawn(async move {
                s.release().await.map_err(|e| format!("release: {e}"))?;
                engine.flush().await;
                let took = Instant::now();
                engine.close().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(took)
            }));
        }
        // While the teardowns hold their locks: 1,000 tables in one transaction.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let waiting: i64 = admin
            .query_one("select count(*) from pg_stat_activity where query ilike '%drop%' and state = 'active' and application_name like 'pgisolate-admin%'", &[])
            .await
            .unwrap()
            .get(0);
        let tb = Instant::now();
        bc.batch_execute(
            "begin; do $$ begin for i in 1 .. 1000 loop execute format('create table b%s (id int)', i); end loop; end $$; commit;",
        )
        .await
        .map_err(|e| format!("the unrelated test failed while 4 teardowns ran: {e}"))?;
        let bystander_ms = tb.elapsed().as_millis();
        for td in teardowns {
            td.await.unwrap()?;
        }
        let total = t.elapsed();
        let left: i64 = admin
            .query_one(
                "select count(*) from pg_namespace where nspname = any($1) or nspname like 'pgi_tomb_%'",
                &[&names],
            )
            .await
            .unwrap()
            .get(0);
        check(left == 0, format!("{left} schemas left after the 4 teardowns"))?;
        let w = warnings.lock().unwrap().join(" | ");
        check(w.is_empty(), format!("warnings: {w}"))?;
        check(waiting >= 2, format!("only {waiting} teardowns were running at once"))?;
        drop(bc);
        bystander.release().await.map_err(|e| e.to_string())?;
        bystander_engine.close().await.map_err(|e| e.to_string())?;
        drop(admin);
        drop(srv);
        Ok(format!(
            "4 teardowns of 400 serial tables each ({waiting} dropping at once, 1 s delay per DROP) done in {:.1} s; \
             1,000 tables created meanwhile in {bystander_ms} ms; no 53200",
            total.as_secs_f64()
        ))
    })
}

/// R6: a background thread of the test (its own connection, not tagged with the schema's
/// application_name) holds a lock on `b` while teardown drops `a` then `b`.
/// (a) Release renames first: the thread's next statement on `a` fails with "does not exist"
/// (by name it can no longer reach the schema, so no deadlock can form) and teardown finishes
/// when the thread's transaction ends. (b) A drop under the schema's own name (what gc,
/// `pgisolate gc` and a release whose rename timed out do): the thread then asks for `a`, a
/// real deadlock; the engine retries after 40P01 and the drop succeeds.
fn r6() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let mut cfg = config(None);
        let warnings = collect_warnings(&mut cfg);
        cfg.pool_size = 0;
        cfg.keep = pgisolate::Keep::Always;
        let engine = Engine::start(cfg.clone()).await.map_err(|e| e.to_string())?;
        let tpl = engine
            .template(Migrations::sql("create table a (id int primary key); create table b (id int);"))
            .await
            .map_err(|e| e.to_string())?;
        let admin = connect(engine.url()).await?;
        let background = |s: &pgisolate::Schema| {
            let dsn = format!("{} application_name=app-background", s.conninfo());
            async move {
                let (c, conn) = tokio_postgres::connect(&dsn, NoTls).await.map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                c.batch_execute("begin; lock table b in access share mode").await.map_err(|e| e.to_string())?;
                Ok::<_, String>(c)
            }
        };
        let oids = |name: String| {
            let admin = &admin;
            async move {
                let r = admin
                    .query_one(
                        "select to_regclass(quote_ident($1) || '.a')::oid, to_regclass(quote_ident($1) || '.b')::oid",
                        &[&name],
                    )
                    .await
                    .unwrap();
                (r.get::<_, u32>(0), r.get::<_, u32>(1))
            }
        };
        let waiting_on_b_holding_a = |(a, b): (u32, u32)| {
            format!(
                "application_name like 'pgisolate-admin%' and wait_event_type = 'Lock' and pid in \
                 (select pid from pg_locks where relation = {b} and not granted) and pid in \
                 (select pid from pg_locks where relation = {a} and granted)"
            )
        };

        // (a) release, with the default (drop) policy.
        let mut drop_cfg = cfg.clone();
        drop_cfg.keep = pgisolate::Keep::Never;
        let releaser = Engine::start(drop_cfg).await.map_err(|e| e.to_string())?;
        let s = releaser.acquire(&tpl, Identity::new("R6", "release")).await.map_err(|e| e.to_string())?;
        let ids = oids(s.name().to_owned()).await;
        let bg = background(&s).await?;
        let t = Instant::now();
        let released = s.release().await.map_err(|e| format!("the background thread failed the release: {e}"))?;
        wait_backend(&admin, &waiting_on_b_holding_a(ids), Duration::from_secs(10)).await?;
        let err = bg
            .batch_execute("select count(*) from a")
            .await
            .err()
            .map(|e| e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string()));
        check(
            err.as_deref().is_some_and(|e| e.contains("does not exist")),
            format!("the thread's statement on a: {err:?}"),
        )?;
        let _ = bg.batch_execute("rollback").await;
        releaser.flush().await;
        let a_ms = t.elapsed().as_millis();
        let tombs = tombstones(&admin).await;
        check(tombs == 0, "teardown (a) did not finish")?;
        drop(bg);
        releaser.close().await.map_err(|e| e.to_string())?;

        // (b) a drop under the schema's own name: a real deadlock.
        let s = engine.acquire(&tpl, Identity::new("R6", "drop by name")).await.map_err(|e| e.to_string())?;
        let name = s.name().to_owned();
        let ids = oids(name.clone()).await;
        let bg = background(&s).await?;
        check(s.release().await.map_err(|e| e.to_string())? == pgisolate::Released::Kept, "not kept")?;
        let before = deadlocks(&admin).await;
        let dropper = {
            let (engine, name) = (engine.clone(), name.clone());
            tokio::spawn(async move { engine.drop_schema(&name).await })
        };
        wait_backend(&admin, &waiting_on_b_holding_a(ids), Duration::from_secs(10)).await?;
        let bg_result = bg.batch_execute("lock table a in access share mode").await;
        let victim = match &bg_result {
            Err(e) if e.code().map(|c| c.code()) == Some("40P01") => "the background thread",
            Err(e) => return Err(format!("background thread: {e:?}")),
            Ok(()) => "the drop, which retried",
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = bg.batch_execute("rollback").await;
        drop(bg);
        dropper.await.unwrap().map_err(|e| format!("the deadlock failed the drop: {e}"))?;
        let after = deadlocks(&admin).await;
        check(after > before, "no deadlock happened")?;
        check(!exists(&admin, &name).await, "the schema survived")?;
        let w = warnings.lock().unwrap().join(" | ");
        check(!w.contains("failed"), format!("teardown reported a failure: {w}"))?;
        engine.close().await.map_err(|e| e.to_string())?;
        Ok(format!(
            "(a) release {released:?}; the thread's next statement got \"relation does not exist\"; teardown done in \
             {a_ms} ms; (b) deadlock detected, victim: {victim}; drop succeeded"
        ))
    })
}

/// R7: the teardown process is SIGKILLed while its DROP waits on a lock; a new run of the same
/// scenario starts at once.
fn r7() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let engine = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let admin = connect(engine.url()).await?;
        if server_major(&admin).await >= 14 {
            let interval: String = admin.query_one("show client_connection_check_interval", &[]).await.unwrap().get(0);
            check(interval != "0", "client_connection_check_interval is off")?;
        }
        let go = std::env::temp_dir().join(format!("pgisolate-r7-go-{}", std::process::id()));
        let _ = std::fs::remove_file(&go);
        let mut child =
            spawn_child("release_blocked", &[("PGI_REL_GO", go.to_str().unwrap()), ("PGISOLATE_RECYCLE", "0")]);
        let (old, mut child) = tokio::task::spawn_blocking(move || {
            let r = read_tagged(&mut child, "SCHEMA", Duration::from_secs(60));
            (r, child)
        })
        .await
        .unwrap();
        let old = match old {
            Ok(o) => o,
            Err(e) => {
                sigkill(&mut child);
                return Err(e);
            }
        };
        let old_oid: u32 =
            admin.query_one("select oid from pg_namespace where nspname = $1", &[&old]).await.unwrap().get(0);
        // A blocker (not tagged with the schema) holds a lock the teardown's DROP needs.
        let blocker = connect(engine.url()).await?;
        blocker
            .batch_execute(&format!("begin; lock table \"{old}\".users in access share mode"))
            .await
            .map_err(|e| e.to_string())?;
        std::fs::write(&go, b"go").unwrap();
        let ghost = wait_backend(
            &admin,
            "application_name like 'pgisolate-admin%' and wait_event_type = 'Lock' and query ilike '%drop%'",
            Duration::from_secs(20),
        )
        .await;
        let ghost = match ghost {
            Ok(p) => p,
            Err(e) => {
                sigkill(&mut child);
                return Err(e);
            }
        };
        sigkill(&mut child);
        let _ = std::fs::remove_file(&go);
        // The new run of the same scenario starts at once.
        let fresh = engine.acquire(&tpl, Identity::new("R7", "ghost drop")).await.map_err(|e| e.to_string())?;
        let fresh_oid: u32 =
            admin.query_one("select oid from pg_namespace where nspname = $1", &[&fresh.name()]).await.unwrap().get(0);
        check(fresh_oid != old_oid, "the new run got the old schema")?;
        let tomb: Option<String> =
            admin.query_one("select nspname::text from pg_namespace where oid = $1", &[&old_oid]).await.unwrap().get(0);
        let c = connect(fresh.url()).await?;
        c.execute("insert into users (email) values ('new@run')", &[]).await.map_err(|e| e.to_string())?;
        // The ghost DROP is reaped while the blocker still holds its lock.
        let gone = wait_gone(&admin, ghost, Duration::from_secs(10)).await?;
        let still_held: bool = blocker
            .query_one("select exists (select 1 from pg_locks where pid = pg_backend_pid() and relation is not null and granted)", &[])
            .await
            .unwrap()
            .get(0);
        check(still_held, "the blocker's lock went away first")?;
        blocker.batch_execute("commit").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n: i64 = c.query_one("select count(*) from users", &[]).await.map_err(|e| format!("new run: {e}"))?.get(0);
        check(n == 1, "the new run's data is gone")?;
        drop(c);
        // The same with a plain client and no lock_timeout: only the connection check reaps it
        // (PostgreSQL 14 brought it; before, the killed client's DROP waits for its lock).
        let raw_gone = if server_major(&admin).await >= 14 {
            admin.batch_execute("create schema r7_ghost; create table r7_ghost.t (id int)").await.unwrap();
            blocker.batch_execute("begin; lock table r7_ghost.t in access share mode").await.unwrap();
            let mut psql = std::process::Command::new("psql")
                .args([engine.url(), "-Xqc", "set lock_timeout = 0; drop schema r7_ghost cascade"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?;
            let raw = wait_backend(
                &admin,
                "application_name = 'psql' and wait_event_type = 'Lock' and query ilike '%r7_ghost%'",
                Duration::from_secs(10),
            )
            .await?;
            sigkill(&mut psql);
            let raw_gone = wait_gone(&admin, raw, Duration::from_secs(10)).await?;
            blocker.batch_execute("commit").await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            check(exists(&admin, "r7_ghost").await, "the killed client's DROP ran after its lock was freed")?;
            admin.batch_execute("drop schema r7_ghost cascade").await.unwrap();
            Some(raw_gone)
        } else {
            None
        };
        // The dead run's tombstone is reaped by gc; the new run's schema survives.
        let report = engine.gc_with(Duration::ZERO, false).await.map_err(|e| e.to_string())?;
        check(exists(&admin, fresh.name()).await, "gc or the ghost dropped the new run's schema")?;
        let old_left: bool = admin
            .query_one("select exists (select 1 from pg_namespace where oid = $1)", &[&old_oid])
            .await
            .unwrap()
            .get(0);
        check(!old_left, format!("the dead run's schema {tomb:?} was not reaped (gc: {:?})", report.failed))?;
        let fresh_name = fresh.name().to_owned();
        fresh.release().await.map_err(|e| e.to_string())?;
        engine.close().await.map_err(|e| e.to_string())?;
        Ok(format!(
            "new run got {fresh_name} (old {old} was renamed to {}); ghost DROP reaped in {} ms with the lock still held \
             (plain client, no lock_timeout: {}); tombstone reaped by gc",
            tomb.unwrap_or_default(),
            gone.as_millis(),
            match raw_gone {
                Some(d) => format!("{} ms", d.as_millis()),
                None => "not reaped before PostgreSQL 14, which has no client_connection_check_interval".into(),
            }
        ))
    })
}

/// The SQLSTATE of a statement's error ("ok" when it succeeded).
async fn sqlstate(c: &Client, sql: &str) -> String {
    match c.batch_execute(sql).await {
        Ok(()) => "ok".into(),
        Err(e) => e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| e.to_string()),
    }
}

/// Least privilege: a LOGIN role per schema that can use only its own schema (and the shared
/// extensions), with its search_path on the role; reaped with the schema, and by gc.
fn roles() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let mut cfg = config(None);
        cfg.login_role = true;
        cfg.extensions = vec!["pgcrypto".into()];
        let warnings = collect_warnings(&mut cfg);
        let engine = Engine::start(cfg.clone()).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let a = engine.acquire(&tpl, Identity::new("roles", "a")).await.map_err(|e| e.to_string())?;
        let b = engine.acquire(&tpl, Identity::new("roles", "b")).await.map_err(|e| e.to_string())?;
        let role = a.role().ok_or("no role")?.to_owned();
        check(a.url().contains(&role) && !a.url().contains("options="), format!("URL: {}", a.url()))?;
        a.verify().await.map_err(|e| e.to_string())?;
        let admin = connect(engine.url()).await?;
        let foreign: i64 = admin
            .query_one(
                "select count(*) from pg_class c join pg_roles r on r.oid = c.relowner \
                 where c.relnamespace = to_regnamespace($1) and c.relkind in ('r','p','v','m','S','f') and r.rolname <> $2",
                &[&a.name(), &role],
            )
            .await
            .unwrap()
            .get(0);
        check(foreign == 0, format!("{foreign} objects in the schema are not the role's"))?;
        for dsn in [a.url(), a.conninfo()] {
            let c = connect(dsn).await?;
            let r = c.query_one("select current_user::text, current_schema()::text", &[]).await.unwrap();
            check(
                r.get::<_, String>(0) == role && r.get::<_, String>(1) == a.name(),
                format!("landed as {:?} in {:?}", r.get::<_, String>(0), r.get::<_, String>(1)),
            )?;
        }
        let c = connect(a.url()).await?;
        // Its own schema: everything (rows, the standalone sequence, the trigger, DDL).
        for sql in [
            "insert into users (email) values ('a@x')",
            "insert into products (category_id, name, price_cents) values (1, 'p', 1)",
            "insert into orders (user_id) values ((select id from users))",
            "alter table users add column nickname text",
            "create table scratch (id int)",
            "select digest('x', 'sha256')",
        ] {
            let st = sqlstate(&c, sql).await;
            check(st == "ok", format!("{sql}: {st}"))?;
        }
        // Anything else: refused, even by qualified name.
        let denied = [
            format!("select count(*) from \"{}\".users", b.name()),
            format!("insert into \"{}\".users (email) values ('x')", b.name()),
            format!("select count(*) from \"{}\".users", tpl.schema()),
            "select count(*) from pgisolate.leases".to_owned(),
            "create table public.stray (id int)".to_owned(),
            format!("drop schema \"{}\" cascade", b.name()),
        ];
        for sql in &denied {
            let st = sqlstate(&c, sql).await;
            check(st == "42501", format!("{sql}: {st}, expected 42501 (insufficient privilege)"))?;
        }
        drop(c);
        let url = a.url().to_owned();
        a.release().await.map_err(|e| e.to_string())?;
        engine.flush().await;
        let left: i64 =
            admin.query_one("select count(*) from pg_roles where rolname = $1", &[&role]).await.unwrap().get(0);
        check(left == 0, "the role outlived its schema")?;
        check(tokio_postgres::connect(&url, NoTls).await.is_err(), "the released role can still log in")?;
        // Recycling (no DDL ran): the schema goes back to the pool under a fresh role; the old
        // role is dropped, so the old URL cannot log in again.
        let d = engine.acquire(&tpl, Identity::new("roles", "recycled")).await.map_err(|e| e.to_string())?;
        let (d_role, d_url) = (d.role().unwrap().to_owned(), d.url().to_owned());
        let d_oid: u32 =
            admin.query_one("select oid from pg_namespace where nspname = $1", &[&d.name()]).await.unwrap().get(0);
        {
            let c = connect(&d_url).await?;
            c.execute("insert into users (email) values ('d@x')", &[]).await.map_err(|e| e.to_string())?;
        }
        let how = d.release().await.map_err(|e| e.to_string())?;
        check(how == pgisolate::Released::Recycled, format!("an untouched role schema was {how:?}, not recycled"))?;
        engine.flush().await;
        let left: i64 =
            admin.query_one("select count(*) from pg_roles where rolname = $1", &[&d_role]).await.unwrap().get(0);
        check(left == 0, "the recycled schema's old role survived")?;
        check(tokio_postgres::connect(&d_url, NoTls).await.is_err(), "the old role can still log in")?;
        let mut recycled_ok = false;
        for i in 0..4 {
            let e = engine
                .acquire(&tpl, Identity::new("roles", format!("after recycle {i}")))
                .await
                .map_err(|e| e.to_string())?;
            let c = connect(e.url()).await?;
            let n: i64 = c.query_one("select count(*) from users", &[]).await.map_err(|e| e.to_string())?.get(0);
            let user: String = c.query_one("select current_user::text", &[]).await.unwrap().get(0);
            check(n == 0 && user != d_role, format!("a reused schema: {n} rows, user {user}"))?;
            let foreign: i64 = admin
                .query_one(
                    "select count(*) from pg_class c join pg_roles r on r.oid = c.relowner \
                     where c.relnamespace = to_regnamespace($1) and c.relkind in ('r','p','v','m','S','f') and r.rolname <> $2",
                    &[&e.name(), &user],
                )
                .await
                .unwrap()
                .get(0);
            check(foreign == 0, format!("{foreign} objects of {} are not its role's", e.name()))?;
            let oid: u32 =
                admin.query_one("select oid from pg_namespace where nspname = $1", &[&e.name()]).await.unwrap().get(0);
            recycled_ok |= oid == d_oid;
            drop(c);
            e.release().await.map_err(|e| e.to_string())?;
        }
        check(recycled_ok, "the recycled schema was never handed out again")?;
        // A burst: 16 tests at once (pool refills, recycling hand-overs and drops overlap).
        let mut burst = Vec::new();
        for i in 0..16 {
            let (engine, tpl) = (engine.clone(), tpl.clone());
            burst.push(tokio::spawn(async move {
                let s = engine
                    .acquire(&tpl, Identity::new("roles burst", i.to_string()))
                    .await
                    .map_err(|e| e.to_string())?;
                let c = connect(s.url()).await?;
                c.execute("insert into users (email) values ('burst@x')", &[]).await.map_err(|e| e.to_string())?;
                if i % 4 == 0 {
                    c.batch_execute("create table burst_ddl (id int)").await.map_err(|e| e.to_string())?;
                }
                drop(c);
                s.release().await.map_err(|e| e.to_string())
            }));
        }
        for b in burst {
            b.await.unwrap().map_err(|e| format!("burst: {e}"))?;
        }
        engine.flush().await;
        let w = warnings.lock().unwrap().join(" | ");
        check(!w.contains("could not") && !w.contains("failed"), format!("warnings: {w}"))?;
        // gc: a dead owner's schema takes its role along; a role whose schema vanished goes too.
        let dead = Engine::start(cfg.clone()).await.map_err(|e| e.to_string())?;
        let c1 = dead.acquire(&tpl, Identity::new("roles", "dead 1")).await.map_err(|e| e.to_string())?;
        let c2 = dead.acquire(&tpl, Identity::new("roles", "dead 2")).await.map_err(|e| e.to_string())?;
        let (r1, r2) = (c1.role().unwrap().to_owned(), c2.role().unwrap().to_owned());
        admin.batch_execute(&format!("drop schema \"{}\" cascade", c2.name())).await.unwrap();
        std::mem::forget(c1);
        std::mem::forget(c2);
        dead.close().await.map_err(|e| e.to_string())?;
        drop(dead);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let report = engine.gc_with(Duration::ZERO, false).await.map_err(|e| e.to_string())?;
        let left: i64 = admin
            .query_one("select count(*) from pg_roles where rolname = any($1)", &[&vec![r1.clone(), r2.clone()]])
            .await
            .unwrap()
            .get(0);
        check(left == 0 && report.dropped_roles.contains(&r2), format!("gc left roles: {report:?}"))?;
        b.release().await.map_err(|e| e.to_string())?;
        // (The engine stays open to the end: its lease keeps the embedded server up.)
        // Password authentication for real (the embedded server trusts 127.0.0.1): a server of
        // its own whose pg_hba asks every role but postgres for SCRAM passwords.
        let hba = std::env::temp_dir().join(format!("pgisolate-rel-hba-{}.conf", std::process::id()));
        std::fs::write(
            &hba,
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .map_err(|e| e.to_string())?;
        let hba_setting: &'static str = Box::leak(format!("{}", hba.display()).into_boxed_str());
        let settings: &'static [(&'static str, &'static str)] = Box::leak(Box::new([("hba_file", hba_setting)]));
        let srv = tokio::task::spawn_blocking(move || private(settings)).await.unwrap()?;
        let scram = async {
            let mut pcfg = config(Some(srv.url.clone()));
            pcfg.login_role = true;
            let e = Engine::start(pcfg).await.map_err(|e| e.to_string())?;
            let t = e.template(migrations()).await.map_err(|e| e.to_string())?;
            let s = e.acquire(&t, Identity::new("roles", "scram")).await.map_err(|e| e.to_string())?;
            for dsn in [s.url(), s.conninfo()] {
                verify_url(dsn, s.name()).await.map_err(|e| format!("password login: {e}"))?;
                let out = std::process::Command::new("psql")
                    .args([dsn, "-XAtqc", "select current_schema()"])
                    .output()
                    .map_err(|e| e.to_string())?;
                let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                check(got == s.name(), format!("psql: {got:?} {}", String::from_utf8_lossy(&out.stderr)))?;
            }
            let wrong = s.conninfo().replace("password=", "password=x");
            check(tokio_postgres::connect(&wrong, NoTls).await.is_err(), "a wrong password was accepted")?;
            s.release().await.map_err(|e| e.to_string())?;
            e.close().await.map_err(|e| e.to_string())
        }
        .await;
        drop(srv);
        let _ = std::fs::remove_file(&hba);
        scram?;
        // An admin that is not a superuser, only CREATEROLE and the owner of its database.
        admin.batch_execute("create role pgi_ci_admin login createrole").await.unwrap();
        admin.batch_execute("create database pgi_roles_db owner pgi_ci_admin").await.unwrap();
        let mut ncfg =
            config(Some(engine.url().replacen("postgres://postgres@", "postgres://pgi_ci_admin@", 1).replacen(
                "/postgres?",
                "/pgi_roles_db?",
                1,
            )));
        ncfg.login_role = true;
        let plain = async {
            let e = Engine::start(ncfg.clone()).await.map_err(|e| format!("CREATEROLE admin: {e}"))?;
            let t = e.template(migrations()).await.map_err(|e| e.to_string())?;
            let s = e.acquire(&t, Identity::new("roles", "createrole admin")).await.map_err(|e| e.to_string())?;
            s.verify().await.map_err(|e| e.to_string())?;
            let c = connect(s.url()).await?;
            let st = sqlstate(&c, "insert into users (email) values ('n@x'); alter table users add column n int").await;
            check(st == "ok", format!("the role in a CREATEROLE admin's schema: {st}"))?;
            drop(c);
            let r = s.role().unwrap().to_owned();
            s.release().await.map_err(|e| e.to_string())?;
            e.flush().await;
            e.close().await.map_err(|e| e.to_string())?;
            let left: i64 =
                admin.query_one("select count(*) from pg_roles where rolname = $1", &[&r]).await.unwrap().get(0);
            check(left == 0, "a CREATEROLE admin left its role behind")
        }
        .await;
        // Without CREATEROLE: a clear configuration error.
        admin.batch_execute("alter role pgi_ci_admin nocreaterole").await.unwrap();
        let refused = Engine::start(ncfg).await.err().map(|e| e.to_string()).unwrap_or_default();
        // (`DROP DATABASE … WITH (FORCE)` needs PostgreSQL 13: the sessions are ended first.)
        admin
            .batch_execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = 'pgi_roles_db'")
            .await
            .unwrap();
        let mut tries = 0;
        while let Err(e) = admin.batch_execute("drop database pgi_roles_db").await {
            tries += 1;
            if e.code().map(|c| c.code()) != Some("55006") || tries > 50 {
                return Err(format!("drop database pgi_roles_db: {}", pg(e)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        admin.batch_execute("drop role pgi_ci_admin").await.unwrap();
        plain?;
        check(refused.contains("CREATEROLE"), format!("without CREATEROLE: {refused:?}"))?;
        // Closing drains the pool (whose schemas have their roles); count right after, while
        // the embedded server is still up.
        engine.close().await.map_err(|e| e.to_string())?;
        let all: i64 =
            admin.query_one("select count(*) from pg_roles where rolname like 'pgir\\_%'", &[]).await.unwrap().get(0);
        check(all == 0, format!("{all} pgisolate roles left"))?;
        Ok(format!(
            "role owns its schema; {} foreign objects refused with 42501; role dropped with its schema and by gc; \
             recycled under a fresh role; 16 at once; SCRAM password login (psql, tokio-postgres); works under a CREATEROLE \
             (non-superuser) admin, refused clearly without CREATEROLE",
            denied.len()
        ))
    })
}

/// R18: the template builder SIGKILLed halfway; then 8 processes race to build it.
fn r18() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let engine = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        let sql = format!("-- {}\ncreate table t (id int); select pg_sleep(1);", unique());
        let mut first = spawn_child("build", &[("PGI_REL_SQL", &sql)]);
        tokio::time::sleep(Duration::from_millis(600)).await;
        sigkill(&mut first);
        let mut racers: Vec<std::process::Child> =
            (0..8).map(|_| spawn_child("build", &[("PGI_REL_SQL", &sql)])).collect();
        let results = tokio::task::spawn_blocking(move || {
            racers
                .iter_mut()
                .map(|c| {
                    let r = read_tagged(c, "BUILT", Duration::from_secs(90));
                    let _ = c.wait();
                    r
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        let mut built = 0;
        let mut names = Vec::new();
        for r in results {
            let r = r?;
            if r.starts_with("true") {
                built += 1;
            }
            names.push(r.split(' ').nth(1).unwrap_or("").to_owned());
        }
        names.dedup();
        check(built == 1, format!("{built} processes built the template"))?;
        check(names.len() == 1, format!("racers used different templates: {names:?}"))?;
        engine.gc_with(Duration::ZERO, false).await.map_err(|e| e.to_string())?;
        let admin = connect(engine.url()).await?;
        // This template's builds only: other cases build their own templates on the same
        // server at the same time (tpl_<fp16> is built in tpl_build_<fp16>_<owner>).
        let fp16 = names[0].strip_prefix("tpl_").unwrap_or_default().to_owned();
        check(fp16.len() == 16, format!("unexpected template name {:?}", names[0]))?;
        let partial: i64 = admin
            .query_one(
                "select count(*) from pg_namespace where nspname like 'tpl\\_build\\_' || $1 || '\\_%'",
                &[&fp16],
            )
            .await
            .unwrap()
            .get(0);
        check(partial == 0, format!("{partial} partial builds of {} left", names[0]))?;
        engine.close().await.map_err(|e| e.to_string())?;
        Ok("builder killed mid-build; of 8 racers exactly 1 built; partial build reaped".into())
    })
}

async fn catalog_size(admin: &Client) -> i64 {
    admin
        .query_one(
            "select sum(pg_total_relation_size(c.oid))::int8 from pg_class c \
             where c.relnamespace = 'pg_catalog'::regnamespace and c.relkind = 'r'",
            &[],
        )
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
}

/// R20: a soak run of acquire/release cycles on the engine-owned server.
fn r20() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let cycles: usize = std::env::var("PGI_SOAK_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
        let engine = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        engine.flush().await;
        let admin = connect(engine.url()).await?;
        let start_size = catalog_size(&admin).await;
        let mut times = Vec::with_capacity(cycles);
        for i in 0..cycles {
            let t = Instant::now();
            let s = engine
                .acquire(&tpl, Identity::new("R20 soak", (i % 50).to_string()))
                .await
                .map_err(|e| e.to_string())?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            admin
                .execute(&format!("insert into {}.users (email) values ('soak@x')", s.name()), &[])
                .await
                .map_err(|e| e.to_string())?;
            s.release().await.map_err(|e| e.to_string())?;
        }
        engine.flush().await;
        let end_size = catalog_size(&admin).await;
        let p95 = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(|a, b| a.total_cmp(b));
            v[(v.len() as f64 * 0.95) as usize]
        };
        let window = (cycles / 10).max(1);
        let (first, last) = (p95(&times[..window]), p95(&times[cycles - window..]));
        let orphans: i64 = admin
            .query_one(
                "select count(*) from pgisolate.leases where identity like 'R20 soak%' and state <> 'released'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        check(orphans == 0, format!("{orphans} orphan registry rows"))?;
        check(end_size < 300 * 1024 * 1024, format!("catalog grew to {} MB", end_size / 1024 / 1024))?;
        check(last <= 2.5 * first.max(0.2), format!("p95 acquire went from {first:.2} to {last:.2} ms"))?;
        engine.close().await.map_err(|e| e.to_string())?;
        // The names it released stay reserved only while it lives: the next gc prunes them.
        let next = Engine::start(config(None)).await.map_err(|e| e.to_string())?;
        next.gc_with(Duration::ZERO, false).await.map_err(|e| e.to_string())?;
        let rows: i64 = admin
            .query_one("select count(*) from pgisolate.leases where identity like 'R20 soak%'", &[])
            .await
            .unwrap()
            .get(0);
        check(rows == 0, format!("{rows} released-name rows left after the owner ended"))?;
        next.close().await.map_err(|e| e.to_string())?;
        Ok(format!(
            "{cycles} cycles, 0 orphans, catalog {:.1} -> {:.1} MB, p95 acquire {first:.2} -> {last:.2} ms",
            start_size as f64 / 1048576.0,
            end_size as f64 / 1048576.0
        ))
    })
}

/// A pgbouncer 1.18 of the test's own in front of `pg_url`, killed when dropped.
struct Bouncer {
    child: std::process::Child,
    dir: std::path::PathBuf,
    url: String,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bouncer(pg_url: &str, extra: &str) -> Result<Bouncer, String> {
    bouncer_with(pg_url, extra, &[])
}

/// [`bouncer`] that also knows `users` (pgbouncer's trust mode still needs each user listed).
fn bouncer_with(pg_url: &str, extra: &str, users: &[String]) -> Result<Bouncer, String> {
    let pg_port = pg_url.rsplit(':').next().and_then(|p| p.split('/').next()).unwrap_or("5432").to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("pgisolate-bouncer-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut list = String::from("\"postgres\" \"\"\n");
    for u in users {
        list.push_str(&format!("\"{u}\" \"\"\n"));
    }
    std::fs::write(dir.join("users.txt"), list).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("pgbouncer.ini"),
        format!(
            "[databases]\n* = host=127.0.0.1 port={pg_port}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = transaction\ndefault_pool_size = 2\n\
             logfile = {}\npidfile =\n{extra}\n",
            dir.join("users.txt").display(),
            dir.join("pgbouncer.log").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let exe = if std::path::Path::new("/usr/sbin/pgbouncer").exists() { "/usr/sbin/pgbouncer" } else { "pgbouncer" };
    // pgbouncer refuses to run as root.
    let mut cmd = if is_root() {
        let _ = std::process::Command::new("chown").args(["-R", "postgres", dir.to_str().unwrap()]).status();
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--clear-groups", exe]);
        c
    } else {
        std::process::Command::new(exe)
    };
    let child = cmd
        .arg(dir.join("pgbouncer.ini"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("start pgbouncer (apt-get install pgbouncer): {e}"))?;
    let b = Bouncer { child, dir, url: format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable") };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(b);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("pgbouncer did not start".into())
}

fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

/// R16: `public` writable by every role; a test's unqualified CREATE TABLE.
fn r16() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let srv = tokio::task::spawn_blocking(|| private(&[])).await.unwrap()?;
        let admin = connect(&srv.url).await?;
        admin.batch_execute("GRANT CREATE ON SCHEMA public TO PUBLIC").await.unwrap();
        let mut cfg = config(Some(srv.url.clone()));
        let warnings = collect_warnings(&mut cfg);
        let engine = Engine::start(cfg.clone()).await.map_err(|e| e.to_string())?;
        let w = warnings.lock().unwrap().join(" ");
        check(w.contains("public is writable by every role"), format!("no warning: {w:?}"))?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let s = engine.acquire(&tpl, Identity::new("R16", "unqualified create")).await.map_err(|e| e.to_string())?;
        check(
            !s.search_path().contains("public"),
            format!("public is in the default search_path: {}", s.search_path()),
        )?;
        let c = connect(s.url()).await?;
        let shown: String = c.query_one("show search_path", &[]).await.unwrap().get(0);
        check(!shown.contains("public"), format!("the session's search_path has public: {shown}"))?;
        c.batch_execute("create table scratch (id int)").await.map_err(|e| e.to_string())?;
        drop(c);
        let here: bool = admin
            .query_one("select to_regclass(quote_ident($1) || '.scratch') is not null", &[&s.name()])
            .await
            .unwrap()
            .get(0);
        let public: bool =
            admin.query_one("select to_regclass('public.scratch') is not null", &[]).await.unwrap().get(0);
        check(here && !public, "the table did not land in the test schema")?;
        // A schema gone from under a session: its CREATE TABLE fails instead of landing in public.
        let name = s.name().to_owned();
        let url = s.url().to_owned();
        s.release().await.map_err(|e| e.to_string())?;
        let straggler = connect(&url).await?;
        let err = straggler.batch_execute("create table stray (id int)").await.err().map(|e| e.to_string());
        check(err.is_some(), format!("a straggler of {name} created a table after release"))?;
        // A tail the user chose keeps public, with a warning.
        warnings.lock().unwrap().clear();
        let mut explicit = cfg.clone();
        explicit.search_path_tail = vec!["public".into()];
        explicit.search_path_tail_set = true;
        let e2 = Engine::start(explicit).await.map_err(|e| e.to_string())?;
        let w2 = warnings.lock().unwrap().join(" ");
        check(w2.contains("is in each test's search_path"), format!("no warning for an explicit tail: {w2:?}"))?;
        let s2 = e2.acquire(&tpl, Identity::new("R16", "explicit tail")).await.map_err(|e| e.to_string())?;
        check(s2.search_path().contains("public"), "an explicit tail was not used as given")?;
        s2.release().await.map_err(|e| e.to_string())?;
        e2.close().await.map_err(|e| e.to_string())?;
        let stray: bool = admin.query_one("select to_regclass('public.stray') is not null", &[]).await.unwrap().get(0);
        check(!stray, "a table landed in public")?;
        engine.close().await.map_err(|e| e.to_string())?;
        drop(straggler);
        drop(admin);
        drop(srv);
        Ok("warned; public left out of the default search_path; unqualified CREATE TABLE landed in the test schema, \
            a straggler's after release failed; an explicit tail keeps public, with a warning"
            .into())
    })
}

/// R17 and R19: PgBouncer 1.18 in transaction mode.
fn r17() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let srv = tokio::task::spawn_blocking(|| private(&[])).await.unwrap()?;
        // A schema made directly on the server, handed to tests that go through the pooler.
        let engine = Engine::start(config(Some(srv.url.clone()))).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        let s = engine.acquire(&tpl, Identity::new("R17", "through pgbouncer")).await.map_err(|e| e.to_string())?;
        let direct_port = srv.url.rsplit(':').next().and_then(|p| p.split('/').next()).unwrap().to_owned();
        let pg_url = srv.url.clone();

        // (a) default config: the startup option is rejected, with a clear message.
        let b = {
            let u = pg_url.clone();
            tokio::task::spawn_blocking(move || bouncer(&u, "")).await.unwrap()?
        };
        let via = s.url().replace(
            &format!(":{direct_port}/"),
            &format!(":{}/", b.url.rsplit(':').next().unwrap().split('/').next().unwrap()),
        );
        // The handed-out URL through the pooler, as an engine's own URL: its first connection
        // is refused the way a test's would be.
        let err = match Engine::start(config(Some(via.clone()))).await {
            Ok(_) => return Err("pgbouncer accepted the options startup parameter".into()),
            Err(e) => e.to_string(),
        };
        check(err.contains("unsupported startup parameter") && err.contains("pooler"), format!("unclear: {err}"))?;
        // R19: an engine refuses to take leases through the transaction pooler.
        let lease_err = match Engine::start(config(Some(b.url.clone()))).await {
            Ok(_) => return Err("an engine took a lease through a transaction pooler".into()),
            Err(e) => e.to_string(),
        };
        check(lease_err.contains("transaction-mode pooler"), format!("unclear: {lease_err}"))?;
        drop(b);

        // (b) ignore_startup_parameters=options: the hand-out check refuses; nothing lands in public.
        let b = {
            let u = pg_url.clone();
            tokio::task::spawn_blocking(move || bouncer(&u, "ignore_startup_parameters = options")).await.unwrap()?
        };
        let port_b = b.url.rsplit(':').next().unwrap().split('/').next().unwrap().to_owned();
        let via = s.url().replace(&format!(":{direct_port}/"), &format!(":{port_b}/"));
        let c = connect(&via).await?;
        let landed: Option<String> =
            c.query_one("select current_schema()::text", &[]).await.map_err(|e| e.to_string())?.get(0);
        check(landed.as_deref() != Some(s.name()), "the pooler kept search_path?")?;
        drop(c);
        let probe = s.verify().await;
        check(probe.is_ok(), "the direct URL must pass the check")?;
        // Emulate the test's view through the pooler: verify a schema whose URL points at it.
        let verr = verify_url(&via, s.name()).await;
        check(verr.is_err(), "the hand-out check passed through a pooler that drops options")?;
        let admin = connect(&srv.url).await?;
        let in_public: bool =
            admin.query_one("select to_regclass('public.users') is not null", &[]).await.unwrap().get(0);
        check(!in_public, "something landed in public")?;
        drop(b);
        s.release().await.map_err(|e| e.to_string())?;

        // (c) with a login role per schema, the default pgbouncer config works: no startup
        // options, the role's own search_path.
        let mut rcfg = config(Some(srv.url.clone()));
        rcfg.login_role = true;
        let rengine = Engine::start(rcfg).await.map_err(|e| e.to_string())?;
        let rs = rengine
            .acquire(&tpl_for(&rengine).await?, Identity::new("R17", "login role"))
            .await
            .map_err(|e| e.to_string())?;
        let b = {
            let (u, role) = (pg_url.clone(), rs.role().unwrap().to_owned());
            tokio::task::spawn_blocking(move || bouncer_with(&u, "", &[role])).await.unwrap()?
        };
        let port_c = b.url.rsplit(':').next().unwrap().split('/').next().unwrap().to_owned();
        let via = rs.url().replace(&format!(":{direct_port}/"), &format!(":{port_c}/"));
        verify_url(&via, rs.name()).await.map_err(|e| format!("(c) through pgbouncer with the role: {e}"))?;
        let c = connect(&via).await?;
        c.execute("insert into users (email) values ('via@bouncer')", &[]).await.map_err(|e| {
            format!("(c) insert: {}", e.as_db_error().map(|d| d.to_string()).unwrap_or_else(|| e.to_string()))
        })?;
        drop(c);
        drop(b);
        rs.release().await.map_err(|e| e.to_string())?;
        rengine.close().await.map_err(|e| e.to_string())?;
        engine.close().await.map_err(|e| e.to_string())?;
        drop(admin);
        drop(srv);
        Ok("(a) options rejected with pooler advice; R19 lease refused; (b) hand-out check refuses the dropped options; \
            (c) a login role per schema works through the default config"
            .into())
    })
}

/// The example template on `engine`'s server.
async fn tpl_for(engine: &Engine) -> Result<pgisolate::Template, String> {
    engine.template(migrations()).await.map_err(|e| e.to_string())
}

/// The hand-out check against an arbitrary URL (what `Schema::verify` does with its own).
async fn verify_url(url: &str, expected: &str) -> Result<(), String> {
    let c = connect(url).await?;
    let got: Option<String> =
        c.query_one("select current_schema()::text", &[]).await.map_err(|e| e.to_string())?.get(0);
    if got.as_deref() == Some(expected) {
        Ok(())
    } else {
        Err(format!("lands in {got:?}"))
    }
}

/// redis-server(s) of the test's own on free ports, killed (and their directory removed) when
/// dropped: `url` is what the engine gets, `cli` the arguments that point `redis-cli` at them.
struct Redis {
    children: Vec<std::process::Child>,
    dir: std::path::PathBuf,
    url: String,
    cli: Vec<String>,
}

impl Drop for Redis {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts one redis-server on `port` with `extra` arguments, waiting until it accepts
/// connections.
fn redis_server(dir: &std::path::Path, port: u16, extra: &[String]) -> Result<std::process::Child, String> {
    let mut child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("start redis-server (apt-get install redis-server): {e}"))?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("redis-server {extra:?} did not start"))
}

fn redis_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pgi-redis-{}-{}", std::process::id(), free_port()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn redis() -> Result<Redis, String> {
    redis_with(&[])
}

/// A plain redis-server with `extra` arguments (`--requirepass`, …).
fn redis_with(extra: &[&str]) -> Result<Redis, String> {
    let dir = redis_dir();
    let port = free_port();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let child = redis_server(&dir, port, &extra)?;
    let url = format!("redis://127.0.0.1:{port}");
    Ok(Redis { children: vec![child], dir, cli: vec!["-u".into(), url.clone()], url })
}

/// A redis-server that speaks only TLS, with a certificate from a CA made for the test.
fn redis_tls() -> Result<Redis, String> {
    let dir = redis_dir();
    let sh = |script: &str| -> Result<(), String> {
        let out = std::process::Command::new("sh").arg("-c").arg(script).current_dir(&dir).output();
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!("{script}: {}", String::from_utf8_lossy(&o.stderr))),
            Err(e) => Err(format!("sh: {e}")),
        }
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=pgisolate-test-ca 2>/dev/null \
        && openssl req -newkey rsa:2048 -nodes -keyout redis.key -out redis.csr -subj /CN=localhost 2>/dev/null \
        && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > san.ext \
        && openssl x509 -req -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out redis.crt -days 1 \
           -extfile san.ext 2>/dev/null")?;
    let port = free_port();
    let file = |f: &str| dir.join(f).display().to_string();
    let extra = vec![
        "--tls-port".into(),
        port.to_string(),
        "--tls-cert-file".into(),
        file("redis.crt"),
        "--tls-key-file".into(),
        file("redis.key"),
        "--tls-ca-cert-file".into(),
        file("ca.crt"),
        "--tls-auth-clients".into(),
        "no".into(),
    ];
    // --port 0 turns the plain port off; the TLS port is the one waited for.
    let mut child = std::process::Command::new("redis-server")
        .args(["--port", "0", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .args(&extra)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("start redis-server: {e}"))?;
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !up {
        let _ = child.kill();
        let _ = child.wait();
        return Err("redis-server with TLS did not start (built without TLS?)".into());
    }
    let cli = ["--tls", "--cacert", &file("ca.crt"), "-h", "127.0.0.1", "-p", &port.to_string()];
    Ok(Redis {
        children: vec![child],
        url: format!("rediss://127.0.0.1:{port}"),
        cli: cli.iter().map(|s| s.to_string()).collect(),
        dir,
    })
}

/// A three-primary Redis Cluster (no replicas), all slots assigned.
fn redis_cluster() -> Result<Redis, String> {
    let dir = redis_dir();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut children = Vec::new();
    for p in &ports {
        let extra: Vec<String> = ["--cluster-enabled", "yes", "--cluster-config-file"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("nodes-{p}.conf")])
            .collect();
        match redis_server(&dir, *p, &extra) {
            Ok(c) => children.push(c),
            Err(e) => {
                drop(Redis { children, dir, url: String::new(), cli: vec![] });
                return Err(e);
            }
        }
    }
    let redis = Redis {
        children,
        url: format!("redis://127.0.0.1:{}", ports[0]),
        cli: vec!["-c".into(), "-p".into(), ports[0].to_string()],
        dir,
    };
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = std::process::Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
    if !out.status.success() {
        return Err(format!("redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout)));
    }
    // Every node must know the whole slot map (the first one does before the others): a node
    // that does not yet answers some writes with CLUSTERDOWN.
    for _ in 0..100 {
        let mut ok = true;
        for p in &ports {
            let info = std::process::Command::new("redis-cli")
                .args(["-p", &p.to_string(), "cluster", "info"])
                .output()
                .map_err(|e| e.to_string())?;
            ok &= String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok");
        }
        if ok {
            return Ok(redis);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("the Redis cluster never reached cluster_state:ok".into())
}

/// One command through `redis-cli` (formatted replies): `(nil)` is None, `(integer) n` is n,
/// a quoted string is its text.
async fn redis_cli(cli: Vec<String>, args: Vec<String>) -> Result<Option<String>, String> {
    let out = tokio::process::Command::new("redis-cli")
        .arg("--no-raw")
        .args(&cli)
        .args(&args)
        .output()
        .await
        .map_err(|e| format!("redis-cli: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || text.starts_with("(error)") {
        return Err(format!("redis-cli {args:?}: {text} {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(match text.as_str() {
        "(nil)" => None,
        t if t.starts_with("(integer) ") => Some(t["(integer) ".len()..].to_owned()),
        t => Some(t.trim_matches('"').to_owned()),
    })
}

/// Many commands, one per line, through one `redis-cli` reading stdin.
async fn redis_cli_pipe(cli: &[String], commands: String) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("redis-cli")
        .args(cli)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("redis-cli: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("redis-cli: no stdin")?;
    stdin.write_all(commands.as_bytes()).await.map_err(|e| e.to_string())?;
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let oks = text.lines().filter(|l| l.trim() == "OK").count();
    check(out.status.success() && oks == commands.lines().count(), format!("redis-cli pipe: {oks} OK replies"))
}

/// Writes `n` keys under `schema`'s prefix plus one key of a bystander, releases the schema,
/// and checks that exactly the bystander's key is left (`dbsize` sums every node).
async fn release_deletes_keys(
    r: &Redis,
    engine: &Engine,
    tpl: &pgisolate::Template,
    n: usize,
    dbsize: impl Fn() -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send>>,
) -> Result<(), String> {
    let s = engine.acquire(tpl, Identity::new("cache", "keys")).await.map_err(|e| e.to_string())?;
    let bulk: String = (0..n).map(|i| format!("SET {} x\n", s.cache_key(&format!("k:{i}")))).collect();
    redis_cli_pipe(&r.cli, bulk + "SET bystander:key kept\n").await?;
    check(dbsize().await? == n as u64 + 1, "keys were not all written")?;
    s.release().await.map_err(|e| e.to_string())?;
    let left = dbsize().await?;
    check(left == 1, format!("after release {left} keys remain (want the bystander's 1)"))?;
    let kept = redis_cli(r.cli.clone(), vec!["GET".into(), "bystander:key".into()]).await?;
    check(kept.as_deref() == Some("kept"), "release deleted a key outside its prefix")
}

fn single_dbsize(cli: Vec<String>) -> impl Fn() -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send>> {
    move || {
        let cli = cli.clone();
        Box::pin(async move {
            let n = redis_cli(cli, vec!["DBSIZE".into()]).await?.unwrap_or_default();
            n.parse::<u64>().map_err(|e| format!("DBSIZE {n:?}: {e}"))
        })
    }
}

/// Redis behind a password, an ACL user, TLS, a cluster: the engine reaches each the way
/// users write the URL, a wrong password fails the engine's start (kind cache, password not
/// shown), and keys are deleted everywhere they live.
fn cache_deployments() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let mut cfg = config(None);
        let base = Engine::start(cfg.clone()).await.map_err(|e| e.to_string())?;
        let tpl = base.template(migrations()).await.map_err(|e| e.to_string())?;
        let start = |url: String| {
            let mut c = cfg.clone();
            c.redis_url = Some(url);
            Engine::start(c)
        };

        // A password, and an ACL user whose password needs percent-encoding.
        let r = tokio::task::spawn_blocking(|| redis_with(&["--requirepass", "default-secret"])).await.unwrap()?;
        let port = r.url.rsplit(':').next().unwrap_or("").to_owned();
        let admin = vec![
            "-p".to_string(),
            port.clone(),
            "--user".into(),
            "default".into(),
            "--pass".into(),
            "default-secret".into(),
            "--no-auth-warning".into(),
        ];
        redis_cli(admin.clone(), "ACL SETUSER app on >p@ss:w/rd ~* +@all".split(' ').map(String::from).collect())
            .await?;
        let wrong = start(format!("redis://:not-the-password@127.0.0.1:{port}")).await;
        let err = match wrong {
            Ok(e) => {
                e.close().await.ok();
                return Err("a wrong Redis password started an engine".into());
            }
            Err(e) => e,
        };
        check(err.kind() == pgisolate::ErrorKind::Cache, format!("wrong password: kind {:?}: {err}", err.kind()))?;
        check(!err.to_string().contains("not-the-password"), format!("the message shows the password: {err}"))?;
        let acl_url = format!("redis://app:p%40ss%3Aw%2Frd@127.0.0.1:{port}");
        let e = start(acl_url).await.map_err(|e| format!("ACL user: {e}"))?;
        let cli = vec![
            "-p".to_string(),
            port.clone(),
            "--user".into(),
            "app".into(),
            "--pass".into(),
            "p@ss:w/rd".into(),
            "--no-auth-warning".into(),
        ];
        let mut r = r;
        r.cli = cli.clone();
        release_deletes_keys(&r, &e, &tpl, 300, single_dbsize(cli)).await.map_err(|m| format!("ACL user: {m}"))?;
        e.close().await.map_err(|e| e.to_string())?;
        drop(r);

        // TLS: verified against the system's roots (which do not know the test's CA), or the
        // CA in PGISOLATE_REDIS_CA_FILE.
        let r = tokio::task::spawn_blocking(redis_tls).await.unwrap()?;
        let err = match start(r.url.clone()).await {
            Ok(e) => {
                e.close().await.ok();
                return Err("rediss:// accepted a certificate from an unknown CA".into());
            }
            Err(e) => e,
        };
        check(err.kind() == pgisolate::ErrorKind::Cache, format!("unverified TLS: {err}"))?;
        let mut tls_cfg = cfg.clone();
        tls_cfg.redis_url = Some(r.url.clone());
        tls_cfg.redis_ca_file = Some(r.dir.join("ca.crt"));
        let e = Engine::start(tls_cfg).await.map_err(|e| format!("rediss:// with the CA file: {e}"))?;
        release_deletes_keys(&r, &e, &tpl, 300, single_dbsize(r.cli.clone())).await.map_err(|m| format!("TLS: {m}"))?;
        e.close().await.map_err(|e| e.to_string())?;
        drop(r);

        // A cluster: one member's URL; keys spread over every primary's slots.
        let r = tokio::task::spawn_blocking(redis_cluster).await.unwrap()?;
        let e = start(r.url.clone()).await.map_err(|e| format!("cluster: {e}"))?;
        let ports: Vec<String> = {
            let nodes = redis_cli(r.cli.clone(), vec!["CLUSTER".into(), "NODES".into()]).await?.unwrap_or_default();
            nodes
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1)?.split('@').next()?.rsplit(':').next().map(String::from))
                .collect()
        };
        check(ports.len() == 3, format!("cluster nodes: {ports:?}"))?;
        let dbsize = move || -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send>> {
            let ports = ports.clone();
            Box::pin(async move {
                let mut total = 0;
                for p in ports {
                    let n = redis_cli(vec!["-p".into(), p], vec!["DBSIZE".into()]).await?.unwrap_or_default();
                    total += n.parse::<u64>().map_err(|e| format!("DBSIZE {n:?}: {e}"))?;
                }
                Ok(total)
            })
        };
        release_deletes_keys(&r, &e, &tpl, 600, dbsize).await.map_err(|m| format!("cluster: {m}"))?;
        e.close().await.map_err(|e| e.to_string())?;
        drop(r);
        base.close().await.map_err(|e| e.to_string())?;
        cfg.redis_url = None;
        Ok("wrong password: start fails (cache, password hidden); ACL user with a percent-encoded password, \
            rediss:// (unknown CA refused, the CA file trusted) and a 3-primary cluster: release deleted 300/300/600 keys, \
            never the bystander's"
            .into())
    })
}

fn cache() -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let r = tokio::task::spawn_blocking(redis).await.unwrap()?;
        let mut cfg = config(None);
        cfg.redis_url = Some(r.url.clone());
        let engine = Engine::start(cfg.clone()).await.map_err(|e| e.to_string())?;
        let tpl = engine.template(migrations()).await.map_err(|e| e.to_string())?;
        // Redis is read and written with redis-cli, not with the engine's own client.
        let cmd = |args: Vec<String>| redis_cli(r.cli.clone(), args);
        // Two concurrent scenarios with the same identity write the same logical key.
        let a = engine.acquire(&tpl, Identity::new("cache", "same scenario")).await.map_err(|e| e.to_string())?;
        let b = engine.acquire(&tpl, Identity::new("cache", "same scenario")).await.map_err(|e| e.to_string())?;
        let (ka, kb) = (a.cache_key("user:alice"), b.cache_key("user:alice"));
        check(ka != kb, "two live schemas share a cache prefix")?;
        let (wa, wb) = (
            tokio::spawn(cmd(vec!["SET".into(), ka.clone(), "from a".into()])),
            tokio::spawn(cmd(vec!["SET".into(), kb.clone(), "from b".into()])),
        );
        wa.await.unwrap()?;
        wb.await.unwrap()?;
        check(cmd(vec!["GET".into(), ka.clone()]).await? == Some("from a".into()), "a saw b's value")?;
        check(cmd(vec!["GET".into(), kb.clone()]).await? == Some("from b".into()), "b saw a's value")?;
        let bulk: String = (0..1200).map(|i| format!("SET {} x\n", a.cache_key(&format!("bulk:{i}")))).collect();
        redis_cli_pipe(&r.cli, bulk).await?;
        a.release().await.map_err(|e| e.to_string())?;
        check(cmd(vec!["GET".into(), ka.clone()]).await?.is_none(), "release left a's key")?;
        let left = cmd(vec!["DBSIZE".into()]).await?;
        check(left == Some("1".into()), format!("after releasing a, {left:?} keys remain (want b's 1)"))?;
        check(cmd(vec!["GET".into(), kb.clone()]).await? == Some("from b".into()), "releasing a touched b's key")?;
        b.release().await.map_err(|e| e.to_string())?;
        // A dead owner's keys go with its schemas when gc reaps them.
        let dead = Engine::start(cfg).await.map_err(|e| e.to_string())?;
        let ds = dead.acquire(&tpl, Identity::new("cache", "owner dies")).await.map_err(|e| e.to_string())?;
        cmd(vec!["SET".into(), ds.cache_key("session"), "stale".into()]).await?;
        let dk = ds.cache_key("session");
        std::mem::forget(ds); // never released: its owner goes away holding it
        dead.close().await.map_err(|e| e.to_string())?;
        drop(dead);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let report = engine.gc_with(Duration::ZERO, false).await.map_err(|e| e.to_string())?;
        check(!report.dropped.is_empty(), "gc found nothing to reap")?;
        check(cmd(vec!["GET".into(), dk]).await?.is_none(), "gc left the dead owner's key")?;
        engine.close().await.map_err(|e| e.to_string())?;
        drop(r);
        Ok("concurrent same-key writes isolated; release deleted 1,201 keys by SCAN+UNLINK; gc deleted a dead owner's keys".into())
    })
}

/// The reliability suite: each case is a test of its own (libtest-mimic), run one at a time
/// (they share one server and measure time), then a table of what each measured.
///
/// `PGI_REL_CASES=R5,R7` runs only those cases (an unknown id is an error); the usual test
/// filter works too, and a filter that matches no case fails.
fn main() -> std::process::ExitCode {
    if let Ok(mode) = std::env::var("PGI_REL_CHILD") {
        child_entry(mode);
        return std::process::ExitCode::SUCCESS;
    }
    let cases: Vec<Case> = vec![
        ("R1", "batched drop of 7,000 tables on max_locks_per_transaction=64", 300, r1),
        ("R2", "4 teardowns at once with delayed commits, and a 1,000-table bystander", 180, r2),
        ("R3", "embedded server settings", 60, r3),
        ("R4", "leaked idle-in-transaction connection at teardown", 60, r4),
        ("R5", "leaked pool reconnecting during teardown", 60, r5),
        ("R6", "deadlock between teardown and a test's background thread", 60, r6),
        ("R7", "teardown process SIGKILLed while its DROP waits", 90, r7),
        ("R8", "test process SIGKILLed while another run is live", 90, r8),
        ("R9", "foreign schemas survive gc", 60, r9),
        ("R10", "extensions once, in extensions, 64 concurrent engines", 180, r10),
        ("R11", "same scenario acquired twice at once", 60, r11),
        ("R12", "hostile scenario names", 60, r12),
        ("R13", "forced hash collisions", 60, r13),
        ("R14", "handed-out strings with libpq and tokio-postgres", 60, r14),
        ("R15", "schema dropped before hand-out", 60, r15),
        ("R16", "public writable by every role", 60, r16),
        ("R17", "PgBouncer transaction mode (a) default (b) ignore options (c) login role; R19 leases", 120, r17),
        ("R18", "template builder SIGKILLed, then 8 racers", 120, r18),
        ("R20", "soak: acquire/release cycles", 600, r20),
        ("R21", "max_connections nearly exhausted", 120, r21),
        ("R22", "an engine cut off from the server past the grace period (partition)", 90, r22),
        ("R23", "server restart mid-run (private and embedded server)", 120, r23),
        ("roles", "least privilege: a LOGIN role per schema (opt-in)", 90, roles),
        ("cache", "Redis keys isolated and deleted (real redis-server)", 120, cache),
        (
            "cache-deployments",
            "Redis with a password, an ACL user, TLS, a cluster (real redis-servers)",
            180,
            cache_deployments,
        ),
    ];
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads = Some(1);
    let only: Option<Vec<String>> =
        std::env::var("PGI_REL_CASES").ok().map(|v| v.split(',').map(|c| c.trim().to_owned()).collect());
    if let Some(o) = &only {
        let known: Vec<&str> = cases.iter().map(|c| c.0).collect();
        if let Some(bad) = o.iter().find(|id| !known.contains(&id.as_str())) {
            eprintln!("PGI_REL_CASES names an unknown case {bad:?}; the cases are {}", known.join(", "));
            return std::process::ExitCode::from(2);
        }
    }
    let embedded = std::env::var_os("PGISOLATE_DATABASE_URL").is_none();
    let rt = std::sync::Arc::new(
        tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap(),
    );
    let table = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut trials = Vec::new();
    for (id, what, deadline, f) in cases {
        if only.as_ref().is_some_and(|o| !o.iter().any(|c| c == id)) {
            continue;
        }
        let skip = (id == "R3" && !embedded)
            .then_some("PGISOLATE_DATABASE_URL is set, so the embedded server's settings are not in play");
        let name = format!("{id} {what}");
        if let Some(why) = skip {
            table.lock().unwrap().push_str(&format!("{id:<5} {:<8} {:>6}   {what}: {why}\n", "skip", "-"));
            trials.push(libtest_mimic::Trial::test(name, || Ok(())).with_ignored_flag(true));
            continue;
        }
        let (rt, table) = (rt.clone(), table.clone());
        trials.push(libtest_mimic::Trial::test(name, move || {
            let t = Instant::now();
            let r = rt.block_on(async { tokio::time::timeout(Duration::from_secs(deadline), f()).await });
            let (outcome, detail) = match r {
                Ok(Ok(d)) => ("pass", d),
                Ok(Err(e)) => ("FAIL", e),
                Err(_) => ("FAIL", format!("deadline of {deadline} s exceeded")),
            };
            let row = format!("{id:<5} {outcome:<8} {:>6.1}s  {what}: {detail}\n", t.elapsed().as_secs_f64());
            table.lock().unwrap().push_str(&row);
            if outcome == "pass" {
                Ok(())
            } else {
                Err(row.into())
            }
        }));
    }
    if let Some(f) = &args.filter {
        let hit = |t: &libtest_mimic::Trial| if args.exact { t.name() == f } else { t.name().contains(f.as_str()) };
        if !trials.iter().any(hit) {
            eprintln!("the filter {f:?} matches no reliability case");
            return std::process::ExitCode::from(2);
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    let table = table.lock().unwrap().clone();
    if !table.is_empty() {
        let _ = std::io::stderr()
            .write_all(format!("\nreliability acceptance suite\ncase  outcome  time     detail\n{table}").as_bytes());
    }
    conclusion.exit_code()
}

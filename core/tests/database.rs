//! Database isolation (`isolation = database`): a migration set that reaches beyond one schema
//! (a second schema fed by a trigger, a table in `public`, database-level settings) gets a
//! database per test, cloned from a template database; nothing is shared, nothing is left.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use pgisolate::{Config, Engine, ErrorKind, Identity, Isolation, Migrations};
use tokio_postgres::Client;

/// The audit migration set (tests/outside/audit) plus database-level settings: a custom one and
/// a search_path (a list, which a clone must get as a list).
fn migrations_dir(u: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pgisolate-database-{u}"));
    std::fs::create_dir_all(&d).unwrap();
    let audit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/outside/audit");
    for f in ["001_audit.sql", "002_users.sql"] {
        std::fs::copy(audit.join(f), d.join(f)).unwrap();
    }
    std::fs::write(
        d.join("003_settings.sql"),
        format!(
            "-- {u}\n\
             do $$ begin\n\
               execute format('alter database %I set app.tenant = %L', current_database(), 'acme');\n\
               execute format('alter database %I set search_path = public, audit', current_database());\n\
             end $$;\n\
             insert into public.settings (k, v) values ('seeded', 'yes');"
        ),
    )
    .unwrap();
    d
}

fn database_config(url: Option<String>) -> Config {
    let mut c = config();
    c.isolation = Isolation::Database;
    if url.is_some() {
        c.url = url;
    }
    c
}

async fn databases_named(admin: &Client, names: &[String]) -> i64 {
    admin.query_one("select count(*) from pg_database where datname = any($1)", &[&names]).await.unwrap().get(0)
}

/// 12 tests at once, each registering the same email: each sees its own audit row, its own
/// `public.settings`, the template's seed row and database-level settings; then nothing left.
async fn twelve_tests_each_in_its_own_database(engine: &Engine, dir: &std::path::Path) {
    let tpl = engine.template(Migrations::dir(dir)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (engine, tpl) = (engine.clone(), tpl.clone());
        tasks.push(tokio::spawn(async move {
            let s =
                engine.acquire(&tpl, Identity::new("database.feature", format!("registers alice {i}"))).await.unwrap();
            assert!(!s.url().contains("search_path"), "a database's URL needs no search_path: {}", s.url());
            let c = connect(s.url()).await;
            let db: String = c.query_one("select current_database()::text", &[]).await.unwrap().get(0);
            assert_eq!(db, s.name(), "the URL lands in the test's own database");
            c.batch_execute("insert into users (email) values ('alice@example.com')").await.unwrap();
            c.batch_execute(&format!("insert into public.settings (k, v) values ('test', '{i}')")).await.unwrap();
            let audit: i64 = c.query_one("select count(*) from audit.events", &[]).await.unwrap().get(0);
            let settings: Vec<String> = c
                .query("select k || '=' || v from public.settings order by k", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let tenant: String = c.query_one("select current_setting('app.tenant')", &[]).await.unwrap().get(0);
            let path: String = c.query_one("show search_path", &[]).await.unwrap().get(0);
            // Unqualified `events` resolves through the database's search_path (public, audit).
            let via_path: i64 = c.query_one("select count(*) from events", &[]).await.unwrap().get(0);
            drop(c);
            let name = s.name().to_owned();
            s.release().await.unwrap();
            (name, audit, settings, tenant, path, via_path, i)
        }));
    }
    let mut names = Vec::new();
    for t in tasks {
        let (name, audit, settings, tenant, path, via_path, i) = t.await.unwrap();
        assert_eq!(audit, 1, "{name}: its own audit row only");
        assert_eq!(settings, vec!["seeded=yes".to_owned(), format!("test={i}")], "{name}: its own public.settings");
        assert_eq!(tenant, "acme", "{name}: the template's database setting");
        assert_eq!(path, "public, audit", "{name}: the template's search_path, as a list");
        assert_eq!(via_path, 1, "{name}: search_path reaches audit.events");
        names.push(name);
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 12, "12 distinct databases");
    let admin = connect(engine.url()).await;
    assert_eq!(databases_named(&admin, &names).await, 0, "every released database is dropped");
    let rows: i64 = admin
        .query_one("select count(*) from pgisolate.leases where schema_name = any($1)", &[&names])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "no registry rows left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multi_schema_app_gets_a_database_per_test() {
    let u = unique();
    let dir = migrations_dir(&u);
    let engine = Engine::start(database_config(None)).await.unwrap();
    twelve_tests_each_in_its_own_database(&engine, &dir).await;
    // A second engine finds the published template instead of building it again.
    let other = Engine::start(database_config(None)).await.unwrap();
    let again = other.template(Migrations::dir(&dir)).await.unwrap();
    assert!(!again.built_here(), "the template database is built once per server");
    other.close().await.unwrap();
    engine.close().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_on_a_second_fresh_server() {
    let u = unique();
    let dir = migrations_dir(&u);
    let home = std::env::temp_dir().join(format!("pgisolate-database-srv-{u}"));
    let srv = tokio::task::spawn_blocking(move || pgisolate::server::start_private(&home, &[])).await.unwrap().unwrap();
    let engine = Engine::start(database_config(Some(srv.url.clone()))).await.unwrap();
    twelve_tests_each_in_its_own_database(&engine, &dir).await;
    engine.close().await.unwrap();
    drop(srv);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An engine gone without releasing: gc of another engine drops its test database once the
/// owner is fenced; a failing test's database is kept with the keep policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_reaps_a_dead_owners_database_and_keep_keeps_a_failed_one() {
    let u = unique();
    let dir = migrations_dir(&u);
    let mut kcfg = database_config(None);
    kcfg.keep = pgisolate::Keep::Failed;
    let a = Engine::start(kcfg).await.unwrap();
    let tpl = a.template(Migrations::dir(&dir)).await.unwrap();
    let leaked = a.acquire(&tpl, Identity::new("database.feature", "leaked")).await.unwrap();
    let kept = a.acquire(&tpl, Identity::new("database.feature", "fails")).await.unwrap();
    let (leaked_name, kept_name) = (leaked.name().to_owned(), kept.name().to_owned());
    assert_eq!(kept.finish(true).await.unwrap(), pgisolate::Released::Kept);
    std::mem::forget(leaked); // the process "dies" holding it: never released
    a.close().await.unwrap();
    let b = Engine::start(database_config(None)).await.unwrap();
    let admin = connect(b.url()).await;
    assert_eq!(databases_named(&admin, &[leaked_name.clone(), kept_name.clone()]).await, 2);
    let report = b.gc_with(Duration::ZERO, false).await.unwrap();
    assert!(report.dropped.contains(&leaked_name), "gc dropped the dead owner's database: {:?}", report.dropped);
    assert_eq!(databases_named(&admin, std::slice::from_ref(&leaked_name)).await, 0);
    assert_eq!(databases_named(&admin, std::slice::from_ref(&kept_name)).await, 1, "a kept database stays");
    let report = b.gc_with(Duration::ZERO, true).await.unwrap();
    assert!(report.dropped.contains(&kept_name), "gc --kept drops it: {:?}", report.dropped);
    assert_eq!(databases_named(&admin, &[kept_name]).await, 0);
    b.close().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Without CREATEDB: a clear error when the engine starts, before any test runs.
#[tokio::test]
async fn without_createdb_the_engine_says_so_at_start() {
    let engine = engine().await;
    let admin = connect(engine.url()).await;
    let role = format!("pgi_nocreatedb_{}", unique());
    // An admin role as a team would make one: the registry's tables, no CREATEDB.
    admin
        .batch_execute(&format!(
            "create role {role} login password 'pw'; grant usage, create on schema pgisolate to {role}; \
             grant select, insert, update, delete on all tables in schema pgisolate to {role}; \
             grant create on database postgres to {role}"
        ))
        .await
        .unwrap();
    let mut ci = pgisolate::conninfo::ConnInfo::parse(engine.url()).unwrap();
    ci.set("user", &role);
    ci.set("password", "pw");
    let url = ci.to_string_form();
    let err = Engine::start(database_config(Some(url))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("CREATEDB"), "{err}");
    admin.batch_execute(&format!("drop owned by {role}; drop role {role}")).await.unwrap();
    engine.close().await.unwrap();
}

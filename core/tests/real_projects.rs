//! What real projects bring: a database whose `public` already holds the migrated app, a
//! version table and an extension; migrations that create extensions; the directory layouts
//! of migration tools; caller-run builds keyed by their inputs; SQLAlchemy URLs. Each test
//! works in a database of its own on the embedded server.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

mod common;

use common::{connect, drop_database_force, unique};
use pgisolate::{Config, Engine, Identity, Migrations, TemplateStart};

/// A fresh database on the test server; returns its URL (dropped by [`drop_database`]).
async fn fresh_database(admin_url: &str, setup: &str) -> (String, String) {
    let name = format!("pgi_real_{}", unique());
    let admin = connect(admin_url).await;
    admin.batch_execute(&format!("create database {name}")).await.unwrap();
    let base = admin_url.split('?').next().unwrap();
    let cut = base.rfind('/').unwrap();
    let url = format!("{}/{name}", &base[..cut]);
    if !setup.is_empty() {
        connect(&url).await.batch_execute(setup).await.unwrap();
    }
    (name, url)
}

async fn drop_database(admin_url: &str, name: &str) {
    drop_database_force(&connect(admin_url).await, name).await;
}

async fn engine_on(url: &str, extensions: &[&str]) -> Engine {
    let mut c = Config::from_env().unwrap();
    c.url = Some(url.to_owned());
    c.gc_on_start = false;
    c.collect_warnings = true;
    c.extensions = extensions.iter().map(|s| s.to_string()).collect();
    Engine::start(c).await.unwrap()
}

async fn count(url: &str, sql: &str) -> i64 {
    connect(url).await.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// The app as an earlier `alembic upgrade head` left it in the dev database.
const DEV_DATABASE: &str = r#"
create extension "uuid-ossp";
create table alembic_version (version_num varchar(32) primary key);
insert into alembic_version values ('e2412789c190');
create table "user" (id uuid primary key default uuid_generate_v4(), email text unique not null);
create table item (id uuid primary key default uuid_generate_v4(), owner_id uuid references "user" (id), title text);
insert into "user" (email) values ('admin@example.com');
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_dev_database_gives_isolation_or_a_clear_error_never_an_empty_template() {
    let server = common::engine().await;
    let (db, url) = fresh_database(server.url(), DEV_DATABASE).await;
    let engine = engine_on(&url, &[]).await;

    // 1. The generated env.py ignores the URL it is given: Alembic connects with the app's
    //    settings, finds public.alembic_version at head and runs nothing.
    let app_url = url.clone();
    let err = engine
        .template_with("alembic-ignores-url", |_build_url| async move {
            let c = connect(&app_url).await;
            let head: i64 = c.query_one("select count(*) from alembic_version", &[]).await?.get(0);
            assert_eq!(head, 1, "the tool sees its version table at head");
            Ok(())
        })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.code(), "migration", "{msg}");
    assert!(
        msg.contains("empty") && msg.contains("public.alembic_version") && msg.contains("did not use the URL"),
        "{msg}"
    );
    assert_eq!(count(&url, "select count(*) from pgisolate.templates").await, 0, "nothing published");
    assert_eq!(count(&url, "select count(*) from pg_namespace where nspname like 'tpl_%'").await, 0, "no build left");

    // 2. A tool that uses the build URL sees only the build schema: the version table and
    //    the app's tables land there, even though public holds the same names.
    let tpl = engine
        .template_with("alembic-uses-url", |build_url| async move {
            let c = connect(&build_url).await;
            let path: String = c.query_one("show search_path", &[]).await?.get(0);
            assert!(!path.contains("public"), "a build never sees public: {path}");
            let seen: i64 =
                c.query_one("select count(*) from pg_class where relname = 'alembic_version' and pg_table_is_visible(oid)", &[]).await?.get(0);
            assert_eq!(seen, 0, "public.alembic_version is invisible to the build");
            c.batch_execute(
                "create table alembic_version (version_num varchar(32) primary key); \
                 insert into alembic_version values ('e2412789c190'); \
                 create table \"user\" (id uuid primary key default gen_random_uuid(), email text unique not null); \
                 create table item (id uuid primary key default gen_random_uuid(), owner_id uuid references \"user\" (id), title text);",
            )
            .await?;
            Ok(())
        })
        .await
        .unwrap();
    let a = engine.acquire(&tpl, Identity::new("dev db", "a")).await.unwrap();
    let b = engine.acquire(&tpl, Identity::new("dev db", "b")).await.unwrap();
    for s in [&a, &b] {
        let c = connect(s.url()).await;
        c.execute("insert into \"user\" (email) values ('admin@example.com')", &[]).await.unwrap();
        let schema: String = c.query_one("select current_schema()", &[]).await.unwrap().get(0);
        assert_eq!(schema, s.name());
    }
    assert_eq!(count(&url, "select count(*) from public.\"user\"").await, 1, "public untouched");
    let warnings = engine.take_warnings();
    assert!(
        warnings.iter().any(|w| w.contains("public.user") && w.contains("public.alembic_version")),
        "tables shadowed in public are named: {warnings:?}"
    );
    assert!(engine.take_warnings().is_empty(), "taken once");
    a.release().await.unwrap();
    b.release().await.unwrap();

    // 3. Migrations that call an extension installed in public fail with a hint.
    let dir = std::env::temp_dir().join(format!("pgi-ext-public-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("001_init.sql"), "create table t (id uuid default uuid_generate_v4());").unwrap();
    let msg = engine.template(Migrations::dir(&dir)).await.unwrap_err().to_string();
    assert!(
        msg.contains("uuid_generate_v4")
            && msg.contains("uuid-ossp (in public)")
            && msg.contains("PGISOLATE_EXTENSIONS"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    engine.close().await.unwrap();
    drop_database(server.url(), &db).await;
    server.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_table_written_outside_the_build_is_refused() {
    let server = common::engine().await;
    let (db, url) =
        fresh_database(server.url(), "create table alembic_version (version_num varchar(32) primary key);").await;
    let engine = engine_on(&url, &[]).await;
    let app_url = url.clone();
    let err = engine
        .template_with("version-table-in-public", |build_url| async move {
            connect(&build_url).await.batch_execute("create table t (id int)").await?;
            connect(&app_url).await.batch_execute("insert into public.alembic_version values ('abc')").await?;
            Ok(())
        })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("public.alembic_version") && msg.contains("outside the build schema"), "{msg}");
    assert_eq!(count(&url, "select count(*) from pgisolate.templates").await, 0);
    engine.close().await.unwrap();
    drop_database(server.url(), &db).await;
    server.close().await.unwrap();
}

const EXTENSIONS_SQL: &str = r#"
create extension if not exists hstore;
create extension if not exists "uuid-ossp";
create extension if not exists pgcrypto;
create extension if not exists citext;
create table t (
  id uuid primary key default uuid_generate_v4(),
  h hstore,
  d text default encode(digest('x', 'sha256'), 'hex'),
  e citext unique
);
"#;

async fn check_extension_template(engine: &Engine, tpl: &pgisolate::Template, who: &str) {
    let s = engine.acquire(tpl, Identity::new("extensions", who)).await.unwrap();
    let c = connect(s.url()).await;
    c.batch_execute("insert into t (h, e) values ('a=>1', 'Alice')").await.unwrap_or_else(|e| panic!("{who}: {e:?}"));
    let row = c
        .query_one("select h -> 'a', length(d), e = 'ALICE', digest('y', 'md5') is not null from t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("1"), "{who}");
    assert_eq!(row.get::<_, i32>(1), 64, "{who}");
    assert!(row.get::<_, bool>(2) && row.get::<_, bool>(3), "{who}");
    s.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_that_create_extensions_give_working_templates_twice_with_and_without_the_setting() {
    let server = common::engine().await;
    let (db, url) = fresh_database(server.url(), "").await;
    let engine = engine_on(&url, &[]).await;
    let first = engine.template(Migrations::sql(format!("-- first\n{EXTENSIONS_SQL}"))).await.unwrap();
    check_extension_template(&engine, &first, "first").await;
    let second = engine.template(Migrations::sql(format!("-- second key\n{EXTENSIONS_SQL}"))).await.unwrap();
    check_extension_template(&engine, &second, "second").await;
    let caller = engine
        .template_with("caller-run", |u| async move { Ok(connect(&u).await.batch_execute(EXTENSIONS_SQL).await?) })
        .await
        .unwrap();
    check_extension_template(&engine, &caller, "caller").await;
    let outside: i64 = count(
        &url,
        "select count(*) from pg_extension e join pg_namespace n on n.oid = e.extnamespace \
         where e.extname in ('hstore', 'uuid-ossp', 'pgcrypto', 'citext') and n.nspname = 'extensions'",
    )
    .await;
    assert_eq!(outside, 4, "every extension lives in schema extensions");
    engine.close().await.unwrap();

    // PGISOLATE_EXTENSIONS set afterwards, on a database that already has templates.
    let later = engine_on(&url, &["hstore", "pgcrypto", "citext", "uuid-ossp"]).await;
    let third = later.template(Migrations::sql(format!("-- third\n{EXTENSIONS_SQL}"))).await.unwrap();
    check_extension_template(&later, &third, "third").await;
    check_extension_template(&later, &first, "first again").await;
    later.close().await.unwrap();

    // And set from the start on a fresh database.
    let (db2, url2) = fresh_database(server.url(), "").await;
    let upfront = engine_on(&url2, &["hstore", "pgcrypto", "citext", "uuid-ossp"]).await;
    let tpl = upfront.template(Migrations::sql(EXTENSIONS_SQL)).await.unwrap();
    check_extension_template(&upfront, &tpl, "upfront").await;
    upfront.close().await.unwrap();

    drop_database(server.url(), &db).await;
    drop_database(server.url(), &db2).await;
    server.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_layout_builds_its_template_and_no_down_migration_runs() {
    let server = common::engine().await;
    let (db, url) = fresh_database(server.url(), "").await;
    let engine = engine_on(&url, &[]).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/migrations.json");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut built = 0;
    for c in doc["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let dir = std::env::temp_dir().join(format!("pgi-layout-{}", unique()));
        for (file, text) in c["files"].as_object().unwrap() {
            let p = dir.join(file);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text.as_str().unwrap()).unwrap();
        }
        let got = engine.template(Migrations::dir(&dir)).await;
        std::fs::remove_dir_all(&dir).unwrap();
        if c.get("error").is_some() {
            assert!(got.is_err(), "{name}");
            continue;
        }
        // Mixed-in "x"/"y" bodies aside, every valid case creates real objects.
        let tpl = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        let s = engine.acquire(&tpl, Identity::new("layout", name)).await.unwrap();
        let tables = count(
            s.url(),
            "select count(*) from pg_class where relnamespace = current_schema()::regnamespace and relkind in ('r', 'v')",
        )
        .await;
        let want = c["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|st| st[1].as_str().unwrap().to_lowercase().contains("create"))
            .count();
        assert!(tables >= 1 && tables as usize <= want + 1, "{name}: {tables} tables for {want} steps");
        s.release().await.unwrap();
        built += 1;
    }
    assert!(built >= 10, "only {built} layouts built");
    engine.close().await.unwrap();
    drop_database(server.url(), &db).await;
    server.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_builds_keyed_by_inputs_cannot_go_stale_and_old_templates_are_pruned() {
    let server = common::engine().await;
    let (db, url) = fresh_database(server.url(), "").await;
    let engine = engine_on(&url, &[]).await;
    let dir = std::env::temp_dir().join(format!("pgi-inputs-{}", unique()));
    std::fs::create_dir_all(dir.join("versions/__pycache__")).unwrap();
    std::fs::write(dir.join("versions/001.py"), "create table a (id int);").unwrap();
    std::fs::write(dir.join("versions/__pycache__/001.cpython-311.pyc"), "cache").unwrap();
    async fn build(engine: &Engine, dir: std::path::PathBuf) -> (pgisolate::Template, bool) {
        let sql = std::fs::read_to_string(dir.join("versions/001.py")).unwrap();
        match engine.template_begin_inputs("alembic", &[&dir]).await.unwrap() {
            TemplateStart::Build(b) => {
                connect(b.url()).await.batch_execute(&sql).await.unwrap();
                (b.commit().await.unwrap(), true)
            }
            TemplateStart::Ready(t) => (t, false),
        }
    }
    let (v1, built) = build(&engine, dir.clone()).await;
    assert!(built);
    std::fs::write(dir.join("versions/__pycache__/001.cpython-311.pyc"), "other cache").unwrap();
    let (same, built) = build(&engine, dir.clone()).await;
    assert!(!built && same.schema() == v1.schema(), "caches do not change the key");
    std::fs::write(dir.join("versions/001.py"), "create table a (id int, label text);").unwrap();
    let (v2, built) = build(&engine, dir.clone()).await;
    assert!(built && v2.schema() != v1.schema(), "a changed migration builds a new template");
    let s = engine.acquire(&v2, Identity::new("inputs", "v2")).await.unwrap();
    assert_eq!(count(s.url(), "select count(*) from information_schema.columns where table_schema = current_schema() and column_name = 'label'").await, 1);
    s.release().await.unwrap();

    let list = engine.templates().await.unwrap();
    let old = list.iter().find(|t| t.schema == v1.schema()).unwrap();
    assert!(old.superseded && old.source.starts_with("alembic "), "{old:?}");
    assert!(!list.iter().find(|t| t.schema == v2.schema()).unwrap().superseded);
    // Recently used templates stay; unused for longer than the age, they go.
    assert!(engine.prune_templates(std::time::Duration::from_secs(3600)).await.unwrap().is_empty());
    connect(&url)
        .await
        .batch_execute("update pgisolate.templates set last_used = now() - interval '1 hour'")
        .await
        .unwrap();
    let cached_engine_keeps = engine.prune_templates(std::time::Duration::from_secs(86400)).await.unwrap();
    assert!(cached_engine_keeps.is_empty(), "templates this engine uses are kept: {cached_engine_keeps:?}");
    engine.close().await.unwrap();
    let other = engine_on(&url, &[]).await;
    let dropped = other.prune_templates(std::time::Duration::from_secs(86400)).await.unwrap();
    assert_eq!(dropped, vec![v1.schema().to_owned()], "only the superseded one");
    let dropped = other.prune_templates(std::time::Duration::from_secs(60)).await.unwrap();
    assert_eq!(dropped, vec![v2.schema().to_owned()], "unused for longer than the age");
    other.close().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    drop_database(server.url(), &db).await;
    server.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_urls_are_accepted_and_handed_out() {
    let server = common::engine().await;
    let sa = server.url().replacen("postgres://", "postgresql+psycopg://", 1).replacen(
        "postgresql://",
        "postgresql+psycopg://",
        1,
    );
    assert!(sa.starts_with("postgresql+psycopg://"), "{sa}");
    let mut c = Config::from_env().unwrap();
    c.url = Some(sa);
    c.gc_on_start = false;
    let engine = Engine::start(c).await.unwrap();
    let tpl = engine.template(common::migrations()).await.unwrap();
    let s = engine.acquire(&tpl, Identity::new("sqlalchemy", "url")).await.unwrap();
    assert!(s.url().starts_with("postgresql://"), "{}", s.url());
    let sa_url = s.sqlalchemy_url("psycopg").unwrap();
    assert!(sa_url.starts_with("postgresql+psycopg://") && sa_url.contains("search_path"), "{sa_url}");
    let schema: String = connect(s.url()).await.query_one("select current_schema()", &[]).await.unwrap().get(0);
    assert_eq!(schema, s.name());
    s.release().await.unwrap();
    engine.close().await.unwrap();
    server.close().await.unwrap();
}

/// Schema extensions made after the engine started (another engine's build or start-up rescue)
/// holds an extension a build then finds instead of creating: the tests' search_path has
/// `extensions` too, as the build's had (a race seen in CI with two engines at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_made_by_someone_else_after_start_are_in_the_tests_search_path() {
    let server = common::engine().await;
    let (db, url) = fresh_database(server.url(), "").await;
    let engine = engine_on(&url, &[]).await;
    connect(&url)
        .await
        .batch_execute("create schema extensions; create extension pgcrypto schema extensions")
        .await
        .unwrap();
    let tpl = engine
        .template(Migrations::sql(
            "create extension if not exists pgcrypto; create table t (h text not null default crypt('a', gen_salt('bf', 4)))",
        ))
        .await
        .unwrap();
    let s = engine.acquire(&tpl, Identity::new("extensions", "made by someone else")).await.unwrap();
    let c = connect(s.url()).await;
    c.execute("insert into t default values", &[]).await.unwrap();
    let ok: bool = c.query_one("select crypt('a', h) = h from t", &[]).await.unwrap().get(0);
    assert!(ok);
    drop(c);
    s.release().await.unwrap();
    engine.close().await.unwrap();
    drop_database(server.url(), &db).await;
    server.close().await.unwrap();
}

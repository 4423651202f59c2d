//! Engine lifecycle against the embedded server: templates, acquire/release, naming under
//! contention, hostile names, scoped connection strings, keep policy, leaked connections,
//! big schemas.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use pgisolate::{Identity, Keep, Migrations, Released, TemplateStart};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_acquires_share_no_name_and_leave_nothing() {
    let engine = engine().await;
    let tpl = engine.template(migrations()).await.unwrap();
    let mut tasks = Vec::new();
    // All 64 schemas are held at once before any is released, so names cannot be reused.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    for worker in 0..8 {
        let (engine, tpl, barrier) = (engine.clone(), tpl.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            // Every worker asks for the same 8 identities at once (R11): names must still differ.
            let mut held = Vec::new();
            for i in 0..8 {
                let id = Identity::new("concurrency.feature", format!("scenario {i}"));
                let s = engine.acquire(&tpl, id).await.unwrap();
                let c = connect(s.url()).await;
                c.execute("insert into users (email) values ('same@example.com')", &[]).await.unwrap();
                let n: i64 = c.query_one("select count(*) from users", &[]).await.unwrap().get(0);
                assert_eq!(n, 1, "worker {worker} saw another test's rows in {}", s.name());
                held.push(s);
            }
            let names: Vec<(String, String)> =
                held.iter().map(|s| (s.name().to_owned(), s.cache_prefix().to_owned())).collect();
            barrier.wait().await;
            for s in held {
                assert_ne!(s.release().await.unwrap(), Released::Kept);
            }
            names
        }));
    }
    let mut names = HashSet::new();
    let mut prefixes = HashSet::new();
    for t in tasks {
        for (n, p) in t.await.unwrap() {
            assert!(names.insert(n.clone()), "schema {n} handed out twice");
            assert!(prefixes.insert(p.clone()), "cache prefix {p} handed out twice");
        }
    }
    assert_eq!(names.len(), 64);
    engine.flush().await; // deferred drops
    let admin = connect(engine.url()).await;
    let left: i64 = admin
        .query_one(
            "select count(*) from pgisolate.leases where owner_key = $1 and state <> 'released'",
            &[&engine.owner()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "registry rows left behind");
    let names: Vec<String> = names.into_iter().collect();
    let schemas: i64 = admin
        .query_one(
            "select count(*) from pg_namespace where nspname = any($1) \
             or (nspname like 'pgi_tomb_%' and obj_description(oid, 'pg_namespace') like $2)",
            &[&names, &format!("%owner={} %", engine.owner())],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schemas, 0, "schemas or tombstones left behind");
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_distinct_valid_and_inject_nothing() {
    let engine = engine().await;
    let tpl = engine.template(migrations()).await.unwrap();
    let nfc = "caf\u{e9}";
    let nfd = "cafe\u{301}";
    let ids = vec![
        Identity::new("", ""),
        Identity::new("f", "x".repeat(10 * 1024)),
        Identity::new("🚀", "scenario ✨ 🐘"),
        Identity::new("f", nfc),
        Identity::new("f", nfd),
        Identity::new("f", "'\";DROP SCHEMA public;--"),
        Identity::new("f", "x -c default_transaction_read_only=on"),
        Identity::new("a:b", "c"),
        Identity::new("a", "b:c"),
        Identity::new("outline.feature", "outline").with_discriminator("row 1"),
        Identity::new("outline.feature", "outline").with_discriminator("row 2"),
        Identity::new("one.feature", "same title"),
        Identity::new("two.feature", "same title"),
        Identity::new("nul\0feature", "s"),
    ];
    let mut names = HashSet::new();
    let mut held = Vec::new();
    for id in ids {
        let s = engine.acquire(&tpl, id.clone()).await.unwrap_or_else(|e| panic!("{id:?}: {e}"));
        let n = s.name().to_owned();
        assert!(n.len() <= 63 && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{n}");
        assert!(names.insert(n.clone()), "{n} repeated");
        let c = connect(s.url()).await;
        assert_eq!(scalar_string(&c, "select current_schema()::text").await, n);
        assert_eq!(scalar_string(&c, "show default_transaction_read_only").await, "off");
        c.execute("create table probe (id int)", &[]).await.unwrap();
        held.push(s);
    }
    let admin = connect(engine.url()).await;
    let public_exists: bool =
        admin.query_one("select to_regnamespace('public') is not null", &[]).await.unwrap().get(0);
    assert!(public_exists, "public was dropped");
    for s in held {
        s.release().await.unwrap();
    }
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handed_out_string_lands_in_its_schema_with_tokio_postgres_and_psql() {
    let engine = engine().await;
    let tpl = engine.template(migrations()).await.unwrap();
    let s = engine.acquire(&tpl, Identity::new("r14", "drivers")).await.unwrap();
    assert!(!s.url().contains('+'), "{}", s.url());
    assert!(s.url().contains("%3D"), "{}", s.url());
    for dsn in [s.url(), s.conninfo()] {
        let c = connect(dsn).await;
        assert_eq!(scalar_string(&c, "select current_schema()::text").await, s.name(), "tokio-postgres with {dsn}");
        assert_eq!(
            scalar_string(&c, "select current_setting('application_name')").await,
            format!("pgisolate/{}", s.name())
        );
        let out = std::process::Command::new("psql")
            .args([dsn, "-XAtqc", "select current_schema()"])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql {dsn}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), s.name(), "psql with {dsn}");
    }
    // Seed rows and sequences came with the template; unqualified writes land in the schema.
    let c = connect(s.url()).await;
    let roles: i64 = c.query_one("select count(*) from roles", &[]).await.unwrap().get(0);
    assert_eq!(roles, 3);
    let id: i64 = c.query_one("insert into users (email) values ('a@b.c') returning id", &[]).await.unwrap().get(0);
    assert_eq!(id, 1);
    let sku: i64 = c
        .query_one("insert into products (category_id, name, price_cents) values (1, 'x', 1) returning sku", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sku, 1002, "the explicit sequence continues from the template's state");
    c.execute("insert into orders (user_id) values (1)", &[]).await.unwrap();
    let audited: i64 = c.query_one("select count(*) from audit_log", &[]).await.unwrap().get(0);
    assert_eq!(audited, 1, "the trigger fires in the new schema");
    let in_public: bool = c.query_one("select to_regclass('public.users') is not null", &[]).await.unwrap().get(0);
    assert!(!in_public, "nothing lands in public");
    s.release().await.unwrap();
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_with_a_leaked_idle_in_transaction_connection_finishes_fast() {
    let (engine, warnings) = engine_with_warnings().await;
    let tpl = engine.template(migrations()).await.unwrap();
    let s = engine.acquire(&tpl, Identity::new("r4", "leaky test")).await.unwrap();
    let name = s.name().to_owned();
    let leaked = connect(s.url()).await;
    leaked.batch_execute("begin; select * from users; lock table roles in access share mode").await.unwrap();
    let t = Instant::now();
    assert_ne!(s.release().await.unwrap(), Released::Kept);
    engine.flush().await; // leaked sessions are ended by the background part of the release
    let took = t.elapsed();
    assert!(took < Duration::from_secs(10), "release took {took:?}");
    assert!(!schema_exists(&engine, &name).await);
    assert_eq!(registry_rows(&engine, &name).await, 0);
    assert!(leaked.simple_query("select 1").await.is_err(), "leaked backend was not terminated");
    let w = warnings.lock().unwrap().join("\n");
    assert!(w.contains("leaked connection") && w.contains("leaky test"), "warning should name the test: {w:?}");
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_policy_keeps_failed_schemas_and_drops_passing_ones() {
    let mut cfg = config();
    cfg.keep = Keep::Failed;
    let engine = pgisolate::Engine::start(cfg).await.unwrap();
    let tpl = engine.template(migrations()).await.unwrap();
    let failed = engine.acquire(&tpl, Identity::new("keep", "fails")).await.unwrap();
    let passed = engine.acquire(&tpl, Identity::new("keep", "passes")).await.unwrap();
    let (f, p) = (failed.name().to_owned(), passed.name().to_owned());
    assert_eq!(failed.finish(true).await.unwrap(), Released::Kept);
    assert_ne!(passed.finish(false).await.unwrap(), Released::Kept);
    assert!(schema_exists(&engine, &f).await);
    assert!(!schema_exists(&engine, &p).await);
    let listed = engine.list().await.unwrap();
    assert!(listed.iter().any(|e| e.schema == f && e.state == "kept"), "ls shows the kept schema");
    // gc leaves kept schemas alone even when asked with zero grace, unless told to include them.
    engine.gc_with(Duration::ZERO, false).await.unwrap();
    assert!(schema_exists(&engine, &f).await);
    engine.drop_schema(&f).await.unwrap();
    assert!(!schema_exists(&engine, &f).await);
    assert_eq!(registry_rows(&engine, &f).await, 0);
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_built_template_with_begin_and_commit() {
    let engine = engine().await;
    let key = format!("orm-automigrate-{}", unique());
    let build = match engine.template_begin(&key).await.unwrap() {
        TemplateStart::Build(b) => b,
        TemplateStart::Ready(_) => panic!("a fresh key cannot be ready"),
    };
    let c = connect(build.url()).await;
    c.batch_execute(
        "create table widgets (id serial primary key, label text not null unique); \
         insert into widgets (label) values ('seed')",
    )
    .await
    .unwrap();
    drop(c);
    let tpl = build.commit().await.unwrap();
    assert!(tpl.built_here());
    match engine.template_begin(&key).await.unwrap() {
        TemplateStart::Ready(t) => assert_eq!(t.schema(), tpl.schema()),
        TemplateStart::Build(_) => panic!("second begin must find the template"),
    }
    let s = engine.acquire(&tpl, Identity::new("orm", "widgets")).await.unwrap();
    let c = connect(s.url()).await;
    let id: i32 = c.query_one("insert into widgets (label) values ('new') returning id", &[]).await.unwrap().get(0);
    assert_eq!(id, 2, "seed row and sequence state replayed");
    s.release().await.unwrap();
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_names_its_file_and_leaves_no_build() {
    let engine = engine().await;
    let dir = std::env::temp_dir().join(format!("pgi-bad-mig-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("001_ok.sql"), "create table a (id int);").unwrap();
    std::fs::write(dir.join("002_bad.sql"), "create table b (id int references nowhere (id));").unwrap();
    let err = engine.template(Migrations::dir(&dir)).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("002_bad.sql") && msg.contains("nowhere"), "{msg}");
    let admin = connect(engine.url()).await;
    let builds: i64 = admin
        .query_one("select count(*) from pg_namespace where nspname like 'tpl_build_%' and obj_description(oid, 'pg_namespace') like $1", &[&format!("%owner={} %", engine.owner())])
        .await
        .unwrap()
        .get(0);
    assert_eq!(builds, 0);
    std::fs::remove_dir_all(&dir).unwrap();
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_reserved_schemas_are_never_dropped() {
    let engine = engine().await;
    let admin = connect(engine.url()).await;
    let tag = unique();
    let plain = format!("test_{}", &tag[..8]);
    let foreign_version = format!("test_v0_{}", &tag[..8]);
    let user_tpl = format!("tpl_{}", &tag[..8]);
    admin
        .batch_execute(&format!(
            "create schema {plain}; create schema {foreign_version}; create schema {user_tpl}; \
             comment on schema {foreign_version} is 'pgisolate:v0:schema owner=1 t=1'"
        ))
        .await
        .unwrap();
    let report = engine.gc_with(Duration::ZERO, true).await.unwrap();
    for s in [&plain, &foreign_version, &user_tpl] {
        assert!(!report.dropped.contains(s), "gc dropped {s}");
        assert!(schema_exists(&engine, s).await, "{s} is gone");
    }
    for s in ["public", "information_schema", "pg_catalog", plain.as_str()] {
        let err = engine.drop_schema(s).await.unwrap_err();
        assert_eq!(err.code(), "refused", "{s}: {err}");
    }
    admin
        .batch_execute(&format!("drop schema {plain}; drop schema {foreign_version}; drop schema {user_tpl}"))
        .await
        .unwrap();
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_with_five_thousand_tables_is_dropped_in_batches() {
    let engine = engine().await;
    let tpl = engine.template(Migrations::sql("create table seed (id int);")).await.unwrap();
    let s = engine.acquire(&tpl, Identity::new("r1", "five thousand tables")).await.unwrap();
    let name = s.name().to_owned();
    let c = connect(s.url()).await;
    for chunk in 0..10 {
        c.batch_execute(&format!(
            "do $$ begin for i in {lo}..{hi} loop execute format('create table t%s (id int)', i); end loop; end $$;",
            lo = chunk * 500,
            hi = chunk * 500 + 499
        ))
        .await
        .unwrap();
    }
    let n: i64 = c
        .query_one(
            "select count(*) from pg_class where relnamespace = current_schema()::regnamespace and relkind = 'r'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5001);
    drop(c);
    let admin = connect(engine.url()).await;
    let before: i64 = admin
        .query_one("select xact_commit from pg_stat_database where datname = current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let t = Instant::now();
    s.release().await.unwrap();
    engine.flush().await; // the drop itself runs in the background
    eprintln!("dropped 5,001 tables in {:?}", t.elapsed());
    assert!(!schema_exists(&engine, &name).await);
    assert_eq!(registry_rows(&engine, &name).await, 0);
    // Stats are reported with a delay; when they are in, they show many small transactions.
    tokio::time::sleep(Duration::from_millis(700)).await;
    admin.batch_execute("select pg_stat_clear_snapshot()").await.unwrap();
    let after: i64 = admin
        .query_one("select xact_commit from pg_stat_database where datname = current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(after - before >= 50, "expected at least 50 drop transactions, saw {}", after - before);
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_engine_refuses_work_and_close_is_idempotent() {
    let engine = engine().await;
    let tpl = engine.template(migrations()).await.unwrap();
    engine.close().await.unwrap();
    engine.close().await.unwrap();
    let err = engine.acquire(&tpl, Identity::new("closed", "x")).await.unwrap_err();
    assert_eq!(err.code(), "closed");
}

#[test]
fn cargo_test_glue_gives_this_test_its_own_schema() {
    let name;
    {
        let schema = pgisolate::testing::schema_from(migrations());
        name = schema.name().to_owned();
        let id = pgisolate::testing::current_identity();
        assert!(id.scenario.contains("cargo_test_glue_gives_this_test_its_own_schema"), "{id:?}");
        assert_eq!(name, pgisolate::schema_name("test_", 8, &id).unwrap());
        let url = schema.url().to_owned();
        let current = pgisolate::testing::block_on(async move {
            let c = connect(&url).await;
            scalar_string(&c, "select current_schema()::text").await
        });
        assert_eq!(current, name);
    }
    let engine = pgisolate::testing::engine();
    let n = name.clone();
    let exists = pgisolate::testing::block_on(async move { schema_exists(&engine, &n).await });
    assert!(!exists, "{name} survived the end of the test");
}

/// `url` with its user replaced by `user` (and no password).
fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host_start = rest.find('/').unwrap_or(rest.len());
    let hostpart = &rest[..host_start];
    let host = hostpart.rsplit_once('@').map_or(hostpart, |(_, h)| h);
    format!("{scheme}://{user}@{host}{}", &rest[host_start..])
}

/// tests/vectors/errors.json's failures: the kind and the server's SQLSTATE (the other
/// bindings run the same file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_carry_their_kind_and_sqlstate() {
    use pgisolate::{Engine, ErrorKind};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/errors.json");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let engine = engine().await;
    let failures = doc["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 3);
    for f in failures {
        let name = f["name"].as_str().unwrap();
        let err = if let Some(user) = f.get("user") {
            let mut cfg = config();
            cfg.url = Some(with_user(engine.url(), user.as_str().unwrap()));
            Engine::start(cfg).await.map(|_| ()).unwrap_err()
        } else {
            let _holder = match f.get("lock") {
                Some(lock) => {
                    let c = connect(engine.url()).await;
                    c.execute("select pg_advisory_lock($1)", &[&lock.as_i64().unwrap()]).await.unwrap();
                    Some(c)
                }
                None => None,
            };
            engine.template(Migrations::sql(f["sql"].as_str().unwrap())).await.map(|_| ()).unwrap_err()
        };
        let want = ErrorKind::from_number(f["kind"].as_u64().unwrap() as u32).unwrap();
        assert_eq!(err.kind(), want, "{name}: {err}");
        assert_eq!(err.sqlstate(), f["sqlstate"].as_str(), "{name}: {err}");
        if want == ErrorKind::Connect {
            // The driver's error is kept as the source.
            assert!(std::error::Error::source(&err).is_some(), "{name}: no source");
        }
    }
    engine.close().await.unwrap();
}

/// The fence protocol in SQL: a hand-out's check takes the owner's fence lock shared, gc's
/// fence takes it exclusive before it reads the owner's row again. A fence never commits while
/// a hand-out of that owner is in flight, and a hand-out after the fence fails (PGI01).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_fence_waits_for_a_hand_out_in_flight_and_later_hand_outs_fail() {
    const FENCE_CLASS: i64 = 0x7067_6973 + 3; // pgisolate's fence-lock classid
    let engine = engine().await;
    let admin = connect(engine.url()).await;
    let key: i32 = 2_000_000_000 - (std::process::id() as i32 % 1000);
    admin
        .execute(
            "insert into pgisolate.owners (owner_key, host, pid, run_id, seen_at) values ($1, 'gone', 1, 'r', now() - interval '1 hour') \
             on conflict (owner_key) do update set seen_at = excluded.seen_at, fenced_at = null",
            &[&key],
        )
        .await
        .unwrap();
    let check = format!(
        "select pg_advisory_xact_lock_shared({FENCE_CLASS}, {key}); select pgisolate.fenced({key}) \
         where not exists (select from pgisolate.owners where owner_key = {key} and fenced_at is null)"
    );
    let hand_out = connect(engine.url()).await;
    hand_out.batch_execute(&format!("begin; {check}")).await.unwrap();
    let gc = connect(engine.url()).await;
    let fence = tokio::spawn(async move {
        let rows = gc.query("select * from pgisolate.fence(0)", &[]).await.unwrap();
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!fence.is_finished(), "the fence did not wait for the hand-out in flight");
    hand_out.batch_execute("commit").await.unwrap();
    let fenced = tokio::time::timeout(Duration::from_secs(10), fence).await.unwrap().unwrap();
    assert!(fenced.contains(&key), "the stale owner was not fenced: {fenced:?}");
    let err = hand_out.batch_execute(&format!("begin; {check}; commit")).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("PGI01"), "{err}");
    hand_out.batch_execute("rollback").await.unwrap();
    admin.execute("delete from pgisolate.owners where owner_key = $1", &[&key]).await.unwrap();
    engine.close().await.unwrap();
}

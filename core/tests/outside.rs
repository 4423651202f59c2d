//! Never share silently: a template build that reaches outside its own schema (another
//! schema, a table in public, a function elsewhere, rows in another schema's table, a
//! database-level setting) is refused, naming each object, and leaves nothing behind.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

mod common;

use std::path::PathBuf;

use common::*;
use pgisolate::{Engine, ErrorKind, Migrations};
use tokio_postgres::Client;

/// The builds of this file run one at a time: one build's objects outside are, to another
/// build running at the same moment on the same database, objects made while it ran.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A migrations directory with `files` (name, SQL), made fresh.
fn dir(files: &[(&str, String)]) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pgisolate-outside-{}", unique()));
    std::fs::create_dir_all(&d).unwrap();
    for (name, sql) in files {
        std::fs::write(d.join(name), sql).unwrap();
    }
    d
}

/// The audit migration set of issue 24, its names made unique (`audit_<u>`, `settings_<u>`).
fn audit_set(u: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "001_audit.sql",
            format!(
                "create schema audit_{u};\n\
                 create table audit_{u}.events (id bigserial primary key, what text not null);\n\
                 create table public.settings_{u} (k text primary key, v text);"
            ),
        ),
        (
            "002_users.sql",
            format!(
                "create table users (id bigserial primary key, email text unique not null);\n\
                 create function audit_{u}.log_user() returns trigger language plpgsql as $$\n\
                 begin insert into audit_{u}.events (what) values ('user ' || new.email); return new; end $$;\n\
                 create trigger users_audit after insert on users for each row execute function audit_{u}.log_user();"
            ),
        ),
    ]
}

async fn exists(c: &Client, sql: &str) -> bool {
    c.query_one(&format!("select ({sql}) is not null"), &[]).await.unwrap().get(0)
}

/// Nothing of a refused build is left: no build schema, no template, no registry row, and no
/// test or pool schema of this engine.
async fn nothing_left(engine: &Engine, admin: &Client) {
    let left: Vec<String> = admin
        .query(
            "select nspname::text from pg_namespace n where (nspname like 'tpl\\_build\\_%' \
             and obj_description(n.oid, 'pg_namespace') like $2) \
             or nspname in (select schema_name from pgisolate.leases where owner_key = $1)",
            &[&engine.owner(), &format!("%owner={} %", engine.owner())],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(left.is_empty(), "a refused build left {left:?}");
}

async fn refused(engine: &Engine, m: Migrations) -> String {
    let err = engine.template(m).await.expect_err("a build that reaches outside its schema must be refused");
    assert_eq!(err.kind(), ErrorKind::Migration, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("refused") && msg.contains("PGISOLATE_ISOLATION=database"), "{msg}");
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_schema_a_public_table_and_a_function_elsewhere_are_refused_and_dropped() {
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = engine().await;
    let admin = connect(engine.url()).await;
    let u = unique();
    let msg = refused(&engine, Migrations::dir(dir(&audit_set(&u)))).await;
    for what in [
        format!("schema audit_{u}: created by the build; dropped"),
        format!("table audit_{u}.events: created by the build; dropped"),
        format!("table public.settings_{u}: created by the build; dropped (create it unqualified"),
        format!("function audit_{u}.log_user(): created by the build; dropped"),
    ] {
        assert!(msg.contains(&what), "the refusal does not say {what:?}:\n{msg}");
    }
    assert!(!exists(&admin, &format!("to_regnamespace('audit_{u}')")).await, "schema audit_{u} was left");
    assert!(!exists(&admin, &format!("to_regclass('public.settings_{u}')")).await, "public.settings_{u} was left");
    nothing_left(&engine, &admin).await;
    // The same build again: refused the same way (nothing it made is left to collide with).
    let again = refused(&engine, Migrations::dir(dir(&audit_set(&u)))).await;
    assert!(again.contains(&format!("schema audit_{u}: created by the build; dropped")), "{again}");
    nothing_left(&engine, &admin).await;
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_way_out_of_the_schema_is_named() {
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = engine().await;
    let admin = connect(engine.url()).await;
    let u = unique();
    let db: String = admin.query_one("select current_database()::text", &[]).await.unwrap().get(0);
    // Objects that were there before the build: changed or written, never dropped.
    admin
        .batch_execute(&format!(
            "create schema pre_{u}; create table pre_{u}.log (n int); create table public.pre_{u} (n int);"
        ))
        .await
        .unwrap();
    let cases: Vec<(String, String, &str)> = vec![
        (
            format!("create table t (id int); create table public.x_{u} (id int);"),
            format!("table public.x_{u}"),
            "dropped",
        ),
        (
            format!("create table t (id int); create function public.f_{u}() returns int language sql as 'select 1';"),
            format!("function public.f_{u}()"),
            "dropped",
        ),
        (
            format!("create table t (id int); alter database {db} set pgisolate.test_{u} = 'on';"),
            format!("setting pgisolate.test_{u}=on of database {db}"),
            "reset",
        ),
        (
            format!("create table t (id int); insert into pre_{u}.log values (1);"),
            format!("table pre_{u}.log"),
            "rows written",
        ),
        (
            format!("create table t (id int); alter table public.pre_{u} add column m int;"),
            format!("table public.pre_{u}"),
            "changed",
        ),
        (
            format!("create table t (id int references public.pre_{u}_k (id));"),
            format!("needs table public.pre_{u}_k"),
            "outside the template",
        ),
    ];
    admin.batch_execute(&format!("create table public.pre_{u}_k (id int primary key)")).await.unwrap();
    for (sql, what, fate) in &cases {
        // A build cannot see public: the foreign key names it, which is reaching outside too.
        let msg = refused(&engine, Migrations::sql(format!("-- {}\n{sql}", unique()))).await;
        assert!(msg.contains(what.as_str()) && msg.contains(fate), "{sql}: want {what:?} ({fate}) in:\n{msg}");
        nothing_left(&engine, &admin).await;
    }
    assert!(!exists(&admin, &format!("to_regclass('public.x_{u}')")).await);
    assert!(!exists(&admin, &format!("to_regprocedure('public.f_{u}()')")).await);
    let setting: i64 = admin
        .query_one(
            "select count(*) from pg_db_role_setting s, unnest(s.setconfig) c where c like $1",
            &[&format!("pgisolate.test_{u}=%")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(setting, 0, "the database setting the build added was not reset");
    // What was there before stays, with what the build did to it.
    let rows: i64 = admin.query_one(&format!("select count(*) from pre_{u}.log"), &[]).await.unwrap().get(0);
    assert_eq!(rows, 1, "rows written into a table that was there before are not undone");
    admin
        .batch_execute(&format!("drop schema pre_{u} cascade; drop table public.pre_{u}, public.pre_{u}_k"))
        .await
        .unwrap();
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_run_build_that_reaches_outside_is_refused_at_commit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = engine().await;
    let admin = connect(engine.url()).await;
    let u = unique();
    let start = engine.template_begin(&format!("caller-{u}")).await.unwrap();
    let pgisolate::TemplateStart::Build(b) = start else { panic!("a new key must build") };
    let tool = connect(b.url()).await;
    tool.batch_execute(&format!(
        "begin; create table users (id int); create schema audit_{u}; create table audit_{u}.events (id int); commit;"
    ))
    .await
    .unwrap();
    drop(tool);
    let err = b.commit().await.expect_err("refused");
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Migration);
    assert!(msg.contains(&format!("schema audit_{u}")) && msg.contains(&format!("table audit_{u}.events")), "{msg}");
    // The embedded server's admin is a superuser: the DDL watch tells the tool's transactions.
    let superuser: bool =
        admin.query_one("select rolsuper from pg_roles where rolname = current_user", &[]).await.unwrap().get(0);
    if superuser {
        assert!(msg.contains(&format!("schema audit_{u}: created by the build; dropped")), "{msg}");
        assert!(!exists(&admin, &format!("to_regnamespace('audit_{u}')")).await);
    } else {
        assert!(msg.contains("left in place"), "{msg}");
        admin.batch_execute(&format!("drop schema audit_{u} cascade")).await.unwrap();
    }
    nothing_left(&engine, &admin).await;
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_drops_what_it_had_made_outside() {
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = engine().await;
    let admin = connect(engine.url()).await;
    let u = unique();
    let d = dir(&[
        ("001.sql", format!("create schema side_{u}; create table side_{u}.t (id int);")),
        ("002.sql", "create table broken (id int references nowhere (id));".to_owned()),
    ]);
    let err = engine.template(Migrations::dir(d)).await.expect_err("the second step fails");
    let msg = err.to_string();
    assert!(
        msg.contains("nowhere") && msg.contains(&format!("schema side_{u}: created by the build; dropped")),
        "{msg}"
    );
    assert!(!exists(&admin, &format!("to_regnamespace('side_{u}')")).await, "side_{u} was left");
    nothing_left(&engine, &admin).await;
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_that_stay_inside_their_schema_still_build() {
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = engine().await;
    let tpl = engine.template(migrations()).await.unwrap();
    let s = engine.acquire(&tpl, pgisolate::Identity::new("outside", "inside")).await.unwrap();
    s.release().await.unwrap();
    // Extensions and the tool's version table live where they should; a pre-existing public
    // table of the same name is not touched (the build cannot see public).
    let u = unique();
    let admin = connect(engine.url()).await;
    admin.batch_execute(&format!("create table public.same_{u} (id int)")).await.unwrap();
    engine
        .template(Migrations::sql(format!(
            "create table same_{u} (id int); create table schema_migrations (version text); \
             insert into schema_migrations values ('1'); create extension if not exists pgcrypto;"
        )))
        .await
        .unwrap();
    admin.batch_execute(&format!("drop table public.same_{u}")).await.unwrap();
    engine.close().await.unwrap();
}

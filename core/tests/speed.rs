//! Template replay (clone ≡ template), the warm pool, recycling and deferred drops.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

mod common;

use common::*;
use std::sync::{Arc, Mutex};

use pgisolate::{catalog, Identity, Migrations, Released};
use tokio_postgres::Client;

const RICH: &str = "
create type mood as enum ('sad', 'ok', 'happy');
create domain email as text check (value like '%@%');
create type pair as (a int, b text);
create sequence ticket_seq start 100 increment 5;
create table people (
  id int generated always as identity primary key,
  mail email not null unique,
  feeling mood default 'ok',
  ticket bigint default nextval('ticket_seq'),
  born date check (born > '1900-01-01')
);
create table events (id bigserial, at timestamptz not null default now(), who int references people (id) on delete cascade)
  partition by range (at);
create table events_2026 partition of events for values from ('2026-01-01') to ('2027-01-01');
create index people_feeling on people (feeling) where feeling <> 'ok';
create view happy_people as select id, mail from people where feeling = 'happy';
create materialized view people_count as select count(*) as n from people;
create function shout(t text) returns text language sql immutable as $$ select upper(t) || '!' $$;
create function touch() returns trigger language plpgsql as $$ begin new.born := coalesce(new.born, '2000-01-01'); return new; end $$;
create trigger people_touch before insert on people for each row execute function touch();
insert into people (mail, feeling) values ('seed@example.com', 'happy');
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_schema_equals_its_template_by_catalog_fingerprint() {
    let engine = engine().await;
    let admin = connect(engine.url()).await;
    for migrations in [migrations(), Migrations::sql(format!("-- {}\n{RICH}", unique()))] {
        let tpl = engine.template(migrations).await.unwrap();
        let s = engine.acquire(&tpl, Identity::new("replay", "equals template")).await.unwrap();
        let (want, want_lines) = catalog::fingerprint(&admin, tpl.schema()).await.unwrap();
        let (got, got_lines) = catalog::fingerprint(&admin, s.name()).await.unwrap();
        assert!(want_lines.len() > 20, "fingerprint saw too little: {want_lines:?}");
        assert_eq!(got, want, "copy differs from template:\n{}", diff(&want_lines, &got_lines));
        s.release().await.unwrap();
    }
    engine.close().await.unwrap();
}

fn diff(a: &[String], b: &[String]) -> String {
    let only_a: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_b: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
    format!("template only: {only_a:#?}\ncopy only: {only_b:#?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_takes_a_ready_schema_from_the_warm_pool() {
    let engine = engine().await;
    let tpl = engine.template(migrations()).await.unwrap();
    engine.flush().await; // the pool is full
    let admin = connect(engine.url()).await;
    let newest: i64 = admin.query_one("select max(oid)::int8 from pg_namespace", &[]).await.unwrap().get(0);
    let s = engine.acquire(&tpl, Identity::new("pool", "ready")).await.unwrap();
    let oid: i64 =
        admin.query_one("select oid::int8 from pg_namespace where nspname = $1", &[&s.name()]).await.unwrap().get(0);
    assert!(oid <= newest, "{} was created at acquire time, not taken from the pool", s.name());
    let c = connect(s.url()).await;
    assert_eq!(scalar_string(&c, "select current_schema()::text").await, s.name());
    let roles: i64 = c.query_one("select count(*) from roles", &[]).await.unwrap().get(0);
    assert_eq!(roles, 3);
    drop(c);
    s.release().await.unwrap();
    engine.close().await.unwrap();
    let left: i64 = admin
        .query_one(
            "select count(*) from pg_namespace where obj_description(oid, 'pg_namespace') like $1",
            &[&format!("pgisolate:v1:% owner={} %", engine.owner())],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "close left pool schemas or tombstones behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_schema_is_reset_and_recycled_unless_its_ddl_changed() {
    let (engine, warnings) = engine_with_warnings().await;
    recycles_unless_ddl_changed(engine, warnings).await;
}

/// A role of its own owning a database of its own (no superuser): CREATEROLE or a plain role.
async fn own_database(createrole: bool) -> (String, String, Client) {
    let admin_url = engine().await.url().to_owned();
    let admin = connect(&admin_url).await;
    let role = format!("pgi_nosu_{}{}", if createrole { "cr_" } else { "" }, unique().to_lowercase());
    let attrs = if createrole { "LOGIN CREATEROLE" } else { "LOGIN" };
    admin.batch_execute(&format!("create role {role} {attrs}")).await.unwrap();
    admin.batch_execute(&format!("create database {role} owner {role}")).await.unwrap();
    let (scheme, rest) = admin_url.split_once("://").unwrap();
    let (_, hostpart) = rest.split_once('@').unwrap();
    let (host, query) =
        hostpart.split_once('/').map(|(h, q)| (h, q.split_once('?').map(|(_, q)| q).unwrap_or(""))).unwrap();
    (role.clone(), format!("{scheme}://{role}@{host}/{role}?{query}"), admin)
}

async fn without_superuser(createrole: bool) {
    let (role, url, admin) = own_database(createrole).await;
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let w = warnings.clone();
    let mut c = config();
    c.url = Some(url);
    c.on_warning = Some(Arc::new(move |m: &str| w.lock().unwrap().push(m.to_owned())));
    let engine = pgisolate::Engine::start(c).await.unwrap();
    let su: bool = connect(engine.url())
        .await
        .query_one("select rolsuper from pg_roles where rolname = current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!su, "the engine's role must not be a superuser here");
    resets_only_what_the_test_wrote(&engine, false).await;
    recycles_unless_ddl_changed(engine, warnings).await;
    drop_database_force(&admin, &role).await;
    admin.batch_execute(&format!("drop role {role}")).await.unwrap();
}

/// Recycling needs no superuser: the schema's catalog rows are compared with its hand-out,
/// and a recycled schema is reset by TRUNCATE; under a CREATEROLE-only admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_createrole_admin_recycles_too() {
    without_superuser(true).await;
}

/// The same under a plain role that only owns its database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_owner_role_recycles_too() {
    without_superuser(false).await;
}

const WRITES: &str = "
create table parent (id serial primary key, name text not null);
create table child (id serial primary key, parent_id int not null references parent (id) on delete cascade, note text);
create table untouched (id serial primary key, v text);
create table ev (id bigserial, k int not null) partition by range (k);
create table ev_1 partition of ev for values from (0) to (100);
create table trg_log (id serial primary key, what text);
create function log_it() returns trigger language plpgsql as $$ begin insert into trg_log (what) values (tg_op); return new; end $$;
create trigger parent_log after insert on parent for each row execute function log_it();
create trigger parent_off after insert on parent for each row execute function log_it();
alter table parent disable trigger parent_off;
insert into parent (name) values ('p1'), ('p2');
insert into child (parent_id, note) values (1, 'c1');
insert into untouched (v) values ('u');
";

/// A recycled schema gets back exactly the template's rows and sequence positions while only
/// the tables the test wrote are reset: writes through a foreign-key cascade, straight into a
/// partition and under `session_replication_role = replica` count; a rolled-back insert moves
/// only its sequence; a table nobody wrote keeps its rows (same xmin); user triggers keep their
/// enabled/disabled state.
async fn resets_only_what_the_test_wrote(engine: &pgisolate::Engine, superuser: bool) {
    let tpl = engine.template(Migrations::sql(format!("-- {}\n{WRITES}", unique()))).await.unwrap();
    engine.flush().await;
    let admin = connect(engine.url()).await;
    let (want, _) = catalog::fingerprint(&admin, tpl.schema()).await.unwrap();
    let ns = |name: String| {
        let admin = &admin;
        async move {
            admin
                .query_one("select oid::int8 from pg_namespace where nspname = $1", &[&name])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let s = engine.acquire(&tpl, Identity::new("reset", "writes")).await.unwrap();
    let first = ns(s.name().to_owned()).await;
    let c = connect(s.url()).await;
    let untouched_xmin = scalar_string(&c, "select xmin::text from untouched").await;
    for sql in [
        "delete from parent where id = 1",
        "begin; insert into untouched (v) values ('gone'); rollback",
        "insert into ev_1 (k) values (5)",
    ] {
        c.batch_execute(sql).await.unwrap();
    }
    if superuser {
        c.batch_execute("set session_replication_role = replica; insert into trg_log (what) values ('replica')")
            .await
            .unwrap();
    }
    drop(c);
    assert_eq!(s.release().await.unwrap(), Released::Recycled);
    engine.flush().await;
    // The pool hands out its schemas last in, first out, and a refill may finish after it.
    let mut others = Vec::new();
    let s = loop {
        let s = engine.acquire(&tpl, Identity::new("reset", format!("after {}", others.len()))).await.unwrap();
        if ns(s.name().to_owned()).await == first {
            break s;
        }
        assert!(others.len() < 4, "the recycled schema never came back");
        others.push(s);
    };
    let notes: i64 = admin
        .query_one(
            "select count(*) from pgisolate.written w join pg_class c on c.oid = w.rel \
             where c.relnamespace = to_regnamespace(quote_ident($1))",
            &[&s.name()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(notes, 0, "the reset's own writes left write notes behind");
    let c = connect(s.url()).await;
    let count = |t: &'static str| {
        let c = &c;
        async move { c.query_one(&format!("select count(*) from {t}"), &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("parent").await, 2, "deleted seed row restored");
    assert_eq!(count("child").await, 1, "a row a cascade deleted is restored");
    assert_eq!(count("ev").await, 0, "a row written straight into a partition is gone");
    assert_eq!(count("trg_log").await, 2, "seed rows restored without firing triggers again");
    assert_eq!(
        scalar_string(&c, "select xmin::text from untouched").await,
        untouched_xmin,
        "an unwritten table was reset"
    );
    let next: i32 = c.query_one("insert into untouched (v) values ('n') returning id", &[]).await.unwrap().get(0);
    assert_eq!(next, 2, "the sequence a rolled-back insert moved is set back");
    let states: Vec<String> = c
        .query(
            "select tgname || '=' || tgenabled::text from pg_trigger where tgrelid = 'parent'::regclass and not tgisinternal \
             order by tgname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(states, ["parent_log=O", "parent_off=D", "pgisolate_written=A"]);
    c.execute("insert into parent (name) values ('p3')", &[]).await.unwrap();
    assert_eq!(count("trg_log").await, 3, "an enabled trigger fires, a disabled one does not");
    drop(c);
    let (got, _) = catalog::fingerprint(&admin, s.name()).await.unwrap();
    assert_eq!(got, want);
    assert_eq!(s.release().await.unwrap(), Released::Recycled);
    for o in others {
        o.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recycled_schema_is_reset_where_the_test_wrote_only() {
    let engine = engine().await;
    resets_only_what_the_test_wrote(&engine, true).await;
    engine.close().await.unwrap();
}

/// Noting a write never makes a test's session wait for another one (a job-queue test holds a
/// transaction on one connection while another writes the same table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noting_writes_never_blocks_a_second_session() {
    let engine = engine().await;
    let tpl = engine.template(migrations()).await.unwrap();
    let s = engine.acquire(&tpl, Identity::new("reset", "two sessions")).await.unwrap();
    let (a, b) = (connect(s.url()).await, connect(s.url()).await);
    a.batch_execute("begin; insert into users (email) values ('a@x')").await.unwrap();
    b.batch_execute("set statement_timeout = '3s'; insert into users (email) values ('b@x')")
        .await
        .expect("the second session's write waited for the first one's transaction");
    a.batch_execute("commit").await.unwrap();
    drop((a, b));
    assert_eq!(s.release().await.unwrap(), Released::Recycled);
    engine.close().await.unwrap();
}

async fn recycles_unless_ddl_changed(engine: pgisolate::Engine, warnings: Arc<Mutex<Vec<String>>>) {
    let tpl = engine.template(migrations()).await.unwrap();
    engine.flush().await;
    let admin = connect(engine.url()).await;
    let (want, _) = catalog::fingerprint(&admin, tpl.schema()).await.unwrap();

    let s = engine.acquire(&tpl, Identity::new("recycle", "dirty data")).await.unwrap();
    let name = s.name().to_owned();
    let c = connect(s.url()).await;
    c.batch_execute(
        "insert into users (email) values ('a@x'), ('b@x'); delete from roles where name = 'viewer'; \
         insert into products (category_id, name, price_cents) values (1, 'x', 1); insert into orders (user_id) values (1); \
         select nextval('sku_seq'), nextval('sku_seq');",
    )
    .await
    .unwrap();
    drop(c);
    assert_eq!(s.release().await.unwrap(), Released::Recycled);
    assert!(!schema_exists(&engine, &name).await);
    assert_eq!(registry_rows(&engine, &name).await, 0);

    // The next schema comes from the pool, possibly the recycled one: it must look new.
    for i in 0..3 {
        let s = engine.acquire(&tpl, Identity::new("recycle", format!("clean {i}"))).await.unwrap();
        let c = connect(s.url()).await;
        let n: i64 = c.query_one("select count(*) from users", &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "rows of an earlier test survived in {}", s.name());
        let roles: i64 = c.query_one("select count(*) from roles", &[]).await.unwrap().get(0);
        assert_eq!(roles, 3, "seed rows were not restored");
        let id: i64 = c.query_one("insert into users (email) values ('a@x') returning id", &[]).await.unwrap().get(0);
        assert_eq!(id, 1, "sequence not restarted");
        let sku: i64 = c
            .query_one("insert into products (category_id, name, price_cents) values (1, 'y', 1) returning sku", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(sku, 1002, "explicit sequence not reset to the template's position");
        c.execute("insert into orders (user_id) values (1)", &[]).await.unwrap();
        let audited: i64 = c.query_one("select count(*) from audit_log", &[]).await.unwrap().get(0);
        assert_eq!(audited, 1, "the trigger must fire again after a reset");
        assert!(
            c.execute("insert into orders (user_id) values (999)", &[]).await.is_err(),
            "foreign keys are enforced"
        );
        drop(c);
        let (got, _) = catalog::fingerprint(&admin, s.name()).await.unwrap();
        assert_eq!(got, want);
        assert_eq!(s.release().await.unwrap(), Released::Recycled);
    }

    // DDL in the test: never recycled, whatever the statement.
    for ddl in [
        "create function hello() returns int language sql as 'select 1'",
        "drop view order_totals",
        "create index users_name on users (name)",
        "alter table roles rename column name to title",
        "create type color as enum ('red')",
        "grant select on users to public",
        "alter table users add column nickname text",
        "create trigger again after insert on orders for each row execute function log_order_change()",
        "alter table users add constraint positive check (id > 0)",
        "comment on table users is 'changed'",
        "create sequence another_seq",
        "alter table users alter column name set default 'x'",
    ] {
        let s = engine.acquire(&tpl, Identity::new("recycle", "ddl")).await.unwrap();
        let c = connect(s.url()).await;
        c.batch_execute(ddl).await.unwrap();
        drop(c);
        assert_eq!(s.release().await.unwrap(), Released::Dropped, "recycled after: {ddl}");
    }
    // The same name again, without DDL this time: what the last test did there is forgotten.
    let s = engine.acquire(&tpl, Identity::new("recycle", "ddl")).await.unwrap();
    assert_eq!(s.release().await.unwrap(), Released::Recycled, "the name's earlier DDL was held against it");
    let s = engine.acquire(&tpl, Identity::new("recycle", "after ddl")).await.unwrap();
    let c = connect(s.url()).await;
    assert!(c.execute("select nickname from users", &[]).await.is_err(), "a changed schema came back");
    drop(c);
    s.release().await.unwrap();
    assert!(warnings.lock().unwrap().is_empty(), "{:?}", warnings.lock().unwrap());
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycling_can_be_turned_off() {
    let mut cfg = config();
    cfg.recycle = false;
    let engine = pgisolate::Engine::start(cfg).await.unwrap();
    let tpl = engine.template(migrations()).await.unwrap();
    let s = engine.acquire(&tpl, Identity::new("recycle", "off")).await.unwrap();
    assert_eq!(s.release().await.unwrap(), Released::Dropped);
    engine.close().await.unwrap();
}

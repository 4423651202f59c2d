//! sqlx migrate and refinery build the template, once per server, keyed by the migrations'
//! contents; every test gets its own schema, with the tool's version table in it.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

use pgisolate::{Engine, Identity, Migrations, Template};
use pgisolate_example_migrations::{refinery_migrate, refinery_migrations, sqlx_migrate, sqlx_migrations};

async fn engine() -> Engine {
    let mut cfg = pgisolate::Config::from_env().unwrap(); // embedded server unless PGISOLATE_DATABASE_URL is set
    cfg.gc_on_start = false;
    Engine::start(cfg).await.unwrap()
}

/// Acquires `n` schemas at once and runs `insert` in each through an sqlx pool on the handed-out
/// URL (the same unique row in all of them); returns what `check` reads in each.
async fn isolated(engine: &Engine, tpl: &Template, who: &str, insert: &str, check: &str) -> Vec<i64> {
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (engine, tpl) = (engine.clone(), tpl.clone());
        let (insert, check, who) = (insert.to_owned(), check.to_owned(), who.to_owned());
        tasks.push(tokio::spawn(async move {
            let s = engine.acquire(&tpl, Identity::new(who, format!("worker {i}"))).await.unwrap();
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(s.url()).await.unwrap();
            let current: String = sqlx::query_scalar("select current_schema()::text").fetch_one(&pool).await.unwrap();
            assert_eq!(current, s.name(), "sqlx lands in the schema");
            sqlx::query(&insert).execute(&pool).await.unwrap_or_else(|e| panic!("{insert} in {}: {e}", s.name()));
            let n: i64 = sqlx::query_scalar(&check).fetch_one(&pool).await.unwrap();
            pool.close().await;
            s.release().await.unwrap();
            n
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_migrate_builds_the_template() {
    let engine = engine().await;
    let inputs = [sqlx_migrations()];
    let tpl = engine.template_with_inputs("sqlx", &inputs, sqlx_migrate).await.unwrap();
    let again = engine
        .template_with_inputs("sqlx", &inputs, |_| async { panic!("unchanged migrations were rebuilt") })
        .await
        .unwrap();
    assert_eq!(again.schema(), tpl.schema());
    // _sqlx_migrations is in each test's schema, with both migrations applied (up only).
    let counts = isolated(
        &engine,
        &tpl,
        "sqlx",
        "insert into accounts (email) values ('alice@example.com')",
        "select count(*) from _sqlx_migrations where success",
    )
    .await;
    assert_eq!(counts, [2, 2, 2]);
    // Without the tool: the engine reads the sqlx layout itself (.up.sql only).
    let own = engine.template(Migrations::dir(sqlx_migrations())).await.unwrap();
    let n = isolated(
        &engine,
        &own,
        "sqlx layout",
        "insert into accounts (email) values ('bob@example.com')",
        "select count(*) from accounts where crypt('secret', password_hash) = password_hash",
    )
    .await;
    assert_eq!(n, [1, 1, 1], "pgcrypto (made by the first migration) works in every schema");
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refinery_builds_the_template() {
    let engine = engine().await;
    let inputs = [refinery_migrations()];
    let tpl = engine.template_with_inputs("refinery", &inputs, refinery_migrate).await.unwrap();
    let versions = isolated(
        &engine,
        &tpl,
        "refinery",
        "insert into accounts (email, attributes) values ('carol@example.com', 'tier => gold')",
        "select max(version)::bigint from refinery_schema_history",
    )
    .await;
    assert_eq!(versions, [10, 10, 10], "refinery_schema_history in each schema, V10 applied after V2");
    // Without the tool: V1, V2, V10 in numeric order (V10 alters a table V1 made).
    let own = engine.template(Migrations::dir(refinery_migrations())).await.unwrap();
    let plans = isolated(
        &engine,
        &own,
        "refinery layout",
        "insert into accounts (email) values ('dave@example.com')",
        "select count(*) from accounts where plan = 'free' and attributes = ''::hstore",
    )
    .await;
    assert_eq!(plans, [1, 1, 1]);
    engine.close().await.unwrap();
}

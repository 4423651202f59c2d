//! 200 `#[tokio::test]` functions (current-thread and multi-thread runtimes, the blocking
//! `testing::schema()` and the async `testing::schema_async()`) and 200 `#[pgisolate::test]`
//! functions (async with an injected `tokio_postgres::Client` or `sqlx::PgPool`, sync with the
//! `&TestSchema`): every one registers the same email, which only works if each has its own
//! schema.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

use pgisolate::testing::{self, TestSchema};

const EMAIL: &str = "same@example.com";

async fn register(db: &tokio_postgres::Client) -> i64 {
    db.execute("insert into users (email) values ($1)", &[&EMAIL]).await.unwrap();
    db.query_one("select count(*) from users", &[]).await.unwrap().get(0)
}

async fn connect(schema: &TestSchema) -> tokio_postgres::Client {
    let (db, conn) = tokio_postgres::connect(schema.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    db
}

/// `#[tokio::test]` functions (with the given flavor) getting their schema from `$schema`.
macro_rules! tokio_tests {
    (#[$attr:meta] $schema:expr; $($name:ident)*) => { $(
        #[$attr]
        async fn $name() {
            let schema = $schema;
            assert_eq!(register(&connect(&schema).await).await, 1, "{} saw another test's rows", schema.name());
        }
    )* };
}

/// `#[pgisolate::test]` with an injected `tokio_postgres::Client`.
macro_rules! injected_client {
    ($($name:ident)*) => { $(
        #[pgisolate::test]
        async fn $name(db: tokio_postgres::Client) {
            assert_eq!(register(&db).await, 1);
        }
    )* };
}

/// `#[pgisolate::test]` with an injected `sqlx::PgPool` and the schema.
macro_rules! injected_pool {
    ($($name:ident)*) => { $(
        #[pgisolate::test]
        async fn $name(schema: &TestSchema, pool: sqlx::PgPool) {
            sqlx::query("insert into users (email) values ($1)").bind(EMAIL).execute(&pool).await.unwrap();
            let n: i64 = sqlx::query_scalar("select count(*) from users").fetch_one(&pool).await.unwrap();
            assert_eq!(n, 1, "{} saw another test's rows", schema.name());
        }
    )* };
}

/// A sync `#[pgisolate::test]` taking the schema.
macro_rules! sync_schema {
    ($($name:ident)*) => { $(
        #[pgisolate::test]
        fn $name(schema: &TestSchema) {
            let url = schema.url().to_owned();
            let n = testing::block_on(async move {
                let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                register(&db).await
            });
            assert_eq!(n, 1, "{} saw another test's rows", schema.name());
        }
    )* };
}

tokio_tests! {
    #[tokio::test] testing::schema(); // current-thread, the blocking call
    tokio_blocking_000 tokio_blocking_001 tokio_blocking_002 tokio_blocking_003 tokio_blocking_004 tokio_blocking_005 tokio_blocking_006 tokio_blocking_007 tokio_blocking_008 tokio_blocking_009
    tokio_blocking_010 tokio_blocking_011 tokio_blocking_012 tokio_blocking_013 tokio_blocking_014 tokio_blocking_015 tokio_blocking_016 tokio_blocking_017 tokio_blocking_018 tokio_blocking_019
    tokio_blocking_020 tokio_blocking_021 tokio_blocking_022 tokio_blocking_023 tokio_blocking_024 tokio_blocking_025 tokio_blocking_026 tokio_blocking_027 tokio_blocking_028 tokio_blocking_029
    tokio_blocking_030 tokio_blocking_031 tokio_blocking_032 tokio_blocking_033 tokio_blocking_034 tokio_blocking_035 tokio_blocking_036 tokio_blocking_037 tokio_blocking_038 tokio_blocking_039
    tokio_blocking_040 tokio_blocking_041 tokio_blocking_042 tokio_blocking_043 tokio_blocking_044 tokio_blocking_045 tokio_blocking_046 tokio_blocking_047 tokio_blocking_048 tokio_blocking_049
    tokio_blocking_050 tokio_blocking_051 tokio_blocking_052 tokio_blocking_053 tokio_blocking_054 tokio_blocking_055 tokio_blocking_056 tokio_blocking_057 tokio_blocking_058 tokio_blocking_059
    tokio_blocking_060 tokio_blocking_061 tokio_blocking_062 tokio_blocking_063 tokio_blocking_064 tokio_blocking_065 tokio_blocking_066 tokio_blocking_067 tokio_blocking_068 tokio_blocking_069
    tokio_blocking_070 tokio_blocking_071 tokio_blocking_072 tokio_blocking_073 tokio_blocking_074 tokio_blocking_075 tokio_blocking_076 tokio_blocking_077 tokio_blocking_078 tokio_blocking_079
    tokio_blocking_080 tokio_blocking_081 tokio_blocking_082 tokio_blocking_083 tokio_blocking_084 tokio_blocking_085 tokio_blocking_086 tokio_blocking_087 tokio_blocking_088 tokio_blocking_089
    tokio_blocking_090 tokio_blocking_091 tokio_blocking_092 tokio_blocking_093 tokio_blocking_094 tokio_blocking_095 tokio_blocking_096 tokio_blocking_097 tokio_blocking_098 tokio_blocking_099
}

tokio_tests! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)] testing::schema();
    tokio_multi_000 tokio_multi_001 tokio_multi_002 tokio_multi_003 tokio_multi_004 tokio_multi_005 tokio_multi_006 tokio_multi_007 tokio_multi_008 tokio_multi_009
    tokio_multi_010 tokio_multi_011 tokio_multi_012 tokio_multi_013 tokio_multi_014 tokio_multi_015 tokio_multi_016 tokio_multi_017 tokio_multi_018 tokio_multi_019
    tokio_multi_020 tokio_multi_021 tokio_multi_022 tokio_multi_023 tokio_multi_024 tokio_multi_025 tokio_multi_026 tokio_multi_027 tokio_multi_028 tokio_multi_029
    tokio_multi_030 tokio_multi_031 tokio_multi_032 tokio_multi_033 tokio_multi_034 tokio_multi_035 tokio_multi_036 tokio_multi_037 tokio_multi_038 tokio_multi_039
    tokio_multi_040 tokio_multi_041 tokio_multi_042 tokio_multi_043 tokio_multi_044 tokio_multi_045 tokio_multi_046 tokio_multi_047 tokio_multi_048 tokio_multi_049
}

tokio_tests! {
    #[tokio::test] testing::schema_async().await;
    tokio_async_000 tokio_async_001 tokio_async_002 tokio_async_003 tokio_async_004 tokio_async_005 tokio_async_006 tokio_async_007 tokio_async_008 tokio_async_009
    tokio_async_010 tokio_async_011 tokio_async_012 tokio_async_013 tokio_async_014 tokio_async_015 tokio_async_016 tokio_async_017 tokio_async_018 tokio_async_019
    tokio_async_020 tokio_async_021 tokio_async_022 tokio_async_023 tokio_async_024 tokio_async_025 tokio_async_026 tokio_async_027 tokio_async_028 tokio_async_029
    tokio_async_030 tokio_async_031 tokio_async_032 tokio_async_033 tokio_async_034 tokio_async_035 tokio_async_036 tokio_async_037 tokio_async_038 tokio_async_039
    tokio_async_040 tokio_async_041 tokio_async_042 tokio_async_043 tokio_async_044 tokio_async_045 tokio_async_046 tokio_async_047 tokio_async_048 tokio_async_049
}

injected_client! {
    injected_client_000 injected_client_001 injected_client_002 injected_client_003 injected_client_004 injected_client_005 injected_client_006 injected_client_007 injected_client_008 injected_client_009
    injected_client_010 injected_client_011 injected_client_012 injected_client_013 injected_client_014 injected_client_015 injected_client_016 injected_client_017 injected_client_018 injected_client_019
    injected_client_020 injected_client_021 injected_client_022 injected_client_023 injected_client_024 injected_client_025 injected_client_026 injected_client_027 injected_client_028 injected_client_029
    injected_client_030 injected_client_031 injected_client_032 injected_client_033 injected_client_034 injected_client_035 injected_client_036 injected_client_037 injected_client_038 injected_client_039
    injected_client_040 injected_client_041 injected_client_042 injected_client_043 injected_client_044 injected_client_045 injected_client_046 injected_client_047 injected_client_048 injected_client_049
    injected_client_050 injected_client_051 injected_client_052 injected_client_053 injected_client_054 injected_client_055 injected_client_056 injected_client_057 injected_client_058 injected_client_059
    injected_client_060 injected_client_061 injected_client_062 injected_client_063 injected_client_064 injected_client_065 injected_client_066 injected_client_067 injected_client_068 injected_client_069
    injected_client_070 injected_client_071 injected_client_072 injected_client_073 injected_client_074 injected_client_075 injected_client_076 injected_client_077 injected_client_078 injected_client_079
    injected_client_080 injected_client_081 injected_client_082 injected_client_083 injected_client_084 injected_client_085 injected_client_086 injected_client_087 injected_client_088 injected_client_089
    injected_client_090 injected_client_091 injected_client_092 injected_client_093 injected_client_094 injected_client_095 injected_client_096 injected_client_097 injected_client_098 injected_client_099
}

injected_pool! {
    injected_pool_000 injected_pool_001 injected_pool_002 injected_pool_003 injected_pool_004 injected_pool_005 injected_pool_006 injected_pool_007 injected_pool_008 injected_pool_009
    injected_pool_010 injected_pool_011 injected_pool_012 injected_pool_013 injected_pool_014 injected_pool_015 injected_pool_016 injected_pool_017 injected_pool_018 injected_pool_019
    injected_pool_020 injected_pool_021 injected_pool_022 injected_pool_023 injected_pool_024 injected_pool_025 injected_pool_026 injected_pool_027 injected_pool_028 injected_pool_029
    injected_pool_030 injected_pool_031 injected_pool_032 injected_pool_033 injected_pool_034 injected_pool_035 injected_pool_036 injected_pool_037 injected_pool_038 injected_pool_039
    injected_pool_040 injected_pool_041 injected_pool_042 injected_pool_043 injected_pool_044 injected_pool_045 injected_pool_046 injected_pool_047 injected_pool_048 injected_pool_049
}

sync_schema! {
    sync_schema_000 sync_schema_001 sync_schema_002 sync_schema_003 sync_schema_004 sync_schema_005 sync_schema_006 sync_schema_007 sync_schema_008 sync_schema_009
    sync_schema_010 sync_schema_011 sync_schema_012 sync_schema_013 sync_schema_014 sync_schema_015 sync_schema_016 sync_schema_017 sync_schema_018 sync_schema_019
    sync_schema_020 sync_schema_021 sync_schema_022 sync_schema_023 sync_schema_024 sync_schema_025 sync_schema_026 sync_schema_027 sync_schema_028 sync_schema_029
    sync_schema_030 sync_schema_031 sync_schema_032 sync_schema_033 sync_schema_034 sync_schema_035 sync_schema_036 sync_schema_037 sync_schema_038 sync_schema_039
    sync_schema_040 sync_schema_041 sync_schema_042 sync_schema_043 sync_schema_044 sync_schema_045 sync_schema_046 sync_schema_047 sync_schema_048 sync_schema_049
}

/// The options: migrations named by the attribute, a fixture run in the test's schema.
#[pgisolate::test(migrations = "../migrations", fixtures("fixtures/users.sql"))]
async fn fixtures_are_applied_to_this_tests_schema_only(db: tokio_postgres::Client) {
    let n: i64 =
        db.query_one("select count(*) from users where email = 'fixture@example.com'", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    assert_eq!(register(&db).await, 2);
}

/// The identity comes from the macro (module path and test name), not from the thread.
#[pgisolate::test]
fn the_identity_is_the_tests_own(schema: &TestSchema) {
    assert_eq!(schema.identity().scenario, "the_identity_is_the_tests_own");
    assert!(schema.identity().feature.ends_with("many"), "{:?}", schema.identity());
}

/// A sync test may own its schema and release it early.
#[pgisolate::test]
fn a_sync_test_can_release_its_schema_itself(schema: TestSchema) {
    let name = schema.name().to_owned();
    drop(schema);
    let engine = testing::engine();
    let gone = testing::block_on(async move {
        let (db, conn) = tokio_postgres::connect(engine.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let n: i64 =
            db.query_one("select count(*) from pg_namespace where nspname = $1", &[&name]).await.unwrap().get(0);
        n == 0
    });
    assert!(gone, "the released schema is still there");
}

/// Fails on purpose, for scripts/kept-check.sh: with PGISOLATE_KEEP=failed its schema is kept
/// and the line naming it (with the psql command) is printed.
#[pgisolate::test]
#[ignore = "fails on purpose; scripts/kept-check.sh runs it"]
async fn deliberately_fails(db: tokio_postgres::Client) {
    register(&db).await;
    panic!("deliberate failure: the schema must be kept");
}

//! The process's first `testing::schema()` comes from inside a multi-thread tokio
//! runtime (its own test binary, so nothing started the engine before).
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_call_inside_a_multi_thread_runtime() {
    let schema = pgisolate::testing::schema();
    let (db, conn) = tokio_postgres::connect(schema.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let current: String = db.query_one("select current_schema()::text", &[]).await.unwrap().get(0);
    assert_eq!(current, schema.name());
}

//! The process's first schema comes from `testing::schema_async()` in a current-thread runtime.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

#[tokio::test]
async fn first_call_is_async() {
    let schema = pgisolate::testing::schema_async().await;
    let (db, conn) = tokio_postgres::connect(schema.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let current: String = db.query_one("select current_schema()::text", &[]).await.unwrap().get(0);
    assert_eq!(current, schema.name());
}

//! A crate that depends on the packaged pgisolate crate: two tests, the same email, two
//! schemas; and a `#[pgisolate::test]` with an injected client.

use pgisolate::{Config, Engine, Identity, Migrations};

async fn register(scenario: &str) -> String {
    let engine = Engine::start(Config::from_env().unwrap()).await.unwrap();
    let tpl = engine
        .template(Migrations::sql("create table users (id serial primary key, email text unique not null)"))
        .await
        .unwrap();
    let schema = engine.acquire(&tpl, Identity::new("consumer", scenario)).await.unwrap();
    let (client, conn) = tokio_postgres::connect(schema.url(), tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    client.execute("insert into users (email) values ('alice@example.com')", &[]).await.unwrap();
    let current: String = client.query_one("select current_schema()::text", &[]).await.unwrap().get(0);
    assert_eq!(current, schema.name());
    drop(client);
    let _ = task.await;
    schema.release().await.unwrap();
    engine.close().await.unwrap();
    current
}

#[tokio::test]
async fn alice_registers() {
    register("alice").await;
}

#[tokio::test]
async fn alice_registers_again() {
    register("alice again").await;
}

#[pgisolate::test(migrations = "migrations")]
async fn the_attribute_injects_a_client(db: tokio_postgres::Client) {
    db.execute("insert into users (email) values ('alice@example.com')", &[]).await.unwrap();
    let n: i64 = db.query_one("select count(*) from users", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
}

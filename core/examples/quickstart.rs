//! The README's quick start: `cargo run -p pgisolate --example quickstart`.

use pgisolate::{Config, Engine, Identity, Migrations};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::start(Config::from_env()?).await?; // embedded server if no URL
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/migrations");
    let tpl = engine.template(Migrations::dir(migrations)).await?; // built once per server
    let schema = engine.acquire(&tpl, Identity::new("signup.feature", "alice registers")).await?;

    // Any driver: the URL carries options=-c search_path=<schema>,public
    let (db, conn) = tokio_postgres::connect(schema.url(), tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    db.execute("insert into users (email) values ('alice@example.com')", &[]).await?;
    let here: String = db.query_one("select current_schema()::text", &[]).await?.get(0);
    println!("schema {} (current_schema {here}), cache key {}", schema.name(), schema.cache_key("user:alice"));
    drop(db);
    driver.await??;

    schema.release().await?; // or drop it: released in the background
    engine.close().await?;
    Ok(())
}

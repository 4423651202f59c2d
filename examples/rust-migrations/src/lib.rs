//! Recipes: the template built by the Rust migration tools projects already use, `sqlx migrate`
//! and refinery, driven for real (see `tests/`).

use std::path::{Path, PathBuf};

/// Errors the tools return, boxed as `Engine::template_with_inputs` wants them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The directory of this crate's `sqlx migrate` migrations.
pub fn sqlx_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sqlx-migrations")
}

/// The directory of this crate's refinery migrations.
pub fn refinery_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("refinery-migrations")
}

/// `sqlx migrate run` against `url` (the build URL: its search_path is the build schema).
pub async fn sqlx_migrate(url: String) -> Result<(), BoxError> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await?;
    let migrator = sqlx::migrate::Migrator::new(sqlx_migrations()).await?;
    let ran = migrator.run(&pool).await;
    pool.close().await;
    Ok(ran?)
}

mod embedded {
    refinery::embed_migrations!("refinery-migrations");
}

/// refinery's runner against `url` through tokio-postgres.
pub async fn refinery_migrate(url: String) -> Result<(), BoxError> {
    let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(conn);
    let ran = embedded::migrations::runner().run_async(&mut client).await;
    drop(client);
    let _ = task.await;
    ran?;
    Ok(())
}

//! Schema `extensions`: where the extensions a template needs live, made once per database
//! race-free, and where extensions a migration created inside a build are moved.

use tokio_postgres::Client;

use crate::admin::{literal, transaction};
use crate::error::{Error, Result};
use crate::locks::REGISTRY_CLASS;

/// Opens a transaction that may create schema `extensions`, race-free: under the extensions'
/// advisory lock, and after reading pg_namespace, which makes this session drop what its
/// catalog cache remembered from before the lock (a "no such schema" cached by an earlier
/// search_path lookup would make `CREATE SCHEMA IF NOT EXISTS` collide with the schema another
/// session created meanwhile: a duplicate key in pg_namespace).
pub(crate) fn begin_extensions_sql() -> String {
    format!(
        "BEGIN; SELECT pg_advisory_xact_lock({REGISTRY_CLASS}, 2); \
         SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'extensions'; CREATE SCHEMA IF NOT EXISTS extensions;"
    )
}

/// Creates `extensions` once per database, race-free: under a transaction advisory lock, in
/// one schema, skipped when every one is already installed (anywhere).
pub(crate) async fn ensure_extensions(client: &Client, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let present: i64 = client
        .query_one("select count(*) from pg_extension where extname = any($1)", &[&names])
        .await
        .map_err(|e| Error::db("look up extensions", e))?
        .get(0);
    if present as usize == names.len() {
        return Ok(());
    }
    let mut sql = begin_extensions_sql();
    for n in names {
        sql.push_str(&format!(" CREATE EXTENSION IF NOT EXISTS {} SCHEMA extensions;", crate::admin::ident(n)));
    }
    sql.push_str(" COMMIT;");
    if let Err(e) = transaction(client, &sql).await {
        return Err(Error::db(
            format!(
                "create extensions {} (install them on the server, or create them as a superuser first)",
                names.join(", ")
            ),
            e,
        ));
    }
    Ok(())
}

/// Moves extensions that an earlier engine version let migrations create inside a template,
/// build or test schema to schema `extensions`, and forgets the templates that held them (their
/// captured DDL names the extension's objects under the template; they are rebuilt on next
/// use). Extensions in other schemas (`public`) are the user's and are left alone.
pub(crate) async fn rescue_extensions(client: &Client) -> Result<bool> {
    let rows = client
        .query(
            "select e.extname, n.nspname, e.extrelocatable from pg_extension e join pg_namespace n on n.oid = e.extnamespace \
             where obj_description(n.oid, 'pg_namespace') like 'pgisolate:v1:%'",
            &[],
        )
        .await
        .map_err(|e| Error::db("look up extensions inside pgisolate schemas", e))?;
    if rows.is_empty() {
        return Ok(false);
    }
    let mut sql = begin_extensions_sql();
    for r in &rows {
        let (ext, nsp, relocatable): (&str, &str, bool) = (r.get(0), r.get(1), r.get(2));
        if relocatable {
            sql.push_str(&format!(" ALTER EXTENSION {} SET SCHEMA extensions;", crate::admin::ident(ext)));
        }
        sql.push_str(&format!(" DELETE FROM pgisolate.templates WHERE schema_name = {};", literal(nsp)));
    }
    sql.push_str(" COMMIT;");
    if let Err(e) = transaction(client, &sql).await {
        return Err(Error::db("move extensions out of pgisolate schemas into schema extensions", e));
    }
    Ok(true)
}

//! The DDL watch (superuser only): event triggers record every schema in which a live test
//! ran DDL, so recycling can tell in one index lookup whether a schema still matches its
//! template, and which session ran each DDL transaction (template builds' outside checks).

use tokio_postgres::Client;

use crate::admin::{literal, transaction};
use crate::error::{Error, Result};
use crate::locks::REGISTRY_CLASS;

/// Its tables, functions and event triggers. The engine's own statements run with
/// `pgisolate.internal = on` and are skipped.
const DDL_WATCH: &str = include_str!("ddl_watch.sql");

/// Installs the DDL watch once (needs superuser); false when it could not.
pub(crate) async fn ensure_ddl_watch(client: &Client) -> Result<bool> {
    let present = client
        .query_one(
            "select count(*) = 3 and to_regprocedure('pgisolate.ddl_ran(text)') is not null \
             and coalesce((select prosecdef from pg_proc where oid = to_regprocedure('pgisolate.note_ddl()')), false) \
             from pg_event_trigger where evtname in ('pgisolate_ddl', 'pgisolate_drop', 'pgisolate_build') \
             and evtenabled <> 'D'",
            &[],
        )
        .await
        .map_err(|e| Error::db("check the DDL watch", e))?
        .get::<_, bool>(0);
    if present {
        return Ok(true);
    }
    let sql = format!("BEGIN; SELECT pg_advisory_xact_lock({REGISTRY_CLASS}, 1); {DDL_WATCH} COMMIT;");
    if transaction(client, &sql).await.is_err() {
        return Ok(false);
    }
    Ok(true)
}

/// The check that no DDL ran in `name` since its hand-out, as the DDL watch recorded it:
/// fails with P0001 when it did (`pgisolate.ddl_ran`).
pub(crate) fn untouched_sql(name: &str) -> String {
    let n = literal(name);
    format!("SELECT pgisolate.ddl_ran({n}) WHERE EXISTS (SELECT FROM pgisolate.ddl_touched WHERE nspname = {n});")
}

/// Clears the DDL watch's record for `name` (the release that drops a schema DDL ran in, so
/// the name comes back clean).
pub(crate) fn forget_ddl_sql(name: &str) -> String {
    format!("DELETE FROM pgisolate.ddl_touched WHERE nspname = {};", literal(name))
}

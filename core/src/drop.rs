//! Dropping a schema without hanging and without running out of lock slots.
//!
//! Each attempt runs under `lock_timeout`, terminates sessions tagged with the schema's
//! application_name, drops big schemas' relations in batches (one `DROP SCHEMA … CASCADE` of
//! thousands of tables exhausts `max_locks_per_transaction`), and retries after a deadlock,
//! a lock timeout or "out of shared memory" until a deadline.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::admin::{ident, literal, transaction};
use crate::conninfo;
use crate::error::{Error, Result};

/// Relations dropped per transaction.
pub(crate) const BATCH: usize = 100;

/// Terminates sessions whose application_name is one of `apps`; returns how many.
pub(crate) async fn terminate(client: &Client, apps: &[String]) -> Result<i64> {
    let row = client
        .query_one(
            "select count(pg_terminate_backend(pid)) from pg_catalog.pg_stat_get_activity(NULL) \
             where application_name = any($1) and pid <> pg_backend_pid()",
            &[&apps],
        )
        .await
        .map_err(|e| Error::db("terminate the schema's sessions", e))?;
    Ok(row.get(0))
}

async fn schema_exists(client: &Client, schema: &str) -> Result<bool> {
    let row = client
        .query_one("select exists (select 1 from pg_namespace where nspname = $1)", &[&schema])
        .await
        .map_err(|e| Error::db("look up a schema", e))?;
    Ok(row.get(0))
}

async fn attempt(client: &Client, schema: &str, batch: usize) -> std::result::Result<(), tokio_postgres::Error> {
    loop {
        let rows = client
            .query(
                // Through pg_depend's index (every relation depends on its schema): reading
                // pg_class by namespace scans the whole catalog, which grows with the pool.
                "select c.relkind::text, c.relname::text from pg_depend d join pg_class c on c.oid = d.objid \
                 where d.refclassid = 'pg_namespace'::regclass and d.refobjid = to_regnamespace(quote_ident($1)) \
                 and d.classid = 'pg_class'::regclass and c.relkind in ('r','p','f','m','v') and not c.relispartition \
                 order by c.oid limit $2",
                &[&schema, &(batch as i64 + 1)],
            )
            .await?;
        if rows.len() <= batch {
            // Few enough relations: one DROP SCHEMA … CASCADE below takes them all.
            break;
        }
        let mut sql = format!("BEGIN; {}", crate::registry::INTERNAL);
        for (kind, stmt) in
            [("r", "TABLE"), ("p", "TABLE"), ("f", "FOREIGN TABLE"), ("m", "MATERIALIZED VIEW"), ("v", "VIEW")]
        {
            let names: Vec<String> = rows
                .iter()
                .take(batch)
                .filter(|r| r.get::<_, &str>(0) == kind)
                .map(|r| format!("{}.{}", ident(schema), ident(r.get::<_, &str>(1))))
                .collect();
            if !names.is_empty() {
                sql.push_str(&format!(" DROP {stmt} IF EXISTS {} CASCADE;", names.join(", ")));
            }
        }
        sql.push_str(" COMMIT;");
        transaction(client, &sql).await?;
    }
    // The tables' write notes go with them; the engine's own drop is not a test's DDL (the
    // DDL watch's sql_drop trigger would list every dropped object for nothing).
    transaction(
        client,
        &format!(
            "BEGIN; SET LOCAL pgisolate.internal = 'on'; DELETE FROM pgisolate.written w USING pg_catalog.pg_class c \
             WHERE c.oid = w.rel AND c.relnamespace = pg_catalog.to_regnamespace({}); DROP SCHEMA IF EXISTS {} CASCADE; COMMIT;",
            literal(&ident(schema)),
            ident(schema)
        ),
    )
    .await
}

/// Drops `schema` (batched, under `lock_timeout`), terminating sessions tagged with any of
/// `apps` before each attempt and retrying transient failures until `deadline`.
pub(crate) async fn drop_schema(client: &Client, schema: &str, apps: &[String], deadline: Instant) -> Result<()> {
    if crate::naming::is_reserved(schema) {
        return Err(Error::Refused(format!("refusing to drop reserved schema {schema:?}")));
    }
    // A per-schema login role (least privilege) goes with its schema.
    let role = crate::role::owner_role(client, schema).await?;
    client
        .batch_execute("SET lock_timeout = '2s'; SET statement_timeout = '60s'")
        .await
        .map_err(|e| Error::db("prepare to drop a schema", e))?;
    let mut batch = BATCH;
    let mut tries = 0u32;
    let result = loop {
        tries += 1;
        if !apps.is_empty() {
            terminate(client, apps).await?;
        }
        match attempt(client, schema, batch).await {
            Ok(()) => break Ok(()),
            Err(e) => {
                let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
                let transient = matches!(code.as_str(), "40P01" | "55P03" | "53200" | "40001" | "57014");
                if code == "53200" {
                    batch = (batch / 2).max(5);
                }
                if code == "3F000" || !schema_exists(client, schema).await.unwrap_or(true) {
                    break Ok(());
                }
                if !transient || Instant::now() >= deadline {
                    break Err(Error::db(format!("drop schema {schema} (attempt {tries}; gc will retry later)"), e));
                }
                let pause = Duration::from_millis((50 * u64::from(tries)).min(500));
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            }
        }
    };
    let _ = client.batch_execute("RESET lock_timeout; RESET statement_timeout").await;
    result?;
    if let Some(r) = role {
        crate::role::drop_role(client, &r).await?;
    }
    Ok(())
}

/// SQL listing the backends of a schema's sessions (comma-separated pids), for the end of a
/// release batch.
/// (`pg_stat_get_activity` directly: the `pg_stat_activity` view's joins double the cost of
/// a query that runs on every release.)
pub(crate) fn sessions_sql(name: &str, role: Option<&str>) -> String {
    let by_role = role.map(|r| format!(" OR usesysid = to_regrole({})::oid", literal(r))).unwrap_or_default();
    format!(
        "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_catalog.pg_stat_get_activity(NULL) \
         WHERE (application_name = {}{by_role}) AND pid <> pg_backend_pid();",
        literal(&conninfo::application_name(name))
    )
}

/// The first value of a batch's row `back` rows before its last (0: the last row).
pub(crate) fn row_from_end(rows: &[tokio_postgres::SimpleQueryMessage], back: usize) -> Option<&str> {
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .rev()
        .nth(back)
        .and_then(|r| r.get(0))
}

/// The pids printed by [`sessions_sql`] (the batch's last row).
pub(crate) fn parse_pids(rows: Vec<tokio_postgres::SimpleQueryMessage>) -> Vec<i32> {
    row_from_end(&rows, 0).unwrap_or_default().split(',').filter_map(|p| p.trim().parse().ok()).collect()
}

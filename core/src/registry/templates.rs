//! Templates in the registry: listed (`pgisolate templates`) and pruned.

use std::time::Duration;

use tokio_postgres::Client;

use crate::admin::{literal, transaction};
use crate::error::{Error, Result};

/// A template in the registry.
#[derive(Debug, Clone)]
pub struct TemplateInfo {
    /// Its schema (`tpl_<fingerprint>`).
    pub schema: String,
    /// What it was built from: a migrations directory, a caller's key and inputs, or `sql`.
    pub source: String,
    /// Total size of its tables and indexes, bytes.
    pub size_bytes: i64,
    /// Seconds since it was built.
    pub built_secs_ago: i64,
    /// Seconds since an engine last looked it up.
    pub used_secs_ago: i64,
    /// A newer template from the same source exists.
    pub superseded: bool,
}

const TEMPLATES_SQL: &str = "
select t.schema_name, t.source,
       coalesce((select sum(pg_total_relation_size(c.oid)) from pg_class c
                 where c.relnamespace = n.oid and c.relkind in ('r','p','m')), 0)::int8,
       extract(epoch from now() - t.built_at)::int8,
       extract(epoch from now() - t.last_used)::int8,
       t.source <> '' and exists (select 1 from pgisolate.templates u
                                  where u.source = t.source and u.built_at > t.built_at and u.fingerprint <> t.fingerprint)
from pgisolate.templates t join pg_namespace n on n.nspname = t.schema_name
order by t.source, t.built_at";

/// Every template whose schema exists.
pub(crate) async fn templates(client: &Client) -> Result<Vec<TemplateInfo>> {
    let rows = client.query(TEMPLATES_SQL, &[]).await.map_err(|e| Error::db("list templates", e))?;
    Ok(rows
        .iter()
        .map(|r| TemplateInfo {
            schema: r.get(0),
            source: r.get(1),
            size_bytes: r.get(2),
            built_secs_ago: r.get(3),
            used_secs_ago: r.get(4),
            superseded: r.get(5),
        })
        .collect())
}

/// Drops templates unused for `max_age`, and superseded ones unused for ten minutes, except
/// those in `keep`; their registry rows go with them. Returns the dropped schemas.
pub(crate) async fn prune_templates(client: &Client, max_age: Duration, keep: &[String]) -> Result<Vec<String>> {
    let mut dropped = Vec::new();
    for t in templates(client).await? {
        if keep.contains(&t.schema) {
            continue;
        }
        let stale = t.used_secs_ago >= max_age.as_secs() as i64;
        if !(stale || (t.superseded && t.used_secs_ago >= 600)) {
            continue;
        }
        // Under the template's own build lock holder's feet nothing else changes it: one
        // transaction deletes the row and drops the schema.
        let sql = format!(
            "BEGIN; SET LOCAL lock_timeout = '2s'; DELETE FROM pgisolate.templates WHERE schema_name = {l}; \
             DROP SCHEMA IF EXISTS {i} CASCADE; COMMIT;",
            l = literal(&t.schema),
            i = crate::admin::ident(&t.schema)
        );
        match transaction(client, &sql).await {
            Ok(()) => dropped.push(t.schema),
            Err(e) => {
                return Err(Error::db(format!("drop template {}", t.schema), e));
            }
        }
    }
    Ok(dropped)
}

//! What gc and `pgisolate ls` read from the registry: live and kept schemas, owners and their
//! fencing, orphans, and pruning rows.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::lease::LIVE_OWNERS_SQL;
use crate::markers::{parse_marker, unix_now, Kind, Marker};

/// One live or kept schema, as `ls` shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Schema name.
    pub schema: String,
    /// The identity text.
    pub identity: String,
    /// Owner key.
    pub owner_key: i32,
    /// Whether the owner's lease is held now.
    pub owner_alive: bool,
    /// Owner host and pid.
    pub host: String,
    /// Owner pid.
    pub pid: i32,
    /// Run id.
    pub run_id: String,
    /// live, kept, dropping or building (released names are not listed).
    pub state: String,
    /// Age.
    pub age: Duration,
}

/// Lists registry rows with their owners' liveness.
pub(crate) async fn list(client: &Client) -> Result<Vec<Entry>> {
    let rows = client
        .query(
            "select schema_name, identity, owner_key, host, pid, run_id, state, \
             extract(epoch from (now() - created_at))::float8, not pgisolate.owner_gone(owner_key) \
             from pgisolate.leases where state <> 'released' order by created_at",
            &[],
        )
        .await
        .map_err(|e| Error::db("list the registry", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let owner_key: i32 = r.get(2);
            Entry {
                schema: r.get(0),
                identity: r.get(1),
                owner_key,
                owner_alive: r.get(8),
                host: r.get(3),
                pid: r.get(4),
                run_id: r.get(5),
                state: r.get(6),
                age: Duration::from_secs_f64(r.get::<_, f64>(7).max(0.0)),
            }
        })
        .collect())
}

/// Owner keys whose lease is held now.
pub(crate) async fn live_owners(client: &Client) -> Result<HashSet<i64>> {
    let rows = client.query(LIVE_OWNERS_SQL, &[]).await.map_err(|e| Error::db("read owner leases", e))?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
}

/// A marked schema gc may drop.
#[derive(Debug, Clone)]
pub(crate) struct Orphan {
    /// Schema name.
    pub schema: String,
    /// Its marker.
    pub marker: Marker,
}

/// Fences the owners that are gone: lease free and not seen for `grace`. From here on gc may
/// reap what they own, and they never hold anything again (their engines find out when they
/// reconnect: `pgisolate.hold` fails). Returns the fenced owner keys.
pub(crate) async fn fence(client: &Client, grace: Duration) -> Result<Vec<i32>> {
    let rows = client
        .query("select * from pgisolate.fence($1)", &[&grace.as_secs_f64()])
        .await
        .map_err(|e| Error::db("fence the owners that are gone", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The marker of schema `name`, when it exists and carries one of this version.
pub(crate) async fn marker_of(client: &Client, name: &str) -> Result<Option<Marker>> {
    let comment: Option<String> = client
        .query_opt("select obj_description(oid, 'pg_namespace') from pg_namespace where nspname = $1", &[&name])
        .await
        .map_err(|e| Error::db("look up a schema", e))?
        .and_then(|r| r.get(0));
    Ok(comment.as_deref().and_then(parse_marker))
}

/// Owners with a row: whether each is fenced.
async fn owner_rows(client: &Client) -> Result<std::collections::HashMap<i64, bool>> {
    let rows = client
        .query("select owner_key::int8, fenced_at is not null from pgisolate.owners", &[])
        .await
        .map_err(|e| Error::db("read the owners", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Marked schemas whose owner is gone: fenced ([`fence`]), or, for an owner without a row
/// (an engine from before owner rows), lease free and the schema older than `grace`. With
/// `include_kept`, kept schemas of gone owners too.
pub(crate) async fn orphans(client: &Client, grace: Duration, include_kept: bool) -> Result<Vec<Orphan>> {
    let rows = client
        .query(
            "select nspname::text, obj_description(oid, 'pg_namespace') from pg_namespace \
             where obj_description(oid, 'pg_namespace') like 'pgisolate:v1:%'",
            &[],
        )
        .await
        .map_err(|e| Error::db("list marked schemas", e))?;
    judge(client, rows, grace, include_kept).await
}

/// [`orphans`] among databases (database isolation): those marked by an engine of this
/// registry (`of=<registry_db>`; databases are cluster-wide).
pub(crate) async fn database_orphans(
    client: &Client,
    grace: Duration,
    include_kept: bool,
    registry_db: u32,
) -> Result<Vec<Orphan>> {
    let rows = client
        .query(
            "select datname::text, shobj_description(oid, 'pg_database') from pg_database \
             where shobj_description(oid, 'pg_database') like 'pgisolate:v1:%' \
             and shobj_description(oid, 'pg_database') like '% of=' || $1::text",
            &[&registry_db.to_string()],
        )
        .await
        .map_err(|e| Error::db("list marked databases", e))?;
    judge(client, rows, grace, include_kept).await
}

/// Which of the marked objects (name, marker) gc may drop: their owner is gone.
async fn judge(
    client: &Client,
    rows: Vec<tokio_postgres::Row>,
    grace: Duration,
    include_kept: bool,
) -> Result<Vec<Orphan>> {
    let live = live_owners(client).await?;
    let owners = owner_rows(client).await?;
    let now = unix_now();
    let mut out = Vec::new();
    for r in rows {
        let schema: String = r.get(0);
        let Some(m) = r.get::<_, Option<String>>(1).as_deref().and_then(parse_marker) else { continue };
        let droppable = match m.kind {
            Kind::Schema | Kind::Build | Kind::Tomb | Kind::Pool => true,
            Kind::Kept => include_kept,
            Kind::Template => false,
        };
        if !droppable || crate::naming::is_reserved(&schema) {
            continue;
        }
        let gone = match owners.get(&m.owner) {
            Some(fenced) => *fenced,
            None => !live.contains(&m.owner) && now.saturating_sub(m.created) >= grace.as_secs(),
        };
        if gone {
            out.push(Orphan { schema, marker: m });
        }
    }
    Ok(out)
}

/// Deletes registry rows of dead owners whose schema no longer exists.
pub(crate) async fn prune_rows(client: &Client) -> Result<u64> {
    let _ = client
        .execute(
            "delete from pgisolate.ddl_touched t where to_regclass('pgisolate.ddl_touched') is not null \
             and not exists (select 1 from pg_namespace n where n.nspname = t.nspname)",
            &[],
        )
        .await;
    // The counts of templates that are gone (a template's schema oid could be reused).
    let _ = client
        .execute(
            "delete from pgisolate.template_state s where not exists (select 1 from pgisolate.templates t \
             join pg_namespace n on n.nspname = t.schema_name where n.oid = s.nsp)",
            &[],
        )
        .await;
    // Written-table notes of tables that are gone (their schema was dropped).
    let _ = client
        .execute("delete from pgisolate.written w where not exists (select 1 from pg_class c where c.oid = w.rel)", &[])
        .await;
    let n = client
        .execute(
            "delete from pgisolate.leases l where not exists (select 1 from pg_namespace n where n.nspname = l.schema_name) \
             and pgisolate.owner_gone(l.owner_key)",
            &[],
        )
        .await
        .map_err(|e| Error::db("prune the registry", e))?;
    // Fenced owners with nothing left in the registry (a schema of theirs gc could not drop
    // yet is still reaped: an owner without a row is gone once its lease is free).
    client
        .execute(
            "delete from pgisolate.owners o where o.fenced_at is not null \
             and not exists (select 1 from pgisolate.leases l where l.owner_key = o.owner_key)",
            &[],
        )
        .await
        .map_err(|e| Error::db("prune the owners", e))?;
    Ok(n)
}

/// Forgets the names `owner` released (its `released` rows), when it closes: they were kept
/// only while it lived.
pub(crate) async fn forget_released(client: &Client, owner: i32) -> Result<u64> {
    client
        .execute("delete from pgisolate.leases where owner_key = $1 and state = 'released'", &[&owner])
        .await
        .map_err(|e| Error::db("clear the released names", e))
}

/// Forgets a schema: deletes its registry row (once it is dropped, or was never made).
pub(crate) async fn forget(client: &Client, schema: &str) -> Result<()> {
    client
        .execute("delete from pgisolate.leases where schema_name = $1", &[&schema])
        .await
        .map(|_| ())
        .map_err(|e| Error::db(format!("clear the registry row of {schema}"), e))
}

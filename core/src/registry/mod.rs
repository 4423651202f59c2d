//! The registry (`pgisolate.leases`, `pgisolate.owners`, `pgisolate.templates`) and what gc
//! reads from it.
//!
//! Every schema the engine creates carries a marker comment ([`crate::markers`]) and, while
//! live, a registry row with its identity and owner. gc drops only schemas whose marker is this
//! version's, whose kind is a test schema, a build, a pool schema or a tombstone, and whose
//! owner is gone: fenced ([`fence`]: lease free and unseen for the grace period), or, without an
//! owner row, lease free and the schema older than the grace period. Anything else (no marker,
//! another version's marker, `public`, templates) is never touched.
//!
//! - `registry.sql`: its tables; `fencing.sql`: the heartbeat, the hand-out's fence check and
//!   gc's fence (installed with recycling's SQL, [`crate::recycle::TRACKING_SQL`]);
//! - `templates`: listing and pruning templates;
//! - `gc`: live and kept schemas, owners, orphans, and pruning rows.

mod gc;
mod templates;

use tokio_postgres::Client;

use crate::admin::exec;
use crate::error::{Error, Result};
use crate::lease::LIVE_OWNERS_SQL;
use crate::locks::REGISTRY_CLASS;

pub use gc::Entry;
pub(crate) use gc::{database_orphans, fence, forget, forget_released, list, marker_of, orphans, prune_rows};
pub use templates::TemplateInfo;
pub(crate) use templates::{prune_templates, templates};

/// The registry's tables and fencing functions.
const REGISTRY_DDL: &str = concat!(include_str!("registry.sql"), include_str!("fencing.sql"));

/// Statement (inside a release transaction, after the row moved to `moved_to`) keeping a
/// `released` row for the old name: no other engine takes the name while the releasing owner
/// lives, since a leaked pool of the released test could still reconnect with its URL. gc
/// prunes the row once the owner is gone.
pub(crate) fn released_sql(name: &str, moved_to: &str) -> String {
    format!(
        "INSERT INTO pgisolate.leases (schema_name, identity_hash, identity, owner_key, run_id, host, pid, template, state) \
         SELECT {nl}, identity_hash, identity, owner_key, run_id, host, pid, template, 'released' \
         FROM pgisolate.leases WHERE schema_name = {ml};",
        nl = crate::admin::literal(name),
        ml = crate::admin::literal(moved_to),
    )
}

/// The fence check of a transaction that hands out, pools or recycles a schema under owner
/// `owner`: two statements (the lock, then a new snapshot) that fail with [`FENCED`] when gc
/// fenced the owner (`pgisolate.fenced`).
///
/// [`FENCED`]: crate::lease::FENCED
pub(crate) fn held_sql(owner: i32) -> String {
    format!(
        "SELECT pg_catalog.pg_advisory_xact_lock_shared({class}, {owner}); SELECT pgisolate.fenced({owner}) \
         WHERE NOT EXISTS (SELECT FROM pgisolate.owners WHERE owner_key = {owner} AND fenced_at IS NULL);",
        class = crate::locks::FENCE_CLASS
    )
}

/// Statement that marks the rest of a transaction as the engine's own DDL.
pub(crate) const INTERNAL: &str = "SET LOCAL pgisolate.internal = 'on';";

/// Whether this version's registry is in place.
const PRESENT_SQL: &str = "select to_regclass('pgisolate.leases') is not null and exists (select 1 from pg_attribute \
     where attrelid = to_regclass('pgisolate.templates') and attname = 'last_used' and not attisdropped) \
     and exists (select 1 from pg_attribute \
     where attrelid = to_regclass('pgisolate.leases') and attname = 'handout_txid' and not attisdropped) \
     and to_regprocedure('pgisolate.check_unchanged(text)') is not null \
     and to_regprocedure('pgisolate.schema_state(oid, bigint)') is not null \
     and to_regprocedure('pgisolate.note_write()') is not null \
     and to_regprocedure('pgisolate.owner_gone(int8)') is not null \
     and to_regprocedure('pgisolate.fence(float8)') is not null \
     and to_regprocedure('pgisolate.fenced(int4)') is not null \
     and not coalesce((select prosecdef from pg_proc where oid = to_regprocedure('pgisolate.note_write()')), true) \
     and coalesce((select prosrc not like '%GRANT USAGE%' from pg_proc \
                   where oid = to_regprocedure('pgisolate.give_schema(text, text)')), false)";

async fn present(client: &Client) -> Result<bool> {
    client.query_one(PRESENT_SQL, &[]).await.map_err(|e| Error::db("check the registry", e)).map(|r| r.get(0))
}

/// Creates the registry once, race-free, under a transaction advisory lock. Checked again
/// once the lock is held: engines that all found it missing at once would otherwise each run
/// the DDL after the first, and its `ALTER TABLE … ADD COLUMN IF NOT EXISTS` takes an
/// exclusive lock even when the column exists (a deadlock with a template being published).
pub(crate) async fn ensure(client: &Client) -> Result<()> {
    if present(client).await? {
        return Ok(());
    }
    exec(client, "lock the registry", &format!("BEGIN; SELECT pg_advisory_xact_lock({REGISTRY_CLASS}, 0);")).await?;
    let made = match present(client).await {
        Ok(true) => exec(client, "check the registry", "COMMIT").await,
        Ok(false) => {
            let ddl = format!("{REGISTRY_DDL}{}", crate::recycle::TRACKING_SQL)
                .replace("LIVE_OWNERS", LIVE_OWNERS_SQL)
                .replace("FENCE_CLASS", &crate::locks::FENCE_CLASS.to_string());
            let sql = format!("{ddl} {} COMMIT;", crate::role::GIVE_SCHEMA_DDL);
            exec(client, "create the pgisolate registry", &sql).await
        }
        Err(e) => Err(e),
    };
    if made.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    made
}

//! The registry (`pgisolate.leases`, `pgisolate.owners`, `pgisolate.templates`) and what gc
//! reads from it.
//!
//! Every schema the engine creates carries a marker comment ([`crate::markers`]) and, while
//! live, a registry row with its identity and owner. gc drops only schemas whose marker is this
//! version's, whose kind is a test schema, a build, a pool schema or a tombstone, and whose
//! owner is gone: fenced ([`fence`]: lease free and unseen for the grace period), or, without an
//! owner row, lease free and the schema older than the grace period. Anything else (no marker,
//! another version's marker, `public`, templates) is never touched.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::Client;

use crate::admin::{exec, literal, transaction};
use crate::error::{Error, Result};
use crate::lease::{LIVE_OWNERS_SQL, REGISTRY_CLASS};
use crate::markers::{parse_marker, unix_now, Kind, Marker};

const REGISTRY_DDL: &str = "
CREATE SCHEMA IF NOT EXISTS pgisolate;
COMMENT ON SCHEMA pgisolate IS 'pgisolate registry (do not edit): live schemas and templates';
CREATE TABLE IF NOT EXISTS pgisolate.leases (
    schema_name   text PRIMARY KEY,
    identity_hash text NOT NULL,
    identity      text NOT NULL,
    owner_key     int4 NOT NULL,
    run_id        text NOT NULL,
    host          text NOT NULL,
    pid           int4 NOT NULL,
    template      text,
    state         text NOT NULL DEFAULT 'live',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pgisolate.templates (
    fingerprint text PRIMARY KEY,
    schema_name text NOT NULL,
    replay_sql  text,
    built_by    int4 NOT NULL,
    built_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE pgisolate.templates ADD COLUMN IF NOT EXISTS seed_sql text;
ALTER TABLE pgisolate.templates ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT '';
ALTER TABLE pgisolate.templates ADD COLUMN IF NOT EXISTS last_used timestamptz NOT NULL DEFAULT now();
ALTER TABLE pgisolate.leases ADD COLUMN IF NOT EXISTS handout_txid bigint;
-- Owners (engines): one row per lease. An owner is alive while its advisory lock is held or
-- while its heartbeat refreshed seen_at within gc's grace period; gc fences an owner
-- that is neither (fenced_at) before it reaps anything of it, and a fenced owner never comes
-- back: an engine whose connection dropped re-takes its lease only if it was not fenced.
CREATE TABLE IF NOT EXISTS pgisolate.owners (
    owner_key  int4 PRIMARY KEY,
    host       text NOT NULL,
    pid        int4 NOT NULL,
    run_id     text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now(),
    fenced_at  timestamptz
);
-- The heartbeat: refreshes the owner's seen_at, or fails when it was fenced.
CREATE OR REPLACE FUNCTION pgisolate.hold(k int4) RETURNS void LANGUAGE plpgsql AS $pgi$
BEGIN
    UPDATE pgisolate.owners SET seen_at = now() WHERE owner_key = k AND fenced_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgisolate: the lease of owner % was fenced (not seen for longer than gc''s grace period)', k
            USING ERRCODE = 'PGI01';
    END IF;
END $pgi$;
-- The fence check of every transaction that hands out, pools or recycles a schema
-- ([`held_sql`]): a shared lock that gc's fence waits for, then, in the next statement (a new
-- snapshot), the owner's row, read: this raises when it was fenced. Concurrent hand-outs of one
-- engine never wait for each other, and nothing is handed out under a fenced owner: either the
-- fence committed first and the check fails, or the fence waits until the hand-out ends.
CREATE OR REPLACE FUNCTION pgisolate.fenced(k int4) RETURNS void LANGUAGE plpgsql AS $pgi$
BEGIN
    RAISE EXCEPTION 'pgisolate: the lease of owner % was fenced (not seen for longer than gc''s grace period)', k
        USING ERRCODE = 'PGI01';
END $pgi$;
-- gc's fence: owners whose lease is free and who went unseen for `grace` seconds. Each is
-- locked (in key order) before its row is read again, so hand-outs in flight finish first.
CREATE OR REPLACE FUNCTION pgisolate.fence(grace float8) RETURNS SETOF int4 LANGUAGE plpgsql AS $pgi$
DECLARE
    ks int4[];
BEGIN
    SELECT array_agg(o.owner_key ORDER BY o.owner_key) INTO ks FROM pgisolate.owners o
     WHERE o.fenced_at IS NULL AND o.seen_at < now() - make_interval(secs => grace)
       AND o.owner_key::int8 NOT IN (LIVE_OWNERS);
    IF ks IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(FENCE_CLASS, k) FROM unnest(ks) k;
    RETURN QUERY UPDATE pgisolate.owners o SET fenced_at = now()
     WHERE o.owner_key = ANY (ks) AND o.fenced_at IS NULL AND o.seen_at < now() - make_interval(secs => grace)
       AND o.owner_key::int8 NOT IN (LIVE_OWNERS)
     RETURNING o.owner_key;
END $pgi$;
-- Whether an owner is gone: fenced, or (an owner without a row: engines before owner rows)
-- its lease is free.
CREATE OR REPLACE FUNCTION pgisolate.owner_gone(k int8) RETURNS boolean LANGUAGE sql STABLE AS $pgi$
    SELECT coalesce((SELECT o.fenced_at IS NOT NULL FROM pgisolate.owners o WHERE o.owner_key = k),
                    k NOT IN (LIVE_OWNERS))
$pgi$;
-- Which tables tests wrote: a statement-level trigger on every template table (made ENABLE
-- ALWAYS, so session_replication_role does not silence it) notes the table here, so a
-- recycled schema resets only those. The trigger is what every test connection's first write
-- pays for (its function compiled, its statements planned, this table opened in a new
-- backend), so it does the least it can: one row appended per write statement, no index, no
-- lookup, run as the writer (every role may append here; nothing here can be read by them).
-- Never upserted: a unique key would make a write wait for another session's open transaction
-- that wrote the same table. The engine's own writes (a reset, a pool fill) run with
-- `pgisolate.internal = on` and are not noted.
CREATE TABLE IF NOT EXISTS pgisolate.written (rel oid NOT NULL);
DROP INDEX IF EXISTS pgisolate.written_rel;
GRANT USAGE ON SCHEMA pgisolate TO PUBLIC;
GRANT INSERT ON pgisolate.written TO PUBLIC;
CREATE OR REPLACE FUNCTION pgisolate.note_write() RETURNS trigger LANGUAGE plpgsql
    SECURITY INVOKER AS $pgi$
BEGIN
    IF pg_catalog.current_setting('pgisolate.internal', true) = 'on' THEN RETURN NULL; END IF;
    INSERT INTO pgisolate.written VALUES (TG_RELID);
    RETURN NULL;
END $pgi$;
-- Recycling without superuser: did the schema's catalog change since its hand-out? A test's
-- DDL (CREATE, ALTER, GRANT, TRUNCATE) writes catalog rows newer than the hand-out (age(xmin)
-- counts transactions back from now; the hand-out's own rows are exactly `since` old); a DROP
-- leaves fewer rows than the template has. Data does neither. Every row is reached through an
-- index, from the schema's entries in pg_depend: the cost follows the schema's size, never the
-- size of the catalogs (which every pooled copy of every template grows).
CREATE OR REPLACE FUNCTION pgisolate.schema_state(ns oid, since bigint) RETURNS bigint[] LANGUAGE plpgsql STABLE AS $pgi$
DECLARE
    rels oid[];
    objs oid[];
    c bigint;
    n bigint[] := '{}';
    fresh boolean := false;
    f boolean;
BEGIN
    -- Everything in the schema (tables, views, sequences, functions, types, ...) depends on it.
    SELECT count(*), coalesce(bool_or(age(d.xmin) < since), false),
           array_agg(d.objid) FILTER (WHERE d.classid = 'pg_class'::regclass),
           array_agg(d.objid) FILTER (WHERE d.classid IN ('pg_proc'::regclass, 'pg_type'::regclass))
      INTO c, f, rels, objs
      FROM pg_depend d WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = ns;
    n := n || c; fresh := fresh OR f;
    rels := coalesce(rels, '{}');
    objs := coalesce(objs, '{}');
    -- Indexes depend on their table, not on the schema.
    rels := rels || coalesce((SELECT array_agg(x.indexrelid) FROM unnest(rels) t(o),
        LATERAL (SELECT indexrelid FROM pg_index WHERE indrelid = t.o OFFSET 0) x), '{}');
    n := n || cardinality(rels)::bigint;
    SELECT coalesce(bool_or(age(x.xmin) < since), false) INTO f FROM unnest(rels) t(o),
        LATERAL (SELECT xmin FROM pg_class WHERE oid = t.o OFFSET 0) x;
    fresh := fresh OR f;
    SELECT count(*) FILTER (WHERE NOT x.attisdropped), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin, attisdropped FROM pg_attribute WHERE attrelid = t.o AND attnum > 0 OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_constraint WHERE conrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_index WHERE indrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_trigger WHERE tgrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_attrdef WHERE adrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_rewrite WHERE ev_class = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_sequence WHERE seqrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_policy WHERE polrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    -- Functions and types: their own rows, domain constraints and enum labels.
    SELECT coalesce(bool_or(age(x.xmin) < since), false) INTO f FROM unnest(objs) t(o),
        LATERAL (SELECT xmin FROM pg_proc WHERE oid = t.o UNION ALL SELECT xmin FROM pg_type WHERE oid = t.o OFFSET 0) x;
    fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f FROM unnest(objs) t(o),
        LATERAL (SELECT xmin FROM pg_constraint WHERE contypid = t.o UNION ALL SELECT xmin FROM pg_enum WHERE enumtypid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f FROM unnest(rels || objs) t(o),
        LATERAL (SELECT xmin FROM pg_description WHERE objoid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT fresh OR coalesce(age(xmin) < since, false) INTO fresh FROM pg_namespace WHERE oid = ns;
    RETURN n || (CASE WHEN fresh THEN 1 ELSE 0 END)::bigint;
END $pgi$;
-- The template's counts, computed once (a template never changes; a rebuilt one is a new schema).
CREATE TABLE IF NOT EXISTS pgisolate.template_state (nsp oid PRIMARY KEY, state bigint[] NOT NULL);
CREATE OR REPLACE FUNCTION pgisolate.check_unchanged(n text) RETURNS void LANGUAGE plpgsql AS $pgi$
DECLARE
    since bigint;
    ns oid;
    tpl oid;
    want bigint[];
    got bigint[];
BEGIN
    SELECT txid_current() - l.handout_txid, t.oid INTO since, tpl
        FROM pgisolate.leases l LEFT JOIN pg_namespace t ON t.nspname = l.template WHERE l.schema_name = n;
    SELECT oid INTO ns FROM pg_namespace WHERE nspname = n;
    IF since IS NOT NULL AND ns IS NOT NULL AND tpl IS NOT NULL THEN
        SELECT state INTO want FROM pgisolate.template_state WHERE nsp = tpl;
        IF want IS NULL THEN
            want := pgisolate.schema_state(tpl, 0);
            INSERT INTO pgisolate.template_state VALUES (tpl, want) ON CONFLICT DO NOTHING;
        END IF;
        got := pgisolate.schema_state(ns, since);
        IF got = want THEN
            RETURN;
        END IF;
    END IF;
    RAISE EXCEPTION 'pgisolate: DDL ran in schema %', n USING ERRCODE = 'P0001';
END $pgi$;";

/// The DDL watch (superuser only): event triggers record every schema in which a live test
/// ran DDL, so recycling can tell in one index lookup whether a schema still matches its
/// template. The engine's own statements run with `pgisolate.internal = on` and are skipped.
const DDL_WATCH: &str = "
CREATE TABLE IF NOT EXISTS pgisolate.ddl_touched (nspname text PRIMARY KEY);
CREATE OR REPLACE FUNCTION pgisolate.note_ddl() RETURNS event_trigger LANGUAGE plpgsql
    SECURITY DEFINER AS $pgi$
BEGIN
    IF current_setting('pgisolate.internal', true) = 'on' THEN RETURN; END IF;
    -- GRANT/REVOKE report no schema: count them against the session's own schema.
    INSERT INTO pgisolate.ddl_touched (nspname)
        SELECT DISTINCT s.n FROM (
            SELECT coalesce(c.schema_name, current_schema()) AS n FROM pg_event_trigger_ddl_commands() c
        ) s
        WHERE s.n IS NOT NULL
          AND EXISTS (SELECT 1 FROM pgisolate.leases l WHERE l.schema_name = s.n AND l.state = 'live')
        ON CONFLICT DO NOTHING;
END $pgi$;
CREATE OR REPLACE FUNCTION pgisolate.note_drop() RETURNS event_trigger LANGUAGE plpgsql
    SECURITY DEFINER AS $pgi$
BEGIN
    IF current_setting('pgisolate.internal', true) = 'on' THEN RETURN; END IF;
    INSERT INTO pgisolate.ddl_touched (nspname)
        SELECT DISTINCT d.schema_name FROM pg_event_trigger_dropped_objects() d
        WHERE d.schema_name IS NOT NULL
          AND EXISTS (SELECT 1 FROM pgisolate.leases l WHERE l.schema_name = d.schema_name AND l.state = 'live')
        ON CONFLICT DO NOTHING;
END $pgi$;
CREATE OR REPLACE FUNCTION pgisolate.check_untouched(n text) RETURNS void LANGUAGE plpgsql AS $pgi$
BEGIN
    IF EXISTS (SELECT 1 FROM pgisolate.ddl_touched WHERE nspname = n) THEN
        RAISE EXCEPTION 'pgisolate: DDL ran in schema %', n USING ERRCODE = 'P0001';
    END IF;
END $pgi$;
-- The same check inline ([`untouched_sql`]): this raises only when the record says DDL ran.
CREATE OR REPLACE FUNCTION pgisolate.ddl_ran(n text) RETURNS void LANGUAGE plpgsql AS $pgi$
BEGIN
    RAISE EXCEPTION 'pgisolate: DDL ran in schema %', n USING ERRCODE = 'P0001';
END $pgi$;
-- Which session ran each transaction with DDL (its application_name: a template build's URL
-- says `pgisolate/tpl_build_…`), so a build that reached outside its schema is told apart
-- from another session that made something there meanwhile, and drops only what it created
-- itself (see outside.rs). One row per transaction (its id is unique to it: no insert waits
-- for another's); rows older than ten minutes are deleted by the next build's check.
CREATE TABLE IF NOT EXISTS pgisolate.ddl_xacts (
    xid int8 PRIMARY KEY, app text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION pgisolate.note_xact() RETURNS event_trigger LANGUAGE plpgsql
    SECURITY DEFINER AS $pgi$
BEGIN
    IF pg_catalog.current_setting('pgisolate.internal', true) = 'on' THEN RETURN; END IF;
    INSERT INTO pgisolate.ddl_xacts (xid, app)
        VALUES (pg_catalog.txid_current() % 4294967296, pg_catalog.current_setting('application_name'))
        ON CONFLICT DO NOTHING;
END $pgi$;
DO $pgi$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgisolate_build') THEN
        CREATE EVENT TRIGGER pgisolate_build ON ddl_command_end EXECUTE FUNCTION pgisolate.note_xact();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgisolate_ddl') THEN
        CREATE EVENT TRIGGER pgisolate_ddl ON ddl_command_end EXECUTE FUNCTION pgisolate.note_ddl();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgisolate_drop') THEN
        CREATE EVENT TRIGGER pgisolate_drop ON sql_drop EXECUTE FUNCTION pgisolate.note_drop();
    END IF;
END $pgi$;";

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
        class = crate::lease::FENCE_CLASS
    )
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
            let ddl = REGISTRY_DDL
                .replace("LIVE_OWNERS", LIVE_OWNERS_SQL)
                .replace("FENCE_CLASS", &crate::lease::FENCE_CLASS.to_string());
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
    let live = live_owners(client).await?;
    let owners = owner_rows(client).await?;
    let rows = client
        .query(
            "select nspname::text, obj_description(oid, 'pg_namespace') from pg_namespace \
             where obj_description(oid, 'pg_namespace') like 'pgisolate:v1:%'",
            &[],
        )
        .await
        .map_err(|e| Error::db("list marked schemas", e))?;
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

//! Least privilege (opt-in, [`crate::Config::login_role`]): a LOGIN role per schema.
//!
//! The role owns its schema and everything in it, may use the shared `extensions` schema, and
//! nothing else: another test's schema, the templates and the registry are out of its reach
//! even by qualified name. Its `search_path` is set on the role, so handed-out strings need no
//! startup `options`. Roles are cluster-wide, so each carries a marker naming its database:
//! `pgisolate:v1:role owner=<key> t=<unix> db=<database oid>`. A role is dropped right after
//! its schema (any drop path: release, gc, `drop_schema`); gc also drops marked roles of dead
//! owners whose schema is gone (a process killed between the two drops).

use tokio_postgres::Client;

use crate::admin::{ident, literal};
use crate::error::{Error, Result};
use crate::registry::MARKER_PREFIX;

/// Name prefix of per-schema roles.
pub const ROLE_PREFIX: &str = "pgir_";

/// A fresh role name.
pub fn new_role() -> String {
    format!("{ROLE_PREFIX}{}", &crate::lease::random_seed()[..24])
}

/// A fresh password.
pub fn new_password() -> String {
    crate::lease::random_seed()[..32].to_owned()
}

/// The role's marker comment.
pub fn marker(owner: i32, db_oid: u32) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{MARKER_PREFIX}role owner={owner} t={t} db={db_oid}")
}

/// Statements that create the role (NOLOGIN) and give it `schema` and every object in it. Run
/// where the schema is made: for a warm pool ahead of time, off the test's critical path.
pub fn prepare_sql(schema: &str, role: &str, owner: i32, db_oid: u32) -> String {
    format!(
        "CREATE ROLE {r} NOLOGIN NOINHERIT; COMMENT ON ROLE {r} IS {m}; GRANT {r} TO CURRENT_USER; \
         ALTER SCHEMA {s} OWNER TO {r}; SELECT pgisolate.give_schema({sl}, {rl});",
        r = ident(role),
        m = literal(&marker(owner, db_oid)),
        s = ident(schema),
        sl = literal(schema),
        rl = literal(role),
    )
}

/// Statements (in the acquire transaction, once the schema has its final name) that let the
/// role log in with `password` and land in `search_path`.
pub fn login_sql(role: &str, password: &str, search_path: &[String]) -> String {
    let path: Vec<String> = search_path.iter().map(|s| ident(s)).collect();
    format!(
        "ALTER ROLE {r} LOGIN PASSWORD {pw}; ALTER ROLE {r} SET search_path TO {path};",
        r = ident(role),
        pw = literal(password),
        path = path.join(", "),
    )
}

/// Installed with the registry: hands every object of a schema to a role (tables with their
/// indexes and owned sequences, views, sequences, functions, types) and lets the role use the
/// shared `extensions` schema.
pub const GIVE_SCHEMA_DDL: &str = "
CREATE OR REPLACE FUNCTION pgisolate.give_schema(n text, r text) RETURNS void LANGUAGE plpgsql AS $pgi$
DECLARE o record;
BEGIN
    FOR o IN
        SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
        WHERE c.relnamespace = n::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
        ORDER BY c.oid
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I',
            CASE o.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                           WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, o.name, r);
    END LOOP;
    FOR o IN SELECT p.oid::regprocedure AS name, p.prokind FROM pg_proc p WHERE p.pronamespace = n::regnamespace LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I', CASE o.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'ROUTINE' END, o.name, r);
    END LOOP;
    FOR o IN
        SELECT t.oid::regtype AS name FROM pg_type t
        WHERE t.typnamespace = n::regnamespace AND t.typtype IN ('e', 'd', 'r', 'c')
          AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
    LOOP
        EXECUTE format('ALTER TYPE %s OWNER TO %I', o.name, r);
    END LOOP;
    IF to_regnamespace('extensions') IS NOT NULL THEN
        EXECUTE format('GRANT USAGE ON SCHEMA extensions TO %I', r);
    END IF;
END $pgi$;";

/// The pgisolate role owning `schema`, if any (read before the schema is dropped).
pub async fn owner_role(client: &Client, schema: &str) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "select r.rolname::text from pg_namespace n join pg_roles r on r.oid = n.nspowner \
             where n.nspname = $1 and shobj_description(r.oid, 'pg_authid') like $2",
            &[&schema, &format!("{MARKER_PREFIX}role %")],
        )
        .await
        .map_err(|e| Error::db("look up the schema's role", e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Ends the role's sessions and drops it (with whatever it still owns or was granted here).
pub async fn drop_role(client: &Client, role: &str) -> Result<()> {
    if !role.starts_with(ROLE_PREFIX) {
        return Err(Error::Refused(format!("refusing to drop role {role:?}: not a pgisolate role")));
    }
    let sql = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = {rl}; \
         BEGIN; DROP OWNED BY {r}; DROP ROLE {r}; COMMIT;",
        rl = literal(role),
        r = ident(role)
    );
    if let Err(e) = client.batch_execute(&sql).await {
        let _ = client.batch_execute("ROLLBACK").await;
        if e.code().map(|c| c.code()) == Some("42704") {
            return Ok(()); // already gone
        }
        return Err(Error::db(format!("drop role {role}"), e));
    }
    Ok(())
}

/// Marked roles of this database whose owner is dead and who own no schema here any more.
pub async fn orphan_roles(client: &Client) -> Result<Vec<String>> {
    let sql = format!(
        "select r.rolname::text from pg_roles r \
         where r.rolname like 'pgir\\_%' and shobj_description(r.oid, 'pg_authid') like {like} \
         and shobj_description(r.oid, 'pg_authid') like '% db=' || (select oid from pg_database where datname = current_database()) \
         and not exists (select 1 from pg_namespace n where n.nspowner = r.oid) \
         and substring(shobj_description(r.oid, 'pg_authid') from ' owner=([0-9]+) ')::int8 not in ({live})",
        like = literal(&format!("{MARKER_PREFIX}role %")),
        live = crate::lease::LIVE_OWNERS_SQL,
    );
    let rows = client.query(&sql, &[]).await.map_err(|e| Error::db("list orphan roles", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

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

use crate::admin::{ident, literal, transaction};
use crate::error::{Error, Result};
use crate::markers::MARKER_PREFIX;

/// Name prefix of per-schema roles.
pub(crate) const ROLE_PREFIX: &str = "pgir_";

/// A fresh role name.
pub(crate) fn new_role() -> String {
    format!("{ROLE_PREFIX}{}", crate::secret::random_hex(24))
}

/// A fresh password.
pub(crate) fn new_password() -> String {
    crate::secret::random_hex(32)
}

/// The role's marker comment.
pub(crate) fn marker(owner: i32, db_oid: u32) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{MARKER_PREFIX}role owner={owner} t={t} db={db_oid}")
}

/// Statements that create the role (NOLOGIN) and give it `schema` and every object in it. Run
/// where the schema is made: for a warm pool ahead of time, off the test's critical path.
pub(crate) fn prepare_sql(schema: &str, role: &str, owner: i32, db_oid: u32) -> String {
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

/// Statements that move everything `old` owns here (its recycled schema) to a new NOLOGIN role
/// `new`, with the same grants; `old` is left owning nothing, for [`drop_role`].
pub(crate) fn handover_sql(old: &str, new: &str, owner: i32, db_oid: u32) -> String {
    format!(
        "CREATE ROLE {n} NOLOGIN NOINHERIT; COMMENT ON ROLE {n} IS {m}; GRANT {n} TO CURRENT_USER; \
         REASSIGN OWNED BY {o} TO {n}; DROP OWNED BY {o};",
        n = ident(new),
        o = ident(old),
        m = literal(&marker(owner, db_oid)),
    )
}

/// Statements (in the acquire transaction, once the schema has its final name) that let the
/// role log in with `password` and land in `search_path`. The password goes over as a SCRAM
/// verifier made here: given plain text, the server spends about 3.6 ms hashing it (4,096
/// PBKDF2 rounds) on every acquire. The passwords are 128 random bits that live for one test,
/// so a few rounds protect them as well.
pub(crate) fn login_sql(role: &str, password: &str, search_path: &[String]) -> String {
    let path: Vec<String> = search_path.iter().map(|s| ident(s)).collect();
    format!(
        "ALTER ROLE {r} LOGIN PASSWORD {pw}; ALTER ROLE {r} SET search_path TO {path};",
        r = ident(role),
        pw = literal(&scram_verifier(password, &salt(), SCRAM_ROUNDS)),
        path = path.join(", "),
    )
}

/// PBKDF2 rounds in the verifiers [`login_sql`] stores.
const SCRAM_ROUNDS: u32 = 16;

/// A fresh 16-byte SCRAM salt from the OS CSPRNG.
fn salt() -> [u8; 16] {
    let mut s = [0u8; 16];
    crate::secret::fill(&mut s);
    s
}

/// A SCRAM-SHA-256 verifier (RFC 5802/7677, PostgreSQL's `rolpassword` form) for `password`
/// with `salt`: PBKDF2-HMAC-SHA-256, then the client and server keys (maintained crates:
/// `pbkdf2`, `hmac`, `sha2`, `base64`).
pub(crate) fn scram_verifier(password: &str, salt: &[u8], rounds: u32) -> String {
    use base64::Engine as _;
    use hmac::Mac;
    use sha2::{Digest, Sha256};
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, rounds, &mut salted);
    let key = |what: &[u8]| -> [u8; 32] {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&salted).expect("HMAC takes a key of any length");
        mac.update(what);
        mac.finalize().into_bytes().into()
    };
    let stored_key: [u8; 32] = Sha256::digest(key(b"Client Key")).into();
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("SCRAM-SHA-256${rounds}:{}${}:{}", b64.encode(salt), b64.encode(stored_key), b64.encode(key(b"Server Key")))
}

/// Installed with the registry: hands every object of a schema to a role (tables with their
/// indexes and owned sequences, views, sequences, functions, types). The shared `extensions`
/// schema is usable by every role once ([`share_extensions`]): granting it per role would
/// update one catalog row from many transactions at once ("tuple concurrently updated").
pub(crate) const GIVE_SCHEMA_DDL: &str = "
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
END $pgi$;";

/// Lets every role use the shared `extensions` schema, once, under the registry's lock.
pub(crate) async fn share_extensions(client: &Client) -> Result<()> {
    let shared = "select to_regnamespace('extensions') is null or exists (select 1 from pg_namespace n, \
         aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a \
         where n.nspname = 'extensions' and a.grantee = 0 and a.privilege_type = 'USAGE')";
    let done: bool =
        client.query_one(shared, &[]).await.map_err(|e| Error::db("check the extensions schema's grants", e))?.get(0);
    if done {
        return Ok(());
    }
    let sql = format!(
        "BEGIN; SELECT pg_advisory_xact_lock({}, 2); \
         DO $pgi$ BEGIN IF NOT ({shared}) THEN GRANT USAGE ON SCHEMA extensions TO PUBLIC; END IF; END $pgi$; COMMIT;",
        crate::locks::REGISTRY_CLASS
    );
    if let Err(e) = transaction(client, &sql).await {
        return Err(Error::db("let every role use schema extensions (GRANT USAGE ON SCHEMA extensions TO PUBLIC)", e));
    }
    Ok(())
}

/// The pgisolate role owning `schema`, if any (read before the schema is dropped).
pub(crate) async fn owner_role(client: &Client, schema: &str) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "select pg_get_userbyid(n.nspowner)::text from pg_namespace n \
             where n.nspname = $1 and shobj_description(n.nspowner, 'pg_authid') like $2",
            &[&schema, &format!("{MARKER_PREFIX}role %")],
        )
        .await
        .map_err(|e| Error::db("look up the schema's role", e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Ends the role's sessions and drops it (with whatever it still owns or was granted here).
pub(crate) async fn drop_role(client: &Client, role: &str) -> Result<()> {
    if !role.starts_with(ROLE_PREFIX) {
        return Err(Error::Refused(format!("refusing to drop role {role:?}: not a pgisolate role")));
    }
    let sql = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = {rl}; \
         BEGIN; DROP OWNED BY {r}; DROP ROLE {r}; COMMIT;",
        rl = literal(role),
        r = ident(role)
    );
    if let Err(e) = transaction(client, &sql).await {
        if e.code().map(|c| c.code()) == Some("42704") {
            return Ok(()); // already gone
        }
        return Err(Error::db(format!("drop role {role}"), e));
    }
    Ok(())
}

/// Marked roles of this database whose owner is dead and who own no schema here any more.
pub(crate) async fn orphan_roles(client: &Client) -> Result<Vec<String>> {
    let sql = format!(
        "select r.rolname::text from pg_roles r \
         where r.rolname like 'pgir\\_%' and shobj_description(r.oid, 'pg_authid') like {like} \
         and shobj_description(r.oid, 'pg_authid') like '% db=' || (select oid from pg_database where datname = current_database()) \
         and not exists (select 1 from pg_namespace n where n.nspowner = r.oid) \
         and pgisolate.owner_gone(substring(shobj_description(r.oid, 'pg_authid') from ' owner=([0-9]+) ')::int8)",
        like = literal(&format!("{MARKER_PREFIX}role %")),
    );
    let rows = client.query(&sql, &[]).await.map_err(|e| Error::db("list orphan roles", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil", salt
    /// W22ZaJ0SNY7soEsUEjb6gQ== (base64), 4096 rounds.
    #[test]
    fn scram_verifier_matches_rfc_7677() {
        let salt = [0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81];
        let v = super::scram_verifier("pencil", &salt, 4096);
        assert_eq!(
            v,
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }
}

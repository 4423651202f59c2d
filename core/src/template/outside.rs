//! What a template build created or changed outside its own schema: refused, never shared.
//!
//! A schema per test isolates only what lives in the test's schema. A build whose migrations
//! made a second schema (`audit`), a table in `public`, a function elsewhere, wrote rows into
//! another schema's table or set a database-level setting would have every test share those
//! objects, and a copy of the template made on another server (the capture holds the build
//! schema only) would lack them. So such a build is refused, naming each object.
//!
//! How it is seen: every catalog row the build wrote carries one of the build's transaction
//! ids as its `xmin` (a created object, or one it altered, granted on or truncated). Rows of
//! the catalogs that hold objects outside pgisolate's own schemas (the build's, templates,
//! test and pool schemas, `pgisolate`, `extensions`) are compared with the build's window of
//! transaction ids, and so are the rows of every readable table outside, the database's and
//! the role's settings, and the build's dependencies on objects outside.
//!
//! What is undone: only objects the build itself created (absent from the snapshot taken when
//! the build began, and written by a transaction known to be the build's: the engine's own
//! migration steps record theirs, and with the DDL watch (superuser) every DDL statement of a
//! session on the build's URL records its own). Anything else, and every change to an object
//! that was there before, is listed and left as it is.

use std::collections::HashSet;

use tokio_postgres::Client;

use crate::admin::{literal, transaction};
use crate::error::{Error, Result};

/// The setting the engine's migration steps append their transaction ids to.
const OWN_XIDS: &str = "pgisolate.build_xids";

/// Put at the start and the end of each migration step the engine runs: records the
/// transaction id in the session, so what the step created outside can be undone (a step with
/// its own COMMIT runs transactions between its first and last record).
pub(crate) const RECORD_XID_SQL: &str = "SELECT pg_catalog.set_config('pgisolate.build_xids', \
     coalesce(pg_catalog.current_setting('pgisolate.build_xids', true), '') || ' ' || \
     (pg_catalog.txid_current() % 4294967296)::text, false);";

/// Namespaces that are not the build's and not pgisolate's own (`$1` is the build schema).
const OUTSIDE: &str = "outside AS (SELECT n.oid FROM pg_catalog.pg_namespace n \
     WHERE n.nspname <> $1 AND n.nspname NOT IN ('pgisolate', 'extensions', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_%' \
       AND coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace'), '') NOT LIKE 'pgisolate:%')";

/// Every object outside, one row each: its catalog, oid, sub-id (a column's number), the
/// relation or extension it belongs to (listed under it), and how to drop it.
const OBJECTS: &str = "objs(cls, oid, sub, parent, drop_sql, x) AS (
    SELECT 'pg_namespace'::regclass, n.oid, 0, 0::oid, pg_catalog.format('DROP SCHEMA IF EXISTS %I', n.nspname), n.xmin
      FROM pg_catalog.pg_namespace n WHERE n.oid IN (SELECT oid FROM outside)
    UNION ALL
    SELECT 'pg_class'::regclass, c.oid, 0,
           CASE WHEN c.relkind IN ('i', 'I') THEN (SELECT i.indrelid FROM pg_catalog.pg_index i WHERE i.indexrelid = c.oid)
                WHEN c.relkind = 'S' THEN coalesce((SELECT d.refobjid FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
                      AND d.deptype IN ('a', 'i') LIMIT 1), 0::oid)
                ELSE 0::oid END,
           pg_catalog.format('DROP %s IF EXISTS %s', CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'TABLE'
               WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
               WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'INDEX' END, c.oid::regclass), c.xmin
      FROM pg_catalog.pg_class c WHERE c.relnamespace IN (SELECT oid FROM outside)
       AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c', 'i', 'I')
    UNION ALL
    SELECT 'pg_class'::regclass, a.attrelid, a.attnum, a.attrelid, NULL, a.xmin
      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
     WHERE c.relnamespace IN (SELECT oid FROM outside) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND a.attnum > 0
    UNION ALL
    SELECT 'pg_proc'::regclass, p.oid, 0, 0::oid, pg_catalog.format('DROP %s IF EXISTS %s',
           CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, p.oid::regprocedure), p.xmin
      FROM pg_catalog.pg_proc p WHERE p.pronamespace IN (SELECT oid FROM outside)
    UNION ALL
    SELECT 'pg_type'::regclass, t.oid, 0, 0::oid, pg_catalog.format('DROP %s IF EXISTS %s',
           CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype), t.xmin
      FROM pg_catalog.pg_type t WHERE t.typnamespace IN (SELECT oid FROM outside) AND t.typrelid = 0
       AND t.typtype <> 'm' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type a WHERE a.typarray = t.oid)
    UNION ALL
    SELECT 'pg_trigger'::regclass, g.oid, 0, g.tgrelid,
           pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s', g.tgname, g.tgrelid::regclass), g.xmin
      FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
     WHERE c.relnamespace IN (SELECT oid FROM outside) AND NOT g.tgisinternal
    UNION ALL
    SELECT 'pg_constraint'::regclass, k.oid, 0, CASE WHEN k.conrelid <> 0 THEN k.conrelid ELSE k.contypid END,
           CASE WHEN k.conrelid <> 0 THEN pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I',
               k.conrelid::regclass, k.conname) END, k.xmin
      FROM pg_catalog.pg_constraint k WHERE k.connamespace IN (SELECT oid FROM outside)
    UNION ALL
    SELECT 'pg_attrdef'::regclass, f.oid, 0, f.adrelid, NULL, f.xmin
      FROM pg_catalog.pg_attrdef f JOIN pg_catalog.pg_class c ON c.oid = f.adrelid
     WHERE c.relnamespace IN (SELECT oid FROM outside)
    UNION ALL
    SELECT 'pg_rewrite'::regclass, r.oid, 0, r.ev_class,
           pg_catalog.format('DROP RULE IF EXISTS %I ON %s', r.rulename, r.ev_class::regclass), r.xmin
      FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
     WHERE c.relnamespace IN (SELECT oid FROM outside)
    UNION ALL
    SELECT 'pg_policy'::regclass, y.oid, 0, y.polrelid,
           pg_catalog.format('DROP POLICY IF EXISTS %I ON %s', y.polname, y.polrelid::regclass), y.xmin
      FROM pg_catalog.pg_policy y JOIN pg_catalog.pg_class c ON c.oid = y.polrelid
     WHERE c.relnamespace IN (SELECT oid FROM outside)
    UNION ALL
    SELECT 'pg_extension'::regclass, e.oid, 0, 0::oid, pg_catalog.format('DROP EXTENSION IF EXISTS %I', e.extname), e.xmin
      FROM pg_catalog.pg_extension e WHERE e.extnamespace IN (SELECT oid FROM outside)
    UNION ALL
    SELECT 'pg_event_trigger'::regclass, v.oid, 0, 0::oid, pg_catalog.format('DROP EVENT TRIGGER IF EXISTS %I', v.evtname), v.xmin
      FROM pg_catalog.pg_event_trigger v WHERE v.evtname NOT LIKE 'pgisolate\\_%')";

/// The settings of this database and of the current role (`database/role/name=value`).
const SETTINGS: &str = "SELECT s.setdatabase::int8, s.setrole::int8, c, s.xmin::text::int8,
        coalesce((SELECT datname FROM pg_catalog.pg_database WHERE oid = s.setdatabase), ''),
        coalesce((SELECT rolname FROM pg_catalog.pg_roles WHERE oid = s.setrole), '')
   FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c
  WHERE (s.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
         OR s.setdatabase = 0)
    AND (s.setrole = 0 OR s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER))";

/// What was outside the build schema when the build began.
#[derive(Debug, Clone, Default)]
pub(crate) struct Before {
    oids: HashSet<u32>,
    settings: HashSet<String>,
}

/// Takes the snapshot a finished build is compared with.
pub(crate) async fn before(client: &Client, build: &str) -> Result<Before> {
    let sql = format!("WITH {OUTSIDE}, {OBJECTS} SELECT DISTINCT oid FROM objs");
    let rows = client.query(&sql, &[&build]).await.map_err(|e| Error::db("list the objects outside the build", e))?;
    let oids = rows.iter().map(|r| r.get::<_, u32>(0)).collect();
    let settings = client
        .query(SETTINGS, &[])
        .await
        .map_err(|e| Error::db("list the database's settings", e))?
        .iter()
        .map(|r| format!("{}/{}/{}", r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, &str>(2)))
        .collect();
    Ok(Before { oids, settings })
}

/// One thing the build reached outside its schema.
#[derive(Debug, Clone)]
pub(crate) struct Reach {
    /// What it is, qualified: `schema audit`, `table public.settings`, `function audit.f()`.
    pub what: String,
    /// How the build reached it.
    pub how: How,
    /// The statement that undoes it, when the build created it.
    undo: Option<String>,
    /// Whether a transaction of the build wrote it (not another session while it ran).
    ours: bool,
    /// Set once `undo` ran.
    pub undone: bool,
}

impl Reach {
    /// Whether this is rows written into a migration tool's version table (the tool kept its
    /// version outside the build: [`super::check::check_build`] says what to do).
    pub(crate) fn is_version_table_rows(&self) -> bool {
        self.how == How::Rows && self.what.rsplit('.').next().is_some_and(|t| super::check::VERSION_TABLES.contains(&t))
    }
}

/// How a build reached outside its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum How {
    /// Created (absent when the build began).
    Created,
    /// Existed before and was changed (altered, granted on, truncated).
    Changed,
    /// Rows were written into this table.
    Rows,
    /// An object of the template needs it (`what` needs the named object).
    Needs(String),
    /// A setting of the database or the role.
    Setting,
}

/// The transaction ids the build is known to have written with (the engine's own steps: a
/// setting of `client`'s session; with the DDL watch, the DDL transactions of every session
/// on the build's URL), and those known to be another session's (the DDL watch's record of
/// every other transaction with DDL). Old records are deleted on the way.
pub(crate) async fn known_xids(client: &Client, build: &str) -> (HashSet<i64>, HashSet<i64>) {
    let mut ours = HashSet::new();
    if let Ok(r) = client.query_one("select pg_catalog.current_setting($1, true)", &[&OWN_XIDS]).await {
        let v: Option<String> = r.get(0);
        ours.extend(v.unwrap_or_default().split_whitespace().filter_map(|x| x.parse::<i64>().ok()));
    }
    let mut theirs = HashSet::new();
    let app = crate::conninfo::application_name(build);
    // Absent without the DDL watch (no superuser): then nothing is known of other sessions.
    let _ = client.execute("delete from pgisolate.ddl_xacts where at < now() - interval '10 minutes'", &[]).await;
    if let Ok(rows) = client.query("select xid, app = $1 from pgisolate.ddl_xacts", &[&app]).await {
        for r in rows {
            let x: i64 = r.get(0);
            if r.get::<_, bool>(1) {
                ours.insert(x);
            } else {
                theirs.insert(x);
            }
        }
    }
    theirs.retain(|x| !ours.contains(x));
    (ours, theirs)
}

/// Everything the build reached outside its schema between `begin_xid` (mod 2^32) and now;
/// with `engine_run` (the engine ran every step itself and recorded their transactions), only
/// between the first and the last transaction the steps recorded: a session that made
/// something outside while the build ran is not taken for the build.
pub(crate) async fn scan(
    client: &Client,
    build: &str,
    begin_xid: i64,
    before: &Before,
    engine_run: bool,
) -> Result<Vec<Reach>> {
    let (ours, theirs) = known_xids(client, build).await;
    let ctx = |e| Error::db("look for what the build made outside its schema", e);
    // The window's end: the next transaction id (mod 2^32), as a distance from its start.
    let end: i64 = client
        .query_one(
            "select ((pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()) % 4294967296) - $1 + 4294967296) \
             % 4294967296",
            &[&begin_xid],
        )
        .await
        .map_err(ctx)?
        .get(0);
    let from = |x: i64| (x - begin_xid).rem_euclid(1 << 32);
    let within = match (engine_run, ours.iter().map(|&x| from(x)).min(), ours.iter().map(|&x| from(x)).max()) {
        (true, Some(lo), Some(hi)) => Window { begin: begin_xid, lo, hi },
        _ => Window { begin: begin_xid, lo: 0, hi: end - 1 },
    };
    // Qualified names throughout: an empty search_path makes regclass and regprocedure print
    // the schema of every object.
    client.batch_execute("BEGIN; SET LOCAL search_path TO ''").await.map_err(ctx)?;
    let found = scan_in(client, build, before, &ours, &theirs, within).await;
    let _ = client.batch_execute("COMMIT").await;
    found
}

/// The build's transaction ids: those `lo` to `hi` after `begin` (mod 2^32).
#[derive(Debug, Clone, Copy)]
struct Window {
    begin: i64,
    lo: i64,
    hi: i64,
}

impl Window {
    /// A condition true when the transaction id in column `x` is in the window.
    fn sql(self, x: &str) -> String {
        format!("(({x}::text::int8 - {} + 4294967296) % 4294967296) BETWEEN {} AND {}", self.begin, self.lo, self.hi)
    }
}

async fn scan_in(
    client: &Client,
    build: &str,
    before: &Before,
    ours: &HashSet<i64>,
    theirs: &HashSet<i64>,
    within: Window,
) -> Result<Vec<Reach>> {
    let ctx = |e| Error::db("look for what the build made outside its schema", e);
    let sql = format!(
        "WITH {OUTSIDE}, {OBJECTS}, hit AS (SELECT * FROM objs WHERE {w}) \
         SELECT h.oid, h.sub, (i.type || ' ' || i.identity), h.drop_sql, h.x::text::int8, \
                coalesce(nullif(h.parent, 0::oid), (SELECT d.refobjid FROM pg_catalog.pg_depend d \
                    WHERE d.classid = h.cls AND d.objid = h.oid AND d.deptype = 'e' LIMIT 1), 0::oid) AS parent \
           FROM hit h, pg_catalog.pg_identify_object(h.cls, h.oid, h.sub) i \
          ORDER BY h.x::text::int8, h.oid, h.sub",
        w = within.sql("x")
    );
    let rows = client.query(&sql, &[&build]).await.map_err(ctx)?;
    let hit: HashSet<u32> = rows.iter().filter(|r| r.get::<_, i32>(1) == 0).map(|r| r.get::<_, u32>(0)).collect();
    let created: HashSet<u32> = hit.iter().copied().filter(|o| !before.oids.contains(o)).collect();
    let mut out = Vec::new();
    // What another session's DDL made while the build ran is not the build's.
    let rows: Vec<_> = rows.into_iter().filter(|r| !theirs.contains(&r.get::<_, i64>(4))).collect();
    for r in &rows {
        let (oid, sub, parent): (u32, i32, u32) = (r.get(0), r.get(1), r.get(5));
        // A column is listed with its table when the table is listed; an index, trigger,
        // constraint or extension member with what it belongs to when the build created that
        // (it goes when that is dropped).
        if (sub != 0 && hit.contains(&oid)) || (parent != 0 && parent != oid && created.contains(&parent)) {
            continue;
        }
        let created = sub == 0 && !before.oids.contains(&oid);
        out.push(Reach {
            what: r.get(2),
            how: if created { How::Created } else { How::Changed },
            undo: if created { r.get(3) } else { None },
            ours: ours.contains(&r.get::<_, i64>(4)),
            undone: false,
        });
    }
    // Rows written into the tables outside (those that existed before; a created one is listed).
    let tables = client
        .query(
            &format!(
                "WITH {OUTSIDE} SELECT c.oid, c.oid::regclass::text FROM pg_catalog.pg_class c \
                 WHERE c.relnamespace IN (SELECT oid FROM outside) AND c.relkind = 'r' \
                   AND pg_catalog.has_schema_privilege(c.relnamespace, 'USAGE') \
                   AND pg_catalog.has_table_privilege(c.oid, 'SELECT') ORDER BY 2"
            ),
            &[&build],
        )
        .await
        .map_err(ctx)?;
    let tables: Vec<String> =
        tables.iter().filter(|r| !hit.contains(&r.get::<_, u32>(0))).map(|r| r.get::<_, String>(1)).collect();
    for chunk in tables.chunks(100) {
        let sql = chunk
            .iter()
            .map(|t| {
                format!("SELECT {} WHERE EXISTS (SELECT 1 FROM ONLY {t} WHERE {})", literal(t), within.sql("xmin"))
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        for r in client.query(&sql, &[]).await.map_err(ctx)? {
            out.push(Reach {
                what: format!("table {}", r.get::<_, &str>(0)),
                how: How::Rows,
                undo: None,
                ours: false,
                undone: false,
            });
        }
    }
    // Objects of the template that need objects outside it (a foreign key to public.users, a
    // column of a type in another schema).
    let needs = client
        .query(
            &format!(
                "WITH {OUTSIDE}, {OBJECTS} SELECT DISTINCT (di.type || ' ' || di.identity), (ri.type || ' ' || ri.identity) \
                 FROM pg_catalog.pg_depend d \
                 CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) di \
                 CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0) ri \
                 WHERE d.deptype = 'n' AND d.refobjid IN (SELECT oid FROM objs WHERE sub = 0) \
                   AND d.refclassid IN ('pg_class'::regclass, 'pg_proc'::regclass, 'pg_type'::regclass, 'pg_namespace'::regclass) \
                   AND di.schema = $1 ORDER BY 1, 2"
            ),
            &[&build],
        )
        .await
        .map_err(ctx)?;
    let unbuilt = |s: &str| s.replace(&format!("{build}."), "");
    for r in needs {
        out.push(Reach { what: unbuilt(r.get(0)), how: How::Needs(r.get(1)), undo: None, ours: false, undone: false });
    }
    // Settings of the database or the role (ALTER DATABASE … SET, ALTER ROLE … SET).
    let settings = client.query(SETTINGS, &[]).await.map_err(ctx)?;
    for r in settings {
        let (db, role, entry, x): (i64, i64, &str, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let key = format!("{db}/{role}/{entry}");
        if before.settings.contains(&key) {
            continue;
        }
        let (dbname, rolename): (&str, &str) = (r.get(4), r.get(5));
        let name = entry.split('=').next().unwrap_or(entry);
        let (whose, undo) = match (db, role) {
            (0, _) => (
                format!("role {rolename}"),
                format!("ALTER ROLE {} RESET {}", crate::admin::ident(rolename), crate::admin::ident(name)),
            ),
            (_, 0) => (
                format!("database {dbname}"),
                format!("ALTER DATABASE {} RESET {}", crate::admin::ident(dbname), crate::admin::ident(name)),
            ),
            _ => (
                format!("role {rolename} in database {dbname}"),
                format!(
                    "ALTER ROLE {} IN DATABASE {} RESET {}",
                    crate::admin::ident(rolename),
                    crate::admin::ident(dbname),
                    crate::admin::ident(name)
                ),
            ),
        };
        // A value the key did not have before; undone only when the key is new (a changed
        // value cannot be put back from here without knowing who set the old one).
        let new_key = !before.settings.iter().any(|s| s.starts_with(&format!("{db}/{role}/{name}=")));
        out.push(Reach {
            what: format!("setting {entry} of {whose}"),
            how: How::Setting,
            undo: new_key.then_some(undo),
            ours: ours.contains(&x),
            undone: false,
        });
    }
    Ok(out)
}

/// Drops what the build itself created outside (never what was there before, never what
/// another session made while the build ran), dependents first: each statement in a
/// savepoint, repeated while any succeeds.
pub(crate) async fn undo(client: &Client, reach: &mut [Reach]) {
    let mut pending: Vec<usize> = (0..reach.len()).filter(|&i| reach[i].ours && reach[i].undo.is_some()).collect();
    if pending.is_empty() || client.batch_execute("BEGIN; SET LOCAL lock_timeout = '5s'").await.is_err() {
        return;
    }
    loop {
        let mut left = Vec::new();
        for &i in &pending {
            let stmt = reach[i].undo.clone().unwrap_or_default();
            if transaction_step(client, &stmt).await {
                reach[i].undone = true;
            } else {
                left.push(i);
            }
        }
        if left.is_empty() || left.len() == pending.len() {
            break;
        }
        pending = left;
    }
    if client.batch_execute("COMMIT").await.is_err() {
        let _ = transaction(client, "ROLLBACK").await;
        for r in reach.iter_mut() {
            r.undone = false;
        }
    }
}

async fn transaction_step(client: &Client, stmt: &str) -> bool {
    if client.batch_execute(&format!("SAVEPOINT pgi_undo; {stmt}; RELEASE SAVEPOINT pgi_undo")).await.is_ok() {
        return true;
    }
    let _ = client.batch_execute("ROLLBACK TO SAVEPOINT pgi_undo; RELEASE SAVEPOINT pgi_undo").await;
    false
}

/// One line per thing reached, saying what was done about it.
fn lines(reach: &[Reach]) -> Vec<String> {
    reach
        .iter()
        .map(|r| {
            let fate = match (&r.how, r.undone) {
                (How::Created, true) => "created by the build; dropped".to_owned(),
                (How::Setting, true) => "set by the build; reset".to_owned(),
                (How::Created | How::Setting, false) if r.ours && r.undo.is_some() => {
                    format!(
                        "made by the build; could not be undone, do it yourself: {}",
                        r.undo.as_deref().unwrap_or("")
                    )
                }
                (How::Created, false) => format!(
                    "created while the build ran and left in place (pgisolate cannot tell that the build made it; if \
                     it did: {})",
                    r.undo.as_deref().unwrap_or("drop it")
                ),
                (How::Setting, false) => "set while the build ran; left as it is".to_owned(),
                (How::Changed, _) => "existed before and was changed while the build ran; not undone".to_owned(),
                (How::Rows, _) => "rows written while the build ran; not undone".to_owned(),
                (How::Needs(other), _) => format!("needs {other}, which lives outside the template"),
            };
            let public_table =
                r.how == How::Created && (r.what.starts_with("table public.") || r.what.starts_with("view public."));
            let hint = if public_table { " (create it unqualified and it lands in the template)" } else { "" };
            format!("  - {}: {fate}{hint}", r.what)
        })
        .collect()
}

/// The sentence appended to a failed build's error: what it had made outside (and what of
/// it was undone), or nothing.
pub(crate) fn note(reach: &[Reach]) -> String {
    if reach.is_empty() {
        return String::new();
    }
    format!(". Before it failed, the build reached outside its schema:\n{}", lines(reach).join("\n"))
}

/// The refusal of a build that reached outside its schema.
pub(crate) fn refusal(source: &str, reach: &[Reach]) -> Error {
    Error::Migration {
        code: None,
        source_name: format!("template build of {source}"),
        message: format!(
            "refused: the migrations reach outside the template's own schema, so every test would share these \
             objects (a schema per test isolates only what is in its schema) and a copy of the template on another \
             server would lack them. Nothing was published or cached, and the build schema was dropped:\n{}\n\
             What to do: keep every object in the migrations' own schema (unqualified names; no CREATE SCHEMA, no \
             ALTER DATABASE/ROLE … SET, no writes into other schemas). An app that needs several schemas, tables in \
             public or database-level settings needs a database per test: set PGISOLATE_ISOLATION=database \
             (isolation=\"database\" in every binding; docs/behaviour.md, \"Apps with more than one schema\"). A \
             schema per worker (isolated_worker_schema) does not help: it is still a schema in a shared database",
            lines(reach).join("\n")
        ),
    }
}

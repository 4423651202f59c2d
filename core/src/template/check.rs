//! What a template build must look like before it is published, and what a template must not
//! share with the schemas after it in a test's `search_path`.
//!
//! - Extensions a migration created inside the build schema are moved to schema `extensions`
//!   (extensions belong to the database, and a type or function inside the template would be
//!   named under every test schema's name in the captured DDL); ones that cannot be moved are
//!   an error naming `PGISOLATE_EXTENSIONS`.
//! - A build that left its schema empty is refused, with the likely cause: the migration tool
//!   connected without the URL it was given, or found its version table in another schema.
//! - A migration tool's version table written during the build must be in the build schema.
//! - Tables of a template that also exist by name in a schema of the tail (`public`) are named
//!   in a warning: a test whose query misses its schema would read or write them silently.

use tokio_postgres::Client;

use crate::admin::{ident, transaction};
use crate::error::{Error, Result};

/// Version tables of the migration tools users build templates with.
pub(crate) const VERSION_TABLES: &[&str] = &[
    "alembic_version",
    "schema_migrations",
    "goose_db_version",
    "_sqlx_migrations",
    "flyway_schema_history",
    "knex_migrations",
    "knex_migrations_lock",
    "_prisma_migrations",
    "django_migrations",
    "refinery_schema_history",
    "__diesel_schema_migrations",
    "seaql_migrations",
    "gorp_migrations",
    "pgmigrations",
    "databasechangelog",
];

/// What [`relocate_extensions`] did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Relocated {
    /// Whether any extension was moved out of the build.
    pub moved: bool,
    /// Whether schema `extensions` exists now (made by this move or earlier by anyone).
    pub schema_exists: bool,
}

/// Moves the extensions a build created inside `build` to schema `extensions`, and says
/// whether that schema exists (one catalog query either way); an extension that is not
/// relocatable is an error that says to create it up front with `PGISOLATE_EXTENSIONS`.
pub(crate) async fn relocate_extensions(client: &Client, build: &str) -> Result<Relocated> {
    let rows = client
        .query(
            "select e.extname, e.extrelocatable, exists (select 1 from pg_namespace where nspname = 'extensions') \
             from (select 1) one \
             left join (pg_extension e join pg_namespace n on n.oid = e.extnamespace and n.nspname = $1) on true \
             order by e.extname",
            &[&build],
        )
        .await
        .map_err(|e| Error::db("list the extensions of the build", e))?;
    let schema_exists = rows.first().is_some_and(|r| r.get::<_, bool>(2));
    // The left join gives one row of NULLs when the build made no extension.
    let rows: Vec<_> = rows.into_iter().filter(|r| r.get::<_, Option<&str>>(0).is_some()).collect();
    if rows.is_empty() {
        return Ok(Relocated { moved: false, schema_exists });
    }
    let fixed: Vec<String> = rows.iter().filter(|r| !r.get::<_, bool>(1)).map(|r| r.get(0)).collect();
    if !fixed.is_empty() {
        return Err(Error::Migration {
            code: None,
            source_name: "CREATE EXTENSION".into(),
            message: format!(
                "the migrations created extension {} inside the template build, and it cannot be moved to schema \
                 extensions (it is not relocatable): set PGISOLATE_EXTENSIONS={} so the engine creates it once in \
                 schema extensions before any build (the migration's CREATE EXTENSION IF NOT EXISTS then does nothing)",
                fixed.join(", "),
                fixed.join(",")
            ),
        });
    }
    let mut sql = super::extensions::begin_extensions_sql();
    for r in &rows {
        sql.push_str(&format!(" ALTER EXTENSION {} SET SCHEMA extensions;", ident(r.get::<_, &str>(0))));
    }
    sql.push_str(" COMMIT;");
    if let Err(e) = transaction(client, &sql).await {
        return Err(Error::db("move the build's extensions to schema extensions", e));
    }
    Ok(Relocated { moved: true, schema_exists: true })
}

/// Checks a finished build before it is published: not empty, and no version table written
/// outside it. `begin_xid` is the build's first transaction id modulo 2^32.
pub(crate) async fn check_build(client: &Client, build: &str, begin_xid: i64) -> Result<()> {
    let objects: i64 = client
        .query_one(
            "select (select count(*) from pg_class c where c.relnamespace = n.oid and c.relkind in ('r','p','v','m','S','f')) \
                  + (select count(*) from pg_type t where t.typnamespace = n.oid and t.typtype in ('e','d','r','m','b')) \
                  + (select count(*) from pg_proc p where p.pronamespace = n.oid) \
             from pg_namespace n where n.nspname = $1",
            &[&build],
        )
        .await
        .map_err(|e| Error::db("inspect the template build", e))?
        .get(0);
    let elsewhere = version_tables_elsewhere(client, build).await?;
    if objects == 0 {
        let found = if elsewhere.is_empty() {
            String::new()
        } else {
            format!(
                " A version table exists outside the build: {}. A tool that reads it through the search_path or \
                 through its own connection thinks it has nothing to do.",
                elsewhere.iter().map(|(s, t)| format!("{s}.{t}")).collect::<Vec<_>>().join(", ")
            )
        };
        return Err(Error::Migration {
            code: None,
            source_name: format!("template build {build}"),
            message: format!(
                "the build left its schema empty (no tables, types or functions), so nothing was published.{found} \
                 Most likely the migration tool did not use the URL it was given: it connected with its own settings \
                 (Alembic's generated env.py reads alembic.ini or the app's settings: use pgisolate.alembic.upgrade; \
                 Django reads DATABASES) and migrated another schema or found it already at head. Run the tool \
                 against the build URL (its options set search_path to the build schema) and build again."
            ),
        });
    }
    let in_build: bool = client
        .query_one(
            "select exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = any($2))",
            &[&build, &VERSION_TABLES],
        )
        .await
        .map_err(|e| Error::db("look up the build's version table", e))?
        .get(0);
    if in_build {
        return Ok(());
    }
    for (schema, table) in elsewhere {
        let sql = format!(
            "select count(*) from {}.{} where (xmin::text::int8 - $1 + 4294967296) % 4294967296 \
             <= (txid_current() % 4294967296 - $1 + 4294967296) % 4294967296",
            ident(&schema),
            ident(&table)
        );
        let written: i64 = match client.query_one(&sql, &[&begin_xid]).await {
            Ok(r) => r.get(0),
            Err(_) => continue,
        };
        if written > 0 {
            return Err(Error::Migration {
                code: None,
                source_name: format!("template build {build}"),
                message: format!(
                    "the migration tool recorded its version in {schema}.{table}, outside the build schema: the \
                     template would hold the tables while the next build finds {schema}.{table} at head and does \
                     nothing. Let the tool keep its version table in the schema it migrates (drop a \
                     version_table_schema / schema setting that names {schema}), then build again."
                ),
            });
        }
    }
    Ok(())
}

async fn version_tables_elsewhere(client: &Client, build: &str) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where c.relkind in ('r', 'p') and c.relname = any($2) and n.nspname <> $1 \
               and n.nspname not like 'pg\\_%' and n.nspname <> 'information_schema' \
               and coalesce(obj_description(n.oid, 'pg_namespace'), '') not like 'pgisolate:%' \
             order by 1, 2",
            &[&build, &VERSION_TABLES],
        )
        .await
        .map_err(|e| Error::db("look up version tables", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A sentence to append to a failed migration's message when the failure looks like an
/// object the build cannot see (an extension installed in `public`, say).
pub(crate) async fn hint_for(client: &Client, e: &tokio_postgres::Error) -> String {
    let code = e.code().map(|c| c.code()).unwrap_or("");
    if !matches!(code, "42883" | "42704" | "42P01") {
        return String::new();
    }
    extensions_hint(client).await
}

/// [`hint_for`] for a message from the caller's migration tool (no SQLSTATE at hand): given
/// when it says that something "does not exist".
pub(crate) async fn hint_for_message(client: &Client, message: &str) -> String {
    if !message.contains("does not exist") {
        return String::new();
    }
    extensions_hint(client).await
}

async fn extensions_hint(client: &Client) -> String {
    let rows = match client
        .query(
            "select e.extname, n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace \
             where n.nspname not in ('pg_catalog', 'extensions') order by 1",
            &[],
        )
        .await
    {
        Ok(r) => r,
        Err(_) => return String::new(),
    };
    if rows.is_empty() {
        return String::new();
    }
    let list: Vec<String> =
        rows.iter().map(|r| format!("{} (in {})", r.get::<_, &str>(0), r.get::<_, &str>(1))).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.get::<_, &str>(0)).collect();
    format!(
        ". Hint: template builds see only their own schema and schema extensions, and these extensions live \
         elsewhere: {}. Give the tests a database of their own (CREATE DATABASE app_test; pgisolate installs \
         extensions into schema extensions there), or move them: CREATE SCHEMA IF NOT EXISTS extensions; ALTER \
         EXTENSION {} SET SCHEMA extensions; and set PGISOLATE_EXTENSIONS={}",
        list.join(", "),
        ident(names[0]),
        names.join(",")
    )
}

/// Tables of template `tpl` that also exist by name in a schema of `tail` (`schema.table`).
pub(crate) async fn shadowed(client: &Client, tpl: &str, tail: &[String]) -> Result<Vec<String>> {
    let tail: Vec<String> = tail.iter().filter(|t| *t != "extensions").cloned().collect();
    if tail.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "select o.nspname || '.' || c2.relname from pg_class c \
             join pg_namespace n on n.oid = c.relnamespace and n.nspname = $1 \
             join pg_class c2 on c2.relname = c.relname and c2.relkind in ('r','p','v','m','f') \
             join pg_namespace o on o.oid = c2.relnamespace and o.nspname = any($2) \
             where c.relkind in ('r','p','v','m','f') order by 1",
            &[&tpl, &tail],
        )
        .await
        .map_err(|e| Error::db("compare the template with the search_path tail", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The warning for tables a template shares by name with the tail.
pub(crate) fn shadow_warning(tpl: &str, shadowed: &[String]) -> String {
    let mut shown: Vec<&str> = shadowed.iter().take(5).map(String::as_str).collect();
    if shadowed.len() > 5 {
        shown.push("…");
    }
    let schemas: std::collections::BTreeSet<&str> =
        shadowed.iter().filter_map(|s| s.split_once('.').map(|(a, _)| a)).collect();
    let schemas: Vec<&str> = schemas.into_iter().collect();
    format!(
        "template {tpl} has tables that also exist in {where_} ({n}: {list}), which is in each test's search_path: a \
         query that misses the test's schema (a connection without the handed-out URL, a leaked session after \
         release) reads and writes those tables without any error. Use a database of its own for tests, or set \
         PGISOLATE_SEARCH_PATH_TAIL without {first} (PGISOLATE_EXTENSIONS=… installs extensions into schema \
         extensions, which needs no {first})",
        where_ = schemas.join(", "),
        n = shadowed.len(),
        list = shown.join(", "),
        first = schemas.first().copied().unwrap_or("public"),
    )
}

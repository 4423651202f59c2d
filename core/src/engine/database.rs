//! Database isolation (`isolation = database`): a database per test, for apps whose migrations
//! reach beyond one schema (another schema, tables in `public`, database-level settings).
//!
//! - Template: a database `tpl_<fp16>` built by the migrations under the template's advisory
//!   lock: made as `tpl_build_<fp16>_<owner>` (marked as a build, so gc reaps a killed
//!   builder's), migrated, then renamed and marked as a template in one step: half-built
//!   templates are never used.
//! - Hand-out: the identity's name is registered (same names and collision handling as
//!   schemas), then `CREATE DATABASE … TEMPLATE` clones the template; the template's
//!   database-level settings (`pg_db_role_setting`) are copied, since a clone does not inherit
//!   them. The handed-out URL points at the database, with no `search_path` option.
//! - Release: kept by the keep policy, else dropped (`WITH (FORCE)` where the server has it,
//!   else its sessions are ended first) and its registry row deleted.
//! - gc: databases carry the same markers as schemas (on the database, with the registry's
//!   database oid), and a fenced owner's are dropped.
//!
//! Not in this slice: a warm pool and recycling of test databases, captures for replay on a new
//! server, and templates built by the caller's own migration tool.

use std::time::Duration;

use tokio_postgres::Client;

use super::build::{build_lock_key, try_build_lock, BUILD_LOCK_POLL};
use super::Engine;
use crate::admin::{exec, ident, literal};
use crate::conninfo;
use crate::error::{Error, Result};
use crate::locks::TEMPLATE_CLASS;
use crate::markers::{self, Kind};
use crate::naming::{self, Identity};
use crate::registry;
use crate::schema::{Released, Schema, Ticket};
use crate::template::{self, Migrations, Replay, Template};

/// Settings whose stored text is a list to re-read as written (quoting a list as one literal
/// would make it one element).
const LIST_SETTINGS: &[&str] =
    &["search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries"];

/// The marker of a database made by this engine: the schema markers' format, plus the oid of
/// the database holding the registry (databases are cluster-wide; only this registry's are
/// judged by its owners).
fn db_marker(kind: Kind, owner: i32, registry_db: u32) -> String {
    format!("{} of={registry_db}", markers::marker(kind, owner))
}

fn comment_sql(db: &str, kind: Kind, owner: i32, registry_db: u32) -> String {
    format!("COMMENT ON DATABASE {} IS {};", ident(db), literal(&db_marker(kind, owner, registry_db)))
}

/// A database-isolation fingerprint: the migrations' own, keyed apart from schema templates
/// of the same migrations (both are recorded in one registry).
fn database_fingerprint(fp: &str) -> String {
    naming::sha256_hex(format!("database\0{fp}").as_bytes())
}

impl Engine {
    /// [`Engine::template`] in database isolation.
    pub(super) async fn template_database(&self, migrations: Migrations) -> Result<Template> {
        let steps = migrations.load()?;
        let fp = database_fingerprint(&template::fingerprint(&steps));
        if let Some(t) = self.cached(&fp) {
            return Ok(t);
        }
        let name = template::template_schema(&fp);
        let key = build_lock_key(&fp);
        let admin = loop {
            let admin = self.inner.pool.get().await?;
            if database_is(&admin, &name, Kind::Template).await? {
                return Ok(self.remember(database_template(fp, name, false)));
            }
            if try_build_lock(&admin, key).await? {
                break admin;
            }
            drop(admin);
            tokio::time::sleep(BUILD_LOCK_POLL).await;
        };
        let built = self.build_database(&admin, &fp, &name, &steps).await;
        let _ = admin.execute("select pg_advisory_unlock($1::int4, $2::int4)", &[&TEMPLATE_CLASS, &key]).await;
        built?;
        Ok(self.remember(database_template(fp, name, true)))
    }

    /// Builds template database `name` under the build lock (held by `admin`'s session), unless
    /// another engine published it meanwhile.
    async fn build_database(&self, admin: &Client, fp: &str, name: &str, steps: &[(String, String)]) -> Result<()> {
        if database_is(admin, name, Kind::Template).await? {
            return Ok(());
        }
        let owner = self.owner();
        let db_oid = self.inner.db_oid;
        let build = template::build_schema(fp, owner);
        // A build of ours left by an earlier attempt of this engine (the lock is ours now).
        drop_database(admin, &build).await?;
        exec(admin, "create the template build database", &format!("CREATE DATABASE {}", ident(&build))).await?;
        exec(admin, "mark the build database", &comment_sql(&build, Kind::Build, owner, db_oid)).await?;
        let url = conninfo::for_database(&self.inner.url, &build)?;
        let migrated = async {
            let c = crate::admin::connect(&url, &conninfo::application_name(&build)).await?;
            for (step, sql) in steps {
                if let Err(e) = c.batch_execute(sql).await {
                    let (code, message) = crate::error::describe_pg(&e);
                    return Err(Error::Migration { source_name: step.clone(), code, message });
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = migrated {
            let _ = drop_database(admin, &build).await;
            return Err(e);
        }
        // A closed connection's backend exits a moment later, and a database with sessions can
        // be neither renamed nor cloned: end them (the build's own) and wait until they are gone.
        if let Err(e) = end_sessions(admin, &build).await {
            let _ = drop_database(admin, &build).await;
            return Err(e);
        }
        let publish = format!("ALTER DATABASE {} RENAME TO {};", ident(&build), ident(name));
        let published = async {
            exec(admin, "publish the template database", &publish).await?;
            exec(admin, "mark the template database", &comment_sql(name, Kind::Template, owner, db_oid)).await
        }
        .await;
        if let Err(e) = published {
            let _ = drop_database(admin, &build).await;
            return Err(e);
        }
        Ok(())
    }

    /// [`Engine::acquire`] in database isolation: a clone of the template under the identity's
    /// name, with the template's database-level settings.
    pub(super) async fn acquire_database(&self, owner: i32, tpl: &Template, identity: Identity) -> Result<Schema> {
        let hash = identity.hash_hex();
        let shown = identity.display();
        let admin = self.inner.pool.get().await?;
        self.inner.wait_to_fit(&admin).await?;
        let db_oid = self.inner.db_oid;
        let start = self.inner.next_candidate.lock().ok().and_then(|m| m.get(&hash).copied()).unwrap_or(0);
        let mut taken = Vec::new();
        let names =
            naming::candidates_from(&self.inner.cfg.prefix, self.inner.cfg.hash_len, &hash, &self.inner.run_id, start)
                .take(24)
                .zip(start..);
        for (n, index) in names {
            // The name first, in the registry (it is the lock on it), then the clone: CREATE
            // DATABASE cannot run inside a transaction.
            let register = format!(
                "BEGIN; {internal} {held} INSERT INTO pgisolate.leases (schema_name, identity_hash, identity, owner_key, run_id, host, pid, template, handout_txid) \
                 VALUES ({nl}, {hl}, {il}, {owner}, {run}, {host}, {pid}, {tpl}, txid_current()); COMMIT;",
                internal = registry::INTERNAL,
                held = registry::held_sql(owner),
                nl = literal(&n),
                hl = literal(&hash),
                il = literal(&shown),
                run = literal(&self.inner.run_id),
                host = literal(&self.inner.host),
                pid = std::process::id() as i32,
                tpl = literal(&tpl.schema),
            );
            if let Err(e) = crate::admin::transaction(&admin, &register).await {
                match e.code().map(|c| c.code()) {
                    Some(crate::lease::FENCED) => return Err(Error::Lease(crate::error::describe_pg(&e).1)),
                    Some("23505") => {
                        taken.push(n);
                        continue;
                    }
                    _ => return Err(Error::db(format!("register database {n}"), e)),
                }
            }
            let clone = format!("CREATE DATABASE {} TEMPLATE {}", ident(&n), ident(&tpl.schema));
            if let Err(e) = admin.batch_execute(&clone).await {
                let _ = registry::forget(&admin, &n).await;
                if e.code().map(|c| c.code()) == Some("42P04") {
                    // A database of that name that is not ours (another registry's, or the user's).
                    taken.push(n);
                    continue;
                }
                return Err(Error::db(format!("create database {n} from template {}", tpl.schema), e));
            }
            let settings = copy_settings_sql(&admin, &tpl.schema, &n).await?;
            let finish = format!("{}{settings}", comment_sql(&n, Kind::Schema, owner, db_oid));
            if let Err(e) = exec(&admin, "mark the test database", &finish).await {
                let _ = drop_database(&admin, &n).await;
                let _ = registry::forget(&admin, &n).await;
                return Err(e);
            }
            if let Ok(mut m) = self.inner.next_candidate.lock() {
                let e = m.entry(hash.clone()).or_insert(0);
                *e = (*e).max(index + 1);
            }
            let url = conninfo::for_database(&self.inner.url_form.to_string(), &n)?;
            let kv = conninfo::for_database(&self.inner.kv_form.to_string(), &n)?;
            return Ok(Schema {
                url,
                conninfo: kv,
                role: None,
                cache_prefix: naming::cache_prefix(&self.inner.cfg.prefix, &n),
                search_path: String::new(),
                name: n,
                identity,
                template_fp: None,
                owner,
                releaser: Some(Box::new(super::release::Handle(self.clone()))),
            });
        }
        Err(Error::NameExhausted(format!("no free database name for identity {shown:?}: tried {}", taken.join(", "))))
    }

    /// Releases a test database: kept by the policy, else dropped; its registry row goes.
    pub(super) async fn release_database(&self, t: &Ticket, failed: bool) -> Result<Released> {
        let admin = self.inner.pool.get_teardown().await?;
        if self.inner.cfg.keep.keeps(failed) {
            let sql = format!(
                "{}UPDATE pgisolate.leases SET state = 'kept' WHERE schema_name = {};",
                comment_sql(&t.name, Kind::Kept, t.owner, self.inner.db_oid),
                literal(&t.name)
            );
            exec(&admin, "keep the test database", &sql).await?;
            return Ok(Released::Kept);
        }
        self.inner.delete_cache_keys(&t.name).await;
        drop_database(&admin, &t.name).await?;
        registry::forget(&admin, &t.name).await?;
        Ok(Released::Dropped)
    }

    /// gc in database isolation: drops the test and build databases of fenced owners (and kept
    /// ones with `include_kept`); returns their names.
    pub(super) async fn gc_databases(&self, admin: &Client, grace: Duration, include_kept: bool) -> Vec<String> {
        let Ok(found) = registry::database_orphans(admin, grace, include_kept, self.inner.db_oid).await else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        for o in found {
            if drop_database(admin, &o.schema).await.is_ok() {
                let _ = registry::forget(admin, &o.schema).await;
                dropped.push(o.schema);
            }
        }
        dropped
    }
}

/// A template whose schema is a database: nothing to replay or reset from here.
fn database_template(fingerprint: String, name: String, built_here: bool) -> Template {
    Template {
        fingerprint,
        schema: name,
        replay: Replay::Migrations(Vec::new()),
        built_here,
        seed_sql: None,
        reset: std::sync::Arc::new(crate::recycle::reset::Plan::default()),
    }
}

/// Whether database `name` exists and carries a marker of `kind`.
async fn database_is(client: &Client, name: &str, kind: Kind) -> Result<bool> {
    let row = client
        .query_opt("select shobj_description(oid, 'pg_database') from pg_database where datname = $1", &[&name])
        .await
        .map_err(|e| Error::db(format!("look up database {name}"), e))?;
    Ok(row
        .and_then(|r| r.get::<_, Option<String>>(0))
        .and_then(|c| markers::parse_marker(&c))
        .is_some_and(|m| m.kind == kind))
}

/// `ALTER DATABASE target SET …` for each database-level setting of `template` (a clone does
/// not inherit them).
async fn copy_settings_sql(client: &Client, template: &str, target: &str) -> Result<String> {
    let rows = client
        .query(
            "select unnest(s.setconfig) from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase \
             where d.datname = $1 and s.setrole = 0",
            &[&template],
        )
        .await
        .map_err(|e| Error::db(format!("read the settings of database {template}"), e))?;
    let mut sql = String::new();
    for r in rows {
        let item: String = r.get(0);
        let Some((k, v)) = item.split_once('=') else { continue };
        let value = if LIST_SETTINGS.contains(&k.to_ascii_lowercase().as_str()) { v.to_owned() } else { literal(v) };
        sql.push_str(&format!("ALTER DATABASE {} SET {} = {value};", ident(target), ident(k)));
    }
    Ok(sql)
}

/// Ends the sessions connected to database `name` and waits (up to 10 s) until none is left.
async fn end_sessions(client: &Client, name: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = client
            .query_one(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
                &[&name],
            )
            .await
            .map_err(|e| Error::db(format!("end the sessions of database {name}"), e))?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Timeout(format!("database {name} still has {left} sessions after 10 s")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drops database `name` if it exists, ending its sessions (`WITH (FORCE)` on PostgreSQL 13 and
/// later; before, they are terminated first).
async fn drop_database(client: &Client, name: &str) -> Result<()> {
    let version: i32 = client
        .query_one("select current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| Error::db("read the server version", e))?
        .get(0);
    let sql = if version >= 130000 {
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name))
    } else {
        format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {}; DROP DATABASE IF EXISTS {}",
            literal(name),
            ident(name)
        )
    };
    exec(client, &format!("drop database {name}"), &sql).await
}

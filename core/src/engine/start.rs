//! Start-up (the server, the owner lease, the registry, the `public` guard) and close.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::Client;

use super::{Engine, Inner};
use crate::admin::AdminPool;
use crate::config::Config;
use crate::conninfo::ConnInfo;
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::registry;
use crate::server;

impl Engine {
    /// Starts an engine: connects to `cfg.url` (or boots/reuses the embedded server), takes an
    /// owner lease, creates the registry if needed and, unless disabled, runs gc.
    pub async fn start(mut cfg: Config) -> Result<Engine> {
        cfg.validate()?;
        // Redis first: a wrong password or an unreachable server fails here, before anything
        // is started (tests would otherwise share cache keys nobody deletes).
        let redis = match cfg.redis_url.as_deref() {
            Some(u) => Some(crate::cache::Redis::open(u, cfg.redis_ca_file.as_deref()).await?),
            None => None,
        };
        if !cfg.extensions.is_empty() && !cfg.search_path_tail.iter().any(|t| t == "extensions") {
            cfg.search_path_tail.push("extensions".to_owned());
        }
        // A registry package's binaries serve only a machine without PostgreSQL's own.
        if cfg.pg_bin.is_none() && cfg.pg_bin_fallback.is_some() && server::find_binaries(None).is_err() {
            cfg.pg_bin = cfg.pg_bin_fallback.clone();
        }
        let progress = cfg.progress.clone();
        let (url, server, start_lock) = match cfg.server_for_worker() {
            // Normalized: a SQLAlchemy postgresql+driver:// URL becomes libpq's postgresql://.
            // With several servers listed, this process's (by its worker id).
            Some(u) => (ConnInfo::parse(&u)?.to_string_form(), None, None),
            None => {
                let bin = cfg.pg_bin.clone();
                let reuse = cfg.reuse;
                let (srv, lock) = tokio::task::spawn_blocking(move || {
                    let say = |m: &str| {
                        if let Some(p) = &progress {
                            p(m)
                        }
                    };
                    let started = server::ensure(bin.as_deref(), &say)?;
                    if let Some(idle) = reuse {
                        server::keep_up_for(idle)?;
                    }
                    Ok::<_, Error>(started)
                })
                .await
                .map_err(|e| Error::Internal(format!("embedded server start-up panicked: {e}")))??;
                (srv.url.clone(), Some(srv), Some(lock))
            }
        };
        let run_id = cfg.run_id.clone().unwrap_or_else(|| crate::secret::random_hex(16));
        let host = crate::naming::host_name();
        // A server with no free slot: wait a while for one (another run may be ending). Then
        // the engine is admitted when the server fits its connections beside the other
        // engines' (waiting a while too), before it opens a second one.
        let waiting = crate::budget::patiently(&cfg, || Lease::connect(&url)).await?;
        let budget = crate::budget::admit(&waiting, &cfg).await?;
        let (lease_conn, spare) = Lease::check_direct(waiting, &url).await?;
        registry::ensure(&lease_conn).await?;
        let lease = Lease::take(lease_conn, &crate::lease::Who { host: host.clone(), run_id: run_id.clone() }).await?;
        drop(start_lock);
        let parsed = ConnInfo::parse(&url)?;
        let url_form = parsed.to_url();
        let kv_form = parsed.to_keyvalue()?;
        let pool = AdminPool::new(&url, cfg.max_admin_connections);
        pool.set_app(&crate::budget::admin_app(lease.key));
        pool.set_reserved(lease.reserved());
        if let Some(c) = spare {
            // Opened as pgisolate-admin: counted as the engine's.
            pool.adopt(c);
        }
        let public_warning;
        let db_oid: u32;
        let server_version: i32;
        let superuser;
        let ddl_watch = {
            let admin = pool.get().await?;
            let row = admin
                .query_one(
                    "select (select oid from pg_database where datname = current_database()), rolsuper, \
                     rolsuper or rolcreaterole, exists (select 1 from pg_namespace where nspname = 'extensions'), \
                     current_setting('server_version_num')::int, \
                     set_config('application_name', $1, false), rolsuper or rolcreatedb \
                     from pg_roles where rolname = current_user",
                    // The adopted connection was opened before the owner key was known.
                    &[&pool.app()],
                )
                .await
                .map_err(|e| Error::db("look up the engine's role", e))?;
            db_oid = row.get(0);
            server_version = row.get::<_, i32>(4);
            // One admin connection until the first beat: the engines of a run start over a
            // second or two, and the first ones would size themselves for a server of their
            // own. The beat then sizes the pool from the server's budget.
            let (_, keep) = budget.caps(cfg.test_connections, cfg.max_admin_connections);
            pool.set_cap(1, keep);
            if cfg.isolation == crate::config::Isolation::Database && !row.get::<_, bool>(6) {
                return Err(Error::Config(
                    "PGISOLATE_ISOLATION=database needs an admin role with CREATEDB (or a superuser) to clone a \
                     database per test: ALTER ROLE <admin> CREATEDB, or use isolation=schema"
                        .into(),
                ));
            }
            if cfg.login_role && !row.get::<_, bool>(2) {
                return Err(Error::Config(
                    "PGISOLATE_LOGIN_ROLE needs an admin role with CREATEROLE (or a superuser) to create a login \
                     role per schema: ALTER ROLE <admin> CREATEROLE, or turn PGISOLATE_LOGIN_ROLE off"
                        .into(),
                ));
            }
            crate::template::extensions::ensure_extensions(&admin, &cfg.extensions).await?;
            if cfg.login_role {
                crate::role::share_extensions(&admin).await?;
            }
            let su: bool = row.get(1);
            superuser = su;
            public_warning = Engine::guard_public(&mut cfg, &admin, server.is_some()).await;
            let rescued = crate::template::extensions::rescue_extensions(&admin).await?;
            // Schema extensions exists if it did before, or the rescue made it just now
            // (configured extensions already put it in the tail above).
            let has_ext_schema = row.get::<_, bool>(3) || rescued;
            if has_ext_schema && !cfg.search_path_tail.iter().any(|t| t == "extensions") {
                cfg.search_path_tail.push("extensions".to_owned());
            }
            su && cfg.wants_recycling() && crate::recycle::ensure_ddl_watch(&admin).await?
        };
        let inner = Inner {
            lease: super::watch::LeaseCell::new(lease),
            url,
            url_form,
            kv_form,
            pool,
            run_id,
            host,
            server,
            runtime: tokio::runtime::Handle::current(),
            closed: AtomicBool::new(false),
            templates: super::build::TemplateCache::default(),
            background: super::settle::Background::new(),
            pools: super::pool::Pools::default(),
            resets: super::recycling::Resets::default(),
            next_candidate: Mutex::new(HashMap::new()),
            db_oid,
            server_version,
            ddl_watch,
            superuser,
            redis,
            ext_in_tail: AtomicBool::new(false),
            warnings: super::warnings::Warnings::default(),
            budget: Mutex::new(Some(budget)),
            cfg,
        };
        let engine = Engine { inner: Arc::new(inner) };
        engine.watch_lease();
        if let Some(w) = public_warning {
            engine.inner.warn(&w);
        }
        if engine.inner.cfg.gc_on_start {
            let report = engine.gc().await?;
            for (s, why) in report.failed {
                engine.inner.warn(&format!("gc could not drop {s}: {why}"));
            }
        }
        Ok(engine)
    }

    /// R16: `public` in the search_path tail is where a test's unqualified CREATE TABLE goes
    /// when its schema is gone (dropped behind our back, or a leaked connection reconnecting
    /// after release) if the role can create there. The default tail leaves such a `public`
    /// out unless an extension lives in it; a tail the user chose is kept, with a warning.
    async fn guard_public(cfg: &mut Config, admin: &Client, embedded: bool) -> Option<String> {
        if !cfg.search_path_tail.iter().any(|t| t == "public") {
            return None;
        }
        let row = admin
            .query_one(
                "select coalesce(has_schema_privilege('public', 'CREATE'), false), \
                 exists (select 1 from pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a \
                         where n.nspname = 'public' and a.grantee = 0 and a.privilege_type = 'CREATE'), \
                 exists (select 1 from pg_extension e join pg_namespace n on n.oid = e.extnamespace where n.nspname = 'public')",
                &[],
            )
            .await
            .ok()?;
        let (writable, by_everyone, has_extensions): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
        if !writable {
            return None;
        }
        let who = if by_everyone { "every role" } else { "this role" };
        if !cfg.search_path_tail_set && !has_extensions {
            cfg.search_path_tail.retain(|t| t != "public");
            // Only a grant to every role is a misconfiguration worth a word; the owner or a
            // superuser can always create there.
            if embedded || !by_everyone {
                return None;
            }
            return Some(format!(
                "schema public is writable by {who}, so it is left out of each test's search_path (a test whose \
                 schema vanished would otherwise create its tables there); set PGISOLATE_SEARCH_PATH_TAIL=public to \
                 keep it, or REVOKE CREATE ON SCHEMA public FROM PUBLIC"
            ));
        }
        Some(format!(
            "schema public is writable by {who} and is in each test's search_path{why}: a test whose schema vanished \
             would create its tables there; REVOKE CREATE ON SCHEMA public FROM PUBLIC, or set \
             PGISOLATE_SEARCH_PATH_TAIL without public (PGISOLATE_EXTENSIONS installs extensions into schema extensions)",
            why = if cfg.search_path_tail_set { "" } else { " (extensions are installed there)" },
        ))
    }

    /// Waits for background releases, closes admin connections and gives up the lease.
    /// Idempotent; later calls on the engine fail with a "closed" error.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.background.wait_idle(self.inner.cfg.release_timeout + Duration::from_secs(5)).await;
        self.drain_pools().await;
        // The names this engine released were reserved while it lived; it is done.
        if let Ok(admin) = self.inner.pool.get_teardown().await {
            let _ = registry::forget_released(&admin, self.inner.owner()).await;
        }
        self.inner.pool.close();
        self.inner.resets.close().await;
        // Done: gc may reap whatever is left of this owner at once.
        if let Some(l) = self.inner.lease.take().await {
            l.retire().await;
        }
        Ok(())
    }
}

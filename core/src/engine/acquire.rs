//! Handing out a schema: a ready one from the pool renamed, or a replay of the template, under
//! the identity's deterministic name (extended when taken), in the transaction that registers
//! it.

use tokio_postgres::Client;

use super::Engine;
use crate::admin::{ident, literal, transaction};
use crate::conninfo;
use crate::error::{Error, Result};
use crate::markers::{self, Kind};
use crate::naming::{self, Identity};
use crate::registry;
use crate::schema::Schema;
use crate::template::check as build_check;
use crate::template::Template;

impl Engine {
    /// A fresh schema for `identity`, filled from `tpl`. The name is deterministic when
    /// uncontended and never shared: if it is taken (another identity with the same short
    /// hash, the same identity elsewhere, or a foreign schema) the name is extended.
    pub async fn acquire(&self, tpl: &Template, identity: Identity) -> Result<Schema> {
        let mut attempts = 0;
        loop {
            self.inner.check_open()?;
            let owner = self.held_owner().await?;
            match self.acquire_as(owner, tpl, identity.clone()).await {
                // The lease was fenced before the heartbeat noticed: under the new one.
                Err(Error::Lease(_)) if attempts < 2 && self.fenced_under(owner).await => attempts += 1,
                // A connection the server or the network ended: once the lease is settled.
                Err(e) if attempts < 2 && super::watch::connection_lost(&e) => {
                    attempts += 1;
                    if self.check_lease().await.is_err() {
                        return Err(e);
                    }
                }
                r => return r,
            }
        }
    }

    /// [`Engine::acquire`] under owner key `owner`; a fenced owner is an [`Error::Lease`].
    async fn acquire_as(&self, owner: i32, tpl: &Template, identity: Identity) -> Result<Schema> {
        if self.inner.cfg.isolation == crate::config::Isolation::Database {
            return self.acquire_database(owner, tpl, identity).await;
        }
        let hash = identity.hash_hex();
        let shown = identity.display();
        // A ready schema from the pool is renamed to the name; without one, the template is
        // replayed into a new schema. Either way in the transaction that registers the name.
        // (Taken before an admin connection: a refill may hold one while a pooled schema waits.)
        let mut ready = self.take_ready(tpl).await;
        let admin = match self.admin_that_fits().await {
            Ok(a) => a,
            Err(e) => {
                if let Some(r) = ready.take() {
                    self.defer_drop(r.name, None);
                }
                return Err(e);
            }
        };
        self.warn_shadowed(&admin, tpl).await;
        let mut taken = Vec::new();
        let start = self.inner.next_candidate.lock().ok().and_then(|m| m.get(&hash).copied()).unwrap_or(0);
        let mut names =
            naming::candidates_from(&self.inner.cfg.prefix, self.inner.cfg.hash_len, &hash, &self.inner.run_id, start)
                .take(24)
                .zip(start..);
        let mut next = names.next();
        while let Some((n, index)) = next.clone() {
            let make = match &ready {
                Some(r) => format!("ALTER SCHEMA {} RENAME TO {};", ident(&r.name), ident(&n)),
                None => format!("CREATE SCHEMA {};\n{}\n;", ident(&n), tpl.replay_sql(&n)),
            };
            // With login roles: a pooled schema's role exists already; otherwise it is made
            // here. Either way it may log in only from now on, into the final name.
            let pooled_role = ready.as_ref().and_then(|r| r.role.clone());
            let role = self
                .inner
                .cfg
                .login_role
                .then(|| (pooled_role.clone().unwrap_or_else(crate::role::new_role), crate::role::new_password()));
            let grant = match &role {
                Some((r, pw)) => {
                    let prepare = match &pooled_role {
                        Some(_) => String::new(),
                        None => crate::role::prepare_sql(&n, r, owner, self.inner.db_oid),
                    };
                    format!("{prepare} {}", crate::role::login_sql(r, pw, &self.path_for(&n)))
                }
                None => String::new(),
            };
            let sql = format!(
                "BEGIN; {internal} {held} INSERT INTO pgisolate.leases (schema_name, identity_hash, identity, owner_key, run_id, host, pid, template, handout_txid) \
                 VALUES ({nl}, {hl}, {il}, {owner}, {run}, {host}, {pid}, {tpl}, txid_current()); {make} {comment} {grant} COMMIT;",
                internal = registry::INTERNAL,
                held = registry::held_sql(owner),
                nl = literal(&n),
                hl = literal(&hash),
                il = literal(&shown),
                owner = owner,
                run = literal(&self.inner.run_id),
                host = literal(&self.inner.host),
                pid = std::process::id() as i32,
                tpl = literal(&tpl.schema),
                comment = markers::comment_sql(&n, Kind::Schema, owner),
            );
            match transaction(&admin, &sql).await {
                Ok(()) => {
                    if let Ok(mut m) = self.inner.next_candidate.lock() {
                        let e = m.entry(hash.clone()).or_insert(0);
                        *e = (*e).max(index + 1);
                    }
                    if ready.is_none() {
                        self.ensure_pool(tpl);
                    }
                    let schema = self.handed_out(n, identity, tpl, role, owner)?;
                    if self.inner.cfg.verify_handout {
                        schema.verify().await?;
                    }
                    return Ok(schema);
                }
                Err(e) => {
                    match e.code().map(|c| c.code()) {
                        Some(crate::lease::FENCED) => {
                            if let Some(r) = ready.take() {
                                self.defer_drop(r.name, None);
                            }
                            return Err(Error::Lease(crate::error::describe_pg(&e).1));
                        }
                        Some("23505") | Some("42P06") => {
                            taken.push(n);
                            next = names.next();
                        }
                        _ => match ready.take() {
                            // The pooled schema is unusable: drop it, try the same name by replay.
                            Some(r) => self.defer_drop(r.name, None),
                            None => {
                                return Err(Error::db(format!("create schema {n} from template {}", tpl.schema), e))
                            }
                        },
                    }
                }
            }
        }
        if let Some(r) = ready {
            self.defer_drop(r.name, None);
        }
        Err(Error::NameExhausted(format!("no free schema name for identity {shown:?}: tried {}", taken.join(", "))))
    }

    /// An admin connection, once the server fits the run ([`super::Inner::wait_to_fit`]).
    async fn admin_that_fits(&self) -> Result<crate::admin::Admin> {
        let admin = self.inner.pool.get().await?;
        self.inner.wait_to_fit(&admin).await?;
        Ok(admin)
    }

    /// Warns once per template when its tables also exist by name in the search_path tail.
    async fn warn_shadowed(&self, admin: &Client, tpl: &Template) {
        let first = self.inner.warnings.first_for_template(&tpl.schema);
        if !first {
            return;
        }
        if let Ok(found) = build_check::shadowed(admin, &tpl.schema, &self.inner.tail()).await {
            if !found.is_empty() {
                self.inner.warn(&build_check::shadow_warning(&tpl.schema, &found));
            }
        }
    }

    /// A schema's search_path: itself, then the tail.
    fn path_for(&self, name: &str) -> Vec<String> {
        std::iter::once(name.to_owned())
            .chain(self.inner.tail().into_iter().filter(|t| !t.is_empty() && t != name))
            .collect()
    }

    fn handed_out(
        &self,
        name: String,
        identity: Identity,
        tpl: &Template,
        role: Option<(String, String)>,
        owner: i32,
    ) -> Result<Schema> {
        let tail = &self.inner.tail();
        let (url, conninfo) = match &role {
            Some((r, pw)) => (
                conninfo::with_role(&self.inner.url_form.to_string(), &name, r, pw)?,
                conninfo::with_role(&self.inner.kv_form.to_string(), &name, r, pw)?,
            ),
            None => (
                conninfo::scoped(&self.inner.url_form.to_string(), &name, tail)?,
                conninfo::scoped(&self.inner.kv_form.to_string(), &name, tail)?,
            ),
        };
        let schema = Schema {
            url,
            conninfo,
            role: role.map(|(r, _)| r),
            cache_prefix: naming::cache_prefix(&self.inner.cfg.prefix, &name),
            search_path: self.path_for(&name).iter().map(|s| conninfo::quote_ident(s)).collect::<Vec<_>>().join(", "),
            name,
            identity,
            template_fp: Some(tpl.fingerprint.clone()),
            owner,
            releaser: Some(Box::new(super::release::Handle(self.clone()))),
        };
        Ok(schema)
    }
}

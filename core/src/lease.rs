//! The owner lease: a session advisory lock held by each engine on a dedicated connection.
//!
//! gc treats a schema's owner as alive exactly while that lock is held; PostgreSQL releases it
//! when the connection goes, so a SIGKILLed owner frees it within milliseconds. The lease
//! connection also tells the embedded server's keeper that someone still uses the server.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::naming::sha256_hex;

/// classid of owner-lease advisory locks (`'pgis'`).
pub(crate) const LEASE_CLASS: i32 = 0x7067_6973;
/// classid of template-build advisory locks.
pub(crate) const TEMPLATE_CLASS: i32 = LEASE_CLASS + 1;
/// classid of the registry-DDL advisory lock.
pub(crate) const REGISTRY_CLASS: i32 = LEASE_CLASS + 2;

/// A held owner lease.
#[derive(Debug)]
pub(crate) struct Lease {
    /// The owner key (objid of the advisory lock), positive.
    pub key: i32,
    client: std::sync::Arc<tokio::sync::Mutex<Client>>,
}

impl Lease {
    /// Opens the lease connection and takes a fresh owner key. Refuses poolers that hand
    /// successive transactions to different backends: a lease there would not be held.
    pub(crate) async fn take(url: &str) -> Result<Lease> {
        let client = crate::admin::connect(url, crate::server::LEASE_APP).await?;
        let pid_of = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> Option<String> {
            rows.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
        };
        let p1 = pid_of(
            client
                .simple_query("select pg_backend_pid()")
                .await
                .map_err(|e| Error::db("check the lease connection", e))?,
        );
        let p2 = pid_of(
            client
                .simple_query("select pg_backend_pid()")
                .await
                .map_err(|e| Error::db("check the lease connection", e))?,
        );
        if p1 != p2 {
            return Err(Error::Refused(format!(
                "the server at {} hands successive transactions to different backends ({p1:?} then {p2:?}): \
                 it is a transaction-mode pooler such as PgBouncer, where session advisory locks are not held; \
                 point PGISOLATE_DATABASE_URL at PostgreSQL directly",
                crate::conninfo::redact(url)
            )));
        }
        // A transaction pooler hands our session's state to other clients: a setting made here
        // shows up in a second connection. Session advisory locks are not ours to hold there.
        let probe = crate::secret::random_hex(16);
        let check = |e| Error::db("check the lease connection", e);
        // simple_query returns after ReadyForQuery, so a pooler has released the backend.
        client
            .simple_query(&format!("select set_config('pgisolate.lease_probe', '{probe}', false)"))
            .await
            .map_err(check)?;
        // A second client holds its backend in an open transaction. Through a pooler that
        // reuses the last released backend (PgBouncer is LIFO) it is the one our lease
        // connection just used; then our next statement must move to another backend (or
        // wait). Directly, neither can happen. Two rounds, so one unlucky assignment (the
        // backend not yet released when the second client came) is not taken for a server.
        let mut pooled = false;
        for round in 0..2 {
            if round > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let other = crate::admin::connect(url, crate::admin::ADMIN_APP).await?;
            other.batch_execute("begin").await.map_err(check)?;
            let row = other
                .query_one("select pg_backend_pid()::text, current_setting('pgisolate.lease_probe', true)", &[])
                .await
                .map_err(check)?;
            let (other_pid, seen): (String, Option<String>) = (row.get(0), row.get(1));
            let next = match tokio::time::timeout(
                std::time::Duration::from_secs(2),
                client.simple_query("select pg_backend_pid()"),
            )
            .await
            {
                Ok(r) => pid_of(r.map_err(check)?),
                Err(_) => None, // it waited for the pinned backend: a pool of one
            };
            let _ = other.batch_execute("rollback").await;
            drop(other);
            if seen.as_deref() == Some(probe.as_str()) || Some(&other_pid) == p1.as_ref() || next != p1 {
                pooled = true;
                break;
            }
        }
        if pooled {
            return Err(Error::Refused(format!(
                "the server at {} shares one PostgreSQL session between clients (a transaction-mode pooler such as \
                 PgBouncer): pgisolate's ownership leases and search_path scoping need sessions of their own; \
                 point PGISOLATE_DATABASE_URL at PostgreSQL directly (or at a session-mode pool)",
                crate::conninfo::redact(url)
            )));
        }
        let mut salt = crate::secret::random_hex(64);
        for _ in 0..64 {
            let key = key_from(&salt);
            let row = client
                .query_one("select pg_try_advisory_lock($1::int4, $2::int4)", &[&LEASE_CLASS, &key])
                .await
                .map_err(|e| Error::db("take the owner lease", e))?;
            if row.get::<_, bool>(0) {
                return Ok(Lease { key, client: std::sync::Arc::new(tokio::sync::Mutex::new(client)) });
            }
            salt = sha256_hex(salt.as_bytes());
        }
        Err(Error::Lease("could not take an owner lease: 64 random keys were all held".into()))
    }

    /// The lease connection, shared as the engine's reserved admin connection: always open
    /// while the engine lives, so teardown and gc work even when the server has no free
    /// connection slot left (R21). Session state it must keep (the advisory lock) is never
    /// touched by the statements run on it.
    pub(crate) fn reserved(&self) -> std::sync::Arc<tokio::sync::Mutex<Client>> {
        self.client.clone()
    }
}

fn key_from(hex: &str) -> i32 {
    let v = u32::from_str_radix(&hex[..8], 16).unwrap_or(1) & 0x7fff_ffff;
    v.max(1) as i32
}

/// SQL listing the owner keys whose lease is held now, in this database.
pub(crate) const LIVE_OWNERS_SQL: &str = "select objid::int8 from pg_locks \
     where locktype = 'advisory' and classid = 1885825395 and objsubid = 2 and granted \
     and database = (select oid from pg_database where datname = current_database())";

#[cfg(test)]
mod tests {
    #[test]
    fn lease_class_matches_sql() {
        assert!(super::LIVE_OWNERS_SQL.contains(&format!("classid = {}", super::LEASE_CLASS)));
    }
}

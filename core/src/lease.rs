//! The owner lease: a session advisory lock held by each engine on a dedicated connection, and
//! the owner's row in `pgisolate.owners`.
//!
//! An owner is alive while its lock is held, or while its heartbeat refreshed its row
//! (`pgisolate.hold`) within gc's grace period. PostgreSQL frees the lock when the connection goes
//! (a SIGKILLed owner, a server restart, a network partition the server noticed); gc then waits
//! out the grace period, fences the owner (`fenced_at`) and only then reaps its schemas. An
//! engine whose connection dropped re-takes the same key if its row was not fenced, and knows
//! it lost everything it handed out if it was (its schemas may be gone). The lease connection
//! also tells the embedded server's keeper that someone still uses the server.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::locks::LEASE_CLASS;
use crate::naming::sha256_hex;

/// The application_name of an engine's first connection until it is admitted (then it is
/// the lease's, [`crate::server::LEASE_APP`]).
pub(crate) const WAIT_APP: &str = "pgisolate-wait";

/// SQLSTATE of `pgisolate.hold` and `pgisolate.fenced` when the owner was fenced.
pub(crate) const FENCED: &str = "PGI01";

/// Who holds a lease, as its owner row records it.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    pub host: String,
    pub run_id: String,
}

/// A held owner lease.
#[derive(Debug)]
pub(crate) struct Lease {
    /// The owner key (objid of the advisory lock), positive.
    pub key: i32,
    /// The lease connection's backend pid (ended when a new connection re-takes the key).
    pub backend: i32,
    client: std::sync::Arc<tokio::sync::Mutex<Client>>,
}

/// How re-taking a lease after its connection dropped went.
pub(crate) enum Retaken {
    /// The key is held again, on this new connection (and its backend pid).
    Held(Client, i32),
    /// gc fenced the owner: everything it handed out may be gone. The connection is open and
    /// holds no key.
    Fenced(Client),
}

impl Lease {
    /// Opens the connection that becomes the lease's once the engine is admitted
    /// (`budget::admit`); until then its application_name is [`WAIT_APP`].
    pub(crate) async fn connect(url: &str) -> Result<Client> {
        crate::admin::connect(url, WAIT_APP).await
    }

    /// Checks the lease connection `client` reaches PostgreSQL directly. Refuses poolers that
    /// hand successive transactions to different backends: a lease there would not be held.
    /// Returns the second connection the check opened (an admin connection to keep: one
    /// connection less to open).
    pub(crate) async fn check_direct(client: Client, url: &str) -> Result<(Client, Option<Client>)> {
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
        let mut spare = None;
        for round in 0..2 {
            if round > 0 {
                // The first round's connection closes first: never three at once.
                drop(spare.take());
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
            spare = Some(other);
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
        Ok((client, spare))
    }

    /// Takes a fresh owner key with its owner row on the lease connection (the registry exists).
    pub(crate) async fn take(client: Client, who: &Who) -> Result<Lease> {
        let (key, backend) = claim(&client, who).await?;
        Ok(Lease { key, backend, client: std::sync::Arc::new(tokio::sync::Mutex::new(client)) })
    }

    /// Re-takes `key` on a new connection after the lease connection dropped: held again if
    /// gc did not fence the owner meanwhile. While the old session still holds the lock (the
    /// server has not noticed it is gone), it is ended and `Ok(None)` says to try again.
    pub(crate) async fn retake(url: &str, key: i32, old_backend: i32) -> Result<Option<Retaken>> {
        // Short attempts: one made while the link was down must not outlast its return.
        let within = Some(std::time::Duration::from_secs(2));
        let client = crate::admin::connect_within(url, crate::server::LEASE_APP, within).await?;
        let got: bool = client
            .query_one("select pg_try_advisory_lock($1::int4, $2::int4)", &[&LEASE_CLASS, &key])
            .await
            .map_err(|e| Error::db("re-take the owner lease", e))?
            .get(0);
        if !got {
            let fenced: Option<bool> = client
                .query_opt("select fenced_at is not null from pgisolate.owners where owner_key = $1", &[&key])
                .await
                .map_err(|e| Error::db("read the owner row", e))?
                .map(|r| r.get(0));
            if fenced == Some(false) {
                // Our old session still holds it: nobody else can (they would need our row).
                let _ = client.execute("select pg_terminate_backend($1)", &[&old_backend]).await;
                return Ok(None);
            }
            return Ok(Some(Retaken::Fenced(client)));
        }
        match client.execute("select pgisolate.hold($1)", &[&key]).await {
            Ok(_) => {
                let backend = backend_pid(&client).await?;
                Ok(Some(Retaken::Held(client, backend)))
            }
            Err(e) if e.code().map(|c| c.code()) == Some(FENCED) => {
                let _ = client.execute("select pg_advisory_unlock($1::int4, $2::int4)", &[&LEASE_CLASS, &key]).await;
                Ok(Some(Retaken::Fenced(client)))
            }
            Err(e) => Err(Error::db("re-take the owner lease", e)),
        }
    }

    /// Makes `client` this lease's connection and `key` its owner (after a re-take, or a
    /// new key once the old one was fenced). The reserved admin connection follows.
    pub(crate) async fn replace(&mut self, client: Client, key: i32, backend: i32) {
        *self.client.lock().await = client;
        self.key = key;
        self.backend = backend;
    }

    /// The heartbeat: refreshes the owner row through the lease connection, within `limit`.
    /// Ok(true) when seen, Ok(false) when the connection is busy (a teardown borrowed it), an
    /// error when it failed, timed out or the owner was fenced.
    pub(crate) async fn beat(&self, limit: std::time::Duration) -> std::result::Result<bool, String> {
        let Ok(client) = self.client.try_lock() else { return Ok(false) };
        if client.is_closed() {
            return Err("the lease connection closed".into());
        }
        match tokio::time::timeout(limit, client.execute("select pgisolate.hold($1)", &[&self.key])).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => Err(crate::error::describe_pg(&e).1),
            Err(_) => Err(format!("the server did not answer within {} ms", limit.as_millis())),
        }
    }

    /// The lease connection, unless a teardown borrowed it (for the beat's budget read).
    pub(crate) fn try_client(&self) -> Option<tokio::sync::MutexGuard<'_, Client>> {
        self.client.try_lock().ok()
    }

    /// Marks the owner as done (on close): gc may reap what is left of it at once.
    pub(crate) async fn retire(&self) {
        let client = self.client.lock().await;
        let _ =
            client.execute("update pgisolate.owners set fenced_at = now() where owner_key = $1", &[&self.key]).await;
    }

    /// The lease connection, shared as the engine's reserved admin connection: always open
    /// while the engine lives, so teardown and gc work even when the server has no free
    /// connection slot left (R21). Session state it must keep (the advisory lock) is never
    /// touched by the statements run on it.
    pub(crate) fn reserved(&self) -> std::sync::Arc<tokio::sync::Mutex<Client>> {
        self.client.clone()
    }
}

async fn backend_pid(client: &Client) -> Result<i32> {
    client
        .query_one("select pg_backend_pid()", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::db("check the lease connection", e))
}

/// Takes a fresh owner key on `client`: a free advisory lock whose key has no owner row (a
/// row without a lock is an owner that may still come back), then its row. Returns the key
/// and the connection's backend pid.
pub(crate) async fn claim(client: &Client, who: &Who) -> Result<(i32, i32)> {
    let backend = backend_pid(client).await?;
    let mut salt = crate::secret::random_hex(64);
    for _ in 0..64 {
        let key = key_from(&salt);
        salt = sha256_hex(salt.as_bytes());
        let row = client
            .query_one("select pg_try_advisory_lock($1::int4, $2::int4)", &[&LEASE_CLASS, &key])
            .await
            .map_err(|e| Error::db("take the owner lease", e))?;
        if !row.get::<_, bool>(0) {
            continue;
        }
        let made = client
            .execute(
                "insert into pgisolate.owners (owner_key, host, pid, run_id) values ($1, $2, $3, $4) \
                 on conflict (owner_key) do nothing",
                &[&key, &who.host, &(std::process::id() as i32), &who.run_id],
            )
            .await
            .map_err(|e| Error::db("record the owner", e))?;
        if made == 1 {
            return Ok((key, backend));
        }
        let _ = client.execute("select pg_advisory_unlock($1::int4, $2::int4)", &[&LEASE_CLASS, &key]).await;
    }
    Err(Error::Lease("could not take an owner lease: 64 random keys were all held".into()))
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

//! Admin connections: opened once and reused, never one per operation.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls};

use crate::conninfo::redact;
use crate::error::{describe_pg, Error, Result};
pub(crate) use crate::sql::{ident, literal};

/// application_name of the engine's admin connections.
pub(crate) const ADMIN_APP: &str = "pgisolate-admin";

/// Opens one connection with `application_name`, driving it on the current tokio runtime.
pub(crate) async fn connect(url: &str, application_name: &str) -> Result<Client> {
    connect_within(url, application_name, None).await
}

/// [`connect`], giving up after `timeout` (instead of the URL's `connect_timeout`, or 10 s).
pub(crate) async fn connect_within(url: &str, application_name: &str, timeout: Option<Duration>) -> Result<Client> {
    let mut cfg = tokio_postgres::Config::from_str(url)
        .map_err(|e| Error::ConnInfo(format!("cannot parse {}: {e}", redact(url))))?;
    cfg.application_name(application_name);
    if let Some(t) = timeout {
        cfg.connect_timeout(t);
    } else if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    // A link that went away (a partition, a host's network down) is noticed in about 20 s
    // instead of the kernel's hours, unless the URL chose its own keepalives.
    if cfg.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        cfg.keepalives_idle(Duration::from_secs(5)).keepalives_interval(Duration::from_secs(2)).keepalives_retries(3);
        cfg.tcp_user_timeout(Duration::from_secs(20));
    }
    let (client, conn) = cfg.connect(NoTls).await.map_err(|e| {
        let (code, message) = describe_pg(&e);
        let message = match code.as_deref() {
            Some("53300") => format!(
                "{message}: the server has no free connection slots; raise max_connections or run fewer workers"
            ),
            _ if message.contains("unsupported startup parameter") => format!(
                "{message}: a connection pooler (PgBouncer) rejected a startup parameter; pgisolate scopes sessions \
                 with the `options` startup parameter, so tests must connect to PostgreSQL directly \
                 (or the pooler must pass `options` through)"
            ),
            _ => message,
        };
        Error::Connect { target: redact(url), code, message, source: Some(Box::new(e)) }
    })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A bounded set of reusable admin connections, plus one reserved connection (the owner
/// lease's) that teardown and gc fall back to when no new connection can be opened.
#[derive(Debug)]
pub(crate) struct AdminPool {
    url: String,
    idle: Mutex<Vec<Client>>,
    slots: Arc<Semaphore>,
    reserved: Mutex<Option<Arc<tokio::sync::Mutex<Client>>>>,
}

/// An admin connection borrowed from the pool; goes back when dropped (unless broken).
#[derive(Debug)]
pub(crate) struct Admin {
    client: Option<Client>,
    reserved: Option<tokio::sync::OwnedMutexGuard<Client>>,
    pool: Arc<AdminPool>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Admin {
    type Target = Client;
    fn deref(&self) -> &Client {
        match (&self.client, &self.reserved) {
            (Some(c), _) => c,
            (None, Some(r)) => r,
            (None, None) => unreachable!("an admin connection holds a client until drop"),
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(c);
                }
            }
        }
    }
}

impl AdminPool {
    /// A pool of at most `max` connections to `url`.
    pub(crate) fn new(url: &str, max: usize) -> Arc<AdminPool> {
        Arc::new(AdminPool {
            url: url.to_owned(),
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(max)),
            reserved: Mutex::new(None),
        })
    }

    /// Sets the reserved connection [`AdminPool::get_teardown`] falls back to.
    pub(crate) fn set_reserved(&self, client: Arc<tokio::sync::Mutex<Client>>) {
        if let Ok(mut r) = self.reserved.lock() {
            *r = Some(client);
        }
    }

    /// A connection for teardown and gc: a pooled one when possible; when none can be opened
    /// (no free slot on the server, 53300), the reserved connection, shared in turn.
    pub(crate) async fn get_teardown(self: &Arc<Self>) -> Result<Admin> {
        match self.get().await {
            Ok(a) => Ok(a),
            Err(e @ Error::Connect { .. }) => {
                let reserved = self.reserved.lock().ok().and_then(|r| r.clone());
                match reserved {
                    Some(r) => {
                        let guard = r.lock_owned().await;
                        if guard.is_closed() {
                            return Err(e);
                        }
                        Ok(Admin { client: None, reserved: Some(guard), pool: self.clone(), _permit: None })
                    }
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Borrows a connection, opening one if none is idle.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Admin> {
        let permit =
            self.slots.clone().acquire_owned().await.map_err(|_| Error::Closed("the engine is closed".into()))?;
        let reuse = {
            let mut idle = self.idle.lock().map_err(|_| Error::Closed("admin pool poisoned".into()))?;
            let mut found = None;
            while let Some(c) = idle.pop() {
                if !c.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let client = match reuse {
            Some(c) => c,
            None => connect(&self.url, ADMIN_APP).await?,
        };
        Ok(Admin { client: Some(client), reserved: None, pool: self.clone(), _permit: Some(permit) })
    }

    /// Closes the idle connections (opened before the server restarted or the link dropped:
    /// most are dead, and a dead one is found out only by a failed statement).
    pub(crate) fn clear_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Closes idle connections and refuses new borrowers.
    pub(crate) fn close(&self) {
        self.slots.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        if let Ok(mut r) = self.reserved.lock() {
            r.take();
        }
    }
}

/// Runs `sql` (simple protocol, may hold several statements, usually `BEGIN; …; COMMIT;`);
/// when it fails, rolls back whatever transaction it left open, so the connection is usable
/// again, and returns the server's error.
pub(crate) async fn transaction(client: &Client, sql: &str) -> std::result::Result<(), tokio_postgres::Error> {
    let r = client.batch_execute(sql).await;
    if r.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    r
}

/// [`transaction`], its error described by `context`.
pub(crate) async fn exec(client: &Client, context: &str, sql: &str) -> Result<()> {
    transaction(client, sql).await.map_err(|e| Error::db(context, e))
}

//! Admin connections: opened once and reused, never one per operation.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls};

use crate::conninfo::redact;
use crate::error::{describe_pg, Error, Result};

/// application_name of the engine's admin connections.
pub const ADMIN_APP: &str = "pgisolate-admin";

/// Opens one connection with `application_name`, driving it on the current tokio runtime.
pub async fn connect(url: &str, application_name: &str) -> Result<Client> {
    let mut cfg = tokio_postgres::Config::from_str(url)
        .map_err(|e| Error::ConnInfo(format!("cannot parse {}: {e}", redact(url))))?;
    cfg.application_name(application_name);
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
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
        Error::Connect { target: redact(url), message }
    })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A bounded set of reusable admin connections.
#[derive(Debug)]
pub struct AdminPool {
    url: String,
    idle: Mutex<Vec<Client>>,
    slots: Arc<Semaphore>,
}

/// An admin connection borrowed from the pool; goes back when dropped (unless broken).
#[derive(Debug)]
pub struct Admin {
    client: Option<Client>,
    pool: Arc<AdminPool>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Admin {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("admin client is present until drop")
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
    pub fn new(url: &str, max: usize) -> Arc<AdminPool> {
        Arc::new(AdminPool { url: url.to_owned(), idle: Mutex::new(Vec::new()), slots: Arc::new(Semaphore::new(max)) })
    }

    /// Borrows a connection, opening one if none is idle.
    pub async fn get(self: &Arc<Self>) -> Result<Admin> {
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
        Ok(Admin { client: Some(client), pool: self.clone(), _permit: permit })
    }

    /// Closes idle connections and refuses new borrowers.
    pub fn close(&self) {
        self.slots.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// The URL connections go to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Runs `sql` (simple protocol, may hold several statements), mapping errors with `context`.
pub async fn exec(client: &Client, context: &str, sql: &str) -> Result<()> {
    client.batch_execute(sql).await.map_err(|e| Error::db(context, e))
}

/// A string as an SQL escape-string literal (`E'…'`), safe whatever
/// `standard_conforming_strings` is. NUL characters, which PostgreSQL text cannot hold, become
/// U+FFFD.
pub fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''").replace('\0', "\u{FFFD}"))
}

/// An identifier, always double-quoted.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

//! Admin connections: opened once and reused, never one per operation.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
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
///
/// The connection budget: at most `cap` connections are open at once (borrowers beyond it
/// wait for one to come back), `cap` follows what the server can spare ([`AdminPool::set_cap`]),
/// and connections idle for [`IDLE_CLOSE`] are closed down to `keep_idle` ([`AdminPool::trim`]).
#[derive(Debug)]
pub(crate) struct AdminPool {
    url: String,
    app: Mutex<String>,
    idle: Mutex<Vec<(Client, Instant)>>,
    slots: Arc<Semaphore>,
    reserved: Mutex<Option<Arc<tokio::sync::Mutex<Client>>>>,
    /// Connections open now (borrowed, idle, or counted by [`AdminPool::counted`]).
    open: AtomicUsize,
    /// The most connections to have open at once.
    cap: AtomicUsize,
    /// How many idle connections [`AdminPool::trim`] keeps.
    keep_idle: AtomicUsize,
    /// The most connections open at once so far.
    peak: AtomicUsize,
    /// Woken when a connection comes back or closes.
    returned: Notify,
}

/// How long a connection beyond `keep_idle` may sit idle before [`AdminPool::trim`] closes it.
pub(crate) const IDLE_CLOSE: Duration = Duration::from_secs(1);

/// How long a borrower waits at the cap before the pool opens one more anyway.
const OVER_CAP_AFTER: Duration = Duration::from_secs(15);

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
            self.pool.put_back(c);
        }
    }
}

/// A connection of the engine's own (a template build's, the resets') counted in the pool's
/// budget while it lives.
#[derive(Debug)]
pub(crate) struct Counted {
    pub(crate) client: Client,
    pool: Arc<AdminPool>,
}

impl std::ops::Deref for Counted {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Admin {
    /// Keeps the borrowed connection for the caller alone (a template build's, whose session
    /// holds its lock): still counted in the pool's budget, closed when dropped. None for the
    /// reserved fallback.
    pub(crate) fn detach(mut self) -> Option<Counted> {
        let client = self.client.take()?;
        Some(Counted { client, pool: self.pool.clone() })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.pool.closed_one();
    }
}

impl AdminPool {
    /// A pool of at most `max` connections to `url`.
    pub(crate) fn new(url: &str, max: usize) -> Arc<AdminPool> {
        Arc::new(AdminPool {
            url: url.to_owned(),
            app: Mutex::new(ADMIN_APP.to_owned()),
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(max)),
            reserved: Mutex::new(None),
            open: AtomicUsize::new(0),
            cap: AtomicUsize::new(max),
            keep_idle: AtomicUsize::new(1),
            peak: AtomicUsize::new(0),
            returned: Notify::new(),
        })
    }

    /// The application_name of connections opened from now on (`pgisolate-admin:<owner>`).
    pub(crate) fn set_app(&self, app: &str) {
        if let Ok(mut a) = self.app.lock() {
            *a = app.to_owned();
        }
    }

    /// The application_name of the engine's own connections.
    pub(crate) fn app(&self) -> String {
        self.app.lock().map(|a| a.clone()).unwrap_or_else(|_| ADMIN_APP.to_owned())
    }

    /// Sets the most connections to have open at once (at least 1) and how many idle ones
    /// to keep (0 or 1); connections over the cap close as they come back.
    pub(crate) fn set_cap(&self, cap: usize, keep_idle: usize) {
        self.cap.store(cap.max(1), Ordering::SeqCst);
        self.keep_idle.store(keep_idle.min(1), Ordering::SeqCst);
        self.returned.notify_waiters();
    }

    /// The most connections to have open at once now.
    pub(crate) fn cap(&self) -> usize {
        self.cap.load(Ordering::SeqCst)
    }

    /// Connections open now, and the most open at once so far.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.open.load(Ordering::SeqCst), self.peak.load(Ordering::SeqCst))
    }

    /// Adds a connection that was opened elsewhere (the lease probe's) as an idle one.
    pub(crate) fn adopt(&self, client: Client) {
        if self.try_open() {
            self.put_back(client);
        }
    }

    /// Counts one more open connection if the cap allows it.
    fn try_open(&self) -> bool {
        let cap = self.cap.load(Ordering::SeqCst);
        let mut n = self.open.load(Ordering::SeqCst);
        loop {
            if n >= cap {
                return false;
            }
            match self.open.compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    self.peak.fetch_max(n + 1, Ordering::SeqCst);
                    return true;
                }
                Err(now) => n = now,
            }
        }
    }

    fn closed_one(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.returned.notify_one();
    }

    fn put_back(&self, c: Client) {
        let over = self.open.load(Ordering::SeqCst) > self.cap.load(Ordering::SeqCst);
        if c.is_closed() || over {
            drop(c);
            self.closed_one();
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push((c, Instant::now()));
        }
        self.returned.notify_one();
    }

    /// Closes the connections beyond `keep_idle` that sat idle for [`IDLE_CLOSE`].
    pub(crate) fn trim(&self) {
        let keep = self.keep_idle.load(Ordering::SeqCst);
        let closing: Vec<Client> = match self.idle.lock() {
            Ok(mut idle) => {
                let mut out = Vec::new();
                // The most recently used stay.
                idle.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
                while idle.len() > keep && idle.last().is_some_and(|(_, at)| at.elapsed() >= IDLE_CLOSE) {
                    if let Some((c, _)) = idle.pop() {
                        out.push(c);
                    }
                }
                out
            }
            Err(_) => Vec::new(),
        };
        for c in closing {
            drop(c);
            self.closed_one();
        }
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

    /// Borrows a connection: an idle one, else a new one while the cap allows, else the next
    /// one to come back.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Admin> {
        let permit =
            self.slots.clone().acquire_owned().await.map_err(|_| Error::Closed("the engine is closed".into()))?;
        let client = self.take_client().await?;
        Ok(Admin { client: Some(client), reserved: None, pool: self.clone(), _permit: Some(permit) })
    }

    /// A connection of the pool's budget for the caller alone (not returned to the pool: a
    /// template build's session state, the resets' prepared statements).
    pub(crate) async fn counted(self: &Arc<Self>) -> Result<Counted> {
        let client = self.take_client().await?;
        Ok(Counted { client, pool: self.clone() })
    }

    async fn take_client(self: &Arc<Self>) -> Result<Client> {
        let since = Instant::now();
        loop {
            let back = self.returned.notified();
            let reuse = {
                let mut idle = self.idle.lock().map_err(|_| Error::Closed("admin pool poisoned".into()))?;
                let mut found = None;
                while let Some((c, _)) = idle.pop() {
                    if !c.is_closed() {
                        found = Some(c);
                        break;
                    }
                    drop(c);
                    self.open.fetch_sub(1, Ordering::SeqCst);
                }
                found
            };
            if let Some(c) = reuse {
                return Ok(c);
            }
            if self.slots.is_closed() {
                return Err(Error::Closed("the engine is closed".into()));
            }
            // Past OVER_CAP_AFTER at the cap, one more: a borrower that holds a connection while
            // it waits for work that needs another must not wait forever.
            let opened = self.try_open();
            if opened || since.elapsed() >= OVER_CAP_AFTER {
                if !opened {
                    let n = self.open.fetch_add(1, Ordering::SeqCst) + 1;
                    self.peak.fetch_max(n, Ordering::SeqCst);
                }
                return match connect(&self.url, &self.app()).await {
                    Ok(c) => Ok(c),
                    Err(e) => {
                        self.closed_one();
                        Err(e)
                    }
                };
            }
            // At the cap: wait for a connection to come back (or the cap to rise).
            let _ = tokio::time::timeout(Duration::from_millis(250), back).await;
        }
    }

    /// Closes the idle connections (opened before the server restarted or the link dropped:
    /// most are dead, and a dead one is found out only by a failed statement).
    pub(crate) fn clear_idle(&self) {
        let n = self.idle.lock().map(|mut idle| idle.drain(..).count()).unwrap_or(0);
        self.open.fetch_sub(n, Ordering::SeqCst);
        self.returned.notify_waiters();
    }

    /// Closes idle connections and refuses new borrowers.
    pub(crate) fn close(&self) {
        self.slots.close();
        self.clear_idle();
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

//! The lease's heartbeat, re-taking it after its connection dropped (a server restart, a
//! network partition), and fencing: what a lost lease means for the schemas handed out under it.
//!
//! Every beat refreshes the owner row through the lease connection. When a beat fails or
//! times out, hand-outs wait while the engine reconnects and re-takes the same key; if gc
//! fenced the owner meanwhile (its lock was free and it went unseen for the grace period),
//! everything handed out under that key may have been reaped: the engine takes a new key,
//! forgets its pool and fails the release of each schema of the old key with the reason,
//! instead of letting its test end on a bare "relation does not exist".

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Engine, Inner};
use crate::conninfo;
use crate::error::{Error, Result};
use crate::lease::{self, Lease, Retaken};
use crate::markers::Kind;
use crate::registry;

/// Whether the lease connection is down, and the owner keys this engine lost.
#[derive(Debug, Default)]
pub(crate) struct LeaseState {
    /// When the last beat failed, while the lease is being re-taken.
    down_since: Option<Instant>,
    /// Owner keys this engine lost to a fence, with why.
    lost: HashMap<i32, String>,
    /// Beats done (each wakes `beat_done`).
    beats: u64,
    /// When a beat last reached the server.
    last_seen: Option<Instant>,
}

/// The lease cell: the lease held now, its owner key, whether its connection is down and the
/// owners this engine lost, and the notifications around them. Only this file touches its
/// fields.
pub(crate) struct LeaseCell {
    held: tokio::sync::Mutex<Option<Lease>>,
    /// The owner key of the lease held now: a new one after the old was fenced.
    owner: AtomicI32,
    /// Whether the lease connection is down, and the owner keys this engine lost.
    state: Mutex<LeaseState>,
    /// Woken when the lease is held again (re-taken, or a new one after a fence).
    changed: Notify,
    /// Wakes the heartbeat early (an acquire found the lease fenced).
    nudge: Notify,
    /// Woken after each beat.
    beat_done: Notify,
}

impl LeaseCell {
    pub(super) fn new(lease: Lease) -> LeaseCell {
        LeaseCell {
            owner: AtomicI32::new(lease.key),
            held: tokio::sync::Mutex::new(Some(lease)),
            state: Mutex::new(LeaseState::default()),
            changed: Notify::new(),
            nudge: Notify::new(),
            beat_done: Notify::new(),
        }
    }

    /// The owner key of the lease held now.
    pub(super) fn owner(&self) -> i32 {
        self.owner.load(Ordering::SeqCst)
    }

    /// The lease, taken out to be given up (close).
    pub(super) async fn take(&self) -> Option<Lease> {
        self.held.lock().await.take()
    }
}

/// Whether `e` looks like a connection the server or the network ended (no SQLSTATE, a
/// connection class 08 code, or an administrator/crash shutdown): worth a look at the lease.
pub(super) fn connection_lost(e: &Error) -> bool {
    match e {
        Error::Connect { .. } => true,
        Error::Db { code: None, .. } => true,
        Error::Db { code: Some(c), .. } => c.starts_with("08") || c.starts_with("57P"),
        _ => false,
    }
}

/// How long hand-outs and releases wait for a dropped lease connection to come back.
const RECONNECT_WAIT: Duration = Duration::from_secs(60);

impl Engine {
    /// Beats every quarter of the grace period (250 ms to 1 s).
    fn beat_every(&self) -> Duration {
        (self.inner.cfg.gc_grace / 4).clamp(Duration::from_millis(250), Duration::from_secs(1))
    }

    /// Starts the heartbeat. It holds the engine weakly: an engine dropped without close ends it.
    pub(super) fn watch_lease(&self) {
        let weak = Arc::downgrade(&self.inner);
        self.inner.runtime.spawn(watch(weak));
    }

    /// The owner key to hand out under: waits while the lease connection is being re-taken.
    pub(super) async fn held_owner(&self) -> Result<i32> {
        let deadline = Instant::now() + RECONNECT_WAIT;
        loop {
            let changed = self.inner.lease.changed.notified();
            let down = self.inner.lease.state.lock().map(|s| s.down_since).unwrap_or(None);
            let Some(since) = down else { return Ok(self.inner.owner()) };
            self.inner.check_open()?;
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Lease(format!(
                    "the connection to the server at {} has been down for {:.1} s and pgisolate could not re-take its \
                     lease: is the server up and reachable from here?",
                    conninfo::redact(&self.inner.url),
                    since.elapsed().as_secs_f64()
                )));
            }
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(500)), changed).await;
        }
    }

    /// A statement failed as if the connection were gone: beats now and waits for that beat
    /// (and for the lease to be re-taken, if the beat failed). The owner key held after.
    pub(super) async fn check_lease(&self) -> Result<i32> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let before = self.inner.lease.state.lock().map(|s| s.beats).unwrap_or(0);
        loop {
            let done = self.inner.lease.beat_done.notified();
            self.inner.lease.nudge.notify_one();
            if self.inner.lease.state.lock().map(|s| s.beats).unwrap_or(0) > before || Instant::now() >= deadline {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), done).await;
        }
        self.held_owner().await
    }

    /// An acquire found its owner fenced before the heartbeat did: beat now and wait for
    /// the new lease. True when the owner key changed (try again under the new one).
    pub(super) async fn fenced_under(&self, owner: i32) -> bool {
        if self.inner.owner() != owner {
            return true; // a new lease came meanwhile
        }
        if let Ok(mut s) = self.inner.lease.state.lock() {
            s.down_since.get_or_insert_with(Instant::now);
        }
        self.inner.lease.nudge.notify_one();
        matches!(self.held_owner().await, Ok(k) if k != owner)
    }

    /// Why a schema handed out under `owner` is lost, if that lease was fenced.
    pub(super) fn lost_reason(&self, owner: i32) -> Option<String> {
        self.inner.lease.state.lock().ok().and_then(|s| s.lost.get(&owner).cloned())
    }

    /// Re-takes the lease after a failed beat, or takes a new one if gc fenced the old.
    async fn recover(&self, why: String) {
        let started = {
            let Ok(mut s) = self.inner.lease.state.lock() else { return };
            *s.down_since.get_or_insert_with(Instant::now)
        };
        self.inner.warn(&format!(
            "lost the lease connection to the server at {} ({why}); re-taking the lease, hand-outs wait meanwhile",
            conninfo::redact(&self.inner.url)
        ));
        let mut wait = Duration::from_millis(100);
        loop {
            if self.inner.is_closed() {
                return;
            }
            let (key, backend) = match self.inner.lease.held.lock().await.as_ref() {
                Some(l) => (l.key, l.backend),
                None => return,
            };
            match Lease::retake(&self.inner.url, key, backend).await {
                Ok(Some(Retaken::Held(client, pid))) => {
                    if let Some(l) = self.inner.lease.held.lock().await.as_mut() {
                        l.replace(client, key, pid).await;
                    }
                    self.lease_back(None);
                    return;
                }
                Ok(Some(Retaken::Fenced(client))) => {
                    let who = lease::Who { host: self.inner.host.clone(), run_id: self.inner.run_id.clone() };
                    if let Ok((new, pid)) = lease::claim(&client, &who).await {
                        if let Some(l) = self.inner.lease.held.lock().await.as_mut() {
                            l.replace(client, new, pid).await;
                        }
                        let seen = self.inner.lease.state.lock().ok().and_then(|s| s.last_seen).unwrap_or(started);
                        let down = seen.elapsed().as_secs_f64();
                        let reason = format!(
                            "this engine (pid {pid} on {host}) was cut off from the server at {url} for {down:.1} s, \
                             longer than gc's grace period ({grace:?}): gc fenced its lease (owner {key}) and may have \
                             dropped the schemas handed out under it",
                            pid = std::process::id(),
                            host = self.inner.host,
                            url = conninfo::redact(&self.inner.url),
                            grace = self.inner.cfg.gc_grace,
                        );
                        self.inner.warn(&format!(
                            "{reason}; their tests fail at release, later tests get schemas under owner {new}"
                        ));
                        self.inner.lease.owner.store(new, Ordering::SeqCst);
                        self.inner.pool.set_app(&crate::budget::admin_app(new));
                        self.forget_pools();
                        self.lease_back(Some((key, reason)));
                        self.reap_lost(key);
                        return;
                    }
                }
                // The old session still held the key and was ended, or the server is unreachable.
                Ok(None) | Err(_) => {}
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// The lease is held again; `lost` records a fenced owner key and why.
    fn lease_back(&self, lost: Option<(i32, String)>) {
        self.inner.pool.clear_idle();
        self.inner.resets.drop_conn();
        if let Ok(mut s) = self.inner.lease.state.lock() {
            s.down_since = None;
            s.last_seen = Some(Instant::now());
            if let Some((k, why)) = lost {
                s.lost.insert(k, why);
            }
        }
        self.inner.lease.changed.notify_waiters();
    }

    /// Drops, in the background, the pool, tombstones and builds of a fenced owner key (its
    /// handed-out schemas go at their release).
    fn reap_lost(&self, key: i32) {
        let me = self.clone();
        self.inner.background.begin();
        self.inner.runtime.spawn(async move {
            if let Ok(admin) = me.inner.pool.get_teardown().await {
                if let Ok(orphans) = registry::orphans(&admin, Duration::ZERO, false).await {
                    for o in orphans {
                        if o.marker.owner == key as i64
                            && matches!(o.marker.kind, Kind::Pool | Kind::Tomb | Kind::Build)
                        {
                            let deadline = Instant::now() + Duration::from_secs(30);
                            if crate::drop::drop_schema(&admin, &o.schema, &[], deadline).await.is_ok() {
                                let _ = registry::forget(&admin, &o.schema).await;
                            }
                        }
                    }
                }
            }
            me.inner.background.end();
        });
    }
}

async fn watch(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let engine = Engine { inner: inner.clone() };
        if inner.is_closed() {
            return;
        }
        let nudged = inner.lease.nudge.notified();
        tokio::select! {
            _ = tokio::time::sleep(engine.beat_every()) => {}
            _ = nudged => {}
        }
        if inner.is_closed() {
            return;
        }
        // Answered within twice the beat (at least 1 s): a slower server is taken for gone,
        // and re-taking the same key costs one connection.
        let limit = (engine.beat_every() * 2).max(Duration::from_secs(1));
        let beat = match inner.lease.held.lock().await.as_ref() {
            Some(l) => l.beat(limit).await,
            None => return,
        };
        let down = match inner.lease.state.lock() {
            Ok(mut s) => {
                match beat {
                    Err(_) => {
                        s.down_since.get_or_insert_with(Instant::now);
                    }
                    Ok(true) => s.last_seen = Some(Instant::now()),
                    Ok(false) => {}
                }
                s.beats += 1;
                s.down_since.is_some()
            }
            Err(_) => return,
        };
        inner.lease.beat_done.notify_waiters();
        if matches!(beat, Ok(true)) {
            let budget = match inner.lease.held.lock().await.as_ref() {
                Some(l) => match l.try_client() {
                    Some(c) => crate::budget::Budget::read(&c).await.ok(),
                    None => None,
                },
                None => None,
            };
            if let Some(b) = budget {
                inner.resize(b);
            }
        }
        inner.pool.trim();
        engine.close_idle_reset();
        match beat {
            // Seen: whatever an acquire suspected, the lease is held.
            Ok(true) if down => engine.lease_back(None),
            Ok(_) => {}
            Err(why) => engine.recover(why).await,
        }
    }
}

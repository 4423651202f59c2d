//! The connection budget: a test's own connections come first.
//!
//! Every beat, an engine reads the server's `max_connections` and who uses its slots:
//! pgisolate's own connections (lease and admin), the tests' (`application_name` of a handed-out
//! URL: `pgisolate/<schema>`) and everything else, and how many engines (lease connections)
//! share the server. From that it sizes itself ([`Budget::caps`]): what is left once every
//! engine's tests have [`Config::test_connections`](crate::Config) slots is shared by the
//! engines, half of it at most, so `pytest -n 32` on a default server (100 slots) leaves every
//! worker's tests room. An idle engine keeps its lease connection and one admin connection, none
//! when the server is crowded.
//!
//! When the server cannot fit the run (every engine needs two connections, its tests
//! `test_connections` more), a hand-out waits [`FIT_WAIT`] for slots to free up, then fails
//! with [`Budget::no_room`]: the numbers, who holds them, what to do. A test never finds out on
//! "sorry, too many clients already".

use std::time::Duration;

use tokio_postgres::Client;

use crate::error::{Error, Result};

/// How long a hand-out waits for the server to fit the run before it fails.
pub(crate) const FIT_WAIT: Duration = Duration::from_secs(10);

/// The application_name of an engine's admin connections: `pgisolate-admin:<owner key>`
/// (`pgisolate ls` counts each engine's connections by it).
pub(crate) fn admin_app(owner: i32) -> String {
    format!("{}:{owner}", crate::admin::ADMIN_APP)
}

/// Runs `connect` until it no longer fails for want of a free connection slot (53300), for
/// [`FIT_WAIT`] at most; then its error says what the run needs.
pub(crate) async fn patiently<T, F, Fut>(cfg: &crate::Config, mut connect: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let since = std::time::Instant::now();
    loop {
        match connect().await {
            Err(Error::Connect { code: Some(c), target, message, source }) if c == "53300" => {
                if since.elapsed() < FIT_WAIT {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                return Err(Error::Connect {
                    target,
                    code: Some(c),
                    message: format!(
                        "{message} (waited {:.0} s for a free slot). A run needs about {} connections per worker \
                         (pgisolate's two and PGISOLATE_TEST_CONNECTIONS={} for its tests) beside the server's \
                         other clients: raise max_connections, run fewer workers, or spread them over several \
                         servers (PGISOLATE_DATABASE_URL lists them)",
                        since.elapsed().as_secs_f64(),
                        2 + cfg.test_connections,
                        cfg.test_connections
                    ),
                    source,
                });
            }
            r => return r,
        }
    }
}

/// What the server's connection slots are and who holds them, read in one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    /// `max_connections`.
    pub max_connections: i64,
    /// `superuser_reserved_connections` (usable by a superuser only).
    pub reserved: i64,
    /// Whether the engine's role is a superuser (it may use the reserved slots).
    pub superuser: bool,
    /// Client backends now.
    pub in_use: i64,
    /// pgisolate's own (lease and admin connections of every admitted engine).
    pub own: i64,
    /// The tests' (sessions on handed-out URLs, builds' migration tools).
    pub tests: i64,
    /// Engines admitted on this server (lease connections).
    pub engines: i64,
    /// Engines waiting to be admitted (one connection each).
    pub waiting: i64,
}

/// The query [`Budget::read`] runs.
const BUDGET_SQL: &str = "select current_setting('max_connections')::int8, \
     current_setting('superuser_reserved_connections')::int8, \
     coalesce((select rolsuper from pg_catalog.pg_roles where rolname = current_user), false), \
     count(*), \
     count(*) filter (where application_name = 'pgisolate-lease' or application_name like 'pgisolate-admin%'), \
     count(*) filter (where application_name like 'pgisolate/%'), \
     count(*) filter (where application_name = 'pgisolate-lease'), \
     count(*) filter (where application_name = 'pgisolate-wait') \
     from pg_catalog.pg_stat_activity where backend_type = 'client backend'";

/// Admits this engine on `client` (its first connection, [`crate::lease::WAIT_APP`]), waiting up to
/// [`FIT_WAIT`], then failing with [`Budget::no_room`]. Admission: under [`crate::locks::ADMIT_CLASS`], an engine whose connections fit beside the
/// admitted engines' (theirs and their tests') and the waiting ones' renames its connection
/// to the lease's; one that does not fit waits, holding that one connection, and re-reads.
pub(crate) async fn admit(client: &Client, cfg: &crate::Config) -> Result<Budget> {
    let since = std::time::Instant::now();
    let sql = format!("select pg_advisory_xact_lock({class}, 0); {BUDGET_SQL}", class = crate::locks::ADMIT_CLASS);
    loop {
        client.batch_execute("begin").await.map_err(|e| Error::db("weigh the server's connections", e))?;
        let b = async {
            let rows = client.simple_query(&sql).await?;
            Ok::<_, tokio_postgres::Error>(rows)
        }
        .await
        .map_err(|e| Error::db("weigh the server's connections", e))
        .and_then(|rows| Budget::from_simple(&rows));
        let b = match b {
            Ok(b) => b,
            Err(e) => {
                let _ = client.batch_execute("rollback").await;
                return Err(e);
            }
        };
        // This engine is one of the waiting ones until it is admitted.
        let me = Budget { engines: b.engines + 1, waiting: (b.waiting - 1).max(0), own: b.own + 1, ..b };
        let fits = me.fits(cfg.test_connections);
        let end = if fits {
            format!("set application_name = '{}'; commit", crate::server::LEASE_APP)
        } else {
            "commit".to_owned()
        };
        client.batch_execute(&end).await.map_err(|e| Error::db("weigh the server's connections", e))?;
        if fits {
            return Ok(me);
        }
        if since.elapsed() >= FIT_WAIT {
            return Err(me.no_room(cfg.test_connections, since.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Budget {
    /// Reads the budget through `client`.
    pub(crate) async fn read(client: &Client) -> Result<Budget> {
        let rows = client.simple_query(BUDGET_SQL).await.map_err(|e| Error::db("read the server's connections", e))?;
        Budget::from_simple(&rows)
    }

    fn from_simple(rows: &[tokio_postgres::SimpleQueryMessage]) -> Result<Budget> {
        let row = rows
            .iter()
            .rev()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .ok_or_else(|| Error::Internal("the connection budget query returned no row".into()))?;
        let n = |i: usize| row.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        Ok(Budget {
            max_connections: n(0),
            reserved: n(1),
            superuser: row.get(2) == Some("t"),
            in_use: n(3),
            own: n(4),
            tests: n(5),
            engines: n(6),
            waiting: n(7),
        })
    }

    /// The slots this role may use.
    pub(crate) fn slots(&self) -> i64 {
        if self.superuser {
            self.max_connections
        } else {
            self.max_connections - self.reserved
        }
    }

    /// Other clients' connections (neither pgisolate's nor the tests').
    pub(crate) fn others(&self) -> i64 {
        (self.in_use - self.own - self.tests - self.waiting).max(0)
    }

    /// The most admin connections one engine may have open at once (1..=`max`), and how many
    /// idle ones it keeps (1, or 0 on a crowded server): half of what is left once every
    /// engine's tests have `test_connections` slots and every engine its lease, split among
    /// the engines.
    pub(crate) fn caps(&self, test_connections: usize, max: usize) -> (usize, usize) {
        let engines = self.engines.max(1);
        let left = self.slots() - self.others() - self.waiting - engines * (test_connections as i64 + 1);
        let each = left / engines / 2;
        let cap = each.clamp(1, max.max(1) as i64) as usize;
        (cap, if each >= 1 { 1 } else { 0 })
    }

    /// Whether the run fits: every engine its lease and one admin connection, its tests
    /// `test_connections`, beside the other clients and the engines waiting to be admitted.
    pub(crate) fn fits(&self, test_connections: usize) -> bool {
        self.need(test_connections) <= self.slots()
    }

    fn need(&self, test_connections: usize) -> i64 {
        self.engines.max(1) * (2 + test_connections as i64) + self.others() + self.waiting
    }

    /// The error of an engine (or a hand-out) that waited `waited` for a run that does not fit.
    pub(crate) fn no_room(&self, test_connections: usize, waited: Duration) -> Error {
        let per = 2 + test_connections as i64;
        let room = (self.slots() - self.others()) / per;
        Error::Refused(format!(
            "the server cannot fit this run's connections: max_connections = {max}{reserved}; {engines} pgisolate \
             engine(s) (one per worker, this one included) need {per} each (a lease and an admin connection, and \
             {t} for the test: PGISOLATE_TEST_CONNECTIONS) = {need} with the other clients' and the {waiting} \
             waiting engine(s)'. In use now: {in_use} (pgisolate's own {own}, the tests' {tests}, waiting engines \
             {waiting}, other clients {others}); waited {secs:.0} s for slots to free up. Raise max_connections, \
             run at most {room} workers here (pytest -n {room}, go test -p {room}), or lower \
             PGISOLATE_TEST_CONNECTIONS if the tests open fewer connections",
            max = self.max_connections,
            reserved = if self.superuser {
                String::new()
            } else {
                format!(" ({} of them reserved for superusers)", self.reserved)
            },
            engines = self.engines,
            t = test_connections,
            need = self.need(test_connections),
            waiting = self.waiting,
            in_use = self.in_use,
            own = self.own,
            tests = self.tests,
            others = self.others(),
            secs = waited.as_secs_f64(),
            room = room.max(0),
        ))
    }
}

/// One engine's connections on its server, as `pgisolate ls` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConnections {
    /// The engine's owner key.
    pub owner_key: i32,
    /// Host and process id of the engine.
    pub host: String,
    /// Process id.
    pub pid: i32,
    /// Run id.
    pub run_id: String,
    /// Its own connections: the lease's and its admin connections.
    pub own: i64,
    /// Its tests' connections (sessions on the URLs it handed out).
    pub tests: i64,
}

/// The server's connection slots and each live engine's share, for `pgisolate ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connections {
    /// `max_connections`.
    pub max_connections: i64,
    /// Client backends now.
    pub in_use: i64,
    /// Engines waiting to be admitted (one connection each).
    pub waiting: i64,
    /// Other clients' connections (neither an engine's nor a test's).
    pub others: i64,
    /// Each engine whose lease is held.
    pub engines: Vec<EngineConnections>,
}

/// Each live engine's connections: its lease (the backend holding its advisory lock), its
/// admin connections (`pgisolate-admin:<owner>`), its tests' (`pgisolate/<schema>` of schemas
/// it holds).
const ENGINES_SQL: &str = "with a as (select pid, application_name from pg_catalog.pg_stat_activity \
       where backend_type = 'client backend'), \
     live as (LIVE_OWNERS) \
     select o.owner_key, o.host, o.pid, o.run_id, \
       (select count(*) from pg_catalog.pg_locks l where l.locktype = 'advisory' and l.classid = 1885825395 \
          and l.objsubid = 2 and l.granted and l.objid = o.owner_key) \
       + (select count(*) from a where a.application_name = 'pgisolate-admin:' || o.owner_key), \
       (select count(*) from a join pgisolate.leases s on a.application_name = 'pgisolate/' || s.schema_name \
          where s.owner_key = o.owner_key) \
     from pgisolate.owners o where o.fenced_at is null and o.owner_key::int8 in (select * from live) \
     order by o.started_at";

/// Reads [`Connections`] through `client`.
pub(crate) async fn connections(client: &Client) -> Result<Connections> {
    let b = Budget::read(client).await?;
    let sql = ENGINES_SQL.replace("LIVE_OWNERS", crate::lease::LIVE_OWNERS_SQL);
    let rows = client.query(&sql, &[]).await.map_err(|e| Error::db("read each engine's connections", e))?;
    Ok(Connections {
        max_connections: b.max_connections,
        in_use: b.in_use,
        waiting: b.waiting,
        others: b.others(),
        engines: rows
            .iter()
            .map(|r| EngineConnections {
                owner_key: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                run_id: r.get(3),
                own: r.get(4),
                tests: r.get(5),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::Budget;

    fn server(max: i64, superuser: bool, engines: i64, others: i64) -> Budget {
        Budget { max_connections: max, reserved: 3, superuser, in_use: others, own: 0, tests: 0, engines, waiting: 0 }
    }

    #[test]
    fn engines_share_what_the_tests_leave() {
        // One engine alone on a default server: its configured most.
        assert_eq!(server(100, false, 1, 0).caps(1, 8), (8, 1));
        // 24 and 32 workers on 100 slots: lease + one admin each, at most.
        assert_eq!(server(100, false, 24, 1).caps(1, 8), (1, 1));
        assert_eq!(server(100, true, 33, 1).caps(1, 8), (1, 0));
        // A crowded server: still one admin connection to work with, none kept idle.
        assert_eq!(server(20, true, 12, 0).caps(1, 8), (1, 0));
    }

    #[test]
    fn a_run_fits_when_every_worker_has_its_connections() {
        assert!(server(100, false, 32, 1).fits(1)); // 96 + 1 <= 97
        assert!(!server(100, false, 32, 2).fits(1));
        assert!(server(100, true, 33, 1).fits(1)); // a superuser may use the reserved slots
        assert!(!server(20, true, 12, 0).fits(1));
        let msg = server(20, false, 12, 2).no_room(1, std::time::Duration::from_secs(10)).to_string();
        assert!(msg.contains("max_connections = 20") && msg.contains("12 pgisolate engine(s)"), "{msg}");
        assert!(msg.contains("at most 5 workers"), "{msg}");
    }
}

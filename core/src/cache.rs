//! Cache isolation beyond a prefix: with a Redis URL configured, a schema's keys
//! (`<cache prefix>*`) are deleted when it is released, and gc deletes the keys of schemas
//! whose owner died. Through the `redis` crate (cargo feature `redis`, which every binding and
//! the CLI enable): ACL users (`redis://user:password@host`), percent-encoded credentials,
//! `rediss://` (TLS, verified against the system's roots or `PGISOLATE_REDIS_CA_FILE`), and
//! Redis Cluster (keys are deleted on every primary).

/// A URL with its password hidden, for messages.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn shown(url: &str) -> String {
    if !url.contains("://") {
        return "<not a URL>".into();
    }
    crate::conninfo::mask_password(url, &['/', '?', '#'], true)
}

/// `*`-terminated SCAN pattern matching keys that start with `prefix` literally.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn glob_escape(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('*');
    s
}

#[cfg(feature = "redis")]
pub(crate) use with_redis::Redis;
#[cfg(not(feature = "redis"))]
pub(crate) use without_redis::Redis;

#[cfg(not(feature = "redis"))]
mod without_redis {
    use crate::error::{Error, Result};

    /// This build has no Redis client: configuring one is an error, never silently ignored
    /// (the tests would share cache state without anyone noticing).
    #[derive(Debug)]
    pub(crate) enum Redis {}

    impl Redis {
        pub(crate) fn check_url(_url: &str) -> Result<()> {
            Err(Error::Config(
                "PGISOLATE_REDIS_URL is set, but this build of pgisolate has no Redis support: \
                 enable the `redis` cargo feature of the pgisolate crate (every binding has it)"
                    .into(),
            ))
        }

        pub(crate) async fn open(url: &str, _ca_file: Option<&std::path::Path>) -> Result<Redis> {
            Redis::check_url(url)?;
            unreachable!("check_url always fails without the redis feature")
        }

        pub(crate) async fn delete_prefix(&self, _prefix: &str) -> Result<u64> {
            match *self {}
        }
    }
}

#[cfg(feature = "redis")]
mod with_redis {
    use std::time::Duration;

    use redis::aio::MultiplexedConnection;
    use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
    use tokio::sync::Mutex;

    use super::{glob_escape, shown};
    use crate::error::{Error, Result};

    /// How long connecting (and each command) may take.
    const TIMEOUT: Duration = Duration::from_secs(5);

    /// A Redis server or cluster: one connection per primary, opened at start (so that a wrong
    /// password or an unreachable server fails the engine's start, not a test) and reopened
    /// once when one drops.
    pub(crate) struct Redis {
        shown: String,
        info: ConnectionInfo,
        nodes: Mutex<Option<Vec<MultiplexedConnection>>>,
    }

    impl std::fmt::Debug for Redis {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Redis").field("url", &self.shown).finish_non_exhaustive()
        }
    }

    fn parse(url: &str) -> Result<ConnectionInfo> {
        if url.contains("#insecure") {
            return Err(Error::Config(format!(
                "PGISOLATE_REDIS_URL {}: #insecure (no certificate verification) is not supported: give the CA that \
                 signed the server's certificate with PGISOLATE_REDIS_CA_FILE",
                shown(url)
            )));
        }
        let info = url.into_connection_info().map_err(|e| {
            Error::Config(format!(
                "PGISOLATE_REDIS_URL {}: {e} (want redis://[user[:password]@]host[:port][/db], or rediss://… for TLS)",
                shown(url)
            ))
        })?;
        Ok(info)
    }

    impl Redis {
        /// Checks the URL's form without connecting.
        pub(crate) fn check_url(url: &str) -> Result<()> {
            parse(url).map(|_| ())
        }

        /// Connects (and authenticates) to the server, and to every primary if it is a
        /// cluster member; `ca_file` (PEM) is trusted for `rediss://` instead of the system's
        /// roots.
        pub(crate) async fn open(url: &str, ca_file: Option<&std::path::Path>) -> Result<Redis> {
            let mut info = parse(url)?;
            if let Some(path) = ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| Error::io(format!("read PGISOLATE_REDIS_CA_FILE {}", path.display()), e))?;
                let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
                let client = redis::Client::build_with_tls(info, certs)
                    .map_err(|e| Error::Config(format!("PGISOLATE_REDIS_CA_FILE {}: {e}", path.display())))?;
                info = client.get_connection_info().clone();
            }
            let redis = Redis { shown: shown(url), info, nodes: Mutex::new(None) };
            let nodes = redis.connect_all().await?;
            *redis.nodes.lock().await = Some(nodes);
            Ok(redis)
        }

        fn fail(&self, what: &str, e: impl std::fmt::Display) -> Error {
            Error::Cache(format!("Redis at {}: {what}: {e} (check PGISOLATE_REDIS_URL)", self.shown))
        }

        async fn connect(&self, info: ConnectionInfo) -> Result<MultiplexedConnection> {
            let client = redis::Client::open(info).map_err(|e| self.fail("bad address", e))?;
            match tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection()).await {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(self.fail("cannot connect", e)),
                Err(_) => Err(self.fail("cannot connect", format!("no answer within {TIMEOUT:?}"))),
            }
        }

        /// The seed connection, or one per primary when the server is a cluster member.
        async fn connect_all(&self) -> Result<Vec<MultiplexedConnection>> {
            let mut seed = self.connect(self.info.clone()).await?;
            let info: String = redis::cmd("INFO")
                .arg("cluster")
                .query_async(&mut seed)
                .await
                .map_err(|e| self.fail("INFO cluster", e))?;
            if !info.lines().any(|l| l.trim() == "cluster_enabled:1") {
                return Ok(vec![seed]);
            }
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut seed)
                .await
                .map_err(|e| self.fail("CLUSTER NODES", e))?;
            let mut conns = Vec::new();
            for (host, port) in primaries(&nodes) {
                let host = if host.is_empty() { seed_host(&self.info.addr) } else { host };
                let addr = match &self.info.addr {
                    ConnectionAddr::TcpTls { insecure, tls_params, .. } => {
                        ConnectionAddr::TcpTls { host, port, insecure: *insecure, tls_params: tls_params.clone() }
                    }
                    _ => ConnectionAddr::Tcp(host, port),
                };
                conns.push(self.connect(ConnectionInfo { addr, redis: self.info.redis.clone() }).await?);
            }
            if conns.is_empty() {
                return Err(self.fail("CLUSTER NODES", "no primary is serving slots"));
            }
            Ok(conns)
        }

        /// Deletes every key starting with `prefix` on every primary (SCAN MATCH + UNLINK, one
        /// key per UNLINK so that cluster slots never mix); returns how many were deleted.
        pub(crate) async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
            if prefix.is_empty() {
                return Err(Error::Refused("refusing to delete every Redis key (empty cache prefix)".into()));
            }
            let mut guard = self.nodes.lock().await;
            let conns = match guard.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = self.connect_all().await?;
                    *guard = Some(c.clone());
                    c
                }
            };
            drop(guard);
            match self.delete_on(conns, prefix).await {
                Ok(n) => Ok(n),
                Err(first) => {
                    // A dropped connection (a restarted Redis, a failover): reconnect once.
                    let conns = match self.connect_all().await {
                        Ok(c) => c,
                        Err(_) => return Err(first),
                    };
                    *self.nodes.lock().await = Some(conns.clone());
                    self.delete_on(conns, prefix).await
                }
            }
        }

        async fn delete_on(&self, conns: Vec<MultiplexedConnection>, prefix: &str) -> Result<u64> {
            let pattern = glob_escape(prefix);
            let mut deleted = 0u64;
            for mut c in conns {
                let mut cursor = 0u64;
                loop {
                    let mut scan = redis::cmd("SCAN");
                    scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(500);
                    let scan = scan.query_async::<(u64, Vec<Vec<u8>>)>(&mut c);
                    let (next, keys) = tokio::time::timeout(TIMEOUT, scan)
                        .await
                        .map_err(|_| self.fail("SCAN", "timed out"))?
                        .map_err(|e| self.fail("SCAN", e))?;
                    if !keys.is_empty() {
                        let mut pipe = redis::pipe();
                        for k in &keys {
                            pipe.cmd("UNLINK").arg(k);
                        }
                        let counts: Vec<u64> = tokio::time::timeout(TIMEOUT, pipe.query_async(&mut c))
                            .await
                            .map_err(|_| self.fail("UNLINK", "timed out"))?
                            .map_err(|e| self.fail("UNLINK", e))?;
                        deleted += counts.iter().sum::<u64>();
                    }
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
            Ok(deleted)
        }
    }

    fn seed_host(addr: &ConnectionAddr) -> String {
        match addr {
            ConnectionAddr::Tcp(h, _) | ConnectionAddr::TcpTls { host: h, .. } => h.clone(),
            ConnectionAddr::Unix(_) => "127.0.0.1".into(),
        }
    }

    /// `host:port` of every primary in a `CLUSTER NODES` reply that serves slots and is not
    /// failing (`<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch>
    /// <link> <slot> …`).
    pub(super) fn primaries(nodes: &str) -> Vec<(String, u16)> {
        let mut out = Vec::new();
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 {
                continue; // no slots
            }
            let flags = f[2];
            if !flags.split(',').any(|x| x == "master") || flags.contains("fail") || flags.contains("noaddr") {
                continue;
            }
            let addr = f[1].split(['@', ',']).next().unwrap_or("");
            if let Some((host, port)) = addr.rsplit_once(':') {
                if let Ok(port) = port.parse() {
                    out.push((host.to_owned(), port));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords() {
        assert_eq!(shown("redis://:pw@cache:6380/2"), "redis://:***@cache:6380/2");
        assert_eq!(shown("rediss://app:s%40cret@cache/0"), "rediss://app:***@cache/0");
        assert_eq!(shown("redis://onlypassword@cache"), "redis://***@cache");
        assert_eq!(shown("redis://cache:6379"), "redis://cache:6379");
    }

    #[test]
    fn escapes_glob_characters() {
        assert_eq!(glob_escape("ab12_"), "ab12_*");
        assert_eq!(glob_escape("a*[b]"), "a\\*\\[b\\]*");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn checks_urls_without_connecting() {
        assert!(Redis::check_url("redis://:pw@cache:6380/2").is_ok());
        assert!(Redis::check_url("rediss://user:p%40ss@cache/1").is_ok());
        let e = Redis::check_url("http://x").unwrap_err();
        assert!(e.to_string().contains("redis://"), "{e}");
        let e = Redis::check_url("redis://:secret@cache/notanumber").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn finds_serving_primaries() {
        let nodes = "\
a1 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 10.0.0.2:7001@17001,host-b master - 0 0 2 connected 5461-10922
c3 10.0.0.3:7002@17002 slave b2 0 0 2 connected
d4 10.0.0.4:7003@17003 master,fail - 0 0 3 connected 10923-16383
e5 :7004@17004 master - 0 0 4 connected 16000
f6 10.0.0.6:7005@17005 master - 0 0 5 connected";
        assert_eq!(
            with_redis::primaries(nodes),
            vec![("10.0.0.1".into(), 7000), ("10.0.0.2".into(), 7001), (String::new(), 7004)]
        );
    }
}

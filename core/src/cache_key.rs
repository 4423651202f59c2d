//! Cache isolation beyond a prefix: with a Redis URL configured, a schema's keys
//! (`<cache prefix>*`) are deleted when it is released, and gc deletes the keys of schemas
//! whose owner died. A minimal RESP client (SCAN + UNLINK) is enough for that.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Where a Redis server is: host, port, database, password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    host: String,
    port: u16,
    db: u32,
    password: Option<String>,
}

impl RedisTarget {
    /// Parses `redis://[:password@]host[:port][/db]`.
    pub fn parse(url: &str) -> Result<RedisTarget> {
        let bad = || Error::Config(format!("PGISOLATE_REDIS_URL {url:?} is not redis://[:password@]host[:port][/db]"));
        let rest = url.strip_prefix("redis://").ok_or_else(bad)?;
        let (auth, hostpart) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let password =
            auth.map(|a| a.split_once(':').map(|(_, p)| p).unwrap_or(a).to_owned()).filter(|p| !p.is_empty());
        let (hostport, db) = match hostpart.split_once('/') {
            Some((h, d)) if !d.is_empty() => (h, d.parse().map_err(|_| bad())?),
            Some((h, _)) => (h, 0),
            None => (hostpart, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
            None => (hostport.to_owned(), 6379),
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(RedisTarget { host, port, db, password })
    }
}

enum Reply {
    Simple(String),
    Bulk(Option<Vec<u8>>),
    Int(i64),
    Array(Vec<Reply>),
}

struct Conn {
    io: BufReader<TcpStream>,
}

impl Conn {
    async fn open(t: &RedisTarget) -> Result<Conn> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((t.host.as_str(), t.port)))
            .await
            .map_err(|_| Error::Timeout(format!("connecting to Redis at {}:{} timed out", t.host, t.port)))?
            .map_err(|e| Error::io(format!("connect to Redis at {}:{}", t.host, t.port), e))?;
        let mut c = Conn { io: BufReader::new(stream) };
        if let Some(p) = &t.password {
            c.call(&["AUTH", p]).await?;
        }
        if t.db != 0 {
            c.call(&["SELECT", &t.db.to_string()]).await?;
        }
        Ok(c)
    }

    async fn call(&mut self, args: &[&str]) -> Result<Reply> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        self.io.get_mut().write_all(&buf).await.map_err(|e| Error::io("write to Redis", e))?;
        self.read().await
    }

    fn read(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply>> + Send + '_>> {
        Box::pin(async move {
            let mut line = String::new();
            self.io.read_line(&mut line).await.map_err(|e| Error::io("read from Redis", e))?;
            let line = line.trim_end_matches(['\r', '\n']);
            let (kind, rest) = line.split_at(line.len().min(1));
            let int = |s: &str| s.parse::<i64>().map_err(|_| Error::Cache(format!("bad Redis reply {line:?}")));
            match kind {
                "+" => Ok(Reply::Simple(rest.to_owned())),
                "-" => Err(Error::Cache(format!("Redis: {rest}"))),
                ":" => Ok(Reply::Int(int(rest)?)),
                "$" => {
                    let n = int(rest)?;
                    if n < 0 {
                        return Ok(Reply::Bulk(None));
                    }
                    let mut data = vec![0u8; n as usize + 2];
                    self.io.read_exact(&mut data).await.map_err(|e| Error::io("read from Redis", e))?;
                    data.truncate(n as usize);
                    Ok(Reply::Bulk(Some(data)))
                }
                "*" => {
                    let n = int(rest)?;
                    let mut items = Vec::new();
                    for _ in 0..n.max(0) {
                        items.push(self.read().await?);
                    }
                    Ok(Reply::Array(items))
                }
                _ => Err(Error::Cache(format!("unexpected Redis reply {line:?}"))),
            }
        })
    }
}

/// Runs one Redis command and returns its reply as text (`None` for nil); arrays and
/// integers are rendered as text. For tests and diagnostics.
pub async fn command(target: &RedisTarget, args: &[&str]) -> Result<Option<String>> {
    let mut c = Conn::open(target).await?;
    Ok(match c.call(args).await? {
        Reply::Simple(s) => Some(s),
        Reply::Bulk(b) => b.map(|b| String::from_utf8_lossy(&b).into_owned()),
        Reply::Int(i) => Some(i.to_string()),
        Reply::Array(a) => Some(format!("[{} items]", a.len())),
    })
}

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

/// Deletes every key starting with `prefix` (SCAN MATCH + UNLINK, 500 at a time); returns
/// how many were deleted.
pub async fn delete_prefix(target: &RedisTarget, prefix: &str) -> Result<u64> {
    if prefix.is_empty() {
        return Err(Error::Refused("refusing to delete every Redis key (empty cache prefix)".into()));
    }
    let mut c = Conn::open(target).await?;
    let pattern = glob_escape(prefix);
    let mut cursor = "0".to_owned();
    let mut deleted = 0u64;
    loop {
        let reply = c.call(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "500"]).await?;
        let Reply::Array(mut parts) = reply else { return Err(Error::Cache("bad SCAN reply".into())) };
        if parts.len() != 2 {
            return Err(Error::Cache("bad SCAN reply".into()));
        }
        let keys = parts.pop();
        cursor = match parts.pop() {
            Some(Reply::Bulk(Some(b))) => String::from_utf8_lossy(&b).into_owned(),
            Some(Reply::Simple(s)) => s,
            _ => return Err(Error::Cache("bad SCAN cursor".into())),
        };
        if let Some(Reply::Array(keys)) = keys {
            let names: Vec<String> = keys
                .into_iter()
                .filter_map(|k| match k {
                    Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                    _ => None,
                })
                .collect();
            if !names.is_empty() {
                let mut args: Vec<&str> = vec!["UNLINK"];
                args.extend(names.iter().map(String::as_str));
                if let Reply::Int(n) = c.call(&args).await? {
                    deleted += n.max(0) as u64;
                }
            }
        }
        if cursor == "0" {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_urls() {
        assert_eq!(
            RedisTarget::parse("redis://:pw@cache:6380/2").unwrap(),
            RedisTarget { host: "cache".into(), port: 6380, db: 2, password: Some("pw".into()) }
        );
        assert_eq!(RedisTarget::parse("redis://127.0.0.1").unwrap().port, 6379);
        assert!(RedisTarget::parse("http://x").is_err());
        assert!(RedisTarget::parse("redis://:6379").is_err());
    }

    #[test]
    fn escapes_glob_characters() {
        assert_eq!(glob_escape("ab12_"), "ab12_*");
        assert_eq!(glob_escape("a*[b]"), "a\\*\\[b\\]*");
    }
}

//! One engine process of the hosts suite (`tests/hosts.rs`), run inside a network namespace.
//! Every line it prints is tab-separated and starts with the wall-clock time in unix
//! milliseconds, so the suite can measure across processes:
//!
//! - `serve <dir> <listen>`: a private server listening on `<listen>` (comma-separated
//!   addresses) that trusts 10.201.0.0/16 and drops the sessions of a silent peer within 3 s
//!   (TCP keepalives); prints `url <url>`, runs until its standard input closes;
//! - `run <url> <tag> <tests> <hold_ms> <grace_ms>`: runs tests, each writing and reading its
//!   own schema; prints `test <tag> <i> <schema> <owner> ok|<error>`;
//! - `hold <url> <tag> <n> <grace_ms>`: acquires `n` schemas, prints `held <tag> <schema>
//!   <owner>` for each, then waits to be killed;
//! - `cut <url> <tag> <grace_ms> <go_file> <after>`: holds one schema with an open
//!   connection (`held …`); once `<go_file>` exists, queries it, releases it (`inflight <tag>
//!   <query outcome> <release outcome>`), then runs `<after>` tests as `run` does;
//! - `gc <url> <grace_ms>`: prints `gc <fenced owners> <dropped schemas>`;
//! - `query <url> <sql>`: prints `row <first column>` for each row.
//!
//! Engine warnings print as `warn <tag> <message>`.
#![allow(clippy::unwrap_used)] // a test helper: fail loudly

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgisolate::{Config, Engine, Identity, Migrations};

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

fn say(fields: &[&str]) {
    let line: Vec<String> = fields.iter().map(|f| clean(f)).collect();
    println!("{}\t{}", now_ms(), line.join("\t"));
}

fn migrations() -> Migrations {
    Migrations::dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/migrations"))
}

async fn engine(url: &str, tag: &str, grace_ms: u64) -> Engine {
    let mut c = Config::from_env().unwrap();
    c.url = Some(url.to_owned());
    c.gc_on_start = false;
    c.gc_grace = Duration::from_millis(grace_ms);
    let tag = tag.to_owned();
    c.on_warning = Some(Arc::new(move |m: &str| say(&["warn", &tag, m])));
    Engine::start(c).await.unwrap_or_else(|e| {
        say(&["fatal", &e.to_string()]);
        std::process::exit(2)
    })
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(pg)?;
    tokio::spawn(conn);
    Ok(c)
}

fn pg(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// One test: its schema holds its own row and nothing else, in its own schema.
async fn one_test(engine: &Engine, tpl: &pgisolate::Template, tag: &str, i: usize, hold: Duration) {
    let id = format!("{tag}-{i}");
    let s = match engine.acquire(tpl, Identity::new("hosts", &id)).await {
        Ok(s) => s,
        Err(e) => return say(&["test", tag, &i.to_string(), "-", &engine.owner().to_string(), &e.to_string()]),
    };
    let outcome = async {
        let c = connect(s.url()).await?;
        c.execute("insert into users (email) values ($1)", &[&id]).await.map_err(pg)?;
        tokio::time::sleep(hold).await;
        let row =
            c.query_one("select current_schema()::text, count(*), min(email) from users", &[]).await.map_err(pg)?;
        let (schema, n, email): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
        if schema != s.name() || n != 1 || email != id {
            return Err(format!("not isolated: schema {schema}, {n} rows, first {email}"));
        }
        Ok::<_, String>(())
    }
    .await;
    let name = s.name().to_owned();
    let released = s.release().await.map_err(|e| e.to_string());
    let result = match (outcome, released) {
        (Ok(()), Ok(_)) => "ok".to_owned(),
        (Err(e), _) | (_, Err(e)) => e,
    };
    say(&["test", tag, &i.to_string(), &name, &engine.owner().to_string(), &result]);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| panic!("missing argument {i}: {args:?}"));
    let num = |i: usize| arg(i).parse::<u64>().unwrap_or_else(|_| panic!("argument {i} is not a number: {args:?}"));
    match arg(0).as_str() {
        "serve" => serve(&arg(1), &arg(2)).await,
        "run" => {
            let (tag, tests, hold) = (arg(2), num(3) as usize, Duration::from_millis(num(4)));
            let e = engine(&arg(1), &tag, num(5)).await;
            let tpl = e.template(migrations()).await.unwrap();
            for i in 0..tests {
                one_test(&e, &tpl, &tag, i, hold).await;
            }
            e.close().await.unwrap();
            say(&["done", &tag]);
        }
        "hold" => {
            let tag = arg(2);
            let e = engine(&arg(1), &tag, num(4)).await;
            let tpl = e.template(migrations()).await.unwrap();
            let mut held = Vec::new();
            for i in 0..num(3) {
                let s = e.acquire(&tpl, Identity::new("hosts", format!("{tag}-{i}"))).await.unwrap();
                say(&["held", &tag, s.name(), &e.owner().to_string()]);
                held.push(s);
            }
            e.flush().await; // the pool is full too
            say(&["ready", &tag]);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        "cut" => {
            let (tag, go) = (arg(2), arg(4));
            let e = engine(&arg(1), &tag, num(3)).await;
            let tpl = e.template(migrations()).await.unwrap();
            let s = e.acquire(&tpl, Identity::new("hosts", format!("{tag}-inflight"))).await.unwrap();
            let c = connect(s.url()).await.unwrap();
            c.execute("insert into users (email) values ('inflight')", &[]).await.unwrap();
            e.flush().await;
            say(&["held", &tag, s.name(), &e.owner().to_string()]);
            while !std::path::Path::new(&go).exists() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let query =
                match tokio::time::timeout(Duration::from_secs(10), c.query_one("select count(*) from users", &[]))
                    .await
                {
                    Ok(Ok(r)) => format!("query answered: {} rows", r.get::<_, i64>(0)),
                    Ok(Err(e)) => format!("query failed: {}", pg(e)),
                    Err(_) => "query hung for 10 s".to_owned(),
                };
            let release = match s.release().await {
                Ok(r) => format!("released: {r:?}"),
                Err(e) => format!("release failed ({:?}): {e}", e.kind()),
            };
            say(&["inflight", &tag, &query, &release]);
            for i in 0..num(5) as usize {
                one_test(&e, &tpl, &tag, i, Duration::from_millis(10)).await;
            }
            e.close().await.unwrap();
            say(&["done", &tag]);
        }
        "query" => {
            let c = connect(&arg(1)).await.unwrap();
            for m in c.simple_query(&arg(2)).await.unwrap() {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    say(&["row", r.get(0).unwrap_or("")]);
                }
            }
        }
        "gc" => {
            let e = engine(&arg(1), "gc", num(2)).await;
            let r = e.gc().await.unwrap();
            let fenced: Vec<String> = r.fenced_owners.iter().map(|k| k.to_string()).collect();
            say(&["gc", &fenced.join(","), &r.dropped.join(","), &format!("{:?}", r.failed)]);
            e.close().await.unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
}

/// A private server for the suite: reachable on `listen`, trusting the suite's addresses, and
/// quick to notice a silent peer (as a server on a real network would be told to be).
async fn serve(dir: &str, listen: &str) {
    let listen = listen.to_owned();
    let dir = std::path::PathBuf::from(dir);
    let srv = tokio::task::spawn_blocking(move || {
        let listen: &'static str = Box::leak(listen.into_boxed_str());
        pgisolate::server::start_private(
            &dir,
            &[
                ("listen_addresses", listen),
                ("tcp_keepalives_idle", "1"),
                ("tcp_keepalives_interval", "1"),
                ("tcp_keepalives_count", "2"),
                ("max_connections", "200"),
            ],
        )
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| {
        say(&["fatal", &e.to_string()]);
        std::process::exit(2)
    });
    let hba = srv.dir.join("data/pg_hba.conf");
    let mut text = std::fs::read_to_string(&hba).unwrap();
    text.push_str("\nhost all all 10.201.0.0/16 trust\n");
    std::fs::write(&hba, text).unwrap();
    let c = connect(&srv.url).await.unwrap();
    c.execute("select pg_reload_conf()", &[]).await.unwrap();
    let port = srv.url.split(':').nth(2).and_then(|p| p.split('/').next()).unwrap().to_owned();
    say(&["url", &format!("postgres://postgres@{{host}}:{port}/postgres?sslmode=disable")]);
    // Until the suite closes our standard input.
    let mut sink = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut sink)).await;
    drop(c);
    drop(srv);
    say(&["stopped"]);
}

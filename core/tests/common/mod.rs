//! Helpers shared by the engine's integration tests (all against the embedded server, or
//! PGISOLATE_DATABASE_URL when set).
#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgisolate::{Config, Engine, Migrations};
use tokio_postgres::{Client, NoTls};

pub fn migrations_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/migrations")
}

pub fn migrations() -> Migrations {
    Migrations::dir(migrations_dir())
}

pub fn config() -> Config {
    let mut c = Config::from_env().expect("valid PGISOLATE_* environment");
    c.gc_on_start = false;
    c
}

pub async fn engine() -> Engine {
    Engine::start(config()).await.expect("engine starts")
}

/// An engine whose warnings are collected.
pub async fn engine_with_warnings() -> (Engine, Arc<Mutex<Vec<String>>>) {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let w = warnings.clone();
    let mut c = config();
    c.on_warning = Some(Arc::new(move |m: &str| w.lock().unwrap().push(m.to_owned())));
    (Engine::start(c).await.expect("engine starts"), warnings)
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// Drops database `name` after ending its sessions (`WITH (FORCE)` needs PostgreSQL 13).
pub async fn drop_database_force(admin: &Client, name: &str) {
    admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", &[&name]).await.unwrap();
    for _ in 0..50 {
        match admin.batch_execute(&format!("drop database if exists {name}")).await {
            Ok(()) => return,
            // A terminated session may take a moment to go.
            Err(e) if e.code().map(|c| c.code()) == Some("55006") => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("drop database {name}: {e}"),
        }
    }
    panic!("database {name} is still in use");
}

pub async fn scalar_string(client: &Client, sql: &str) -> String {
    client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

pub async fn schema_exists(engine: &Engine, name: &str) -> bool {
    let c = connect(engine.url()).await;
    c.query_one("select exists (select 1 from pg_namespace where nspname = $1)", &[&name]).await.unwrap().get(0)
}

pub async fn registry_rows(engine: &Engine, name: &str) -> i64 {
    let c = connect(engine.url()).await;
    c.query_one("select count(*) from pgisolate.leases where schema_name = $1 and state <> 'released'", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// Re-runs this test binary as a child process with `PGISOLATE_TEST_CHILD=<mode>`.
pub fn spawn_child(mode: &str, extra_env: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.env("PGISOLATE_TEST_CHILD", mode).stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child test process")
}

/// Reads child stdout lines until one starts with `tag`, returning the rest of it.
pub fn read_tagged(child: &mut Child, tag: &str, timeout: Duration) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = tag.to_owned();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may print "test child_entry ... " on the same line first.
            if let Some(at) = line.find(&wanted) {
                // Keep draining so the child never writes into a closed pipe.
                let _ = tx.send(line[at + wanted.len()..].trim().to_owned());
            }
        }
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| panic!("child did not print {tag} within {timeout:?}"))
}

pub fn sigkill(child: &mut Child) {
    // SAFETY: plain signal delivery to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// A unique string for this test run (fresh template fingerprints): time, process, counter.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{:x}{:x}{:x}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

//! The connection budget (docs/behaviour.md, "Connections"): an engine opens admin connections while it
//! has work, within its share of the server, and holds two when idle: its lease connection and
//! one admin connection.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

mod common;

use std::time::{Duration, Instant};

use common::*;
use pgisolate::Identity;

/// This engine's connections on the server: its lease (the backend holding its advisory lock)
/// and its admin connections, as `pgisolate ls` counts them.
async fn held(engine: &pgisolate::Engine) -> i64 {
    let c = engine.connections().await.unwrap();
    c.engines.iter().find(|e| e.owner_key == engine.owner()).map(|e| e.own).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_engine_holds_its_lease_and_one_admin_connection() {
    let engine = engine().await;
    let tpl = engine.template(migrations()).await.unwrap();
    // An engine starts with one admin connection and sizes itself at its first beat (within
    // a second): the engines of a run start over a second or two.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Busy: 16 tests at once.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (engine, tpl) = (engine.clone(), tpl.clone());
        tasks.push(tokio::spawn(async move {
            let s = engine.acquire(&tpl, Identity::new("budget", format!("busy {i}"))).await.unwrap();
            let c = connect(s.url()).await;
            c.batch_execute("insert into users (email) values ('a@example.com'); select pg_sleep(0.05)").await.unwrap();
            drop(c);
            s.release().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    engine.flush().await;
    let (_, peak) = engine.admin_connections();
    // On the embedded server (300 slots) the engine may open its configured most while busy.
    assert!(peak >= 2 && peak <= engine.config().max_admin_connections, "peak {peak}");
    // Idle: the connections beyond one close within a second or two (the beat trims them).
    let since = Instant::now();
    let mut now = held(&engine).await;
    while now > 2 && since.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        now = held(&engine).await;
    }
    let open = engine.admin_connections().0;
    println!(
        "busy: at most {peak} admin connections at once; idle after {:?}: {now} held (lease + {open} admin)",
        since.elapsed()
    );
    assert!(now <= 2, "an idle engine holds {now} connections");
    assert_eq!(now, 1 + open as i64, "the server's count and the engine's differ");
    engine.close().await.unwrap();
}

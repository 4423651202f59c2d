//! Several processes: template built once (R18/R19 of the issue), a builder killed mid-build,
//! a SIGKILLed test process reaped by gc while a live run survives (R8), and the embedded
//! server stopping after every client was SIGKILLed.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

mod common;

use std::time::{Duration, Instant};

use common::*;
use pgisolate::{Identity, Migrations};

/// Entry point for child processes: `main` calls it when `PGISOLATE_TEST_CHILD=<mode>` is set.
fn child_entry(mode: String) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        match mode.as_str() {
            "build" => {
                let engine = engine().await;
                let sql = std::env::var("CHILD_SQL").unwrap();
                let tpl = engine.template(Migrations::sql(sql)).await.unwrap();
                let c = connect(engine.url()).await;
                // The mark a run of the migrations leaves (a replay of their capture copies it).
                let mark: String = c
                    .query_one(
                        "select coalesce((select pg_get_expr(d.adbin, d.adrelid) from pg_attrdef d \
                         where d.adrelid = to_regclass(format('%I.reused', $1::text))), '-')",
                        &[&tpl.schema()],
                    )
                    .await
                    .unwrap()
                    .get(0);
                drop(c);
                println!("BUILT {} {} mark={mark}", tpl.built_here(), tpl.schema());
                engine.close().await.unwrap();
            }
            "hold" => {
                let engine = engine().await;
                let tpl = engine.template(migrations()).await.unwrap();
                let mut names = Vec::new();
                let mut held = Vec::new();
                for i in 0..3 {
                    let s = engine.acquire(&tpl, Identity::new("r8 child", format!("scenario {i}"))).await.unwrap();
                    names.push(s.name().to_owned());
                    held.push(s);
                }
                println!("SCHEMAS {}", names.join(","));
                tokio::time::sleep(Duration::from_secs(120)).await;
            }
            "server" => {
                let engine = engine().await;
                let pid = std::fs::read_to_string(engine.server().unwrap().dir.join("data/postmaster.pid")).unwrap();
                println!("POSTMASTER {}", pid.lines().next().unwrap());
                tokio::time::sleep(Duration::from_secs(120)).await;
            }
            "panic_keep" => {
                let schema = tokio::task::spawn_blocking(|| {
                    let s = pgisolate::testing::schema_from(migrations());
                    println!("KEPT {}", s.name());
                    panic!("deliberate failure: the schema must be kept");
                });
                let _ = schema.await;
            }
            "testing_exit" => {
                // A `cargo test` process: the glue's engine is closed when the process exits.
                let (owner, url) = tokio::task::spawn_blocking(|| {
                    let s = pgisolate::testing::schema_from(migrations());
                    drop(s);
                    let engine = pgisolate::testing::engine();
                    (engine.owner(), engine.url().to_owned())
                })
                .await
                .unwrap();
                pgisolate::testing::engine().flush().await;
                let c = connect(&url).await;
                let held = owned_schemas(&c, owner).await;
                println!("OWNER {owner} {held}");
            }
            "refused" => {
                let engine = engine().await;
                let sql = std::env::var("CHILD_SQL").unwrap();
                let err = engine.template(Migrations::sql(sql)).await.expect_err("the build must be refused");
                let c = connect(engine.url()).await;
                let left: i64 = c
                    .query_one(
                        "select count(*) from pg_namespace where nspname ~ '^(test_|pgi_|tpl_|audit_)' \
                         or to_regclass('public.settings') is not null and nspname = 'public'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                drop(c);
                println!("REFUSED left={left} {}", err.to_string().replace('\n', " | "));
                engine.close().await.unwrap();
            }
            "server_stop" => {
                let stopped = tokio::task::spawn_blocking(pgisolate::server::stop).await.unwrap().unwrap();
                println!("STOPPED {stopped}");
            }
            other => panic!("unknown child mode {other}"),
        }
    });
}

fn two_processes_build_one_template_once() {
    let sql = format!("-- {}\ncreate table once (id int); select pg_sleep(1);", unique());
    let mut a = spawn_child("build", &[("CHILD_SQL", &sql)]);
    let mut b = spawn_child("build", &[("CHILD_SQL", &sql)]);
    let ra = read_tagged(&mut a, "BUILT", Duration::from_secs(60));
    let rb = read_tagged(&mut b, "BUILT", Duration::from_secs(60));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let built: Vec<bool> = [&ra, &rb].iter().map(|r| r.starts_with("true")).collect();
    assert_eq!(built.iter().filter(|b| **b).count(), 1, "exactly one process builds: {ra} / {rb}");
    assert_eq!(ra.split(' ').nth(1), rb.split(' ').nth(1), "both use the same template");
}

async fn a_builder_killed_mid_build_leaves_nothing_usable_and_the_next_build_succeeds() {
    let engine = engine().await;
    let sql = format!("-- {}\ncreate table slow (id int); select pg_sleep(3);", unique());
    let mut child = spawn_child("build", &[("CHILD_SQL", &sql)]);
    // Wait until the child's build schema exists, then kill it mid-migration.
    let admin = connect(engine.url()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let fp = pgisolate::template::fingerprint(&Migrations::sql(sql.clone()).load().unwrap());
    let build_like = format!("tpl_build_{}_%", &fp[..16]);
    loop {
        let n: i64 = admin
            .query_one("select count(*) from pg_namespace where nspname like $1", &[&build_like])
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "child never started building");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigkill(&mut child);
    let tpl = engine.template(Migrations::sql(sql)).await.unwrap();
    assert!(tpl.built_here(), "the killed build must not count as a template");
    let s = engine.acquire(&tpl, Identity::new("r18", "after kill")).await.unwrap();
    let c = connect(s.url()).await;
    c.execute("insert into slow values (1)", &[]).await.unwrap();
    s.release().await.unwrap();
    let report = engine.gc_with(Duration::ZERO, false).await.unwrap();
    let leftover: i64 = admin
        .query_one("select count(*) from pg_namespace where nspname like $1", &[&build_like])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftover, 0, "partial build not reaped; gc dropped {:?}", report.dropped);
    engine.close().await.unwrap();
}

async fn gc_reaps_exactly_a_killed_process_schemas_while_a_live_run_keeps_its_own() {
    let engine = engine().await;
    let tpl = engine.template(migrations()).await.unwrap();
    let mine = engine.acquire(&tpl, Identity::new("r8 live", "survivor")).await.unwrap();
    let mut child = spawn_child("hold", &[]);
    let theirs: Vec<String> =
        read_tagged(&mut child, "SCHEMAS", Duration::from_secs(60)).split(',').map(str::to_owned).collect();
    assert_eq!(theirs.len(), 3);
    for s in &theirs {
        assert!(schema_exists(&engine, s).await);
    }
    // While the child lives, gc must not touch its schemas.
    let report = engine.gc_with(Duration::ZERO, false).await.unwrap();
    assert!(theirs.iter().all(|s| !report.dropped.contains(s)), "gc dropped a live owner's schema");
    sigkill(&mut child);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = engine.gc_with(Duration::ZERO, false).await.unwrap();
    for s in &theirs {
        assert!(report.dropped.contains(s), "{s} not reaped: {:?}", report.dropped);
        assert!(!schema_exists(&engine, s).await);
        assert_eq!(registry_rows(&engine, s).await, 0);
    }
    assert!(!report.dropped.contains(&mine.name().to_owned()));
    let c = connect(mine.url()).await;
    c.execute("insert into users (email) values ('still@here')", &[]).await.unwrap();
    mine.release().await.unwrap();
    engine.close().await.unwrap();
}

/// Reported as ignored when PGISOLATE_DATABASE_URL is set: no embedded server to watch.
fn embedded_server_stops_after_every_client_was_killed() {
    let home = std::env::temp_dir().join(format!("pgisolate-stop-test-{}", unique()));
    let home_s = home.to_string_lossy().into_owned();
    let mut a = spawn_child("server", &[("PGISOLATE_HOME", &home_s)]);
    let pid: i32 = read_tagged(&mut a, "POSTMASTER", Duration::from_secs(60)).parse().unwrap();
    let mut b = spawn_child("server", &[("PGISOLATE_HOME", &home_s)]);
    let pid_b: i32 = read_tagged(&mut b, "POSTMASTER", Duration::from_secs(60)).parse().unwrap();
    assert_eq!(pid, pid_b, "both processes share one server");
    sigkill(&mut a);
    std::thread::sleep(Duration::from_secs(5));
    // SAFETY: signal 0 only checks existence.
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "server stopped while a client was still alive");
    sigkill(&mut b);
    let t = Instant::now();
    // SAFETY: as above.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "server still running 10 s after its last client died");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("server stopped {:?} after the last client was killed", t.elapsed());
    assert!(!home.join("data").exists(), "data directory left behind");
    let _ = std::fs::remove_dir_all(&home);
}

/// Schemas whose marker names `owner` (pool, test, tomb), plus its registry rows.
async fn owned_schemas(c: &tokio_postgres::Client, owner: i32) -> i64 {
    let pattern = format!("pgisolate:v1:% owner={owner} %");
    let schemas: i64 = c
        .query_one("select count(*) from pg_namespace where obj_description(oid, 'pg_namespace') like $1", &[&pattern])
        .await
        .unwrap()
        .get(0);
    let rows: i64 =
        c.query_one("select count(*) from pgisolate.leases where owner_key = $1", &[&owner]).await.unwrap().get(0);
    schemas + rows
}

async fn a_cargo_test_process_leaves_nothing_on_the_server() {
    let engine = engine().await;
    let mut child = spawn_child("testing_exit", &[]);
    let line = read_tagged(&mut child, "OWNER", Duration::from_secs(60));
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {status}");
    let (owner, held) = line.split_once(' ').unwrap();
    let owner: i32 = owner.parse().unwrap();
    // Not vacuous: before exiting, the process held its warm pool.
    assert!(held.parse::<i64>().unwrap() > 0, "the child held nothing before it exited ({held})");
    let c = connect(engine.url()).await;
    let left = owned_schemas(&c, owner).await;
    if left != 0 {
        let pattern = format!("pgisolate:v1:% owner={owner} %");
        let rows = c
            .query(
                "select nspname::text || ' ' || obj_description(oid, 'pg_namespace') from pg_namespace \
                 where obj_description(oid, 'pg_namespace') like $1 \
                 union all select 'row ' || schema_name || ' ' || state from pgisolate.leases where owner_key = $2",
                &[&pattern, &owner],
            )
            .await
            .unwrap();
        let what: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        panic!("the exited test process left {left} schemas or registry rows: {what:?}");
    }
    engine.close().await.unwrap();
}

/// PGISOLATE_REUSE: the embedded server and its templates outlive the run (the next run builds
/// nothing), until `pgisolate server stop`.
fn reuse_keeps_the_server_and_its_templates_between_runs() {
    let home = std::env::temp_dir().join(format!("pgisolate-reuse-test-{}", unique()));
    let home_s = home.to_string_lossy().into_owned();
    // The migrations leave a mark that differs from run to run (a column default with the
    // time), to tell a run of them from a replay of their capture (which copies the first run's).
    let sql = format!(
        "-- {}\ndo $$ begin execute format('create table reused (id int, at text default %L)', \
         clock_timestamp()::text); end $$;",
        unique()
    );
    let env = [("PGISOLATE_HOME", home_s.as_str()), ("PGISOLATE_REUSE", "60s"), ("CHILD_SQL", sql.as_str())];
    let mut first = spawn_child("build", &env);
    let built = read_tagged(&mut first, "BUILT", Duration::from_secs(60));
    assert!(first.wait().unwrap().success());
    assert!(built.starts_with("true ") && !built.ends_with("mark=-"), "the first run did not build: {built}");
    // Longer than the keeper's usual 3 idle seconds, with no user left.
    std::thread::sleep(Duration::from_secs(5));
    let pid: i32 = std::fs::read_to_string(home.join("data/postmaster.pid"))
        .expect("the server stopped although PGISOLATE_REUSE was set")
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: signal 0 only checks existence.
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "the server stopped although PGISOLATE_REUSE was set");
    let mut second = spawn_child("build", &env);
    let again = read_tagged(&mut second, "BUILT", Duration::from_secs(60));
    assert!(second.wait().unwrap().success());
    assert_eq!(again, built.replacen("true", "false", 1), "the second run built again");
    let mut stop = spawn_child("server_stop", &env[..1]);
    assert_eq!(read_tagged(&mut stop, "STOPPED", Duration::from_secs(60)), "true");
    assert!(stop.wait().unwrap().success());
    let t = Instant::now();
    // SAFETY: as above (a stopped postmaster may linger a moment as a zombie of its parent).
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "server stop left the server running");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!home.join("data").exists(), "server stop left the data directory");
    // A new server in the same home: its cluster is a copy of the pristine one initdb made
    // for the first, and the template is replayed from the first build's capture (the
    // migrations do not run again: no table in public).
    assert_eq!(std::fs::read_dir(home.join("pristine")).map(|d| d.count()).unwrap_or(0), 1, "no pristine cluster kept");
    let mut third = spawn_child("build", &env);
    let rebuilt = read_tagged(&mut third, "BUILT", Duration::from_secs(60));
    assert!(third.wait().unwrap().success());
    assert_eq!(rebuilt, built, "the migrations ran again instead of the capture's replay");
    let mut stop = spawn_child("server_stop", &env[..1]);
    assert_eq!(read_tagged(&mut stop, "STOPPED", Duration::from_secs(60)), "true");
    assert!(stop.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&home);
}

/// A build that reaches outside its schema is refused on a first server and again on a second,
/// fresh server with the same PGISOLATE_HOME (nothing of it was captured), leaving nothing.
fn a_refused_build_is_refused_again_on_a_fresh_server_of_the_same_home() {
    let home = std::env::temp_dir().join(format!("pgisolate-refused-test-{}", unique()));
    let home_s = home.to_string_lossy().into_owned();
    let sql = format!(
        "-- {}\ncreate schema audit_x; create table audit_x.events (id bigserial primary key, what text not null); \
         create table public.settings (k text primary key, v text); create table users (id int);",
        unique()
    );
    let env = [("PGISOLATE_HOME", home_s.as_str()), ("CHILD_SQL", sql.as_str())];
    let mut pids = Vec::new();
    for server in ["first", "second"] {
        let mut child = spawn_child("refused", &env);
        let said = read_tagged(&mut child, "REFUSED", Duration::from_secs(60));
        assert!(child.wait().unwrap().success());
        assert!(said.starts_with("left=0 "), "the {server} server kept something of the refused build: {said}");
        assert!(
            said.contains("schema audit_x: created by the build; dropped") && said.contains("table public.settings"),
            "the {server} server did not refuse the build: {said}"
        );
        let pid = std::fs::read_to_string(home.join("data/postmaster.pid")).unwrap_or_default();
        pids.push(pid.lines().next().unwrap_or("").to_owned());
        // The keeper stops the server once nobody uses it: the next child boots a fresh one.
        let t = Instant::now();
        while home.join("data/postmaster.pid").exists() {
            assert!(t.elapsed() < Duration::from_secs(30), "the embedded server did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
        let captured: Vec<String> = std::fs::read_dir(home.join("captures"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(captured.is_empty(), "a refused build was captured: {captured:?}");
    }
    assert_ne!(pids[0], pids[1], "the second build did not run on a fresh server");
    let _ = std::fs::remove_dir_all(&home);
}

async fn cargo_test_glue_keeps_a_failed_tests_schema_when_asked() {
    let engine = engine().await;
    let mut child = spawn_child("panic_keep", &[("PGISOLATE_KEEP", "failed")]);
    let name = read_tagged(&mut child, "KEPT", Duration::from_secs(60));
    let _ = child.wait();
    assert!(schema_exists(&engine, &name).await, "{name} was dropped although the test failed");
    let listed = engine.list().await.unwrap();
    assert!(listed.iter().any(|e| e.schema == name && e.state == "kept"), "{name} not listed as kept");
    engine.drop_schema(&name).await.unwrap();
    assert!(!schema_exists(&engine, &name).await);
    engine.close().await.unwrap();
}

/// The embedded server's settings (reported as ignored when PGISOLATE_DATABASE_URL is set).
async fn embedded_server_runs_with_test_settings() {
    let engine = engine().await;
    assert!(engine.is_embedded(), "the embedded server's settings: run without PGISOLATE_DATABASE_URL");
    let c = connect(engine.url()).await;
    let locks: i64 = scalar_string(&c, "show max_locks_per_transaction").await.parse().unwrap();
    assert!(locks >= 1024);
    assert_eq!(scalar_string(&c, "show fsync").await, "off");
    assert_ne!(scalar_string(&c, "show idle_in_transaction_session_timeout").await, "0");
    let major: i32 =
        scalar_string(&c, "select (current_setting('server_version_num')::int / 10000)::text").await.parse().unwrap();
    if major >= 14 {
        // PostgreSQL 14 brought it; the engine leaves it out for older servers.
        assert_ne!(scalar_string(&c, "show client_connection_check_interval").await, "0");
    }
    assert_eq!(scalar_string(&c, "show listen_addresses").await, "127.0.0.1");
    engine.close().await.unwrap();
}

fn run_async<F: std::future::Future<Output = ()>>(f: fn() -> F) -> Result<(), libtest_mimic::Failed> {
    run(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f()))
}

/// Runs one test, turning its panic (a failed assert) into the harness's failure.
fn run(f: impl Fn() + std::panic::RefUnwindSafe) -> Result<(), libtest_mimic::Failed> {
    std::panic::catch_unwind(&f).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
            .into()
    })
}

/// This binary is both the tests (libtest-mimic: no phantom test for the children) and, with
/// `PGISOLATE_TEST_CHILD` set, the child processes they start.
fn main() -> std::process::ExitCode {
    if let Ok(mode) = std::env::var("PGISOLATE_TEST_CHILD") {
        child_entry(mode);
        return std::process::ExitCode::SUCCESS;
    }
    let args = libtest_mimic::Arguments::from_args();
    // Against a configured server, the embedded server's tests are reported as ignored (a
    // skip is a skip, never a pass).
    let external = std::env::var_os("PGISOLATE_DATABASE_URL").is_some();
    let trials = vec![
        libtest_mimic::Trial::test("two_processes_build_one_template_once", || {
            run(two_processes_build_one_template_once)
        }),
        libtest_mimic::Trial::test("embedded_server_stops_after_every_client_was_killed", || {
            run(embedded_server_stops_after_every_client_was_killed)
        })
        .with_ignored_flag(external),
        libtest_mimic::Trial::test("embedded_server_runs_with_test_settings", || {
            run_async(embedded_server_runs_with_test_settings)
        })
        .with_ignored_flag(external),
        libtest_mimic::Trial::test(
            "a_builder_killed_mid_build_leaves_nothing_usable_and_the_next_build_succeeds",
            || run_async(a_builder_killed_mid_build_leaves_nothing_usable_and_the_next_build_succeeds),
        ),
        libtest_mimic::Trial::test("gc_reaps_exactly_a_killed_process_schemas_while_a_live_run_keeps_its_own", || {
            run_async(gc_reaps_exactly_a_killed_process_schemas_while_a_live_run_keeps_its_own)
        }),
        libtest_mimic::Trial::test("reuse_keeps_the_server_and_its_templates_between_runs", || {
            run(reuse_keeps_the_server_and_its_templates_between_runs)
        })
        .with_ignored_flag(external),
        libtest_mimic::Trial::test("a_refused_build_is_refused_again_on_a_fresh_server_of_the_same_home", || {
            run(a_refused_build_is_refused_again_on_a_fresh_server_of_the_same_home)
        })
        .with_ignored_flag(external),
        libtest_mimic::Trial::test("a_cargo_test_process_leaves_nothing_on_the_server", || {
            run_async(a_cargo_test_process_leaves_nothing_on_the_server)
        }),
        libtest_mimic::Trial::test("cargo_test_glue_keeps_a_failed_tests_schema_when_asked", || {
            run_async(cargo_test_glue_keeps_a_failed_tests_schema_when_asked)
        }),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

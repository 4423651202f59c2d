//! The `pgisolate` binary: run, url, ls, gc, and its errors.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn pgisolate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgisolate"));
    cmd.args(args).env_remove("PGISOLATE_DATABASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_exports_the_url_and_passes_the_exit_status_through() {
    let script = r#"psql "$PGISOLATE_DATABASE_URL" -XAtqc "select 'reached ' || current_database()" && test -n "$PGISOLATE_RUN_ID""#;
    let out = pgisolate(&["run", "--", "sh", "-c", script], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("reached postgres"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("pgisolate run:"), "summary missing: {}", text(&out.stderr));

    let out = pgisolate(&["run", "--", "sh", "-c", "exit 3"], &[]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn url_ls_and_gc_work_inside_a_run() {
    let me = env!("CARGO_BIN_EXE_pgisolate");
    let script = format!(
        r#"set -e; u=$("{me}" url); case "$u" in postgres://*) ;; *) exit 9;; esac; "{me}" ls; "{me}" gc --grace 0"#
    );
    let out = pgisolate(&["run", "--", "sh", "-c", &script], &[]);
    assert!(out.status.success(), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("gc: "), "{stdout}");
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let out = pgisolate(&["ls"], &[("PGISOLATE_HASH_LEN", "99")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("PGISOLATE_HASH_LEN"), "{}", text(&out.stderr));

    let out = pgisolate(&["ls"], &[("PGISOLATE_KEEP", "sometimes")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("never, failed, always"), "{}", text(&out.stderr));

    let out = pgisolate(&["ls"], &[("PGISOLATE_DATABASE_URL", "mysql://x/y")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("postgres://"), "{}", text(&out.stderr));
}

#[test]
fn a_dead_server_fails_fast_with_advice() {
    let t = Instant::now();
    let out = pgisolate(&["gc"], &[("PGISOLATE_DATABASE_URL", "postgres://u:secret@127.0.0.1:1/db")]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("cannot connect") && err.contains("PGISOLATE_DATABASE_URL"), "{err}");
    assert!(!err.contains("secret"), "password leaked into the message: {err}");
    assert!(t.elapsed() < Duration::from_secs(15));
}

#[test]
fn missing_binaries_are_a_clear_error() {
    let home = std::env::temp_dir().join(format!("pgisolate-nobin-{}", std::process::id()));
    let out =
        pgisolate(&["demo"], &[("PGISOLATE_HOME", home.to_str().unwrap()), ("PGISOLATE_PG_BIN", "/nonexistent/bin")]);
    let _ = std::fs::remove_dir_all(&home);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("PGISOLATE_PG_BIN") && err.contains("initdb"), "{err}");
}

#[test]
fn templates_lists_what_was_built_and_prune_keeps_recent_ones() {
    let me = env!("CARGO_BIN_EXE_pgisolate");
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/migrations");
    let script = format!(
        r#"set -e; "{me}" demo --scenarios 1 --migrations "{m}" >/dev/null; "{me}" templates; "{me}" templates prune --max-age 1d; if "{me}" templates frobnicate 2>/dev/null; then exit 9; fi"#,
        m = migrations.display()
    );
    let out = pgisolate(&["run", "--", "sh", "-c", &script], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", text(&out.stderr));
    let canonical = std::fs::canonicalize(&migrations).unwrap();
    // The server may hold other templates (a reused one, the benchmark's).
    let row = stdout
        .lines()
        .find(|l| l.starts_with("tpl_") && l.contains(&canonical.display().to_string()))
        .unwrap_or_else(|| panic!("the example's template is not listed: {stdout}"));
    assert!(row.contains("current"), "{row}");
    assert!(stdout.contains("templates prune: 0 dropped"), "{stdout}");
}

/// PGISOLATE_DATABASE_URL listing two servers: workers 0–3 spread over them (0 and 2 on the
/// first, 1 and 3 on the second), one template build on each, and `ls` and `gc` cover both.
#[test]
fn several_servers_spread_the_workers_and_ls_and_gc_cover_them_all() {
    let base = std::env::temp_dir().join(format!("pgisolate-cli-servers-{}", std::process::id()));
    let servers: Vec<pgisolate::server::PrivateServer> =
        (0..2).map(|i| pgisolate::server::start_private(&base.join(i.to_string()), &[]).unwrap()).collect();
    let list = format!("{} {}", servers[0].url, servers[1].url);
    let port = |u: &str| u.split(':').nth(2).and_then(|p| p.split('/').next()).unwrap().to_owned();
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/migrations");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (engines, names) = rt.block_on(async {
        let (mut engines, mut names) = (Vec::new(), Vec::new());
        for w in 0..4 {
            let mut cfg = pgisolate::Config::from_env().unwrap();
            cfg.url = Some(list.clone());
            cfg.worker = Some(format!("gw{w}"));
            cfg.gc_on_start = false;
            let e = pgisolate::Engine::start(cfg).await.unwrap();
            assert_eq!(port(e.url()), port(&servers[w % 2].url), "worker gw{w} is on the wrong server");
            let tpl = e.template(pgisolate::Migrations::dir(&migrations)).await.unwrap();
            let s = e.acquire(&tpl, pgisolate::Identity::new("servers", format!("w{w}"))).await.unwrap();
            names.push(s.name().to_owned());
            std::mem::forget(s); // left for gc
            engines.push(e);
        }
        (engines, names)
    });
    let out = pgisolate(&["ls"], &[("PGISOLATE_DATABASE_URL", &list)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.matches("server postgres://").count(), 2, "{stdout}");
    for n in &names {
        assert!(stdout.contains(n.as_str()), "ls lacks {n}: {stdout}");
    }
    rt.block_on(async {
        for e in &engines {
            e.close().await.unwrap();
        }
        for s in &servers {
            let (c, conn) = tokio_postgres::connect(&s.url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let n: i64 = c.query_one("select count(*) from pgisolate.templates", &[]).await.unwrap().get(0);
            assert_eq!(n, 1, "templates built on {}", s.url);
        }
    });
    let out = pgisolate(&["gc", "--grace", "0"], &[("PGISOLATE_DATABASE_URL", &list)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for n in &names {
        assert!(stdout.contains(&format!("dropped {n}")), "gc did not drop {n}: {stdout}");
    }
    let out = pgisolate(&["ls"], &[("PGISOLATE_DATABASE_URL", &list)]);
    assert_eq!(text(&out.stdout).matches("no live schemas").count(), 2, "{}", text(&out.stdout));
    // `pgisolate run` hands the command the whole list: each of its workers picks a server.
    let out =
        pgisolate(&["run", "--", "sh", "-c", "echo \"$PGISOLATE_DATABASE_URL\""], &[("PGISOLATE_DATABASE_URL", &list)]);
    let seen = text(&out.stdout);
    assert!(out.status.success(), "{seen}{}", text(&out.stderr));
    for s in &servers {
        assert!(seen.contains(&port(&s.url)), "run exported {seen:?}, not both servers");
    }
    drop(servers);
    let _ = std::fs::remove_dir_all(&base);
}

/// The main job in database isolation, on the audit migration set that schema isolation refuses:
/// every scenario lands in its own database and nothing is left.
#[test]
fn the_demo_runs_in_database_isolation() {
    // The audit set with the demo's users table (email, name).
    let dir = std::env::temp_dir().join(format!("pgisolate-cli-dbdemo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("001_audit.sql"),
        "create schema audit; create table audit.events (id bigserial primary key, what text not null); \
         create table public.settings (k text primary key, v text);",
    )
    .unwrap();
    std::fs::write(
        dir.join("002_users.sql"),
        "create table users (id bigserial primary key, email text unique not null, name text); \
         create function audit.log_user() returns trigger language plpgsql as $$ \
         begin insert into audit.events (what) values ('user ' || new.email); return new; end $$; \
         create trigger users_audit after insert on users for each row execute function audit.log_user();",
    )
    .unwrap();
    let audit = dir.display().to_string();
    let me = env!("CARGO_BIN_EXE_pgisolate");
    let script = format!(
        r#""{me}" demo --migrations "{audit}" 2>&1; echo "demo=$?"; \
           psql "$PGISOLATE_DATABASE_URL" -XAtqc "select 'left=' || count(*) from pg_database where datname ~ '^(test_|tpl_build_)'""#
    );
    let out = pgisolate(&["run", "--", "sh", "-c", &script], &[("PGISOLATE_ISOLATION", "database")]);
    let stdout = text(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", text(&out.stderr));
    assert!(stdout.contains("demo=0") && stdout.contains("leftover schemas: 0"), "{stdout}");
    assert!(stdout.contains("left=0"), "the demo left databases behind: {stdout}");
}

#[test]
fn a_failed_demo_leaves_nothing_on_the_server() {
    let me = env!("CARGO_BIN_EXE_pgisolate");
    let base = std::env::temp_dir().join(format!("pgisolate-cli-demo-{}", std::process::id()));
    let (outside, failing) = (base.join("outside"), base.join("failing"));
    for d in [&outside, &failing] {
        std::fs::create_dir_all(d).unwrap();
    }
    // A build that reaches outside its schema (refused), and one whose scenarios fail.
    std::fs::write(
        outside.join("001.sql"),
        "create schema audit_cli; create table audit_cli.events (id int); create table users (id int);",
    )
    .unwrap();
    std::fs::write(
        failing.join("001.sql"),
        "create table users (id serial primary key, email text check (email <> 'alice@example.com'), name text);",
    )
    .unwrap();
    let script = format!(
        r#""{me}" demo --migrations "{o}" 2>&1; echo "outside=$?"; "{me}" demo --migrations "{f}" 2>&1; echo "failing=$?"; \
           psql "$PGISOLATE_DATABASE_URL" -XAtqc "select 'left=' || count(*) from pg_namespace \
           where nspname ~ '^(test_|pgi_|tpl_build_|audit_cli)'""#,
        o = outside.display(),
        f = failing.display()
    );
    let out = pgisolate(&["run", "--", "sh", "-c", &script], &[]);
    let stdout = text(&out.stdout);
    let _ = std::fs::remove_dir_all(&base);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", text(&out.stderr));
    assert!(stdout.contains("outside=1") && stdout.contains("failing=1"), "both demos must fail: {stdout}");
    assert!(stdout.contains("schema audit_cli: created by the build; dropped"), "{stdout}");
    assert!(stdout.contains("users_email_check"), "the scenario's failure says what the server said: {stdout}");
    assert!(stdout.contains("left=0"), "a failed demo left schemas behind: {stdout}");
}

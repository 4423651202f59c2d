//! The shared server of a run: found or started under the start-up lock, recorded in
//! `server.env`, and its keeper.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cluster::{init_cluster, rotate_log, start_cluster};
use super::process::{accepts_tcp, as_user, chown, flock_exclusive, free_port, pid_alive, run_as, RunAs};
use super::{find_binaries, home, Binaries, Server, StartLock, LEASE_APP, SETTINGS, SUPERUSER};
use crate::error::{Error, Result};

/// State recorded in `server.env`.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) port: u16,
    pub(super) keeper_pid: i32,
}

pub(super) fn read_state(home: &Path) -> Option<State> {
    let text = fs::read_to_string(home.join("server.env")).ok()?;
    let mut st = State::default();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("port", v)) => st.port = v.parse().ok()?,
            Some(("keeper_pid", v)) => st.keeper_pid = v.parse().ok()?,
            _ => {}
        }
    }
    (st.port != 0).then_some(st)
}

pub(super) fn postmaster_pid(data: &Path) -> Option<i32> {
    fs::read_to_string(data.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

pub(super) fn url_for(port: u16) -> String {
    // The embedded server has no TLS; saying so lets drivers that default to requiring it
    // (lib/pq) connect.
    format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres?sslmode=disable")
}
/// Starts the shared embedded server, or finds the one already running. Blocking. The returned
/// [`StartLock`] must be held until the caller's lease connection is open.
pub(crate) fn ensure(explicit_bin: Option<&Path>, progress: &dyn Fn(&str)) -> Result<(Server, StartLock)> {
    let home = home();
    let who = run_as()?;
    fs::create_dir_all(&home).map_err(|e| Error::io(format!("create {}", home.display()), e))?;
    let _ = fs::set_permissions(&home, fs::Permissions::from_mode(0o755));
    chown(&home, who)?;
    let lock = flock_exclusive(&home.join("server.lock"))?;
    let data = home.join("data");
    if let Some(st) = read_state(&home) {
        let pm = postmaster_pid(&data);
        if pm.is_some_and(pid_alive) && accepts_tcp(st.port) {
            if !pid_alive(st.keeper_pid) {
                let bins = find_binaries(explicit_bin)?;
                let keeper_pid = spawn_keeper(&home, &bins, st.port, who)?;
                write_state(&home, st.port, keeper_pid)?;
            }
            let server = Server { url: url_for(st.port), port: st.port, dir: home.clone(), started: false };
            return Ok((server, StartLock { _file: lock }));
        }
    }
    // Nothing usable: clear what a dead server left and start a new one.
    if let Some(pid) = postmaster_pid(&data).filter(|p| pid_alive(*p)) {
        // SAFETY: plain signal delivery to a process we verified exists.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = fs::remove_file(home.join("server.env"));
    let _ = fs::remove_dir_all(&data);
    let _ = fs::remove_dir_all(home.join("sock"));
    rotate_log(&home.join("server.log"), 16 << 20);
    let bins = find_binaries(explicit_bin)?;
    progress("initializing PostgreSQL (initdb)");
    init_cluster(&bins, &home, who)?;
    progress("starting PostgreSQL");
    let mut last_err = None;
    for _ in 0..5 {
        let port = free_port()?;
        match start_cluster(&bins, &home, who, port, SETTINGS) {
            Ok(()) => {
                let keeper_pid = spawn_keeper(&home, &bins, port, who)?;
                write_state(&home, port, keeper_pid)?;
                let server = Server { url: url_for(port), port, dir: home.clone(), started: true };
                return Ok((server, StartLock { _file: lock }));
            }
            Err(e) => last_err = Some(e),
        }
    }
    let log = fs::read_to_string(home.join("server.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(10).collect();
    Err(Error::Server(format!(
        "{}; server log {}:\n{}",
        last_err.map(|e| e.to_string()).unwrap_or_default(),
        home.join("server.log").display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )))
}
pub(super) fn write_state(home: &Path, port: u16, keeper_pid: i32) -> Result<()> {
    let tmp = home.join("server.env.tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    writeln!(f, "port={port}\nkeeper_pid={keeper_pid}\nurl={}", url_for(port))
        .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    let _ = f.set_permissions(fs::Permissions::from_mode(0o644));
    fs::rename(&tmp, home.join("server.env")).map_err(|e| Error::io("publish server.env", e))
}

/// The marker prefix of kept schemas (see `markers`): the keeper keeps the server up for them.
const KEPT_MARKER: &str = "pgisolate:v1:kept ";

/// The keeper: a detached shell loop that counts, once a second, lease connections and kept
/// schemas (a failed test's, to open after the run); after `idle_limit` seconds with neither
/// (3 unless a reuse mode raised it: [`keep_up_for`]), or if the server is gone, it takes the
/// start-up lock, checks again, stops the server and deletes its data.
pub(super) fn spawn_keeper(home: &Path, bins: &Binaries, port: u16, who: Option<RunAs>) -> Result<i32> {
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let psql = q(&bins.tool("psql"));
    let pg_ctl = q(&bins.tool("pg_ctl"));
    let sock = q(&home.join("sock"));
    let data = q(&home.join("data"));
    let homeq = q(home);
    let count = format!(
        "PGCONNECT_TIMEOUT=3 {psql} -h {sock} -p {port} -U {SUPERUSER} -d postgres -XAtqc \
         \"select (select count(*) from pg_stat_activity where application_name = '{LEASE_APP}') \
         + (select count(*) from pg_namespace where obj_description(oid, 'pg_namespace') like '{KEPT_MARKER}%')\" \
         2>/dev/null"
    );
    let script = format!(
        r#"echo $$ > {homeq}/keeper.pid
idle=0
downs=0
while sleep 1; do
  n=$({count}) || n=down
  if [ "$n" = down ]; then downs=$((downs+1)); else downs=0; fi
  if [ "$n" = 0 ] || [ "$n" = down ]; then idle=$((idle+1)); else idle=0; fi
  limit=$(cat {homeq}/idle_limit 2>/dev/null) || limit=3
  case "$limit" in ''|*[!0-9]*) limit=3;; esac
  if [ "$downs" -ge 3 ] || [ "$idle" -ge "$limit" ]; then
    exec 9<{homeq}/server.lock
    flock -x 9
    n=$({count}) || n=down
    if [ "$n" = 0 ] || [ "$n" = down ]; then
      {pg_ctl} -D {data} -m fast -w -t 20 stop >/dev/null 2>&1 || {pg_ctl} -D {data} -m immediate -w -t 10 stop >/dev/null 2>&1
      rm -f {homeq}/server.env {homeq}/keeper.pid {homeq}/idle_limit
      rm -rf {data} {sock}
      exit 0
    fi
    exec 9<&-
    idle=0
  fi
done"#
    );
    let mut cmd = Command::new("setsid");
    cmd.args(["-f", "sh", "-c", &script]);
    as_user(&mut cmd, home, who);
    let log = fs::File::create(home.join("keeper.log")).map_err(|e| Error::io("create keeper.log", e))?;
    chown(&home.join("keeper.log"), who)?;
    cmd.stdout(Stdio::null()).stderr(log);
    let _ = fs::remove_file(home.join("keeper.pid"));
    let status = cmd.status().map_err(|e| Error::io("start the server keeper (setsid)", e))?;
    if !status.success() {
        return Err(Error::Server(format!("could not start the server keeper: setsid exited with {status}")));
    }
    for _ in 0..100 {
        if let Some(pid) = fs::read_to_string(home.join("keeper.pid")).ok().and_then(|s| s.trim().parse().ok()) {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error::Server("the server keeper did not start (no keeper.pid after 2 s)".into()))
}

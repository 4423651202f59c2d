//! A server kept up between runs: `pgisolate server start`, `stop` and `status`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{accepts_tcp, chown, flock_exclusive, pid_alive, run_as, run_checked};
use super::shared::{ensure, postmaster_pid, read_state, url_for};
use super::{find_binaries, home};
use crate::error::{Error, Result};

/// Keeps the embedded server up for `idle` after its last user and its last kept schema are
/// gone (reuse between runs), if that is longer than what it keeps now. Read by the keeper
/// every second.
pub(crate) fn keep_up_for(idle: Duration) -> Result<()> {
    let home = home();
    let file = home.join("idle_limit");
    let now: u64 = fs::read_to_string(&file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(3);
    let want = idle.as_secs().max(3);
    if want > now {
        fs::write(&file, format!("{want}\n")).map_err(|e| Error::io(format!("write {}", file.display()), e))?;
        chown(&file, run_as()?)?;
    }
    Ok(())
}

/// What `pgisolate server status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    /// The running server's URL.
    pub url: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Seconds it stays up after its last user (3 unless reuse raised it).
    pub idle_limit: u64,
    /// The keeper's pid, when it runs.
    pub keeper_pid: Option<i32>,
}

/// The embedded server's status, if one is running (does not start one).
pub fn status() -> Option<Status> {
    let home = home();
    let st = read_state(&home)?;
    if !(postmaster_pid(&home.join("data")).is_some_and(pid_alive) && accepts_tcp(st.port)) {
        return None;
    }
    let idle_limit = fs::read_to_string(home.join("idle_limit")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(3);
    Some(Status {
        url: url_for(st.port),
        dir: home,
        idle_limit,
        keeper_pid: pid_alive(st.keeper_pid).then_some(st.keeper_pid),
    })
}

/// Starts the embedded server (or finds it running) and keeps it up for `idle` after its last
/// user: `pgisolate server start`. Returns its URL.
pub fn start_kept_up(explicit_bin: Option<&Path>, idle: Duration) -> Result<String> {
    let (server, _lock) = ensure(explicit_bin, &|_| {})?;
    keep_up_for(idle)?;
    Ok(server.url)
}

/// Stops the embedded server now, whoever uses it, and deletes its data: `pgisolate server
/// stop`. False when none was running.
pub fn stop() -> Result<bool> {
    let home = home();
    if !home.join("server.lock").exists() {
        return Ok(false);
    }
    let who = run_as()?;
    let _lock = flock_exclusive(&home.join("server.lock"))?;
    let st = read_state(&home);
    if let Some(pid) = st.as_ref().map(|s| s.keeper_pid).filter(|p| pid_alive(*p)) {
        // SAFETY: plain signal delivery to the keeper recorded for this server.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let data = home.join("data");
    let running = postmaster_pid(&data).is_some_and(pid_alive);
    if running {
        let bins = find_binaries(None)?;
        let mut stop = Command::new(bins.tool("pg_ctl"));
        stop.arg("-D").arg(&data).args(["-m", "fast", "-w", "-t", "20", "stop"]);
        if run_checked(stop, &home, who, "pg_ctl stop").is_err() {
            let mut stop = Command::new(bins.tool("pg_ctl"));
            stop.arg("-D").arg(&data).args(["-m", "immediate", "-w", "-t", "10", "stop"]);
            run_checked(stop, &home, who, "pg_ctl stop")?;
        }
    }
    for f in ["server.env", "keeper.pid", "idle_limit"] {
        let _ = fs::remove_file(home.join(f));
    }
    let _ = fs::remove_dir_all(&data);
    let _ = fs::remove_dir_all(home.join("sock"));
    Ok(running || st.is_some())
}

/// The URL of the embedded server if one is running now (does not start one).
pub fn running_url() -> Option<String> {
    let home = home();
    let st = read_state(&home)?;
    (postmaster_pid(&home.join("data")).is_some_and(pid_alive) && accepts_tcp(st.port)).then(|| url_for(st.port))
}

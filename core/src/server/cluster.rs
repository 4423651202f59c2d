//! A cluster in a directory: made from a pristine copy of initdb's output, started with the
//! engine's settings, restarted, its log rotated.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{chown, run_checked, RunAs};
use super::{home, Binaries, SUPERUSER};
use crate::error::{Error, Result};

/// What initdb is run with.
pub(super) const INITDB_ARGS: &[&str] = &["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", "-N"];

/// A fresh cluster in `<dir>/data` and a private socket directory `<dir>/sock`, as the
/// server's user: a copy of a pristine cluster initdb made once for these binaries and
/// arguments (kept in `<home>/pristine`; a copy takes a tenth of initdb's time).
pub(super) fn init_cluster(bins: &Binaries, dir: &Path, who: Option<RunAs>) -> Result<()> {
    let pristine = pristine_cluster(bins, &home(), who)?;
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(&pristine).arg(dir.join("data"));
    if run_checked(cp, dir, who, "copy the pristine cluster").is_err() {
        // A cache we cannot read (another user's, a full disk): initdb as before.
        let _ = fs::remove_dir_all(dir.join("data"));
        let mut initdb = Command::new(bins.tool("initdb"));
        initdb.arg("-D").arg(dir.join("data")).args(INITDB_ARGS);
        run_checked(initdb, dir, who, "initdb")?;
    }
    let sock = dir.join("sock");
    fs::create_dir_all(&sock).map_err(|e| Error::io(format!("create {}", sock.display()), e))?;
    let _ = fs::set_permissions(&sock, fs::Permissions::from_mode(0o700));
    chown(&sock, who)
}

/// The pristine cluster for these binaries (initdb's path, size and time) and [`INITDB_ARGS`]
/// under `home`, made now if missing. Concurrent makers each initdb into a directory of their
/// own and rename it into place; the loser's copy is discarded.
pub(super) fn pristine_cluster(bins: &Binaries, home: &Path, who: Option<RunAs>) -> Result<PathBuf> {
    let initdb = bins.tool("initdb");
    let real = fs::canonicalize(&initdb).unwrap_or_else(|_| initdb.clone());
    let meta = fs::metadata(&real).map_err(|e| Error::io(format!("read {}", real.display()), e))?;
    let stamp = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    let key = crate::naming::sha256_hex(
        format!("{}\0{}\0{}\0{}", real.display(), meta.len(), stamp.as_nanos(), INITDB_ARGS.join(" ")).as_bytes(),
    );
    let root = home.join("pristine");
    let target = root.join(&key[..16]);
    if target.join("PG_VERSION").is_file() {
        return Ok(target);
    }
    fs::create_dir_all(&root).map_err(|e| Error::io(format!("create {}", root.display()), e))?;
    let _ = fs::set_permissions(&root, fs::Permissions::from_mode(0o755));
    chown(home, who)?;
    chown(&root, who)?;
    let tmp = root.join(format!("{}.{}.{}", &key[..16], std::process::id(), crate::secret::random_hex(4)));
    let mut cmd = Command::new(&initdb);
    cmd.arg("-D").arg(&tmp).args(INITDB_ARGS);
    if let Err(e) = run_checked(cmd, &root, who, "initdb") {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if fs::rename(&tmp, &target).is_err() {
        // Another process made it first.
        let _ = fs::remove_dir_all(&tmp);
    }
    Ok(target)
}

/// Starts the cluster in `<dir>/data` on 127.0.0.1:`port` with `settings`, waiting until it
/// accepts connections; logs to `<dir>/server.log`.
pub(super) fn start_cluster(
    bins: &Binaries,
    dir: &Path,
    who: Option<RunAs>,
    port: u16,
    settings: &[(&str, &str)],
) -> Result<()> {
    let mut opts = format!("-c listen_addresses=127.0.0.1 -p {port} -k {}", dir.join("sock").display());
    let major = cluster_major(&dir.join("data"));
    for (k, v) in settings {
        // A setting this server does not know would stop it from starting.
        if major.is_some_and(|m| m < since_version(k)) {
            continue;
        }
        opts.push_str(&format!(" -c {k}={v}"));
    }
    run_checked(pg_ctl(bins, dir, &["-o", &opts, "start"]), dir, who, "pg_ctl start")?;
    // Before PostgreSQL 15 every role may create in `public`: a session whose schema is gone
    // would create its tables there (R16). The engine's servers start as 15 does.
    if major.is_some_and(|m| m < 15) {
        for db in ["template1", "postgres"] {
            let mut psql = Command::new(bins.tool("psql"));
            psql.arg("-h").arg(dir.join("sock")).args(["-p", &port.to_string(), "-U", SUPERUSER, "-d", db, "-XAtqc"]);
            psql.arg("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
            run_checked(psql, dir, who, "revoke CREATE on schema public from every role")?;
        }
    }
    Ok(())
}

/// Keeps one older log: a log past `max` bytes becomes `<log>.1` (replacing the one before),
/// so the home does not grow with every server started in it.
pub(super) fn rotate_log(log: &Path, max: u64) {
    if fs::metadata(log).is_ok_and(|m| m.len() > max) {
        let _ = fs::rename(log, log.with_extension("log.1"));
    }
}

/// The major version of the cluster in `data` (its `PG_VERSION`).
pub(super) fn cluster_major(data: &Path) -> Option<u32> {
    fs::read_to_string(data.join("PG_VERSION")).ok()?.trim().parse().ok()
}

/// The first major version that knows setting `key` (of those the engine sets).
pub(super) fn since_version(key: &str) -> u32 {
    match key {
        "client_connection_check_interval" => 14,
        _ => 0,
    }
}
/// `pg_ctl restart` of the cluster in `<dir>/data`: a fast shutdown (sessions are ended), then
/// a start with the options it ran with.
pub(super) fn restart_cluster(bins: &Binaries, dir: &Path, who: Option<RunAs>) -> Result<()> {
    run_checked(pg_ctl(bins, dir, &["-m", "fast", "restart"]), dir, who, "pg_ctl restart")
}

/// `pg_ctl` on the cluster in `<dir>/data`, logging to `<dir>/server.log`, waiting up to 60 s.
pub(super) fn pg_ctl(bins: &Binaries, dir: &Path, action: &[&str]) -> Command {
    let mut cmd = Command::new(bins.tool("pg_ctl"));
    cmd.arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-w", "-t", "60", "-s"])
        .args(action);
    cmd
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_past_its_limit_is_rotated_once() {
        let dir = std::env::temp_dir().join(format!("pgisolate-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("server.log");
        std::fs::write(&log, vec![b'x'; 10]).unwrap();
        super::rotate_log(&log, 100);
        assert!(log.exists(), "a small log stays");
        std::fs::write(&log, vec![b'x'; 200]).unwrap();
        super::rotate_log(&log, 100);
        assert!(!log.exists() && dir.join("server.log.1").exists(), "a big log moves to server.log.1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! A server of a test's own (the reliability suite): other settings, no keeper.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cluster::{init_cluster, restart_cluster, start_cluster};
use super::process::{chown, free_port, run_as, run_checked, RunAs};
use super::shared::url_for;
use super::{find_binaries, Binaries};
use crate::error::{Error, Result};

/// A server of its own for tests that need other settings (the reliability suite): initdb and
/// start in `dir` with `settings` (PostgreSQL defaults otherwise) on a free port, no keeper.
/// Stopped and deleted when dropped.
#[derive(Debug)]
pub struct PrivateServer {
    /// Superuser URL.
    pub url: String,
    /// Its directory.
    pub dir: PathBuf,
    bins: Binaries,
    who: Option<RunAs>,
}

/// Starts a [`PrivateServer`] in `dir` (created; must not hold one already). Blocking.
pub fn start_private(dir: &Path, settings: &[(&str, &str)]) -> Result<PrivateServer> {
    let who = run_as()?;
    let bins = find_binaries(std::env::var_os("PGISOLATE_PG_BIN").as_deref().map(Path::new))?;
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    chown(dir, who)?;
    init_cluster(&bins, dir, who)?;
    let port = free_port()?;
    let mut all = vec![("fsync", "off")];
    all.extend_from_slice(settings);
    start_cluster(&bins, dir, who, port, &all)?;
    Ok(PrivateServer { url: url_for(port), dir: dir.to_owned(), bins, who })
}

impl PrivateServer {
    /// Restarts it (a fast shutdown, then the same port and settings). Blocking.
    pub fn restart(&self) -> Result<()> {
        restart_cluster(&self.bins, &self.dir, self.who)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let mut stop = Command::new(self.bins.tool("pg_ctl"));
        stop.arg("-D").arg(self.dir.join("data")).args(["-m", "immediate", "-w", "-s", "stop"]);
        let _ = run_checked(stop, &self.dir, self.who, "pg_ctl stop");
        let _ = fs::remove_dir_all(&self.dir);
    }
}

//! The server's user (an unprivileged account when we are root), file locks, processes and
//! ports.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};

pub(super) fn writable_dir(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: access() reads a valid NUL-terminated path.
    p.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0
}

pub(super) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// PostgreSQL binaries found on this machine.
/// The unprivileged account the server runs as when we are root.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunAs {
    uid: u32,
    gid: u32,
}

pub(super) fn run_as() -> Result<Option<RunAs>> {
    if euid() != 0 {
        return Ok(None);
    }
    for name in [c"postgres", c"nobody"] {
        // SAFETY: getpwnam takes a valid NUL-terminated string; the returned record is only
        // read before any other call to the passwd functions.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: pw is non-null and points to a valid passwd record.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            if uid != 0 {
                return Ok(Some(RunAs { uid, gid }));
            }
        }
    }
    Err(Error::Server(
        "running as root, and neither a 'postgres' nor a 'nobody' account exists to run PostgreSQL as: \
         create one (useradd postgres) or run as an ordinary user"
            .into(),
    ))
}

pub(super) fn chown(path: &Path, who: Option<RunAs>) -> Result<()> {
    if let Some(RunAs { uid, gid }) = who {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
    }
    Ok(())
}

pub(super) fn flock_exclusive(path: &Path) -> Result<fs::File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let _ = f.set_permissions(fs::Permissions::from_mode(0o644));
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the fd is valid for the life of `f`.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(f);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io(format!("lock {}", path.display()), err));
        }
    }
}

pub(super) fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

pub(super) fn accepts_tcp(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok()
}

pub(super) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| Error::io("find a free port", e))?;
    Ok(l.local_addr().map_err(|e| Error::io("find a free port", e))?.port())
}

pub(super) fn as_user(cmd: &mut Command, home: &Path, who: Option<RunAs>) {
    cmd.current_dir(home).stdin(Stdio::null());
    if let Some(RunAs { uid, gid }) = who {
        // std drops root's supplementary groups (setgroups) before setuid.
        cmd.uid(uid).gid(gid).env_remove("HOME");
    }
}

pub(super) fn run_checked(mut cmd: Command, home: &Path, who: Option<RunAs>, what: &str) -> Result<()> {
    as_user(&mut cmd, home, who);
    let out = cmd.output().map_err(|e| Error::io(format!("run {what}"), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Server(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )))
}

//! The embedded, throwaway PostgreSQL server used when no URL is configured.
//!
//! One server per machine user (or per `PGISOLATE_HOME`) is shared by every process of a run:
//! a file lock serializes start-up, and `server.env` tells later processes where it is. The
//! server is tuned for tests and listens on 127.0.0.1 with a free port and a private socket
//! directory. A small keeper, detached from the process that started the server, stops the
//! server and deletes its data once no engine lease connection (application_name
//! `pgisolate-lease`) has been open for a few seconds, so the server goes away even when every
//! client was SIGKILLed. As root, initdb, postgres and the keeper run as an unprivileged user.
//!
//! - `binaries`: finding initdb, pg_ctl, postgres and the other tools;
//! - `process`: the server's user, file locks, processes and ports;
//! - `cluster`: initdb (from a pristine copy), start, restart, the log;
//! - `shared`: the shared server of a run and its keeper;
//! - `kept_up`: a server kept up between runs (`pgisolate server start/stop/status`);
//! - `private`: a server of a test's own, with other settings.

mod binaries;
mod cluster;
mod kept_up;
mod private;
mod process;
mod shared;

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Result;
use cluster::restart_cluster;
use process::{euid, run_as, writable_dir};

pub(crate) use binaries::tool_candidates;
pub use binaries::{find_binaries, find_binaries_in, Binaries};
pub(crate) use kept_up::keep_up_for;
pub use kept_up::{running_url, start_kept_up, status, stop, Status};
pub use private::{start_private, PrivateServer};
pub(crate) use shared::ensure;

/// application_name of lease connections; the keeper counts these.
pub(crate) const LEASE_APP: &str = "pgisolate-lease";
/// Superuser created by initdb.
const SUPERUSER: &str = "postgres";

/// Settings the embedded server runs with (checked by the reliability suite with `SHOW`).
pub const SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_locks_per_transaction", "1024"),
    ("max_connections", "300"),
    ("shared_buffers", "128MB"),
    ("idle_in_transaction_session_timeout", "60s"),
    ("client_connection_check_interval", "2s"),
    ("log_min_messages", "warning"),
    ("log_min_error_statement", "panic"),
    // Loaded once in the postmaster instead of in every backend that runs a PL/pgSQL function
    // (the write triggers, the app's own): 0.8 ms off each new connection's first write.
    ("shared_preload_libraries", "plpgsql"),
];

/// A running embedded server.
#[derive(Debug, Clone)]
pub struct Server {
    /// Superuser URL over TCP on 127.0.0.1.
    pub url: String,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The server's directory (data, socket, log).
    pub dir: PathBuf,
    /// Whether this call started it.
    pub started: bool,
}

impl Server {
    /// Restarts the embedded server (a fast shutdown, then the same port and settings): what
    /// its users see of a crash or an upgrade. Blocking. Its keeper stops a server that stays
    /// down for 3 s, so engines must re-take their leases within that.
    pub fn restart(&self) -> Result<()> {
        let bins = find_binaries(std::env::var_os("PGISOLATE_PG_BIN").as_deref().map(Path::new))?;
        restart_cluster(&bins, &self.dir, run_as()?)
    }
}

/// Holds the start-up lock; drop it once the caller's lease connection is open, so the keeper
/// cannot stop the server between "it is running" and "someone uses it".
#[derive(Debug)]
pub(crate) struct StartLock {
    _file: fs::File,
}

/// Directory holding the server lock, data and socket: `PGISOLATE_HOME`, else
/// `/dev/shm/pgisolate-<euid>` when `/dev/shm` is a writable memory file system (DDL creates
/// files, and on disk each file creation can cost a millisecond), else
/// `$TMPDIR/pgisolate-<euid>`.
pub(crate) fn home() -> PathBuf {
    match std::env::var_os("PGISOLATE_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => {
            let name = format!("pgisolate-{}", euid());
            let shm = Path::new("/dev/shm");
            if writable_dir(shm) {
                shm.join(name)
            } else {
                std::env::temp_dir().join(name)
            }
        }
    }
}

//! The embedded, throwaway PostgreSQL server used when no URL is configured.
//!
//! One server per machine user (or per `PGISOLATE_HOME`) is shared by every process of a run:
//! a file lock serializes start-up, and `server.env` tells later processes where it is. The
//! server is tuned for tests and listens on 127.0.0.1 with a free port and a private socket
//! directory. A small keeper, detached from the process that started the server, stops the
//! server and deletes its data once no engine lease connection (application_name
//! `pgisolate-lease`) has been open for a few seconds, so the server goes away even when every
//! client was SIGKILLed. As root, initdb, postgres and the keeper run as an unprivileged user.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};

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

fn writable_dir(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: access() reads a valid NUL-terminated path.
    p.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// PostgreSQL binaries found on this machine.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// Directory holding initdb, pg_ctl, postgres, psql.
    pub dir: PathBuf,
}

impl Binaries {
    /// Path of one tool: in the binaries directory, else (a server-only distribution, such as
    /// the zonky binaries, has no psql) the first found on `PATH` or where packages install
    /// PostgreSQL.
    pub fn tool(&self, name: &str) -> PathBuf {
        let own = self.dir.join(name);
        if own.is_file() {
            return own;
        }
        tool_candidates(name).into_iter().next().unwrap_or(own)
    }
}

/// Every `name` executable on `PATH`, then in the system's PostgreSQL directories (newest
/// version first).
pub(crate) fn tool_candidates(name: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    let mut versioned: Vec<(u32, PathBuf)> = system_bin_dirs(Path::new("/"))
        .into_iter()
        .map(|(v, d)| (v, d.join(name)))
        .filter(|(_, p)| p.is_file())
        .collect();
    versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
    out.extend(versioned.into_iter().map(|(_, p)| p));
    out
}

/// The versioned PostgreSQL bin directories under `root` ([`SYSTEM_LAYOUTS`]), with their
/// major versions, in no particular order.
fn system_bin_dirs(root: &Path) -> Vec<(u32, PathBuf)> {
    let mut dirs = Vec::new();
    for (parent, prefix, sub) in SYSTEM_LAYOUTS {
        for e in fs::read_dir(root.join(parent)).into_iter().flatten().flatten() {
            let entry = e.file_name().to_string_lossy().into_owned();
            let Some(v) = entry.strip_prefix(prefix).and_then(|v| v.parse::<u32>().ok()) else { continue };
            dirs.push((v, if sub.is_empty() { e.path() } else { e.path().join(sub) }));
        }
    }
    dirs
}

/// Where packages put PostgreSQL's server binaries, outside `PATH`: (directory, prefix of the
/// versioned entry, subdirectory). The newest version found wins.
const SYSTEM_LAYOUTS: &[(&str, &str, &str)] = &[
    ("usr/lib/postgresql", "", "bin"), // Debian, Ubuntu: /usr/lib/postgresql/16/bin
    ("usr", "pgsql-", "bin"),          // PGDG RPMs (Fedora, RHEL): /usr/pgsql-16/bin
    ("usr/libexec", "postgresql", ""), // Alpine: /usr/libexec/postgresql16
    ("opt/homebrew/opt", "postgresql@", "bin"), // Homebrew on Apple silicon
    ("usr/local/opt", "postgresql@", "bin"), // Homebrew on Intel
];

/// What to do when no binaries are found, for every common platform.
const INSTALL_ADVICE: &str = "install PostgreSQL's server package (Debian/Ubuntu: apt-get install postgresql; \
     Fedora/RHEL: dnf install postgresql-server; Alpine: apk add postgresql; macOS: brew install postgresql@17), \
     set PGISOLATE_PG_BIN to the directory holding initdb, pg_ctl and postgres, or set PGISOLATE_DATABASE_URL to \
     a server you run (for example docker run -d -p 5432:5432 -e POSTGRES_PASSWORD=pw postgres:17, then \
     PGISOLATE_DATABASE_URL=postgres://postgres:pw@127.0.0.1:5432/postgres)";

/// Finds initdb/pg_ctl/postgres: `PGISOLATE_PG_BIN`, then `PATH`, then the newest version in
/// the places packages install them ([`SYSTEM_LAYOUTS`]).
pub fn find_binaries(explicit: Option<&Path>) -> Result<Binaries> {
    find_binaries_in(explicit, std::env::var_os("PATH").as_deref(), Path::new("/"))
}

fn has_binaries(d: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"].iter().all(|t| d.join(t).is_file())
}

/// [`find_binaries`] with the `PATH` and the file system root given (tests use a fake tree).
pub fn find_binaries_in(explicit: Option<&Path>, path: Option<&std::ffi::OsStr>, root: &Path) -> Result<Binaries> {
    if let Some(d) = explicit {
        if has_binaries(d) {
            return Ok(Binaries { dir: d.to_owned() });
        }
        return Err(Error::BinariesNotFound(format!(
            "PGISOLATE_PG_BIN={} does not contain initdb, pg_ctl and postgres: point it at PostgreSQL's bin directory",
            d.display()
        )));
    }
    for d in path.map(std::env::split_paths).into_iter().flatten() {
        let initdb = d.join("initdb");
        if initdb.is_file() {
            let real = fs::canonicalize(&initdb).unwrap_or(initdb);
            if let Some(dir) = real.parent() {
                if has_binaries(dir) {
                    return Ok(Binaries { dir: dir.to_owned() });
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> =
        system_bin_dirs(root).into_iter().filter(|(_, bin)| has_binaries(bin)).collect();
    versions.sort();
    match versions.pop() {
        Some((_, dir)) => Ok(Binaries { dir }),
        None => Err(Error::BinariesNotFound(format!(
            "the embedded server needs PostgreSQL's binaries (initdb, pg_ctl, postgres), and none were found on PATH \
             or in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, /usr/libexec/postgresql*, Homebrew's opt/postgresql@*: \
             {INSTALL_ADVICE}"
        ))),
    }
}

/// The unprivileged account the server runs as when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

fn run_as() -> Result<Option<RunAs>> {
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

fn chown(path: &Path, who: Option<RunAs>) -> Result<()> {
    if let Some(RunAs { uid, gid }) = who {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
    }
    Ok(())
}

fn flock_exclusive(path: &Path) -> Result<fs::File> {
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

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// State recorded in `server.env`.
#[derive(Debug, Default)]
struct State {
    port: u16,
    keeper_pid: i32,
}

fn read_state(home: &Path) -> Option<State> {
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

fn postmaster_pid(data: &Path) -> Option<i32> {
    fs::read_to_string(data.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

fn url_for(port: u16) -> String {
    // The embedded server has no TLS; saying so lets drivers that default to requiring it
    // (lib/pq) connect.
    format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres?sslmode=disable")
}

fn accepts_tcp(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok()
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

/// What initdb is run with.
const INITDB_ARGS: &[&str] = &["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", "-N"];

/// A fresh cluster in `<dir>/data` and a private socket directory `<dir>/sock`, as the
/// server's user: a copy of a pristine cluster initdb made once for these binaries and
/// arguments (kept in `<home>/pristine`; a copy takes a tenth of initdb's time).
fn init_cluster(bins: &Binaries, dir: &Path, who: Option<RunAs>) -> Result<()> {
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
fn pristine_cluster(bins: &Binaries, home: &Path, who: Option<RunAs>) -> Result<PathBuf> {
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
fn start_cluster(bins: &Binaries, dir: &Path, who: Option<RunAs>, port: u16, settings: &[(&str, &str)]) -> Result<()> {
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
fn rotate_log(log: &Path, max: u64) {
    if fs::metadata(log).is_ok_and(|m| m.len() > max) {
        let _ = fs::rename(log, log.with_extension("log.1"));
    }
}

/// The major version of the cluster in `data` (its `PG_VERSION`).
fn cluster_major(data: &Path) -> Option<u32> {
    fs::read_to_string(data.join("PG_VERSION")).ok()?.trim().parse().ok()
}

/// The first major version that knows setting `key` (of those the engine sets).
fn since_version(key: &str) -> u32 {
    match key {
        "client_connection_check_interval" => 14,
        _ => 0,
    }
}

fn write_state(home: &Path, port: u16, keeper_pid: i32) -> Result<()> {
    let tmp = home.join("server.env.tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    writeln!(f, "port={port}\nkeeper_pid={keeper_pid}\nurl={}", url_for(port))
        .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    let _ = f.set_permissions(fs::Permissions::from_mode(0o644));
    fs::rename(&tmp, home.join("server.env")).map_err(|e| Error::io("publish server.env", e))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| Error::io("find a free port", e))?;
    Ok(l.local_addr().map_err(|e| Error::io("find a free port", e))?.port())
}

fn as_user(cmd: &mut Command, home: &Path, who: Option<RunAs>) {
    cmd.current_dir(home).stdin(Stdio::null());
    if let Some(RunAs { uid, gid }) = who {
        // std drops root's supplementary groups (setgroups) before setuid.
        cmd.uid(uid).gid(gid).env_remove("HOME");
    }
}

fn run_checked(mut cmd: Command, home: &Path, who: Option<RunAs>, what: &str) -> Result<()> {
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

/// The keeper: a detached shell loop that counts, once a second, lease connections and kept
/// schemas (a failed test's, to open after the run); after `idle_limit` seconds with neither
/// (3 unless a reuse mode raised it: [`keep_up_for`]), or if the server is gone, it takes the
/// start-up lock, checks again, stops the server and deletes its data.
fn spawn_keeper(home: &Path, bins: &Binaries, port: u16, who: Option<RunAs>) -> Result<i32> {
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

/// The marker prefix of kept schemas (see `markers`): the keeper keeps the server up for them.
const KEPT_MARKER: &str = "pgisolate:v1:kept ";

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

/// `pg_ctl restart` of the cluster in `<dir>/data`: a fast shutdown (sessions are ended), then
/// a start with the options it ran with.
fn restart_cluster(bins: &Binaries, dir: &Path, who: Option<RunAs>) -> Result<()> {
    run_checked(pg_ctl(bins, dir, &["-m", "fast", "restart"]), dir, who, "pg_ctl restart")
}

/// `pg_ctl` on the cluster in `<dir>/data`, logging to `<dir>/server.log`, waiting up to 60 s.
fn pg_ctl(bins: &Binaries, dir: &Path, action: &[&str]) -> Command {
    let mut cmd = Command::new(bins.tool("pg_ctl"));
    cmd.arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-w", "-t", "60", "-s"])
        .args(action);
    cmd
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let mut stop = Command::new(self.bins.tool("pg_ctl"));
        stop.arg("-D").arg(self.dir.join("data")).args(["-m", "immediate", "-w", "-s", "stop"]);
        let _ = run_checked(stop, &self.dir, self.who, "pg_ctl stop");
        let _ = fs::remove_dir_all(&self.dir);
    }
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

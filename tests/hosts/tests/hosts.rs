//! The hosts suite: engines on two simulated hosts against one server, joined by real links.
//!
//! Three network namespaces (the server, host A, host B) joined by veth pairs whose
//! addresses exist only inside them; 4 engine processes per host (`pgisolate-host-worker`).
//! Cases, one after another on one server:
//!
//! - `parallel`: 8 engines on 2 hosts run tests at once: 0 collisions, every test isolated,
//!   one template build for the server, nothing left;
//! - `sigkill`: host A's engines are SIGKILLed holding schemas: host B's gc leaves them alone
//!   within the grace period, then fences A's owners and reaps every schema of theirs, never
//!   one of B's live ones;
//! - `partition`: host A's link goes down for longer than the grace period while its tests
//!   hold schemas: A's engines notice, B's gc fences and reaps them; when the link is back,
//!   A's held tests fail at release with the reason, nothing of the fenced owners is written
//!   or made again, and A's next tests pass.
//!
//! Needs root and `ip netns` (run by `make test` in CI, as root); without them each case is
//! reported as ignored, with why. Namespaces, links, the server and its data are removed at the
//! end, also when a case fails or panics (and stale ones of a killed run at the next start).
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WORKER: &str = env!("CARGO_BIN_EXE_pgisolate-host-worker");
const GRACE_MS: u64 = 3000;

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The namespaces and links; removed when dropped.
struct Net {
    prefix: String,
}

impl Net {
    fn ns(&self, which: char) -> String {
        format!("{}{which}", self.prefix)
    }

    /// The server's namespace `s`, hosts `a` and `b`; A reaches the server at 10.201.1.1, B at
    /// 10.201.2.1.
    fn up() -> Result<Net, String> {
        reap_stale();
        let net = Net { prefix: format!("pgih{}", std::process::id()) };
        let (s, p) = (net.ns('s'), &net.prefix);
        for h in ['s', 'a', 'b'] {
            ip(&["netns", "add", &net.ns(h)])?;
            ip(&["-n", &net.ns(h), "link", "set", "lo", "up"])?;
        }
        for (h, subnet) in [('a', 1), ('b', 2)] {
            let (srv_end, host_end) = (format!("{p}s{h}"), format!("{p}{h}s"));
            let host = net.ns(h);
            ip(&["link", "add", &srv_end, "netns", &s, "type", "veth", "peer", "name", &host_end, "netns", &host])?;
            ip(&["-n", &s, "addr", "add", &format!("10.201.{subnet}.1/30"), "dev", &srv_end])?;
            ip(&["-n", &host, "addr", "add", &format!("10.201.{subnet}.2/30"), "dev", &host_end])?;
            ip(&["-n", &s, "link", "set", &srv_end, "up"])?;
            ip(&["-n", &host, "link", "set", &host_end, "up"])?;
        }
        Ok(net)
    }

    /// Host `h`'s link to the server, up or down (on the host's side: its packets go nowhere,
    /// and the server hears nothing from it).
    fn link(&self, h: char, up: bool) -> Result<(), String> {
        let dev = format!("{}{h}s", self.prefix);
        ip(&["-n", &self.ns(h), "link", "set", &dev, if up { "up" } else { "down" }]).map(|_| ())
    }

    fn exec(&self, h: char, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(h), WORKER]).args(args);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in ['s', 'a', 'b'] {
            remove_ns(&self.ns(h));
        }
    }
}

/// Kills what runs in namespace `ns` and deletes it (its veth ends go with it).
fn remove_ns(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            // SAFETY: plain signal delivery to a process inside our own namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = ip(&["netns", "del", ns]);
}

/// Namespaces of an earlier run that was killed before it could clean up.
fn reap_stale() {
    let Ok(list) = ip(&["netns", "list"]) else { return };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("pgih") else { continue };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists() && pid != "0";
        if !pid.is_empty() && (!alive || pid == std::process::id().to_string()) {
            remove_ns(name);
        }
    }
}

/// Lines a worker printed: (unix ms, fields).
type Lines = Arc<Mutex<Vec<(u128, Vec<String>)>>>;

struct Worker {
    child: Child,
    lines: Lines,
    tag: String,
}

impl Worker {
    fn spawn(mut cmd: Command, tag: &str) -> Result<Worker, String> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawn {tag}: {e}"))?;
        let out = child.stdout.take().unwrap();
        let lines: Lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut f = line.split('\t').map(str::to_owned);
                let t = f.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                l.lock().unwrap().push((t, f.collect()));
            }
        });
        Ok(Worker { child, lines, tag: tag.to_owned() })
    }

    /// Waits until a line of `kind` arrives; its time and fields.
    fn wait_for(&self, kind: &str, timeout: Duration) -> Result<(u128, Vec<String>), String> {
        let t = Instant::now();
        loop {
            if let Some(l) =
                self.lines.lock().unwrap().iter().find(|(_, f)| f.first().map(String::as_str) == Some(kind))
            {
                return Ok(l.clone());
            }
            if let Some(fatal) = self.of("fatal").first() {
                return Err(format!("{}: {}", self.tag, fatal.1.join(" ")));
            }
            if t.elapsed() >= timeout {
                return Err(format!(
                    "{}: no {kind:?} line within {timeout:?}; it printed {:?}",
                    self.tag,
                    self.lines.lock().unwrap()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn of(&self, kind: &str) -> Vec<(u128, Vec<String>)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, f)| f.first().map(String::as_str) == Some(kind))
            .cloned()
            .collect()
    }

    fn finish(&mut self, timeout: Duration) -> Result<(), String> {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().map_err(|e| e.to_string())? {
                std::thread::sleep(Duration::from_millis(50)); // the reader thread drains
                return if st.success() { Ok(()) } else { Err(format!("{} exited with {st}", self.tag)) };
            }
            if t.elapsed() > timeout {
                let _ = self.child.kill();
                return Err(format!("{} still running after {timeout:?}", self.tag));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The server, in namespace `s`; stopped (and its data deleted) when dropped.
struct Server {
    worker: Worker,
    url: String,
    dir: std::path::PathBuf,
}

impl Server {
    fn start(net: &Net) -> Result<Server, String> {
        let dir = std::env::temp_dir().join(format!("pgisolate-hosts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.display().to_string();
        let worker = Worker::spawn(net.exec('s', &["serve", &d, "127.0.0.1,10.201.1.1,10.201.2.1"]), "server")?;
        let (_, f) = worker.wait_for("url", Duration::from_secs(90))?;
        Ok(Server { worker, url: f[1].clone(), dir })
    }

    /// The URL from host `h` (or from inside the server's namespace, `s`).
    fn url(&self, h: char) -> String {
        let host = match h {
            'a' => "10.201.1.1",
            'b' => "10.201.2.1",
            _ => "127.0.0.1",
        };
        self.url.replace("{host}", host)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.worker.child.stdin.take()); // it stops the server when its input closes
        let _ = self.worker.finish(Duration::from_secs(30));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `sql` in the server's namespace; the first column of each row.
fn query(net: &Net, srv: &Server, sql: &str) -> Result<Vec<String>, String> {
    let mut w = Worker::spawn(net.exec('s', &["query", &srv.url('s'), sql]), "query")?;
    w.finish(Duration::from_secs(30))?;
    Ok(w.of("row").into_iter().map(|(_, f)| f.get(1).cloned().unwrap_or_default()).collect())
}

fn count(net: &Net, srv: &Server, sql: &str) -> Result<i64, String> {
    query(net, srv, sql)?.first().and_then(|v| v.parse().ok()).ok_or_else(|| format!("no count from {sql}"))
}

fn gc(net: &Net, srv: &Server, h: char) -> Result<(u128, Vec<String>, Vec<String>), String> {
    let mut w = Worker::spawn(net.exec(h, &["gc", &srv.url(h), &GRACE_MS.to_string()]), "gc")?;
    w.finish(Duration::from_secs(60))?;
    let (t, f) = w.of("gc").pop().ok_or("gc printed nothing")?;
    let split = |s: &str| s.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    Ok((t, split(&f[1]), split(&f[2])))
}

fn check(cond: bool, what: impl Into<String>) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// Test lines that did not pass.
fn failures(workers: &[Worker]) -> Vec<String> {
    workers.iter().flat_map(|w| w.of("test")).filter(|(_, f)| f[5] != "ok").map(|(_, f)| f.join(" ")).collect()
}

/// Marked schemas other than templates.
const MARKED: &str =
    "select count(*) from pg_namespace where obj_description(oid, 'pg_namespace') like 'pgisolate:v1:%' \
     and obj_description(oid, 'pg_namespace') not like 'pgisolate:v1:template%'";

fn owned_by(owner: &str) -> String {
    format!("{MARKED} and obj_description(oid, 'pg_namespace') like '% owner={owner} %'")
}

fn parallel(net: &Net, srv: &Server) -> Result<String, String> {
    let t = Instant::now();
    let mut workers = Vec::new();
    for h in ['a', 'b'] {
        for i in 0..4 {
            let tag = format!("{h}{i}");
            let cmd = net.exec(h, &["run", &srv.url(h), &tag, "15", "30", &GRACE_MS.to_string()]);
            workers.push(Worker::spawn(cmd, &tag)?);
        }
    }
    for w in &mut workers {
        w.finish(Duration::from_secs(180))?;
    }
    let tests: usize = workers.iter().map(|w| w.of("test").len()).sum();
    check(tests == 120, format!("{tests} tests reported, not 120"))?;
    let failed = failures(&workers);
    check(failed.is_empty(), format!("failed tests: {failed:?}"))?;
    let mut names: Vec<String> = workers.iter().flat_map(|w| w.of("test")).map(|(_, f)| f[3].clone()).collect();
    names.sort();
    names.dedup();
    check(names.len() == 120, format!("{} distinct schema names for 120 tests", names.len()))?;
    let templates = count(net, srv, "select count(*) from pgisolate.templates")?;
    check(templates == 1, format!("{templates} templates built, not 1"))?;
    let left = count(net, srv, MARKED)?;
    check(left == 0, format!("{left} schemas left after every engine closed"))?;
    Ok(format!(
        "8 engines on 2 hosts, 120 tests isolated, 1 template build, nothing left ({:.1} s)",
        t.elapsed().as_secs_f64()
    ))
}

fn sigkill(net: &Net, srv: &Server) -> Result<String, String> {
    let mut a = Vec::new();
    for i in 0..4 {
        let tag = format!("a{i}");
        a.push(Worker::spawn(net.exec('a', &["hold", &srv.url('a'), &tag, "2", &GRACE_MS.to_string()]), &tag)?);
    }
    for w in &a {
        w.wait_for("ready", Duration::from_secs(60))?;
    }
    let owners: Vec<String> = a.iter().map(|w| w.of("held")[0].1[3].clone()).collect();
    let mut held = 0;
    for o in &owners {
        held += count(net, srv, &owned_by(o))?;
    }
    check(held >= 8, format!("host A holds {held} schemas, expected at least 8"))?;
    let mut b = Vec::new();
    for i in 0..4 {
        let tag = format!("b{i}");
        b.push(Worker::spawn(net.exec('b', &["run", &srv.url('b'), &tag, "40", "100", &GRACE_MS.to_string()]), &tag)?);
    }
    for w in &b {
        w.wait_for("test", Duration::from_secs(60))?;
    }
    let killed = now_ms();
    for w in &mut a {
        w.sigkill();
    }
    let (_, fenced, dropped) = gc(net, srv, 'b')?;
    check(
        fenced.is_empty() && dropped.is_empty(),
        format!("gc within the grace period fenced {fenced:?}, dropped {dropped:?}"),
    )?;
    std::thread::sleep(Duration::from_millis(GRACE_MS + 300));
    let (reaped_at, fenced, dropped) = gc(net, srv, 'b')?;
    let mut f = fenced.clone();
    f.sort();
    let mut o = owners.clone();
    o.sort();
    check(f == o, format!("gc fenced {fenced:?}, host A's owners were {owners:?}"))?;
    for o in &owners {
        let left = count(net, srv, &owned_by(o))?;
        check(left == 0, format!("{left} schemas of host A's owner {o} left after gc"))?;
    }
    for w in &mut b {
        w.finish(Duration::from_secs(120))?;
    }
    let failed = failures(&b);
    check(failed.is_empty(), format!("host B's tests failed: {failed:?}"))?;
    let left = count(net, srv, MARKED)?;
    check(left == 0, format!("{left} schemas left"))?;
    Ok(format!(
        "A's 4 engines SIGKILLed holding {held} schemas: untouched within the {GRACE_MS} ms grace, fenced and all {} \
         reaped {:.1} s after the kill; host B's 160 tests passed",
        dropped.len(),
        (reaped_at - killed) as f64 / 1000.0
    ))
}

fn partition(net: &Net, srv: &Server) -> Result<String, String> {
    let go = std::env::temp_dir().join(format!("pgisolate-hosts-go-{}", std::process::id()));
    let _ = std::fs::remove_file(&go);
    let g = go.display().to_string();
    let mut a = Vec::new();
    for i in 0..4 {
        let tag = format!("a{i}");
        a.push(Worker::spawn(net.exec('a', &["cut", &srv.url('a'), &tag, &GRACE_MS.to_string(), &g, "5"]), &tag)?);
    }
    for w in &a {
        w.wait_for("held", Duration::from_secs(60))?;
    }
    let held: Vec<(String, String)> =
        a.iter().map(|w| w.of("held")[0].1.clone()).map(|f| (f[2].clone(), f[3].clone())).collect();
    let mut b = Vec::new();
    for i in 0..2 {
        let tag = format!("b{i}");
        b.push(Worker::spawn(net.exec('b', &["run", &srv.url('b'), &tag, "60", "150", &GRACE_MS.to_string()]), &tag)?);
    }
    let down = now_ms();
    net.link('a', false)?;
    // A's engines notice their lease connection is gone.
    let mut noticed = Vec::new();
    for w in &a {
        let (t, _) = w.wait_for("warn", Duration::from_secs(15))?;
        noticed.push(t - down);
    }
    // B's gc fences A's owners once the server dropped their sessions and the grace ran out:
    // each session goes when the server notices its client is gone, so one gc may fence some
    // of them and the next the rest; never one of B's.
    let mut fenced_at = None;
    let mut reaped = Vec::new();
    let mut fenced_all: Vec<String> = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        let (at, fenced, dropped) = gc(net, srv, 'b')?;
        reaped.extend(dropped);
        let strangers: Vec<&String> = fenced.iter().filter(|o| !held.iter().any(|(_, h)| h == *o)).collect();
        check(strangers.is_empty(), format!("gc fenced owners that are not host A's: {strangers:?}"))?;
        fenced_all.extend(fenced);
        // Read from the registry too: another engine's gc (B's) may have fenced some.
        let keys: Vec<&str> = held.iter().map(|(_, o)| o.as_str()).collect();
        let on_record = count(
            net,
            srv,
            &format!(
                "select count(*) from pgisolate.owners where fenced_at is not null and owner_key in ({})",
                keys.join(", ")
            ),
        )?;
        if on_record == held.len() as i64 || held.iter().all(|(_, o)| fenced_all.contains(o)) {
            fenced_at = Some(at);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let fenced_at = fenced_at.ok_or("B's gc never fenced host A's owners")?;
    for (name, _) in &held {
        let gone = reaped.contains(name)
            || count(net, srv, &format!("select count(*) from pg_namespace where nspname = '{name}'"))? == 0;
        check(gone, format!("gc did not reap A's held schema {name}: {reaped:?}"))?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let up = now_ms();
    net.link('a', true)?;
    std::fs::write(&go, "go").map_err(|e| e.to_string())?;
    for w in &mut a {
        w.finish(Duration::from_secs(120))?;
    }
    let _ = std::fs::remove_file(&go);
    let mut recovered = Vec::new();
    for w in &a {
        let (_, f) = w.wait_for("inflight", Duration::ZERO)?;
        check(
            f[3].contains("release failed (Lease)") && f[3].contains("was lost while the test ran"),
            format!("{}: the held test's release did not say it was lost: {f:?}", w.tag),
        )?;
        let tests = w.of("test");
        check(
            tests.len() == 5 && tests.iter().all(|(_, f)| f[5] == "ok"),
            format!("{}: tests after the link came back: {tests:?}", w.tag),
        )?;
        let old = held.iter().find(|(n, _)| *n == w.of("held")[0].1[2]).unwrap().1.clone();
        check(tests.iter().all(|(_, f)| f[4] != old), format!("{}: a test ran under the fenced owner {old}", w.tag))?;
        recovered.push(tests[0].0 - up);
    }
    for w in &mut b {
        w.finish(Duration::from_secs(120))?;
    }
    let failed = failures(&b);
    check(failed.is_empty(), format!("host B's tests failed: {failed:?}"))?;
    for (name, owner) in &held {
        let left = count(net, srv, &owned_by(owner))?;
        check(left == 0, format!("{left} schemas of fenced owner {owner} exist (held {name})"))?;
    }
    let left = count(net, srv, MARKED)?;
    check(left == 0, format!("{left} schemas left"))?;
    let max = |v: &[u128]| v.iter().max().copied().unwrap_or(0) as f64 / 1000.0;
    Ok(format!(
        "link down: A's engines noticed in ≤ {:.2} s; B's gc fenced A's 4 owners {:.1} s after the cut (grace {GRACE_MS} \
         ms); link up → held tests failed at release with the reason, first new test passed ≤ {:.2} s later; B's \
         tests passed throughout",
        max(&noticed),
        (fenced_at - down) as f64 / 1000.0,
        max(&recovered)
    ))
}

fn main() -> std::process::ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    type Case = fn(&Net, &Server) -> Result<String, String>;
    let cases: [(&str, Case); 3] = [("parallel", parallel), ("sigkill", sigkill), ("partition", partition)];
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let usable = root && ip(&["netns", "list"]).is_ok();
    if !usable {
        let why = if root { "`ip netns` is not available" } else { "it needs root (network namespaces)" };
        eprintln!("hosts suite skipped: {why}");
        let trials =
            cases.iter().map(|(n, _)| libtest_mimic::Trial::test(*n, || Ok(())).with_ignored_flag(true)).collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }
    let mut args = args;
    args.test_threads = Some(1);
    let net = match Net::up() {
        Ok(n) => Arc::new(n),
        Err(e) => {
            eprintln!("could not set up the namespaces: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let srv = match Server::start(&net) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("could not start the server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let table = Arc::new(Mutex::new(String::new()));
    let trials = cases
        .iter()
        .map(|(name, f)| {
            let (net, srv, table, f, name) = (net.clone(), srv.clone(), table.clone(), *f, *name);
            libtest_mimic::Trial::test(name, move || {
                let t = Instant::now();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&net, &srv)))
                    .unwrap_or_else(|_| Err("panicked".into()));
                let (outcome, detail) = match &r {
                    Ok(d) => ("pass", d.clone()),
                    Err(e) => ("FAIL", e.clone()),
                };
                table
                    .lock()
                    .unwrap()
                    .push_str(&format!("{name:<10} {outcome:<5} {:>6.1}s  {detail}\n", t.elapsed().as_secs_f64()));
                r.map(|_| ()).map_err(Into::into)
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(srv);
    drop(net);
    let leftover = ip(&["netns", "list"]).unwrap_or_default();
    let mine = format!("pgih{}", std::process::id());
    let mut out = std::io::stdout();
    let _ =
        writeln!(out, "\nhosts suite (2 hosts x 4 engines, one server, network namespaces)\n{}", table.lock().unwrap());
    if leftover.contains(&mine) {
        let _ = writeln!(out, "namespaces left behind: {leftover}");
        return std::process::ExitCode::FAILURE;
    }
    conclusion.exit_code()
}

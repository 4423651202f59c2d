//! Captured templates kept beside the embedded server (`<home>/captures`), by fingerprint and
//! server version, so a new server builds a template it had before by replaying the capture:
//! no migrations, no pg_dump.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

fn paths(dir: &Path, server_version: i32, fp: &str) -> (PathBuf, PathBuf) {
    // `-c2`: captures kept since builds that reach outside their schema are refused (an older
    // one may hold such a build's schema alone).
    let base = dir.join("captures").join(format!("{}-{}-c2", &fp[..32.min(fp.len())], server_version));
    (base.with_extension("ddl"), base.with_extension("seed"))
}

/// The DDL and rows an earlier build of `fp` captured, if any (marked as used now: the
/// least recently used captures go first when the cache is trimmed).
pub(crate) fn load(dir: &Path, server_version: i32, fp: &str) -> Option<(String, String)> {
    let (ddl, seed) = paths(dir, server_version, fp);
    let found = (std::fs::read_to_string(&ddl).ok()?, std::fs::read_to_string(&seed).ok()?);
    for p in [&ddl, &seed] {
        if let Ok(f) = std::fs::File::options().append(true).open(p) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }
    Some(found)
}

/// What the cache keeps at most: 64 MiB, 200 captures.
const MAX_BYTES: u64 = 64 << 20;
const MAX_CAPTURES: usize = 200;

/// Deletes the least recently used captures in `dir` until at most `max_bytes` and
/// `max_captures` are left (a capture is its `.ddl` and `.seed` files).
fn trim(dir: &Path, max_bytes: u64, max_captures: usize) {
    let mut captures: HashMap<String, (SystemTime, u64, Vec<PathBuf>)> = HashMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        let (Some(stem), Some(ext)) = (path.file_stem(), path.extension()) else { continue };
        if ext != "ddl" && ext != "seed" {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let c = captures.entry(stem.to_string_lossy().into_owned()).or_insert((used, 0, Vec::new()));
        c.0 = c.0.max(used);
        c.1 += meta.len();
        c.2.push(path);
    }
    let mut by_use: Vec<(SystemTime, u64, Vec<PathBuf>)> = captures.into_values().collect();
    by_use.sort_by_key(|c| c.0);
    let mut total: u64 = by_use.iter().map(|c| c.1).sum();
    let mut left = by_use.len();
    for (_, size, paths) in by_use {
        if total <= max_bytes && left <= max_captures {
            break;
        }
        for p in paths {
            let _ = std::fs::remove_file(p);
        }
        total -= size;
        left -= 1;
    }
}

/// Keeps a build's capture (best effort: a cache).
pub(crate) fn store(dir: &Path, server_version: i32, fp: &str, ddl: &str, seed: &str) {
    let (ddl_path, seed_path) = paths(dir, server_version, fp);
    let Some(dir) = ddl_path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    // Rows first, DDL last: a reader finds both or neither.
    for (path, text) in [(&seed_path, seed), (&ddl_path, ddl)] {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, text).is_err() || std::fs::rename(&tmp, path).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
    }
    trim(dir, MAX_BYTES, MAX_CAPTURES);
}

#[cfg(test)]
mod tests {
    #[test]
    fn trimming_keeps_the_most_recently_used_captures() {
        let dir = std::env::temp_dir().join(format!("pgisolate-trim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            for ext in ["ddl", "seed"] {
                let p = dir.join(format!("{name}.{ext}"));
                std::fs::write(&p, vec![b'x'; 100]).unwrap();
                let f = std::fs::File::options().append(true).open(&p).unwrap();
                f.set_modified(t0 + std::time::Duration::from_secs(10 * i as u64)).unwrap();
            }
        }
        std::fs::write(dir.join("unrelated.txt"), "kept").unwrap();
        super::trim(&dir, 450, 10); // 600 bytes: the oldest capture goes
        let left = |n: &str| dir.join(format!("{n}.ddl")).exists() && dir.join(format!("{n}.seed")).exists();
        assert!(!dir.join("old.ddl").exists() && !dir.join("old.seed").exists());
        assert!(left("mid") && left("new"));
        super::trim(&dir, 1 << 20, 1); // one capture at most
        assert!(!left("mid") && left("new"));
        assert!(dir.join("unrelated.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

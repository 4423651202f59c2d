//! Where the embedded server finds PostgreSQL's binaries on each platform's layout, and what it
//! says when there are none (a fake file system tree: only the files' presence matters).
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use pgisolate::server::find_binaries_in;

fn tree(name: &str, bins: &[&str]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("pgi-bins-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for b in bins {
        let dir = root.join(b);
        std::fs::create_dir_all(&dir).unwrap();
        for t in ["initdb", "pg_ctl", "postgres"] {
            std::fs::write(dir.join(t), "").unwrap();
        }
    }
    std::fs::create_dir_all(&root).unwrap();
    root
}

fn found(root: &Path, path: Option<&OsStr>) -> PathBuf {
    find_binaries_in(None, path, root).unwrap().dir
}

#[test]
fn each_platform_layout_is_found_and_the_newest_version_wins() {
    let debian_and_rpm = tree("mixed", &["usr/lib/postgresql/16/bin", "usr/pgsql-14/bin", "usr/lib/postgresql/12/bin"]);
    assert_eq!(found(&debian_and_rpm, None), debian_and_rpm.join("usr/lib/postgresql/16/bin"));
    let rpm = tree("rpm", &["usr/pgsql-17/bin"]);
    assert_eq!(found(&rpm, None), rpm.join("usr/pgsql-17/bin"));
    let alpine = tree("alpine", &["usr/libexec/postgresql16"]);
    assert_eq!(found(&alpine, None), alpine.join("usr/libexec/postgresql16"));
    let brew = tree("brew", &["opt/homebrew/opt/postgresql@15/bin", "usr/local/opt/postgresql@14/bin"]);
    assert_eq!(found(&brew, None), brew.join("opt/homebrew/opt/postgresql@15/bin"));
    // PATH comes first, whatever the versions elsewhere.
    let on_path = tree("path", &["custom/bin", "usr/lib/postgresql/17/bin"]);
    let path = std::env::join_paths([on_path.join("nowhere"), on_path.join("custom/bin")]).unwrap();
    assert_eq!(found(&on_path, Some(&path)), on_path.join("custom/bin"));
    // A directory with only some of the three is not PostgreSQL's.
    let partial = tree("partial", &[]);
    std::fs::create_dir_all(partial.join("usr/lib/postgresql/16/bin")).unwrap();
    std::fs::write(partial.join("usr/lib/postgresql/16/bin/initdb"), "").unwrap();
    assert!(find_binaries_in(None, None, &partial).is_err());
    for r in [debian_and_rpm, rpm, alpine, brew, on_path, partial] {
        std::fs::remove_dir_all(r).unwrap();
    }
}

#[test]
fn no_binaries_anywhere_says_how_to_get_them_on_every_platform() {
    let empty = tree("empty", &[]);
    let err = find_binaries_in(None, Some(OsStr::new("/nonexistent")), &empty).unwrap_err();
    assert_eq!(err.code(), "binaries");
    let msg = err.to_string();
    for want in [
        "initdb, pg_ctl, postgres",
        "apt-get install postgresql",
        "dnf install postgresql-server",
        "apk add postgresql",
        "brew install postgresql@17",
        "PGISOLATE_PG_BIN",
        "PGISOLATE_DATABASE_URL",
    ] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
    let wrong = find_binaries_in(Some(&empty.join("bin")), None, &empty).unwrap_err().to_string();
    assert!(wrong.contains("PGISOLATE_PG_BIN=") && wrong.contains("does not contain initdb"), "{wrong}");
    std::fs::remove_dir_all(empty).unwrap();
}

//! Runs the shared vectors in tests/vectors/*.json (no server needed).
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

use serde_json::Value;

fn load(name: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    let cases = doc["cases"].as_array().expect("cases array").clone();
    assert!(!cases.is_empty(), "{name} has no cases");
    cases
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o["repeat"].as_str().expect("repeat").repeat(o["times"].as_u64().expect("times") as usize),
        other => panic!("unexpected text value {other}"),
    }
}

#[test]
fn naming_vectors() {
    for c in load("naming.json") {
        let mut id = pgisolate::Identity::new(text(&c["feature"]), text(&c["scenario"]));
        if let Some(d) = c.get("discriminator") {
            id = id.with_discriminator(text(d));
        }
        let prefix = c["prefix"].as_str().unwrap();
        let len = c["hash_len"].as_u64().unwrap() as usize;
        let got = pgisolate::schema_name(prefix, len, &id);
        if c.get("error").is_some() {
            assert!(got.is_err(), "{}: expected an error, got {got:?}", c["name"]);
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{}: {e}", c["name"]));
        assert_eq!(id.hash_hex(), c["expected_hash"].as_str().unwrap(), "{}", c["name"]);
        assert_eq!(got, c["expected_schema"].as_str().unwrap(), "{}", c["name"]);
        assert_eq!(
            pgisolate::naming::cache_prefix(prefix, &got),
            c["expected_cache_prefix"].as_str().unwrap(),
            "{}",
            c["name"]
        );
        assert!(pgisolate::naming::is_plain_identifier(&got) && got.len() <= 63, "{}: {got}", c["name"]);
    }
}

#[test]
fn cache_key_vectors() {
    for c in load("cache_key.json") {
        let got = pgisolate::cache_key(c["cache_prefix"].as_str().unwrap(), c["key"].as_str().unwrap());
        assert_eq!(got, c["expected"].as_str().unwrap());
    }
}

#[test]
fn conninfo_vectors() {
    for c in load("conninfo.json") {
        let tail: Vec<String> = c["tail"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
        let got = pgisolate::conninfo::scoped(c["input"].as_str().unwrap(), c["schema"].as_str().unwrap(), &tail);
        if c.get("error").is_some() {
            assert!(got.is_err(), "{}: expected an error, got {got:?}", c["name"]);
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{}: {e}", c["name"]));
        assert_eq!(got, c["expected"].as_str().unwrap(), "{}", c["name"]);
        assert!(!got.contains('+') || c["input"].as_str().unwrap().contains('+'), "{}: '+' in {got}", c["name"]);
    }
}

#[test]
fn prisma_vectors() {
    for c in load("prisma.json") {
        let got = pgisolate::conninfo::prisma_url(c["input"].as_str().unwrap(), c["schema"].as_str().unwrap());
        if c.get("error").is_some() {
            assert!(got.is_err(), "expected an error for {}", c["input"]);
            continue;
        }
        assert_eq!(got.unwrap(), c["expected"].as_str().unwrap());
    }
}

#[test]
fn migration_layout_vectors() {
    for c in load("migrations.json") {
        let name = c["name"].as_str().unwrap();
        let files: Vec<pgisolate::layout::SourceFile> = c["files"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(n, t)| pgisolate::layout::SourceFile { name: n.clone(), text: t.as_str().unwrap().to_owned() })
            .collect();
        let got = pgisolate::layout::plan(&files);
        if let Some(e) = c.get("error") {
            let msg = got.map(|(l, s)| format!("{l:?} {s:?}")).expect_err(name).to_string();
            assert!(msg.contains(e.as_str().unwrap()), "{name}: {msg}");
            continue;
        }
        let (layout, steps) = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(layout.as_str(), c["layout"].as_str().unwrap(), "{name}");
        let want: Vec<(String, String)> = c["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s[0].as_str().unwrap().to_owned(), s[1].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(steps, want, "{name}");
    }
}

#[test]
fn config_vectors() {
    for c in load("config.json") {
        let (key, value) = (c["key"].as_str().unwrap(), c["value"].as_str().unwrap());
        let r = pgisolate::Config::check_setting(key, value);
        match (c["ok"].as_bool().unwrap(), r) {
            (true, Ok(())) => {}
            (false, Err(e)) => {
                assert_eq!(e.code(), c["code"].as_str().unwrap_or("config"), "{key}={value:?}: {e}");
                let want = c["error"].as_str().unwrap();
                assert!(e.to_string().contains(want), "{key}={value:?}: {e:?} lacks {want:?}");
            }
            (ok, r) => panic!("{key}={value:?}: want ok={ok}, got {r:?}"),
        }
    }
}

/// Every setting has a key, an environment variable and a row in the settings table of
/// docs/configuration.md, and the table lists nothing else.
#[test]
fn settings_match_the_configuration_docs() {
    let doc =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"))
            .unwrap();
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `PGISOLATE_")).collect();
    for s in pgisolate::config::SETTINGS {
        assert!(
            rows.iter().any(|r| r.starts_with(&format!("| `{}` | `{}` |", s.env, s.key))),
            "docs/configuration.md has no row `| `{}` | `{}` | …` in its settings table",
            s.env,
            s.key
        );
    }
    for r in rows {
        let env = r.split('`').nth(1).unwrap();
        assert!(
            pgisolate::config::SETTINGS.iter().any(|s| s.env == env),
            "docs/configuration.md lists {env}, which is not a setting"
        );
    }
}

/// Every kind in tests/vectors/errors.json is the core's, number and code; no kind is missing.
#[test]
fn error_kind_vectors() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/errors.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let kinds = doc["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), pgisolate::ErrorKind::ALL.len());
    for (k, v) in pgisolate::ErrorKind::ALL.into_iter().zip(kinds) {
        assert_eq!(k as u64, v["number"].as_u64().unwrap(), "{k}");
        assert_eq!(k.code(), v["code"].as_str().unwrap());
        assert_eq!(pgisolate::ErrorKind::from_number(k as u32), Some(k));
        // Python and Node build their classes from the core's table: the names must agree.
        assert_eq!(k.class_name(), v["python"].as_str().unwrap(), "{k}: Python's class");
        assert_eq!(k.class_name(), v["node"].as_str().unwrap(), "{k}: Node's class");
        assert!(k.parent().is_none_or(|p| p.parent().is_none()), "{k}: one level of parents");
    }
    // docs/configuration.md's table of kinds says the same: number, code, then each language's name.
    let conf =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"))
            .unwrap();
    for v in kinds {
        let row = conf
            .lines()
            .find(|l| l.starts_with(&format!("| {} | `{}`", v["number"], v["code"].as_str().unwrap())))
            .unwrap_or_else(|| panic!("docs/configuration.md has no row for kind {}", v["number"]));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for (col, lang) in [(3, "c"), (4, "go"), (5, "python"), (6, "node")] {
            let name = format!("`{}`", v[lang].as_str().unwrap());
            assert_eq!(
                cells.get(col).copied(),
                Some(name.as_str()),
                "docs/configuration.md: kind {}, {lang}",
                v["number"]
            );
        }
    }
    for v in doc["abi_only"].as_array().unwrap() {
        assert_eq!(pgisolate::ErrorKind::from_number(v["number"].as_u64().unwrap() as u32), None);
    }
}

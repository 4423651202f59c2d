//! The crate's shape: its modules depend on each other without cycles, and what is public is
//! what the crate docs list. Read from the source, so a new `use` that closes a cycle, or a new
//! public item nobody documented, fails here.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors, on purpose

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module path (`engine::build`) of every file under src/ (lib.rs is the root, ``).
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            let stem = p.file_stem().unwrap().to_str().unwrap().to_owned();
            if p.is_dir() {
                walk(&p, &format!("{prefix}{stem}::"), out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let name = match stem.as_str() {
                    "lib" => String::new(),
                    "mod" => prefix.trim_end_matches("::").to_owned(),
                    _ => format!("{prefix}{stem}"),
                };
                let text = std::fs::read_to_string(&p).unwrap();
                // Comments (doc links) are not dependencies.
                let text: String =
                    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
                // Unit tests may use anything; they are not the module's dependencies.
                let text = match text.find("#[cfg(test)]\nmod tests") {
                    Some(i) => text[..i].to_owned(),
                    None => text,
                };
                out.insert(name, text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src(), "", &mut out);
    out
}

/// Expands `use` trees: `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else { return vec![tree.to_owned()] };
    let (head, rest) = tree.split_at(open);
    let inner = &rest[1..rest.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.iter().filter(|p| !p.trim().is_empty()).flat_map(|p| expand(p)).map(|p| format!("{head}{p}")).collect()
}

/// Every path a file names through `crate::` or `super::` (use trees and inline paths).
fn paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("use ") {
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        let stmt = &after[..end];
        if stmt.starts_with("crate::") || stmt.starts_with("super::") {
            out.extend(expand(stmt));
        }
        rest = &after[end.min(after.len())..];
    }
    for prefix in ["crate::", "super::"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let path: String =
                rest[i..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            out.push(path.trim_end_matches(':').to_owned());
            rest = &rest[i + prefix.len()..];
        }
    }
    out
}

/// The module a path ends in: the longest prefix that is a module (`crate::engine::build::X`
/// → `engine::build`); root re-exports resolve to where they come from.
fn resolve(from: &str, path: &str, mods: &BTreeMap<String, String>, root: &BTreeMap<String, String>) -> Option<String> {
    let mut segs: Vec<String> = Vec::new();
    let mut parts = path.split("::").peekable();
    match parts.next()? {
        "crate" => {}
        "super" => {
            let parent = from.rsplit_once("::").map(|(p, _)| p.to_owned()).unwrap_or_default();
            segs.extend(parent.split("::").filter(|s| !s.is_empty()).map(str::to_owned));
        }
        _ => return None,
    }
    segs.extend(parts.map(str::to_owned));
    if segs.is_empty() {
        return None;
    }
    if segs.len() == 1 {
        if let Some(m) = root.get(&segs[0]) {
            return Some(m.clone());
        }
    }
    (1..=segs.len()).rev().map(|n| segs[..n].join("::")).find(|m| mods.contains_key(m))
}

/// Names the crate root re-exports (`pub use a::b::{X, Y}`) and the module each comes from.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in lib.lines().filter(|l| l.starts_with("pub use ")) {
        for p in expand(line.trim_start_matches("pub use ").trim_end_matches(';')) {
            if let Some((m, name)) = p.rsplit_once("::") {
                out.insert(name.to_owned(), m.to_owned());
            }
        }
    }
    out
}

#[test]
fn modules_depend_on_each_other_without_cycles() {
    let mods = modules();
    let root = root_exports(&mods[""]);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &mods {
        if m.is_empty() {
            continue;
        }
        for p in paths(text) {
            let Some(to) = resolve(m, &p, &mods, &root) else { continue };
            // A module holds its submodules (declares them, names their types): only the
            // other direction is a dependency.
            if to.is_empty() || to == *m || to.starts_with(&format!("{m}::")) {
                continue;
            }
            edges.entry(m.clone()).or_default().insert(to);
        }
    }
    assert!(
        edges.get("engine::release").is_some_and(|e| e.contains("engine::settle")),
        "the scan sees no edges: {edges:?}"
    );
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for to in edges.get(n).into_iter().flatten() {
            match state.get(to.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == to).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(to.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(to, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in mods.keys().filter(|m| !m.is_empty()) {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(m, &edges, &mut state, &mut Vec::new()) {
                panic!("module cycle: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn the_public_api_is_what_the_crate_docs_list() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let docs: String = lib.lines().filter(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n");
    let mut public: Vec<String> =
        lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|m| m.trim_end_matches(';').to_owned()).collect();
    public.extend(root_exports(&lib).into_keys());
    let missing: Vec<&String> = public.iter().filter(|p| !docs.contains(&format!("[`{p}`]"))).collect();
    assert!(missing.is_empty(), "public but not listed in the crate docs (lib.rs //!): {missing:?}");
    // Every other module is private: no `pub(crate) mod` hiding as `pub`.
    for line in lib.lines().filter(|l| l.starts_with("mod ")) {
        let m = line.trim_start_matches("mod ").trim_end_matches(';');
        assert!(!docs.contains(&format!("[`{m}`]")), "the crate docs list private module {m}");
    }
}

/// The README stays short (a newcomer reads it in five minutes), and every repository path it
/// or CONTRIBUTING.md names (a link, or a backticked path under a top-level folder) exists.
#[test]
fn the_readme_is_short_and_the_docs_name_only_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 180, "README.md has {lines} lines: keep it under 180 (the rest belongs in docs/)");
    let tops = [
        "core/",
        "cli/",
        "ffi/",
        "include/",
        "bindings-go/",
        "bindings-python/",
        "bindings-node/",
        "tests/",
        "examples/",
        "docs/",
        "scripts/",
        "packaging/",
        "macros/",
    ];
    let mut missing = Vec::new();
    for doc in ["README.md", "CONTRIBUTING.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        let links = text.split("](").skip(1).filter_map(|s| s.split(')').next());
        let ticked = text.split('`').skip(1).step_by(2);
        for p in links.chain(ticked) {
            let named = p.ends_with(".md") && !p.contains(' ') || tops.iter().any(|t| p.starts_with(t));
            if !named || p.contains(['*', '<', ' ', '{']) || p.starts_with("http") {
                continue;
            }
            // `tests/c/test_pgisolate.c:42` or a folder with its trailing slash.
            let path = p.split(':').next().unwrap_or(p);
            if !root.join(path).exists() {
                missing.push(format!("{doc}: {p}"));
            }
        }
    }
    assert!(missing.is_empty(), "named but not in the repository: {missing:?}");
}

/// The core is folders by feature, each file small enough to read in one sitting: the four
/// feature folders exist, no file has over 500 lines before its unit tests, and the advisory
/// lock classes live in one leaf module.
#[test]
fn the_core_is_folders_by_feature_and_no_file_is_over_500_lines() {
    for folder in ["server", "template", "recycle", "registry"] {
        assert!(src().join(folder).join("mod.rs").is_file(), "core/src/{folder}/mod.rs is missing");
    }
    let mut long = Vec::new();
    for (m, text) in modules() {
        // `modules` drops comment lines and the unit tests; count the file's own lines.
        let file = if m.is_empty() { "lib".to_owned() } else { m.replace("::", "/") };
        let path = [src().join(format!("{file}.rs")), src().join(&file).join("mod.rs")]
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("no file for module {m} ({text:.0})"));
        let full = std::fs::read_to_string(&path).unwrap();
        let before_tests = full.split("#[cfg(test)]\nmod tests").next().unwrap().lines().count();
        if before_tests > 500 {
            long.push(format!("{} ({before_tests} lines)", path.strip_prefix(src()).unwrap().display()));
        }
    }
    assert!(long.is_empty(), "over 500 lines before their tests (split them by idea): {long:?}");
    let locks = &modules()["locks"];
    assert!(
        locks.contains("LEASE_CLASS") && paths(locks).is_empty(),
        "core/src/locks.rs holds the lock classes and depends on nothing"
    );
    let classes: Vec<String> = modules()
        .iter()
        .filter(|(m, _)| m.as_str() != "locks")
        .flat_map(|(m, t)| t.lines().filter(|l| l.contains("_CLASS: i32")).map(move |l| format!("{m}: {l}")))
        .collect();
    assert!(classes.is_empty(), "an advisory lock class outside core/src/locks.rs: {classes:?}");
}

/// The engine's state is implemented where it is defined: `Inner` (what every part shares)
/// only in engine/mod.rs, and each part (the lease cell, the pools, background work, the
/// template cache, the warnings) only in the file that owns it. Other files call their methods.
#[test]
fn the_engines_state_is_implemented_only_where_it_is_defined() {
    let mods = modules();
    let engine: Vec<(&String, &String)> =
        mods.iter().filter(|(m, _)| m.as_str() == "engine" || m.starts_with("engine::")).collect();
    let mut defined: BTreeMap<String, String> = BTreeMap::new();
    for (m, text) in &engine {
        for line in text.lines() {
            let l = line.trim_start();
            for vis in ["pub(crate) struct ", "pub(super) struct ", "struct "] {
                if let Some(rest) = l.strip_prefix(vis) {
                    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    defined.insert(name, (*m).clone());
                }
            }
        }
    }
    for part in ["Inner", "LeaseCell", "Pools", "Background", "TemplateCache", "Warnings"] {
        assert!(defined.contains_key(part), "the engine's part {part} is not defined in core/src/engine");
    }
    let mut strays = Vec::new();
    for (m, text) in &engine {
        for line in text.lines().filter(|l| l.starts_with("impl")) {
            // `impl X {`, `impl Trait for X {`, `impl super::watch::X {`: the last path segment.
            let target = line.split(" for ").last().unwrap_or(line).trim_start_matches("impl").trim();
            let path: String = target.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let name = path.rsplit("::").next().unwrap_or_default().to_owned();
            if let Some(owner) = defined.get(&name) {
                if owner != *m {
                    strays.push(format!("{m}: `{}` (defined in {owner})", line.trim_end_matches(" {")));
                }
            }
        }
    }
    assert!(strays.is_empty(), "the engine's state implemented outside the file that defines it: {strays:?}");
}

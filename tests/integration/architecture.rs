//! The shape of the crate, checked from its source: no import cycle between modules, and
//! dependencies pointing one way (roles → engine → clients, store → core). ARCHITECTURE.md
//! draws the same picture; this keeps it true.
//!
//! A module is a file (`src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`). An edge `A → B` is a
//! `crate::` or `super::` path in A's non-test code (comments, strings and `#[cfg(test)]`
//! items left out) that names B or something inside B. A parent reaching into its own
//! children (`mod v1;` then `v1::Client`) is ownership, not an import, and is not counted;
//! a child using its parent's shared types (`super::HueError`) is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers, bottom up. A module may use its own layer or lower ones, never a higher one.
const LAYERS: &[(&str, u8)] = &[
    ("core", 0),
    ("config", 1),
    ("files", 1),
    ("store", 2),
    ("clients", 3),
    ("engine", 4),
    ("http", 5),
    ("host", 5),
    ("serve", 5),
    ("edge", 5),
    ("cli", 5),
];

fn layer(module: &str) -> Option<u8> {
    let top = module.split("::").next().unwrap_or("");
    LAYERS.iter().find(|(n, _)| *n == top).map(|(_, l)| *l)
}

/// Removes comments, string and char literals, keeping everything else in place.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // Raw string: r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): skip only the former.
                let rest = &src[i..];
                let lit = rest
                    .char_indices()
                    .skip(1)
                    .take(12)
                    .find(|(_, c)| *c == '\'')
                    .map(|(k, _)| k);
                match lit {
                    Some(k) if k <= 2 || rest[1..].starts_with('\\') => i += k + 1,
                    _ => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

/// Removes every item marked `#[cfg(test)]` (a `mod tests { .. }`, a `use`, a function).
fn drop_test_items(src: &str) -> String {
    let mut s = src.to_owned();
    while let Some(at) = s.find("#[cfg(test)]") {
        let after = at + "#[cfg(test)]".len();
        let rest = &s[after..];
        let semi = rest.find(';');
        let brace = rest.find('{');
        let end = match (semi, brace) {
            (Some(sc), Some(br)) if sc < br => after + sc + 1,
            (_, Some(br)) => {
                let mut depth = 0;
                let mut end = s.len();
                for (k, c) in s[after + br..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = after + br + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (Some(sc), None) => after + sc + 1,
            (None, None) => s.len(),
        };
        s.replace_range(at..end, "");
    }
    s
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i
}

/// Every path written after `crate::` or `super::` (brace groups expanded), as
/// `(supers, segments)`: 0 `super`s for a `crate::` path.
fn paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        // Byte-wise scan over UTF-8: only slice where a character starts.
        let boundary = code.is_char_boundary(i)
            && (i == 0
                || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':'));
        if boundary && (code[i..].starts_with("crate::") || code[i..].starts_with("super::")) {
            let mut supers = 0;
            let mut j = i;
            if code[j..].starts_with("crate::") {
                j += "crate::".len();
            } else {
                while code[j..].starts_with("super::") {
                    supers += 1;
                    j += "super::".len();
                }
            }
            let (segments, end) = read_tree(code, j);
            for s in segments {
                found.push((supers, s));
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    found
}

/// Reads `a::b::{c, d::e}` starting at `at`; returns every full path and where it ended.
fn read_tree(code: &str, at: usize) -> (Vec<Vec<String>>, usize) {
    let b = code.as_bytes();
    let mut prefix = Vec::new();
    let mut i = at;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) == Some(&b'{') {
            let mut out = Vec::new();
            i += 1;
            loop {
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    i += 1;
                    break;
                }
                let (inner, end) = read_tree(code, i);
                for p in inner {
                    let mut full = prefix.clone();
                    full.extend(p.into_iter().filter(|s| s != "self"));
                    out.push(full);
                }
                // Skip `as name` and anything up to the next separator.
                i = end;
                while i < b.len() && b[i] != b',' && b[i] != b'}' {
                    i += 1;
                }
            }
            return (out, i);
        }
        let end = ident_end(b, i);
        if end == i {
            return (vec![prefix], i);
        }
        prefix.push(code[i..end].to_owned());
        i = end;
        if code[i..].starts_with("::") {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`; `src/lib.rs` → ``.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// Module → the modules it uses, from `(module, source)` pairs.
fn graph(sources: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<&str> = sources.iter().map(|(m, _)| m.as_str()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, src) in sources {
        let code = drop_test_items(&strip(src));
        let here: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
        for (supers, segs) in paths(&code) {
            // `super` from `a::b` (a file) is `a`; from `a` declared in `a/mod.rs` it is the
            // crate root either way, since a folder module is its own `mod.rs`.
            let base_len = match supers {
                0 => 0, // crate::
                n => here.len().saturating_sub(n),
            };
            let mut full: Vec<&str> = here[..base_len].to_vec();
            full.extend(segs.iter().map(String::as_str));
            let target = (1..=full.len())
                .rev()
                .map(|n| full[..n].join("::"))
                .find(|p| modules.contains(p.as_str()));
            let Some(target) = target else { continue };
            let own_child = target == *module
                || target.starts_with(&format!("{module}::"))
                || module.is_empty();
            if !own_child {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
        edges.entry(module.clone()).or_default();
    }
    edges
}

/// One cycle, if any, as `a → b → a`.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        mark: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        mark.insert(n.to_owned(), Mark::Open);
        stack.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            match mark.get(m).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(m, edges, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(n.to_owned(), Mark::Done);
        None
    }
    let mut mark = BTreeMap::new();
    for n in edges.keys() {
        if mark.get(n).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(n, edges, &mut mark, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn crate_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&src).unwrap();
                if rel == Path::new("main.rs") {
                    continue; // the binary: `cli::main` and nothing else
                }
                out.push((module_of(rel), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn no_import_cycle_between_modules() {
    let edges = graph(&crate_sources());
    assert!(
        edges.len() > 40,
        "the walk found only {} modules",
        edges.len()
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn no_import_cycle_between_folders() {
    // The same check one level up: each top-level folder (core, clients, engine, ...) as
    // one node, so two folders cannot lean on each other through different files.
    let edges = graph(&crate_sources());
    let top = |m: &str| m.split("::").next().unwrap_or("").to_owned();
    let mut folders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in &edges {
        let f = top(from);
        let entry = folders.entry(f.clone()).or_default();
        entry.extend(
            tos.iter()
                .map(|t| top(t))
                .filter(|t| *t != f && !t.is_empty()),
        );
    }
    folders.remove("");
    if let Some(cycle) = find_cycle(&folders) {
        panic!("import cycle between folders: {}", cycle.join(" → "));
    }
}

#[test]
fn dependencies_point_down_the_layers() {
    let edges = graph(&crate_sources());
    let mut upward = Vec::new();
    for (from, tos) in &edges {
        let Some(lf) = layer(from) else { continue };
        for to in tos {
            if let Some(lt) = layer(to) {
                if lt > lf {
                    upward.push(format!("{from} → {to}"));
                }
            }
        }
    }
    let unknown: Vec<&String> = edges
        .keys()
        .filter(|m| !m.is_empty() && layer(m).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "modules outside every layer (add them to LAYERS and ARCHITECTURE.md): {unknown:?}"
    );
    assert!(
        upward.is_empty(),
        "dependencies pointing up a layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_core_does_no_io() {
    for (module, src) in crate_sources() {
        if !(module == "core" || module.starts_with("core::")) {
            continue;
        }
        let code = drop_test_items(&strip(&src));
        for banned in [
            "tokio", "reqwest", "std::fs", "std::net", "rusqlite", "Utc::now",
        ] {
            assert!(
                !code.contains(banned),
                "{module} uses {banned}: the core takes its inputs as arguments"
            );
        }
    }
}

#[test]
fn the_cycle_check_finds_a_planted_back_reference() {
    let sources = vec![
        ("engine::poller".to_owned(), "use crate::store::Store;\n".to_owned()),
        ("store".to_owned(), "// crate::engine in a comment is not an import\nfn f() { let s = \"crate::engine::poller\"; }\n".to_owned()),
        ("core::presence".to_owned(), "#[cfg(test)]\nmod tests { use crate::engine::poller; }\n".to_owned()),
    ];
    assert_eq!(find_cycle(&graph(&sources)), None);
    let mut planted = sources.clone();
    planted[1]
        .1
        .push_str("use crate::engine::{context, poller::Poller};\n");
    let cycle = find_cycle(&graph(&planted)).expect("the planted cycle is found");
    assert!(
        cycle.contains(&"store".to_owned()) && cycle.contains(&"engine::poller".to_owned()),
        "{cycle:?}"
    );
    let mut via_super = sources;
    via_super.push((
        "store::sqlite".to_owned(),
        "use super::super::engine::poller;\n".to_owned(),
    ));
    via_super[0]
        .1
        .push_str("use crate::store::sqlite::SqliteStore;\n");
    assert!(
        find_cycle(&graph(&via_super)).is_some(),
        "a super:: path counts too"
    );
}

#[test]
fn the_cycle_check_sees_through_re_exports_and_parent_modules() {
    // 3CX's two modules as they are, plus a parent `mod.rs` that re-exports one of
    // `threecx_calls`'s types, which `threecx` then takes from the parent: a cycle
    // threecx → (pbx's re-export) → threecx_calls → threecx that no file spells out.
    let base = || {
        vec![
            (
                "clients::pbx".to_owned(),
                "pub mod threecx;\npub mod threecx_calls;\n".to_owned(),
            ),
            (
                "clients::pbx::threecx".to_owned(),
                "use crate::core::pbx::model::Extension;\n".to_owned(),
            ),
            (
                "clients::pbx::threecx_calls".to_owned(),
                "use super::threecx::{ThreeCx, ThreeCxError};\npub struct CallControl;\n"
                    .to_owned(),
            ),
            (
                "core::pbx::model".to_owned(),
                "pub struct Extension;\n".to_owned(),
            ),
        ]
    };
    assert_eq!(find_cycle(&graph(&base())), None);

    let mut re_export = base();
    re_export[0]
        .1
        .push_str("pub use threecx_calls::CallControl;\n");
    re_export[1].1.push_str("use super::CallControl;\n");
    let cycle = find_cycle(&graph(&re_export)).expect("a cycle through a re-export is found");
    assert!(
        cycle.contains(&"clients::pbx::threecx".to_owned())
            && cycle.contains(&"clients::pbx::threecx_calls".to_owned()),
        "{cycle:?}"
    );

    // The same through a path that starts at an imported parent module.
    let mut via_parent = base();
    via_parent[1]
        .1
        .push_str("use crate::clients::pbx;\nfn f(_: pbx::threecx_calls::CallControl) {}\n");
    assert!(
        find_cycle(&graph(&via_parent)).is_some(),
        "a path through an imported parent module counts too"
    );

    // And through a glob import of the parent, which brings its child modules in scope.
    let mut via_glob = base();
    via_glob[1]
        .1
        .push_str("use super::*;\nfn f(_: threecx_calls::CallControl) {}\n");
    assert!(
        find_cycle(&graph(&via_glob)).is_some(),
        "a path through a glob import counts too"
    );
}

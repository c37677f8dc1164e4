//! The shape of the crate, checked from its source against ARCHITECTURE.md's "Layers" table
//! (read from the document, so the two cannot drift): every top-level module in the table,
//! every dependency going down the table or sideways only where it allows, no import cycle
//! between modules or between top-level folders, and a core without I/O.
//!
//! A module is a file reached from `src/lib.rs` through its non-test `mod` declarations
//! (`src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`), or an inline `mod x { .. }` in one. An edge
//! `A → B` is a path in A's non-test code (comments, strings and `#[cfg(test)]` items left out)
//! that resolves into B, resolved as the compiler does for imports: paths from `crate::`,
//! `super::` and `self::`, from a child module (`v1::Client` in `hue/mod.rs`), from an imported
//! name (`use crate::clients::pbx;` then `pbx::threecx::ThreeCx`) and through globs
//! (`use super::*`); a name a module imports or re-exports (`pub use records::SubscriptionRecord`
//! in `store/mod.rs`) leads on to the module that defines it, so `crate::store::SubscriptionRecord`
//! is an edge to `store::records`. When this was written it found the same edges as the
//! compiler's own resolution (`-Zunpretty=hir-tree` of the Pi build), plus those of code behind
//! features that build leaves out.
//!
//! A folder's `mod.rs` and its files may use each other (the router mounting its routes, the
//! routes using the folder's shared types): a cycle is reported when one of its edges joins
//! two modules neither of which contains the other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One row of ARCHITECTURE.md's "Layers" table.
#[derive(Debug)]
struct Layer {
    /// The layer's name (first column).
    name: String,
    /// Its top-level modules (second column, each in backticks).
    modules: Vec<String>,
    /// Whether they may use each other (third column: "may use each other").
    sideways: bool,
}

/// The "Layers" table of a document like ARCHITECTURE.md, top to bottom.
fn parse_layers(doc: &str) -> Vec<Layer> {
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Layers\n"))
        .expect("ARCHITECTURE.md has a `## Layers` section");
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2) // the header and the |---| line
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let modules: Vec<String> = cells[2]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            let sideways = match cells[3] {
                "may use each other" => true,
                "do not use each other" | "" => false,
                other => panic!("layer {}: unknown rule {other:?}", cells[1]),
            };
            assert!(
                modules.len() < 2 || !cells[3].is_empty(),
                "layer {}: say whether its {} modules may use each other",
                cells[1],
                modules.len()
            );
            Layer {
                name: cells[1].to_owned(),
                modules,
                sideways,
            }
        })
        .collect()
}

fn layers() -> Vec<Layer> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md");
    parse_layers(&std::fs::read_to_string(doc).unwrap())
}

/// What the table says against the code: top-level modules missing from it or named by it
/// but gone, and every edge between two top-level modules that it does not allow.
fn layer_violations(layers: &[Layer], edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let top = |m: &str| m.split("::").next().unwrap_or("").to_owned();
    let rank = |m: &str| {
        layers
            .iter()
            .position(|l| l.modules.iter().any(|n| *n == top(m)))
    };
    let code: BTreeSet<String> = edges.keys().map(|m| top(m)).collect();
    let table: BTreeSet<String> = layers.iter().flat_map(|l| l.modules.clone()).collect();
    let mut found = Vec::new();
    for m in code.difference(&table) {
        found.push(format!(
            "`{m}` is a top-level module missing from the table"
        ));
    }
    for m in table.difference(&code) {
        found.push(format!(
            "the table names `{m}`, which is not a module of src/"
        ));
    }
    for (from, tos) in edges {
        for to in tos.iter().filter(|to| top(to) != top(from)) {
            let (Some(f), Some(t)) = (rank(from), rank(to)) else {
                continue;
            };
            if t < f {
                found.push(format!(
                    "{from} → {to}: up from layer {} to layer {}",
                    layers[f].name, layers[t].name
                ));
            } else if t == f && !layers[f].sideways {
                found.push(format!(
                    "{from} → {to}: the modules of layer {} do not use each other",
                    layers[f].name
                ));
            }
        }
    }
    found
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

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Whether a path or keyword may start at `i`: not inside an identifier or after `::`.
fn starts_token(code: &str, i: usize) -> bool {
    let b = code.as_bytes();
    code.is_char_boundary(i)
        && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':'))
}

/// Every multi-segment path written in `code` (`a::b`, `a::{b, c::d}`; brace groups expanded),
/// with its first segment as written: `crate`, `super`, `self`, a child module, an imported
/// name, or something outside the crate (`std`, `serde`), which resolution drops.
fn paths(code: &str) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let end = if starts_token(code, i) && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
            ident_end(b, i)
        } else {
            i
        };
        if end > i && code[end..].starts_with("::") {
            let (segments, stop) = read_tree(code, i);
            found.extend(segments.into_iter().filter(|s| s.len() > 1));
            i = stop.max(end);
        } else {
            i = end.max(i + 1);
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
        i = skip_space(b, i);
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
                i = end.max(i + 1);
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

/// What a `use` leaf binds in its module.
enum Bind {
    /// `use a::b;` binds `b`, `use a::b as c;` binds `c`, `use a::{self}` binds `a`.
    Name(String),
    /// `use a::*;` brings in everything `a` holds.
    Glob,
    /// `use a::Trait as _;`
    Nothing,
}

/// The leaves of one `use` tree starting at `at`, each with the path it names as written.
fn read_use_tree(
    code: &str,
    at: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Bind)>,
) -> usize {
    let b = code.as_bytes();
    let mut path = prefix.to_vec();
    let mut i = skip_space(b, at);
    if code[i..].starts_with("::") {
        i += 2;
    }
    loop {
        i = skip_space(b, i);
        match b.get(i) {
            Some(b'{') => {
                i += 1;
                loop {
                    while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                        i += 1;
                    }
                    if i >= b.len() || b[i] == b'}' {
                        return i + 1;
                    }
                    let end = read_use_tree(code, i, &path, out);
                    i = end.max(i + 1);
                    while i < b.len() && b[i] != b',' && b[i] != b'}' {
                        i += 1;
                    }
                }
            }
            Some(b'*') => {
                out.push((path, Bind::Glob));
                return i + 1;
            }
            _ => {}
        }
        let end = ident_end(b, i);
        if end == i {
            return i;
        }
        let segment = code[i..end].to_owned();
        i = skip_space(b, end);
        if code[i..].starts_with("::") {
            i += 2;
            path.push(segment);
            continue;
        }
        let mut bind = if segment == "self" {
            path.last().cloned().map_or(Bind::Nothing, Bind::Name)
        } else {
            path.push(segment.clone());
            Bind::Name(segment)
        };
        if code[i..].starts_with("as") && b.get(i + 2).is_some_and(|c| c.is_ascii_whitespace()) {
            let at = skip_space(b, i + 2);
            let end = ident_end(b, at);
            bind = match &code[at..end] {
                "_" => Bind::Nothing,
                alias => Bind::Name(alias.to_owned()),
            };
            i = end;
        }
        out.push((path, bind));
        return i;
    }
}

/// Every `use` declaration's leaves (any visibility: a child sees its parent's private ones).
fn use_leaves(code: &str) -> Vec<(Vec<String>, Bind)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = code[i..].find("use").map(|k| i + k) {
        i = at + 3;
        if starts_token(code, at) && b.get(at + 3).is_some_and(|c| c.is_ascii_whitespace()) {
            i = read_use_tree(code, at + 3, &[], &mut out);
        }
    }
    out
}

/// Every identifier in `code`.
fn identifiers(code: &str) -> BTreeSet<String> {
    let b = code.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let end = ident_end(b, i);
            names.insert(code[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// The names `code` defines itself (functions, types, constants, modules, macros).
fn item_names(code: &str) -> BTreeSet<String> {
    let b = code.as_bytes();
    let mut names = BTreeSet::new();
    for keyword in [
        "fn",
        "struct",
        "enum",
        "union",
        "trait",
        "type",
        "const",
        "static",
        "mod",
        "macro_rules!",
    ] {
        let mut i = 0;
        while let Some(at) = code[i..].find(keyword).map(|k| i + k) {
            i = at + keyword.len();
            let spaced = b.get(i).is_some_and(|c| c.is_ascii_whitespace());
            if starts_token(code, at) && spaced {
                let start = skip_space(b, i);
                let end = ident_end(b, start);
                if end > start {
                    names.insert(code[start..end].to_owned());
                }
            }
        }
    }
    names
}

/// Splits `mod name { .. }` blocks out of a module's code as modules of their own, so a
/// `super::` inside one means the file's module.
fn split_inline_modules(module: &str, code: &str) -> Vec<(String, String)> {
    let b = code.as_bytes();
    let mut i = 0;
    while let Some(at) = code[i..].find("mod").map(|k| i + k) {
        i = at + 3;
        if !(starts_token(code, at) && b.get(at + 3).is_some_and(|c| c.is_ascii_whitespace())) {
            continue;
        }
        let start = skip_space(b, at + 3);
        let end = ident_end(b, start);
        let open = skip_space(b, end);
        if end == start || b.get(open) != Some(&b'{') {
            continue;
        }
        let mut depth = 0;
        let mut close = b.len();
        for (k, c) in b.iter().enumerate().skip(open) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = k;
                        break;
                    }
                }
                _ => {}
            }
        }
        let name = join_module(module, &code[start..end]);
        let mut rest = code[..at].to_owned();
        rest.push_str(&code[(close + 1).min(code.len())..]);
        let mut out = split_inline_modules(module, &rest);
        out.extend(split_inline_modules(
            &name,
            &code[open + 1..close.min(code.len())],
        ));
        return out;
    }
    vec![(module.to_owned(), code.to_owned())]
}

fn join_module(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}::{name}")
    }
}

/// What one module's non-test code says about names.
#[derive(Default)]
struct Scope {
    /// Names bound by its `use` declarations, with the path each stands for as written.
    uses: BTreeMap<String, Vec<String>>,
    /// The prefixes of its `use ...::*` declarations, as written.
    globs: Vec<Vec<String>>,
    /// The names it defines itself.
    items: BTreeSet<String>,
    /// Every multi-segment path in its code, as written.
    paths: Vec<Vec<String>>,
    /// Every identifier in its code (for names a glob brings in).
    idents: BTreeSet<String>,
}

/// Name resolution over the whole crate, close enough to the compiler's for imports:
/// relative, `crate::`, `super::` and `self::` paths, imported names and globs, and
/// re-exports followed to where an item is defined.
struct Crate {
    scopes: BTreeMap<String, Scope>,
}

/// How many re-exports or imports one path may pass through before it is given up on.
const MAX_HOPS: usize = 16;

impl Crate {
    fn new(sources: &[(String, String)]) -> Self {
        let mut scopes = BTreeMap::new();
        scopes.insert(String::new(), Scope::default());
        for (file_module, src) in sources {
            let code = drop_test_items(&strip(src));
            for (module, code) in split_inline_modules(file_module, &code) {
                let mut scope = Scope {
                    items: item_names(&code),
                    paths: paths(&code),
                    idents: identifiers(&code),
                    ..Scope::default()
                };
                for (path, bind) in use_leaves(&code) {
                    match bind {
                        Bind::Name(name) => {
                            scope.uses.insert(name, path);
                        }
                        Bind::Glob => scope.globs.push(path),
                        Bind::Nothing => {}
                    }
                }
                scopes.insert(module, scope);
            }
        }
        Crate { scopes }
    }

    fn is_module(&self, path: &[String]) -> bool {
        self.scopes.contains_key(&path.join("::"))
    }

    /// Whether `name` means something in the module at `path`.
    fn knows(&self, path: &[String], name: &str) -> bool {
        let mut child = path.to_vec();
        child.push(name.to_owned());
        self.is_module(&child)
            || self
                .scopes
                .get(&path.join("::"))
                .is_some_and(|s| s.items.contains(name) || s.uses.contains_key(name))
    }

    /// A path as written in `module`, made absolute (segments from the crate root); `None`
    /// for a path outside the crate.
    fn absolute(&self, module: &str, written: &[String], hops: usize) -> Option<Vec<String>> {
        let here: Vec<String> = module
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let (first, rest) = written.split_first()?;
        if hops > MAX_HOPS {
            return None;
        }
        let with_rest = |mut base: Vec<String>, skip: usize| {
            base.extend(written[skip..].iter().cloned());
            Some(base)
        };
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            "self" => with_rest(here, 1),
            "super" => {
                let supers = written.iter().take_while(|s| *s == "super").count();
                with_rest(here[..here.len().saturating_sub(supers)].to_vec(), supers)
            }
            _ => {
                let scope = self.scopes.get(module)?;
                let mut child = here.clone();
                child.push(first.clone());
                if self.is_module(&child) {
                    return with_rest(here, 0);
                }
                if let Some(target) = scope.uses.get(first) {
                    if target.len() > 1 || target[0] != *first {
                        let mut full = target.clone();
                        full.extend(rest.iter().cloned());
                        return self.absolute(module, &full, hops + 1);
                    }
                }
                scope.globs.iter().find_map(|glob| {
                    let base = self.absolute(module, glob, hops + 1)?;
                    self.knows(&base, first).then(|| with_rest(base, 0))?
                })
            }
        }
    }

    /// The module an absolute path lands in: the deepest module it names or, when the next
    /// segment is a name that module imports or re-exports, the module that defines it (as
    /// the compiler resolves it: `crate::store::SubscriptionRecord` is `store::records`'s).
    fn land(&self, path: &[String], hops: usize) -> String {
        let named = (0..=path.len())
            .rev()
            .find(|&n| self.is_module(&path[..n]))
            .unwrap_or(0);
        let module = path[..named].join("::");
        let (Some(name), Some(scope)) = (path.get(named), self.scopes.get(&module)) else {
            return module;
        };
        if hops > MAX_HOPS || scope.items.contains(name) {
            return module;
        }
        let onward = if let Some(target) = scope.uses.get(name) {
            let mut full = target.clone();
            full.extend(path[named + 1..].iter().cloned());
            self.absolute(&module, &full, hops + 1)
        } else {
            scope.globs.iter().find_map(|glob| {
                let base = self.absolute(&module, glob, hops + 1)?;
                self.knows(&base, name).then(|| {
                    let mut full = base;
                    full.extend(path[named..].iter().cloned());
                    full
                })
            })
        };
        match onward {
            Some(onward) => self.land(&onward, hops + 1),
            None => module,
        }
    }
}

/// Module → the modules it uses, from `(module, source)` pairs. The crate root (`lib.rs`)
/// only declares the top-level modules and is left out.
fn graph(sources: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let krate = Crate::new(sources);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, scope) in &krate.scopes {
        if module.is_empty() {
            continue;
        }
        let uses = edges.entry(module.clone()).or_default();
        let mut absolute: Vec<Vec<String>> = scope
            .paths
            .iter()
            .filter_map(|written| krate.absolute(module, written, 0))
            .collect();
        // A glob import is a use of the module it names, and of wherever each name it
        // brings in and the code mentions comes from.
        for glob in &scope.globs {
            let Some(base) = krate.absolute(module, glob, 0) else {
                continue;
            };
            for name in &scope.idents {
                let own = scope.items.contains(name) || scope.uses.contains_key(name);
                if !own && krate.knows(&base, name) {
                    let mut full = base.clone();
                    full.push(name.clone());
                    absolute.push(full);
                }
            }
            absolute.push(base);
        }
        for path in absolute {
            let target = krate.land(&path, 0);
            if target != *module && !target.is_empty() {
                uses.insert(target);
            }
        }
    }
    edges
}

/// Whether `a` is `b`'s ancestor or descendant (`hue` and `hue::v1`).
fn related(a: &str, b: &str) -> bool {
    a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

/// One cycle, if any, as `a → b → a`. A folder and its files may use each other (a
/// `mod.rs` dispatching to its files, which share its types): a cycle counts when one of
/// its edges joins two modules neither of which contains the other.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    for (from, tos) in edges {
        for to in tos.iter().filter(|to| !related(from, to)) {
            // The shortest way back from `to` to `from`, breadth first.
            let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([to.as_str()]);
            while let Some(n) = queue.pop_front() {
                if n == from {
                    let mut cycle = vec![from.clone()];
                    let mut at = n;
                    let mut back = vec![];
                    while at != to {
                        at = came_from[at];
                        back.push(at.to_owned());
                    }
                    cycle.extend(back.into_iter().rev());
                    cycle.push(from.clone());
                    return Some(cycle);
                }
                for m in edges.get(n).into_iter().flatten() {
                    if m != to && !came_from.contains_key(m.as_str()) {
                        came_from.insert(m, n);
                        queue.push_back(m);
                    }
                }
            }
        }
    }
    None
}

/// Every module of the library as `(module, source)`: `src/lib.rs` and the files its
/// non-test `mod` declarations reach (`mod a;` in `x.rs` is `x/a.rs` or `x/a/mod.rs`).
fn crate_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut todo = vec![(String::new(), src.join("lib.rs"))];
    while let Some((module, file)) = todo.pop() {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = drop_test_items(&strip(&text));
        let folder = match file.file_name().and_then(|f| f.to_str()) {
            Some("lib.rs" | "mod.rs") => file.parent().unwrap().to_path_buf(),
            _ => file.with_extension(""),
        };
        for name in declared_modules(&code) {
            let flat = folder.join(format!("{name}.rs"));
            let nested = folder.join(&name).join("mod.rs");
            let path = if flat.exists() { flat } else { nested };
            assert!(path.exists(), "{module}: `mod {name};` has no file");
            todo.push((join_module(&module, &name), path));
        }
        out.push((module, text));
    }
    out.sort();
    out
}

/// The `mod name;` declarations (files, not inline blocks) in a module's code.
fn declared_modules(code: &str) -> Vec<String> {
    let b = code.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while let Some(at) = code[i..].find("mod").map(|k| i + k) {
        i = at + 3;
        if starts_token(code, at) && b.get(at + 3).is_some_and(|c| c.is_ascii_whitespace()) {
            let start = skip_space(b, at + 3);
            let end = ident_end(b, start);
            if end > start && b.get(skip_space(b, end)) == Some(&b';') {
                names.push(code[start..end].to_owned());
            }
        }
    }
    names
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
fn dependencies_follow_the_layer_table_in_architecture_md() {
    let table = layers();
    assert!(table.len() >= 4, "the table has {} layers", table.len());
    let found = layer_violations(&table, &graph(&crate_sources()));
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md's layer table and the code disagree:\n{}",
        found.join("\n")
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

    // The same through the parent's own code: `pbx/mod.rs` hands out something built from
    // `threecx_calls`, which `threecx` takes from it.
    let mut via_parent_code = base();
    via_parent_code[0].1.push_str(
        "pub fn calls() -> threecx_calls::CallControl { todo!() }
",
    );
    via_parent_code[1].1.push_str(
        "fn f() { super::calls(); }
",
    );
    assert!(
        find_cycle(&graph(&via_parent_code)).is_some(),
        "a cycle through the parent's own code counts too"
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

#[test]
fn a_folder_and_its_files_may_use_each_other_but_not_to_join_two_files() {
    // `hue/mod.rs` mounts `v1` and `v2`, which use its shared error type: ownership.
    let mut sources = vec![
        (
            "clients::hue".to_owned(),
            "pub mod v1;\npub mod v2;\npub enum HueError {}\nfn f() { v1::Client; v2::Client; }\n"
                .to_owned(),
        ),
        (
            "clients::hue::v1".to_owned(),
            "use super::HueError;\npub struct Client;\n".to_owned(),
        ),
        (
            "clients::hue::v2".to_owned(),
            "use super::HueError;\npub struct Client;\n".to_owned(),
        ),
    ];
    assert_eq!(find_cycle(&graph(&sources)), None);
    // `v2` taking something of `v1`'s closes v2 → v1 → hue → v2.
    sources[2].1.push_str("use super::v1::Client as V1;\n");
    let cycle = find_cycle(&graph(&sources)).expect("the cycle through the folder is found");
    assert_eq!(
        cycle,
        [
            "clients::hue::v2",
            "clients::hue::v1",
            "clients::hue",
            "clients::hue::v2"
        ]
    );
}

#[test]
fn the_layer_check_reports_what_the_table_does_not_allow() {
    let doc =
        "# A\n\n## Layers\n\n| layer | modules | inside the layer | what |\n|---|---|---|---|\n\
               | roles | `cli` `http` | may use each other | |\n\
               | io | `clients` `store` | do not use each other | |\n\
               | core | `core` | | |\n\n## Code map\n\n| `x` | y |\n";
    let table = parse_layers(doc);
    assert_eq!(table.len(), 3);
    let sources = |extra: &[(&str, &str)]| {
        let mut s: Vec<(String, String)> = [
            ("cli", "use crate::http::Router;\n"),
            ("http", "pub struct Router;\nuse crate::store::Store;\n"),
            ("clients", "use crate::core::Presence;\n"),
            ("store", "pub struct Store;\n"),
            ("core", "pub struct Presence;\n"),
        ]
        .iter()
        .chain(extra)
        .map(|(m, c)| (m.to_string(), c.to_string()))
        .collect();
        s.sort();
        s
    };
    assert_eq!(
        layer_violations(&table, &graph(&sources(&[]))),
        Vec::<String>::new()
    );

    let mut wrong = sources(&[("files", "")]);
    for (m, code) in &mut wrong {
        match m.as_str() {
            "core" => code.push_str("use crate::http::Router;\n"),
            "store" => code.push_str("use crate::clients::Client;\n"),
            "clients" => code.push_str("pub struct Client;\n"),
            _ => {}
        }
    }
    assert_eq!(
        layer_violations(&table, &graph(&wrong)),
        [
            "`files` is a top-level module missing from the table",
            "core → http: up from layer core to layer roles",
            "store → clients: the modules of layer io do not use each other",
        ]
    );
    let mut gone = sources(&[]);
    gone.retain(|(m, _)| m != "clients");
    assert_eq!(
        layer_violations(&table, &graph(&gone)),
        ["the table names `clients`, which is not a module of src/"]
    );
}

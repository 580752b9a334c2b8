//! The layering rule written in `src/lib.rs` ("Layers"), checked against the code:
//! every `crate::` path in `src/` must point to the same layer or one below, and the
//! modules must not use each other in a loop. A new arrow back up fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `0. `config`: ...` lines of the crate documentation: module -> layer. A
/// submodule may be listed on its own (`server::drain`), below its parent.
fn layers() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("//! ") else {
            continue;
        };
        let Some((number, names)) = rest.split_once(". ") else {
            continue;
        };
        let Ok(layer) = number.parse::<usize>() else {
            continue;
        };
        let names = names.split(": ").next().unwrap();
        for name in names.split('`').skip(1).step_by(2) {
            out.insert(name.to_owned(), layer);
        }
    }
    assert!(!out.is_empty(), "no layer list in src/lib.rs");
    out
}

/// Every `.rs` file under `src/` with its module path (`json/parse.rs` is
/// `["json", "parse"]`; `mod.rs` names its folder).
fn files() -> Vec<(Vec<String>, String)> {
    fn walk(dir: &Path, prefix: &[String], out: &mut Vec<(Vec<String>, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut p = prefix.to_vec();
                if name != "mod" {
                    p.push(name);
                }
                out.push((p, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&src(), &[], &mut out);
    // The crate root and the binary are above every layer.
    out.retain(|(p, _)| !matches!(p.as_slice(), [f] if f == "lib" || f == "main"));
    out
}

/// The layer of a module path: its own entry in the list if it has one
/// (`server::drain`), else its top-level module's.
fn layer_of(layers: &BTreeMap<String, usize>, path: &[String]) -> Option<usize> {
    (1..=path.len())
        .rev()
        .find_map(|n| layers.get(&path[..n].join("::")).copied())
}

/// The unit the cycle check works on: `telemetry::metrics`, `domain::greet`, `routes`.
fn unit(path: &[String]) -> String {
    match path {
        [top, sub, ..]
            if ["domain", "server", "telemetry", "json", "ids", "config"]
                .contains(&top.as_str()) =>
        {
            format!("{top}::{sub}")
        }
        [top, ..] => top.clone(),
        [] => String::new(),
    }
}

/// The `crate::a::b` paths a file's code names (comments and docs excluded).
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let path: Vec<String> = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap()
                .split("::")
                .take_while(|s| s.chars().next().is_some_and(char::is_lowercase))
                .map(str::to_owned)
                .collect();
            // `use crate::telemetry::{metrics::{self, Metrics}, spans}` names both modules.
            if let Some(group) = rest.strip_prefix(&format!("{}::{{", path.join("::"))) {
                for item in top_level_items(group) {
                    let item = item.trim().split("::").next().unwrap().trim();
                    if item.chars().next().is_some_and(char::is_lowercase) && item != "self" {
                        let mut p = path.clone();
                        p.push(item.to_owned());
                        out.push(p);
                    }
                }
            }
            if !path.is_empty() {
                out.push(path);
            }
        }
    }
    out
}

/// The comma-separated items of a `{...}` group (its opening brace already
/// consumed), split only at its own level.
fn top_level_items(group: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (0usize, 0, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

#[test]
fn every_module_has_a_layer() {
    let layers = layers();
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        {
            assert!(
                layers.contains_key(name),
                "module {name} is not in the layer list of src/lib.rs"
            );
        }
    }
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let layers = layers();
    let mut violations = Vec::new();
    for (path, code) in files() {
        let own = layer_of(&layers, &path).expect("every file's module has a layer");
        for target in crate_paths(&code) {
            let Some(theirs) = layer_of(&layers, &target) else {
                panic!("{} names crate::{} (no layer)", path.join("::"), target[0]);
            };
            if theirs > own {
                violations.push(format!(
                    "{} (layer {own}) uses crate::{} (layer {theirs})",
                    path.join("::"),
                    target.join("::")
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn modules_do_not_use_each_other_in_a_loop() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in files() {
        let from = unit(&path);
        for target in crate_paths(&code) {
            let to = unit(&target);
            if to != from && !to.is_empty() {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = stack.iter().position(|n| n == node) {
            panic!("modules in a loop: {} -> {node}", stack[at..].join(" -> "));
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, stack, done);
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done);
    }
    assert!(edges.len() > 5, "the import graph looks empty: {edges:?}");
}

#[test]
fn a_listed_submodule_has_its_own_layer() {
    let layers = layers();
    let path = |p: &str| p.split("::").map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(layer_of(&layers, &path("server::drain")), Some(1));
    assert_eq!(layer_of(&layers, &path("server::connection")), Some(5));
    assert_eq!(layer_of(&layers, &path("server")), Some(5));
}

#[test]
fn the_checker_sees_grouped_and_nested_paths() {
    let paths = crate_paths(
        "use crate::telemetry::{metrics::{self, Metrics}, spans};\nlet x = crate::routes::Limits::default(); // crate::server\n",
    );
    let names: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert!(
        names.contains(&"telemetry::metrics".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"telemetry::spans".to_owned()), "{names:?}");
    assert!(names.contains(&"routes".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("server")), "{names:?}");
}

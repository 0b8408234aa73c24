//! The architecture invariants of ARCHITECTURE.md that the compiler does not check, checked on the sources: no two
//! modules of a crate import each other in a circle, only the wire layer knows XML-RPC, and the production
//! controller carries neither the agent nor the test harness.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path inside its crate (`lib.rs` is the root, `a/mod.rs` and `a.rs` are `a`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("a file of the crate").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("lib" | "main" | "mod")) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its unit tests.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Paths a file names: `crate::a::b`, `super::a`, `super::{a, b}`, and `a::x` for a child module `a`.
fn named_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    // The identifiers of the path that starts `s`: `a::b::C` of `a::b::C { .. }`.
    let idents = |s: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = s.trim_start();
        loop {
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            out.push(rest[..end].to_string());
            match rest[end..].strip_prefix("::") {
                Some(more) => rest = more,
                None => break,
            }
        }
        out
    };
    let bytes = code.as_bytes();
    let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
    for (keyword, base) in [("crate::", Vec::new()), ("super::", parent)] {
        for (i, _) in code.match_indices(keyword) {
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
                continue;
            }
            let rest = &code[i + keyword.len()..];
            match rest.strip_prefix('{') {
                Some(group) => {
                    for item in group.split('}').next().unwrap_or("").split(',') {
                        paths.push([base.clone(), idents(item)].concat());
                    }
                }
                None => paths.push([base.clone(), idents(rest)].concat()),
            }
        }
    }
    for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        if let Some((first, _)) = word.split_once("::")
            && !first.is_empty()
            && first != "crate"
            && first != "super"
            && first != "self"
        {
            paths.push([module.to_vec(), vec![first.to_string()]].concat());
        }
    }
    paths
}

/// The module each path resolves to (its longest prefix that is a module), or the crate root for items of it.
fn resolve(modules: &BTreeSet<Vec<String>>, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
        .or_else(|| path.first().filter(|p| p.chars().next().is_some_and(char::is_uppercase)).map(|_| Vec::new()))
}

fn cycle_from(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>, start: &[String]) -> Option<Vec<Vec<String>>> {
    let mut stack = vec![(start.to_vec(), vec![start.to_vec()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in edges.get(&node).into_iter().flatten() {
            if next.as_slice() == start {
                return Some([path.clone(), vec![next.clone()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn no_two_modules_of_a_crate_import_each_other_in_a_circle() {
    let mut cycles = Vec::new();
    for entry in std::fs::read_dir(workspace().join("crates")).expect("crates/").flatten() {
        let src = entry.path().join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        // A binary beside a library is a crate of its own.
        let has_lib = src.join("lib.rs").exists();
        files.retain(|f| !(has_lib && f == &src.join("main.rs")));
        let modules: BTreeMap<Vec<String>, String> = files
            .iter()
            .map(|f| (module_of(&src, f), code(&std::fs::read_to_string(f).expect("a readable source file"))))
            .collect();
        let names: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (module, text) in &modules {
            for path in named_paths(text, module) {
                if let Some(target) = resolve(&names, &path)
                    && &target != module
                {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
        for module in modules.keys() {
            if let Some(cycle) = cycle_from(&edges, module) {
                let shown: Vec<String> =
                    cycle.iter().map(|m| if m.is_empty() { "(root)".into() } else { m.join("::") }).collect();
                cycles.push(format!("{}: {}", entry.file_name().to_string_lossy(), shown.join(" -> ")));
            }
        }
    }
    assert!(cycles.is_empty(), "module import circles:\n{}", cycles.join("\n"));
}

#[test]
fn only_the_wire_layer_knows_xml_rpc_and_the_controller_carries_no_agent() {
    let mut knows = BTreeSet::new();
    for entry in std::fs::read_dir(workspace().join("crates")).expect("crates/").flatten() {
        let mut files = Vec::new();
        rust_files(&entry.path().join("src"), &mut files);
        for f in files {
            if code(&std::fs::read_to_string(&f).expect("a readable source file")).contains("dxr") {
                knows.insert(f.strip_prefix(workspace()).expect("inside the workspace").display().to_string());
            }
        }
    }
    let allowed =
        ["crates/agent-client/src/lib.rs", "crates/protocol/src/wire/call.rs", "crates/shop-agent/src/rpc.rs"];
    let others: Vec<&String> = knows.iter().filter(|f| !allowed.contains(&f.as_str())).collect();
    assert!(others.is_empty(), "files outside the wire layer that use dxr: {others:?}");

    let manifest = std::fs::read_to_string(workspace().join("crates/office-controller/Cargo.toml")).expect("manifest");
    let normal = manifest.split("[dependencies]").nth(1).and_then(|s| s.split("\n[").next()).expect("[dependencies]");
    for forbidden in ["shop-agent", "testbed", "dxr"] {
        assert!(
            !normal.lines().any(|l| l.trim_start().starts_with(forbidden)),
            "office-controller depends on {forbidden}"
        );
    }
}

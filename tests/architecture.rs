//! The layers of `src/` (docs/architecture.md), checked from the source text: no root, no
//! kernel, a few milliseconds.
//!
//! Each folder under `src/` is one layer; a file may name (`crate::<layer>`) only the layers
//! its own layer may import. Test modules (everything from a file's first `#[cfg(test)]`,
//! which clippy keeps last) are exempt: a unit test may build its fixtures with any layer.
//! Also checked: `unsafe` only in the nf_tables FFI module, `anyhow` only in the engine and
//! the command line, `main.rs` a short dispatch, and a `//!` doc on every file saying what
//! it owns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, each with the layers it may import (besides itself).
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("config", &["model"]),
    ("desired", &["model", "config"]),
    ("plan", &["model", "config", "desired"]),
    ("render", &["model", "config", "desired", "plan"]),
    ("host", &["model"]),
    ("engine", &["model", "config", "desired", "plan", "render", "host"]),
    ("cli", &["model", "config", "desired", "plan", "render", "host", "engine"]),
];

/// Where `unsafe` may appear: the FFI edge to libnftnl and libmnl (and the socket options
/// nix lacks).
const UNSAFE_ALLOWED: &str = "host/nft/ffi.rs";

/// Macros that expand to unsafe code (nix's socket option definitions): only where
/// `unsafe` may appear.
const UNSAFE_MACROS: &[&str] = &["sockopt_impl", "getsockopt_impl", "setsockopt_impl"];

/// Where `anyhow` may appear: orchestration and the command line (typed errors below).
const ANYHOW_ALLOWED: &[&str] = &["engine/", "cli/", "main.rs"];

/// The most lines `main.rs` may have: it parses and dispatches.
const MAIN_MAX_LINES: usize = 80;

/// One file's source: its path under `src/`, and its lines before the test module.
struct Source {
    rel: String,
    lines: Vec<String>,
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
            let lines = text.lines().take_while(|l| l.trim() != "#[cfg(test)]").map(str::to_string).collect();
            Source { rel, lines }
        })
        .collect()
}

/// The layer a file under `src/` belongs to: its folder, `cli` for `main.rs`, `None` for
/// the crate root `lib.rs`.
fn layer_of(rel: &str) -> Option<&str> {
    match rel.split_once('/') {
        Some((dir, _)) => Some(dir),
        None if rel == "main.rs" => Some("cli"),
        None => None,
    }
}

/// The code of a line without its `//` comment (string literals are not parsed: a
/// `crate::` inside a string would count, which the code base does not have).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Every `crate::<name>` (and, in the binary, `ecs_hostnet::<name>`) a line names.
fn named_layers(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for prefix in ["crate::", "ecs_hostnet::"] {
        let mut rest = line;
        while let Some(i) = rest.find(prefix) {
            let after = &rest[i + prefix.len()..];
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if end > 0 {
                out.push(&after[..end]);
            }
            rest = &after[end..];
        }
    }
    out
}

/// Import violations: `FILE:LINE: message`, one per offending name.
fn layer_violations(files: &[Source]) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut bad = Vec::new();
    for f in files {
        let Some(layer) = layer_of(&f.rel) else { continue };
        let Some(may) = allowed.get(layer) else {
            bad.push(format!("src/{}:1: folder `{layer}` is not a layer of docs/architecture.md", f.rel));
            continue;
        };
        for (n, line) in f.lines.iter().enumerate() {
            for name in named_layers(code(line)) {
                if name == layer || !allowed.contains_key(name) {
                    continue;
                }
                if !may.contains(&name) {
                    bad.push(format!(
                        "src/{}:{}: layer `{layer}` imports `{name}`; `{layer}` may import only {:?}",
                        f.rel,
                        n + 1,
                        may
                    ));
                }
            }
        }
    }
    bad
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let bad = layer_violations(&sources());
    assert!(bad.is_empty(), "imports across the layers that docs/architecture.md forbids:\n{}", bad.join("\n"));
}

#[test]
fn the_check_sees_a_forbidden_import() {
    let planted = |rel: &str, line: &str| Source { rel: rel.into(), lines: vec![line.into()] };
    let bad = layer_violations(&[
        planted("model/x.rs", "use crate::plan::Plan;"),
        planted("plan/x.rs", "    let t = crate::render::plan::text(p);"),
        planted("host/x.rs", "use crate::{model::ops::Op, plan};"),
        planted("engine/x.rs", "use crate::cli::Exit;"),
        planted("plan/y.rs", "use crate::desired::Desired; // crate::host in a comment is fine"),
        planted("render/x.rs", "use crate::plan::Plan;"),
    ]);
    assert_eq!(
        bad.iter().map(|b| b.split(": layer").next().unwrap()).collect::<Vec<_>>(),
        ["src/model/x.rs:1", "src/plan/x.rs:1", "src/engine/x.rs:1"],
        "{bad:#?}"
    );
    // `use crate::{model::ops::Op, plan}` names `plan` after a brace: that form is not used
    // in src/ (imports name their layer first), and is refused so the check cannot miss it.
    let braced: Vec<String> = sources()
        .iter()
        .flat_map(|f| f.lines.iter().enumerate().map(move |(n, l)| (f, n, l)))
        .filter(|(_, _, l)| code(l).contains("crate::{") || code(l).contains("ecs_hostnet::{"))
        .map(|(f, n, l)| format!("src/{}:{}: {}", f.rel, n + 1, l.trim()))
        .collect();
    assert!(
        braced.is_empty(),
        "imports that name several layers in one brace, which this check cannot see:\n{}",
        braced.join("\n")
    );
}

#[test]
fn unsafe_code_lives_only_at_the_ffi_edge() {
    let mut bad = Vec::new();
    for f in sources() {
        if f.rel.starts_with(UNSAFE_ALLOWED) {
            continue;
        }
        for (n, line) in f.lines.iter().enumerate() {
            let c = code(line);
            if c.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .any(|w| w == "unsafe" || UNSAFE_MACROS.contains(&w))
                && !c.contains("unsafe_code")
            {
                bad.push(format!("src/{}:{}: {}", f.rel, n + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "`unsafe` outside src/{UNSAFE_ALLOWED}:\n{}", bad.join("\n"));
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    assert!(lib.contains("#![deny(unsafe_code)]"), "src/lib.rs must deny unsafe code outside the FFI module");
}

#[test]
fn anyhow_stays_in_the_engine_and_the_command_line() {
    let mut bad = Vec::new();
    for f in sources() {
        if ANYHOW_ALLOWED.iter().any(|a| f.rel.starts_with(a)) {
            continue;
        }
        for (n, line) in f.lines.iter().enumerate() {
            if code(line).contains("anyhow") {
                bad.push(format!("src/{}:{}: {}", f.rel, n + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "anyhow below the engine (use a typed error):\n{}", bad.join("\n"));
}

#[test]
fn main_parses_and_dispatches() {
    let main = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs")).unwrap();
    let n = main.lines().count();
    assert!(
        n < MAIN_MAX_LINES,
        "src/main.rs has {n} lines; it parses and dispatches (under {MAIN_MAX_LINES}), commands live in src/cli/"
    );
}

/// The most lines a function of the command line may have: flags in, a call, output out.
const CLI_FN_MAX_LINES: usize = 60;

/// `(name, first line, lines)` of every function in `lines` (a `fn` line up to the `}` at
/// its own indentation; rustfmt puts it there).
fn functions(lines: &[String]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let Some(rest) = ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn "].iter().find_map(|p| t.strip_prefix(p))
        else {
            continue;
        };
        let indent = &l[..l.len() - t.len()];
        let close = format!("{indent}}}");
        if let Some(end) = lines[i..].iter().position(|x| *x == close || x.starts_with(&format!("{close} "))) {
            let name = rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("").to_string();
            out.push((name, i + 1, end + 1));
        }
    }
    out
}

#[test]
fn command_functions_stay_short() {
    let mut long = Vec::new();
    for f in sources().into_iter().filter(|f| f.rel.starts_with("cli/") || f.rel == "main.rs") {
        for (name, line, n) in functions(&f.lines) {
            if n > CLI_FN_MAX_LINES {
                long.push(format!("src/{}:{line}: fn {name} has {n} lines", f.rel));
            }
        }
    }
    assert!(
        long.is_empty(),
        "command-line functions over {CLI_FN_MAX_LINES} lines (move the work to the engine):\n{}",
        long.join("\n")
    );
    // The measure itself: a planted 3-line function is seen with its length.
    let planted: Vec<String> = ["fn a() {", "    x();", "}"].map(String::from).to_vec();
    assert_eq!(functions(&planted), [("a".to_string(), 1, 3)]);
}

#[test]
fn every_file_says_what_it_owns() {
    let undocumented: Vec<String> = sources()
        .into_iter()
        .filter(|f| !f.lines.first().is_some_and(|l| l.starts_with("//!")))
        .map(|f| format!("src/{}:1", f.rel))
        .collect();
    assert!(
        undocumented.is_empty(),
        "files without a `//!` module doc on their first line:\n{}",
        undocumented.join("\n")
    );
}

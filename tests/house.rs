//! Keeps the house of `docs/architecture.md`: each room of `src/` (a top-level module, and
//! `main.rs`) imports only rooms on the floors below its own. In particular nothing under
//! `audit/`, `registry/`, `credentials/` or `node_config/` imports the server, and nothing but
//! `main.rs` and `cli/` imports the command line or reads the process's arguments.
//!
//! An import is any path through `crate::` (or `super::` climbing out of the room, or
//! `mirrorswap::` in `main.rs`), in a `use` or inline, test modules included; comments and
//! string literals are not read.

use std::path::{Path, PathBuf};

use regex::Regex;

/// The floors, from the engine up; a room may import the rooms of lower floors only.
const FLOORS: &[&[&str]] = &[
    &["rewrite", "error_chain", "plural", "certs"],
    &["rules_file", "node_config"],
    &["credentials"],
    &["registry", "k8s"],
    &["sync"],
    &["server", "audit"],
    &["cli"],
    &["main"],
];

/// The rooms that must not import the server (the issue that built the house).
const BELOW_THE_SERVER: &[&str] =
    &["audit", "sync", "registry", "credentials", "node_config", "k8s", "rules_file", "rewrite"];

/// One import of another room: where, the room, and the line as written.
#[derive(Debug)]
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
    code: String,
}

fn floor(room: &str) -> Option<usize> {
    FLOORS.iter().position(|rooms| rooms.contains(&room))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The module path of a file under `src/` (`src/audit/mod.rs` is `[audit]`, `src/k8s/api.rs`
/// `[k8s, api]`; `lib.rs` and `main.rs` are their crate's root, `[]`).
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// `text` with comments and the insides of string and character literals blanked (lines
/// kept), so that a `{` in a JSON test string or a path in a doc comment is not code.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let starts = |prefix: &str| prefix.chars().enumerate().all(|(k, c)| rest.get(k) == Some(&c));
        if starts("//") {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if starts("/*") {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i..].starts_with(&['/', '*']) {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i..].starts_with(&['*', '/']) {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if (starts("r\"") || starts("r#") || starts("br\"") || starts("br#"))
            && !chars.get(i.wrapping_sub(1)).is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            // A raw string: r#"…"# closes at the quote followed by as many #.
            let open = if chars[i] == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[open..].iter().take_while(|c| **c == '#').count();
            if chars.get(open + hashes) != Some(&'"') {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            let body = open + hashes + 1;
            let tail: String = chars[body..].iter().collect();
            let end = body + tail.find(&close).map_or(tail.chars().count(), |at| tail[..at].chars().count());
            out.push('"');
            (i + 1..end).for_each(|k| out.push(blank(chars[k])));
            out.push('"');
            i = (end + close.chars().count()).min(chars.len());
        } else if chars[i] == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if chars[i] == '\'' && (rest.get(1) == Some(&'\\') || rest.get(2) == Some(&'\'')) {
            // A character literal ('{', '\'', '\\'), not a lifetime.
            let from = if rest.get(1) == Some(&'\\') { i + 3 } else { i + 2 };
            let end = (from..chars.len()).find(|&k| chars[k] == '\'').unwrap_or(chars.len());
            out.push('\'');
            (i + 1..end).for_each(|_| out.push(' '));
            out.push('\'');
            i = end + 1;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Byte ranges of the inline modules (`mod tests { … }`) of `code`, each one module deeper.
fn inline_modules(code: &str) -> Vec<(usize, usize)> {
    let opening = Regex::new(r"\bmod\s+\w+\s*\{").unwrap();
    opening
        .find_iter(code)
        .map(|found| {
            let mut depth = 0;
            let end = code[found.end() - 1..]
                .char_indices()
                .find(|(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(code.len(), |(at, _)| found.end() - 1 + at);
            (found.start(), end)
        })
        .collect()
}

/// The paths a `use` tree names: `crate::{a, b::{c, d}}` is `crate::a`, `crate::b::c`, `crate::b::d`.
fn flatten(tree: &str, prefix: &str, paths: &mut Vec<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        paths.push(format!("{prefix}{path}").replace(char::is_whitespace, ""));
        return;
    };
    let close = tree.rfind('}').unwrap_or(tree.len());
    let base = format!("{prefix}{}", tree[..open].trim());
    let (mut depth, mut start) = (0, open + 1);
    for (at, c) in tree.char_indices().filter(|(at, _)| *at > open && *at < close) {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                flatten(&tree[start..at], &base, paths);
                start = at + 1;
            }
            _ => {}
        }
    }
    if !tree[start..close].trim().is_empty() {
        flatten(&tree[start..close], &base, paths);
    }
}

/// The room a path leads to from module `module`, when it leaves the crate root: `crate::x::…`
/// (or `mirrorswap::x::…` in the binary) is `x`; `super::` climbs from `module`.
fn room_of(path: &str, module: &[String], binary: bool) -> Option<String> {
    let mut segments = path.split("::").filter(|s| !s.is_empty());
    let first = segments.next()?;
    let mut at: Vec<String> = match first {
        "crate" => Vec::new(),
        "mirrorswap" if binary => Vec::new(),
        "super" => module[..module.len().checked_sub(1)?].to_vec(),
        "self" => module.to_vec(),
        _ => return None,
    };
    let mut rest = segments.peekable();
    while rest.peek() == Some(&"super") {
        rest.next();
        at.pop()?;
    }
    at.first()
        .cloned()
        .or_else(|| rest.next().filter(|s| s.chars().all(|c| c.is_alphanumeric() || c == '_')).map(str::to_owned))
}

/// Every import of another room in the crate's sources.
fn imports() -> Vec<Import> {
    let inline_path = Regex::new(r"\b(?:crate|super|self|mirrorswap)(?:\s*::\s*(?:super|\w+))+").unwrap();
    let use_tree = Regex::new(r"\buse\s+([^;]+);").unwrap();
    let mut found = Vec::new();
    let root = src();
    for path in sources(&root) {
        let relative = path.strip_prefix(&root).unwrap().to_path_buf();
        if relative == Path::new("lib.rs") {
            continue; // It declares the rooms.
        }
        let file = format!("src/{}", relative.display());
        let binary = relative == Path::new("main.rs");
        let module = module_path(&relative);
        let from = if binary { "main".to_owned() } else { module[0].clone() };
        let text = std::fs::read_to_string(&path).unwrap();
        let code = code_only(&text);
        let inline = inline_modules(&code);
        let mut paths: Vec<(usize, String)> = Vec::new();
        for tree in use_tree.captures_iter(&code) {
            let mut flat = Vec::new();
            flatten(&tree[1], "", &mut flat);
            paths.extend(flat.into_iter().map(|path| (tree.get(1).unwrap().start(), path)));
        }
        paths.extend(
            inline_path.find_iter(&code).map(|found| (found.start(), found.as_str().replace(char::is_whitespace, ""))),
        );
        for (at, path) in paths {
            // Inside `mod tests { … }`, `super` first climbs out of the inline module.
            let mut here = module.clone();
            let depth = inline.iter().filter(|(start, end)| (*start..*end).contains(&at)).count();
            here.extend(std::iter::repeat_n("(inline)".to_owned(), depth));
            let Some(to) = room_of(&path, &here, binary) else { continue };
            if to == from {
                continue;
            }
            let line = code[..at].matches('\n').count() + 1;
            let code = text.lines().nth(line - 1).unwrap_or("").trim().to_owned();
            found.push(Import { file: file.clone(), line, from: from.clone(), to, code });
        }
    }
    // A `use crate::x::y;` is both a use tree and an inline path: once is enough.
    found.sort_by(|a, b| (&a.file, a.line, &a.to).cmp(&(&b.file, b.line, &b.to)));
    found.dedup_by(|a, b| (&a.file, a.line, &a.to) == (&b.file, b.line, &b.to));
    assert!(found.len() > 50, "expected the rooms to import each other: found {}", found.len());
    found
}

#[test]
fn every_room_has_a_floor() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared = Regex::new(r"(?m)^pub mod (\w+);").unwrap();
    let mut rooms: Vec<String> = declared.captures_iter(&lib).map(|module| module[1].to_owned()).collect();
    rooms.push("main".to_owned());
    for room in &rooms {
        assert!(floor(room).is_some(), "src/{room}: a new room; give it its floor here and in docs/architecture.md");
    }
    let architecture = std::fs::read_to_string(src().join("../docs/architecture.md")).unwrap();
    for room in rooms.iter().filter(|room| *room != "main") {
        let named = [format!("`src/{room}/`"), format!("`src/{room}.rs`")];
        assert!(named.iter().any(|name| architecture.contains(name)), "docs/architecture.md does not place src/{room}");
    }
}

#[test]
fn rooms_import_only_the_floors_below() {
    let upward: Vec<String> = imports()
        .into_iter()
        .filter(|import| floor(&import.to) >= floor(&import.from))
        .map(|import| {
            let Import { file, line, from, to, code } = import;
            format!("{file}:{line}: `{code}`: {from} imports {to}, which is not on a floor below it")
        })
        .collect();
    assert!(
        upward.is_empty(),
        "a room imports only the floors below it (docs/architecture.md):\n{}",
        upward.join("\n")
    );
}

#[test]
fn nothing_below_the_server_imports_it() {
    let imports = imports();
    let offending: Vec<String> = imports
        .iter()
        .filter(|import| BELOW_THE_SERVER.contains(&import.from.as_str()) && import.to == "server")
        .map(|import| format!("{}:{}: `{}`", import.file, import.line, import.code))
        .collect();
    assert!(offending.is_empty(), "the server is above these rooms:\n{}", offending.join("\n"));
    assert!(
        imports.iter().any(|import| import.from == "cli" && import.to == "server"),
        "the scan sees cli's import of the server"
    );
}

#[test]
fn only_main_and_cli_use_the_command_line() {
    let imports = imports();
    let offending: Vec<String> = imports
        .iter()
        .filter(|import| import.to == "cli" && import.from != "main")
        .map(|import| format!("{}:{}: `{}`", import.file, import.line, import.code))
        .collect();
    assert!(offending.is_empty(), "only main.rs imports the command line:\n{}", offending.join("\n"));
    assert!(imports.iter().any(|import| import.from == "main" && import.to == "cli"), "the scan sees main.rs");
    // Nor does any other room read the process's arguments (clap's `Parser::parse()` does).
    let reads_arguments = Regex::new(r"\benv::args(_os)?\b|::parse\(\s*\)").unwrap();
    let root = src();
    for path in sources(&root) {
        let relative = path.strip_prefix(&root).unwrap();
        if relative.starts_with("cli") || relative == Path::new("main.rs") {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(&path).unwrap());
        if let Some(found) = reads_arguments.find(&code) {
            let line = code[..found.start()].matches('\n').count() + 1;
            panic!("src/{}:{line}: reads the process's arguments: only main.rs and cli/ do", relative.display());
        }
    }
}

#[test]
fn the_scanner_reads_code_as_rust_does() {
    let code = code_only(
        "let a = \"crate::server\"; // crate::cli\nlet b = r#\"{\"x\": \"}\"#; let c = ['{', '\\\\', '\\'']; fn f<'a>() {}\n",
    );
    assert!(!code.contains("crate::") && code.matches('{').count() == 1 && code.contains("fn f<'a>()"), "{code}");
    assert_eq!(code.lines().count(), 2);
    let mut paths = Vec::new();
    flatten("crate::{audit::plan::{self, Plan}, k8s::api as kube_api, server}", "", &mut paths);
    assert_eq!(paths, ["crate::audit::plan::self", "crate::audit::plan::Plan", "crate::k8s::api", "crate::server"]);
    let module = |parts: &[&str]| parts.iter().map(|part| part.to_string()).collect::<Vec<_>>();
    assert_eq!(
        room_of("super::super::client::Answer", &module(&["registry", "hosts", "(inline)"]), false),
        Some("registry".into())
    );
    assert_eq!(room_of("super::server::State", &module(&["audit"]), false), Some("server".into()));
    assert_eq!(room_of("super::Inventory", &module(&["audit", "input"]), false), Some("audit".into()));
    assert_eq!(room_of("mirrorswap::cli::run", &[], true), Some("cli".into()));
    assert_eq!(room_of("kube::Api", &module(&["k8s", "api"]), false), None);
}

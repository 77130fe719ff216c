//! Loading a rules file costs memory proportional to the file, whatever its
//! shape: each hostile file below (up to the 32 MiB cap) is checked by the
//! real binary in a child process, which reports its own peak memory
//! (`/proc/self/status` VmHWM). Peak must stay within the same run's baseline
//! (a one-rule file) plus 4x the file's size, and each load must end within
//! a generous time (a debug build; the release binary is many times faster).
//! Files of many lines are bounded by what parsing may produce: at most
//! `MAX_RULES` rules and `MAX_ERRORS` errors (then reading stops), and
//! `MAX_WARNINGS` warnings listed (the rest counted). No output line quotes
//! more than ~200 characters of a value.
//! Before the fix, 990 nested `imageReplacementRules: |` wrappers (1 MB) took
//! 671 MB and 5,000 of them were killed for memory; one 1 MB anchor named by
//! 2,000 aliases (1 MB) took 1.99 GB (debug build), every error quoting the
//! whole value.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mirrorswap::rewrite::MAX_RULES;
use mirrorswap::rules_file::MAX_RULES_BYTES;

const MIB: u64 = 1024 * 1024;
/// For the debug build the tests run; a bound against hanging, not a speed target.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// `imageReplacementRules: |` blocks nested until the file is about `size` bytes.
fn nested_blocks(size: u64) -> String {
    let mut text = String::new();
    let mut depth = 0;
    // Each line, and the innermost pair after it, must still fit.
    while (text.len() + 4 * depth + 60) as u64 <= size {
        text.push_str(&"  ".repeat(depth));
        text.push_str("imageReplacementRules: |\n");
        depth += 1;
    }
    text.push_str(&"  ".repeat(depth));
    text.push_str("\"a.io\": \"m.example.org/a\"\n");
    text
}

/// The same wrappers as nested mappings.
fn nested_mappings(size: u64) -> String {
    let mut text = String::new();
    let mut depth = 0;
    while (text.len() + 2 * depth + 30) as u64 <= size {
        text.push_str(&"  ".repeat(depth));
        text.push_str(if depth % 2 == 0 { "imageReplacementRules:\n" } else { "registryMappingRules:\n" });
        depth += 1;
    }
    text
}

/// `- - - - …`: one level of nesting every two bytes.
fn deep_sequence(size: u64) -> String {
    "- ".repeat((size / 2 - 8) as usize) + "x\n"
}

/// One huge literal string (a certificate bundle, say) next to the rules.
fn big_string(size: u64) -> String {
    let mut text = String::from("registryMappingRules:\n  \"a.io\": \"m.example.org/a\"\ncerts: |\n");
    let line = "  MIIDBzCCAe+gAwIBAgIJAJzQ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH\n";
    while (text.len() + line.len()) as u64 <= size {
        text.push_str(line);
    }
    text
}

/// One long anchored string of `anchor` bytes, then rules that name it through `aliases`
/// aliases (as many as fit in `size` bytes when `None`): each alias was a copy of the string.
fn alias_copies(size: u64, anchor: usize, aliases: Option<usize>) -> String {
    let mut text = format!("anchor: &a \"{}\"\nregistryMappingRules:\n", "x".repeat(anchor));
    for i in 0..aliases.unwrap_or(usize::MAX) {
        let line = format!("  \"r{i}.io\": *a\n");
        if (text.len() + line.len()) as u64 > size {
            break;
        }
        text.push_str(&line);
    }
    text
}

/// One rule whose target is a 1 MB string: every message about it once quoted all of it.
fn long_target(size: u64) -> String {
    format!("\"a.io\": \"harbor.example.org/{}\"\n", "x".repeat(size as usize - 40))
}

/// The rules under an explicit key of about `size` bytes: `check` names the path to them.
fn long_key_path(size: u64) -> String {
    format!("? \"{}\"\n: registryMappingRules:\n    \"a.io\": m.example.org/a\n", "k".repeat(size as usize - 60))
}

/// Maps lines from `line(i)`, i = 0, 1, …, until the file is about `size` bytes (after `head`).
fn lines_until(size: u64, head: &str, line: impl Fn(usize) -> String) -> String {
    let mut text = String::from(head);
    for index in 0.. {
        let next = line(index);
        if (text.len() + next.len()) as u64 > size {
            break;
        }
        text.push_str(&next);
    }
    text
}

/// As many distinct one-line rules as fit.
fn packed_rules(size: u64) -> String {
    lines_until(size, "", |i| format!("r{i}.io::m.example.org/r{i}\n"))
}

/// The most rules a file may hold, each with a source and a target as long as a reference
/// allows, and comments filling the rest: the heaviest file that loads.
fn long_rules_at_the_bound(size: u64) -> String {
    let mut text = String::with_capacity(size as usize);
    for i in 0..MAX_RULES {
        let stem = format!("registry.example.org/team-{i}/");
        let source = format!("{stem}{}", "p".repeat(250 - stem.len()));
        let target = format!("harbor.example.org/m{}", "q".repeat(230));
        text.push_str(&format!("{source}::{target}\n"));
    }
    let comment = format!("# {}\n", "c".repeat(76));
    text.push_str(&comment.repeat((size as usize).saturating_sub(text.len()) / comment.len()));
    text
}

/// A bare YAML mapping with as many pairs as fit.
fn packed_yaml_pairs(size: u64) -> String {
    lines_until(size, "", |i| format!("\"r{i}.io\": \"m.example.org/r{i}\"\n"))
}

/// Two bytes of error per line.
fn bad_lines(size: u64) -> String {
    "a b\n".repeat((size / 4) as usize)
}

/// One rule, then empty comma-list entries: one warning per two bytes.
fn empty_entries(size: u64) -> String {
    let head = "a.io::m.example.org/a\n";
    head.to_owned() + &",\n".repeat((size as usize - head.len()) / 2)
}

/// Runs `mirrorswap check` on `path`; exit code, stdout, peak memory in KiB, and how long it took.
fn check(path: &Path) -> (i32, String, u64, Duration) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_mirrorswap"))
        .args(["check", "--report-peak-memory", "--rules"])
        .arg(path)
        .output()
        .expect("runs mirrorswap");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let peak = stderr
        .lines()
        .find_map(|line| line.strip_prefix("peak memory: VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory reported: {stderr}"));
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), peak, took)
}

#[test]
fn hostile_rules_files_load_or_fail_within_4x_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let baseline_file = dir.path().join("one.yaml");
    std::fs::write(&baseline_file, "\"a.io\": \"m.example.org/a\"\n").unwrap();
    let (code, _, baseline, _) = check(&baseline_file);
    assert_eq!(code, 0);

    let too_many = format!(":{}: more than {MAX_RULES} rules", MAX_RULES + 1);
    let at_the_bound = format!("{MAX_RULES} rules");
    // (name, text, expected exit code, text expected in the output)
    let cases: Vec<(&str, String, i32, &str)> = vec![
        ("nested-blocks-1MB", nested_blocks(MIB), 2, ":2: `imageReplacementRules` inside `imageReplacementRules`"),
        // The file: one 1 MB anchor, 2,000 aliases. Storing the anchor and one copy is
        // more than the file: refused at the first alias.
        ("alias-copies-1MB", alias_copies(2 * MIB, 1_000_000, Some(2_000)), 2, ":3: YAML anchors and aliases"),
        ("long-target-1MB", long_target(MIB), 2, ":1: invalid target `harbor.example.org/xxx"),
        ("long-key-path-1MB", long_key_path(MIB), 0, "bytes]…kkkkkkkkkkkkkkkkkkk.registryMappingRules (line 2)"),
        // A third of the file anchored: one copy fits, the second is refused.
        (
            "alias-copies-32MiB",
            alias_copies(MAX_RULES_BYTES, MAX_RULES_BYTES as usize / 3, None),
            2,
            ":4: YAML anchors and aliases here would copy more text than the file holds",
        ),
        ("nested-blocks-32MiB", nested_blocks(MAX_RULES_BYTES), 2, ":2: `imageReplacementRules` inside"),
        ("nested-mappings-32MiB", nested_mappings(MAX_RULES_BYTES), 2, ":2: `registryMappingRules` inside"),
        ("deep-sequence-32MiB", deep_sequence(MAX_RULES_BYTES), 2, "nested deeper than"),
        ("big-string-32MiB", big_string(MAX_RULES_BYTES), 0, "1 rule"),
        ("packed-rules-32MiB.conf", packed_rules(MAX_RULES_BYTES), 2, &too_many),
        ("long-rules-at-the-bound-32MiB.conf", long_rules_at_the_bound(MAX_RULES_BYTES), 0, &at_the_bound),
        ("packed-yaml-pairs-32MiB", packed_yaml_pairs(MAX_RULES_BYTES), 2, &too_many),
        ("bad-lines-32MiB.conf", bad_lines(MAX_RULES_BYTES), 2, ":1000: 1000 errors: reading stopped here"),
        ("empty-entries-32MiB.conf", empty_entries(MAX_RULES_BYTES), 0, "more warnings not shown"),
    ];
    let mut report = Vec::new();
    for (name, text, expected_code, expected) in cases {
        let size = text.len() as u64;
        assert!(size <= MAX_RULES_BYTES, "{name}: {size} bytes is over the cap");
        let file = if name.ends_with(".conf") { name.to_owned() } else { format!("{name}.yaml") };
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let (code, stdout, peak, took) = check(&path);
        let grown = peak.saturating_sub(baseline) * 1024;
        report.push(format!("{name}: {size} bytes, peak {peak} KiB (baseline {baseline} KiB), {took:?}"));
        assert_eq!(code, expected_code, "{name}: {stdout}");
        assert!(stdout.contains(expected), "{name}: {stdout}");
        assert!(grown <= 4 * size, "{name}: peak grew by {grown} bytes for a {size}-byte file\n{}", report.join("\n"));
        assert!(took < TIME_LIMIT, "{name}: took {took:?}");
        // A message quotes at most ~200 characters of a value, whatever the file holds.
        let longest = stdout.lines().map(|line| line.chars().count()).max().unwrap_or(0);
        assert!(longest <= 600, "{name}: a {longest}-character line");
    }
    println!("{}", report.join("\n"));
}

//! The README's commands, run as pasted from the repository root (issue 25): every `mirrorswap`
//! command (`cargo run --release -- …` runs the same binary) of a `sh` block whose files are
//! the repository's, with the output it shows where it shows one. Output paths (`--out`,
//! `--out-dir`) go to a temporary directory and `serve` listens on loopback ports the system
//! picks; a command that needs a cluster (`--rules-secret`, `audit` without `-f`) or asks a
//! registry (`--swap-policy exists`, `--check-mirror`: harbor.example.org is no test host) is
//! not run, but every file it names must exist. The other tools' commands (curl, helm,
//! kubectl) must name files that exist too.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A command line of a `sh` block, the lines of output shown after it, and its block's line.
#[derive(Debug)]
struct Shown {
    words: Vec<String>,
    output: Vec<String>,
    line: usize,
}

/// Shell words: whitespace-separated, `'…'` and `"…"` quoting (what the README uses).
fn words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut started) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => (quote, started) = (Some(c), true),
            (None, c) if c.is_whitespace() => {
                if started || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            (None, c) => word.push(c),
        }
    }
    if started || !word.is_empty() {
        words.push(word);
    }
    words
}

/// The command of a line: before a pipe, a redirect or a trailing `  # comment`.
fn command_part(line: &str) -> &str {
    let mut quote = None;
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '|' | '>') => return line[..at].trim_end(),
            (None, '#') if line[..at].ends_with(' ') => return line[..at].trim_end(),
            (None, '&') if line[at..].starts_with("&&") => return line[..at].trim_end(),
            _ => {}
        }
    }
    line.trim_end()
}

/// Every command of the README's `sh` blocks with the output lines shown right after it:
/// plain lines after a `$ ` command, or `# ` lines right after any command.
fn shown_commands(readme: &str) -> Vec<Shown> {
    let mut shown: Vec<Shown> = Vec::new();
    let (mut in_sh, mut pending, mut prompt) = (false, String::new(), false);
    // Whether the line before was the last command or its output (a blank line or a comment of
    // its own ends that).
    let mut adjacent = false;
    for (index, raw) in readme.lines().enumerate() {
        if raw.starts_with("```") {
            (in_sh, adjacent) = (raw == "```sh", false);
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(continued) = raw.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        let line = format!("{pending}{raw}");
        pending.clear();
        let trimmed = line.trim();
        let output = match (adjacent, prompt) {
            (true, true) if !trimmed.is_empty() && !trimmed.starts_with("$ ") => Some(trimmed),
            (true, false) => trimmed.strip_prefix("# "),
            _ => None,
        };
        if let (Some(text), Some(last)) = (output, shown.last_mut()) {
            last.output.push(text.to_owned());
            continue;
        }
        adjacent = false;
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        prompt = trimmed.starts_with("$ ");
        let command = command_part(trimmed.strip_prefix("$ ").unwrap_or(trimmed));
        shown.push(Shown { words: words(command), output: Vec::new(), line: index + 1 });
        adjacent = true;
    }
    shown
}

/// The arguments of a mirrorswap command (`cargo run --release -- X` or `mirrorswap X`).
fn mirrorswap_args(words: &[String]) -> Option<Vec<String>> {
    match words.first().map(String::as_str) {
        Some("mirrorswap") => Some(words[1..].to_vec()),
        Some("cargo") => {
            let at = words.iter().position(|word| word == "--")?;
            Some(words[at + 1..].to_vec())
        }
        _ => None,
    }
}

/// The value of each `flag` in `args`.
fn values_of<'a>(args: &'a [String], flags: &[&str]) -> Vec<&'a str> {
    args.windows(2).filter(|pair| flags.contains(&pair[0].as_str())).map(|pair| pair[1].as_str()).collect()
}

fn assert_exists(path: &str, shown: &Shown) {
    assert!(
        root().join(path).exists(),
        "README line {}: `{}` names {path}, which does not exist",
        shown.line,
        shown.words.join(" ")
    );
}

#[test]
fn every_readme_command_runs_as_pasted_from_the_repository_root() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let commands = shown_commands(&readme);
    let dir = tempfile::tempdir().unwrap();
    let (mut ran, mut checked) = (0, 0);
    for (index, shown) in commands.iter().enumerate() {
        let Some(mut args) = mirrorswap_args(&shown.words) else {
            // curl's --data @FILE, helm's chart and values, scripts: the repository's files.
            for word in &shown.words {
                let path = word.strip_prefix('@').unwrap_or(word);
                if ["examples/", "helm/", "scripts/", "manifests/"].iter().any(|prefix| path.starts_with(prefix)) {
                    assert_exists(path, shown);
                    checked += 1;
                }
            }
            continue;
        };
        let command = args.first().cloned().unwrap_or_default();
        // Inputs: every file a command reads must be the repository's.
        let mut inputs = values_of(&args, &["--rules", "-f", "--filename", "--from", "--password-file"]);
        if matches!(command.as_str(), "serve" | "rewrite" | "audit") {
            inputs.extend(values_of(&args, &["--registry-auth", "--registry-ca"]));
        }
        if command == "sync" {
            inputs.extend(values_of(&args, &["--registry-auth", "--registry-ca", "--source-auth", "--images"]));
        }
        if command == "k3s" {
            inputs.extend(values_of(&args, &["--registry-auth"]));
        }
        for input in inputs.iter().filter(|input| **input != "-") {
            assert_exists(input, shown);
            checked += 1;
        }
        let needs_cluster = args.iter().any(|arg| arg == "--rules-secret" || arg == "--rules-configmap")
            || (command == "audit" && !args.iter().any(|arg| arg == "-f" || arg == "--filename"));
        let asks_registry = args.windows(2).any(|pair| pair[0] == "--swap-policy" && pair[1] == "exists")
            || args.iter().any(|arg| arg == "--check-mirror")
            || command == "sync";
        if needs_cluster || asks_registry {
            continue;
        }
        // Outputs go to the temporary directory.
        let out = dir.path().join(format!("out-{index}"));
        std::fs::create_dir_all(&out).unwrap();
        for at in 0..args.len().saturating_sub(1) {
            if matches!(args[at].as_str(), "--out" | "--out-dir") && args[at + 1] != "-" {
                args[at + 1] = out.join(Path::new(&args[at + 1]).file_name().unwrap()).display().to_string();
            }
        }
        if command == "certs" && !args.iter().any(|arg| arg == "--out-dir") {
            args.extend(["--out-dir".to_owned(), out.display().to_string()]);
        }
        let binary = env!("CARGO_BIN_EXE_mirrorswap");
        let envs = [
            ("MIRRORSWAP_LISTEN", "127.0.0.1:0".to_owned()),
            ("MIRRORSWAP_ADMIN_LISTEN", "127.0.0.1:0".to_owned()),
            ("MIRRORSWAP_DEV_CA_OUT", dir.path().join(format!("ca-{index}.pem")).display().to_string()),
        ];
        if command == "serve" {
            let mut child = Command::new(binary)
                .current_dir(root())
                .args(&args)
                .envs(envs.iter().map(|(name, value)| (*name, value.as_str())))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut log = String::new();
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let serving = loop {
                match lines.next() {
                    Some(Ok(line)) if line.contains("mirrorswap serving") => break true,
                    Some(Ok(line)) => log.push_str(&format!("{line}\n")),
                    _ => break false,
                }
                if Instant::now() > deadline {
                    break false;
                }
            };
            let _ = child.kill();
            let _ = child.wait();
            assert!(serving, "README line {}: `{}` did not start serving:\n{log}", shown.line, shown.words.join(" "));
            ran += 1;
            continue;
        }
        let output = Command::new(binary)
            .current_dir(root())
            .args(&args)
            .envs(envs.iter().map(|(name, value)| (*name, value.as_str())))
            .env_remove("COLUMNS")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "README line {}: `{}` failed:\n{stdout}{}",
            shown.line,
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        for expected in shown.output.iter().filter(|line| !line.contains('…')) {
            assert!(
                stdout.lines().any(|line| line.trim_end() == expected.trim_end()),
                "README line {}: `{}` prints no line {expected:?}:\n{stdout}",
                shown.line,
                args.join(" ")
            );
        }
        ran += 1;
    }
    assert!(ran >= 20 && checked >= 30, "ran {ran} commands, checked {checked} files: is the README parsed?");
}

/// What the README says about the repository itself stays true: the set-up commands, every
/// values file of the chart's `ci/` in the layout table, no feature announced as "coming".
#[test]
fn the_readme_describes_the_repository_as_it_is() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let setup = readme.split("## Set up on a fresh machine").nth(1).unwrap().split("\n## ").next().unwrap();
    let commands: Vec<&str> =
        setup.split("```sh\n").skip(1).map(|block| block.split("```").next().unwrap().trim()).collect();
    assert_eq!(commands, ["cargo run --release -- serve", "bash scripts/test.sh"]);
    let layout = readme.lines().find(|line| line.starts_with("| `helm/mirrorswap/` |")).unwrap();
    for entry in std::fs::read_dir(root().join("helm/mirrorswap/ci")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(layout.contains(&format!("`{name}`")), "the layout table does not list ci/{name}");
    }
    assert!(!readme.contains("is coming"), "the README announces something as coming");
    let examples = readme.lines().find(|line| line.starts_with("| `examples/` |")).unwrap();
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(examples.contains(&format!("`{name}/`")), "the layout table does not list examples/{name}/");
    }
}

//! `mirrorswap check`: validate a rules file and summarize what it holds.

use std::process::ExitCode;

use clap::Args;

use super::RulesArgs;
use crate::rewrite::{Problem, RuleKind, Severity, excerpt};
use crate::rules_file::LoadError;

/// Arguments of `mirrorswap check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub rules: RulesArgs,
    /// Exit 1 when there are warnings (duplicates, shadowed rules, deprecated syntax, skipped
    /// lines, no rules at all).
    #[arg(long, env = "MIRRORSWAP_STRICT")]
    pub strict: bool,
    /// Print the process's peak memory (VmHWM) on stderr before exiting: the bounds tests
    /// read it to check that loading stays proportional to the file.
    #[arg(long, env = "MIRRORSWAP_REPORT_PEAK_MEMORY", hide = true)]
    pub report_peak_memory: bool,
}

/// Prints every diagnostic as `FILE:LINE: reason`, then a summary line.
pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let code = summarize(args);
    if args.report_peak_memory {
        super::report_peak_memory();
    }
    code
}

fn summarize(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let origin = args.rules.rules.display().to_string();
    let loaded = match args.rules.load() {
        Ok(loaded) => loaded,
        Err(error @ LoadError::Io { .. }) => {
            eprintln!("{error}");
            return Ok(ExitCode::from(2));
        }
        Err(LoadError::Invalid { origin, diagnostics }) => {
            diagnostics.iter().for_each(|diagnostic| println!("{}", diagnostic.with_origin(&origin)));
            let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
            println!("{origin}: {errors} error{}: no rules loaded", plural(errors));
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(found) = &loaded.found {
        println!("{origin}: rules at {} (line {})", excerpt(&found.path), found.line);
    }
    loaded.messages().for_each(|message| println!("{message}"));
    let rules = &loaded.rules;
    let empty = rules.is_empty();
    if empty {
        println!("{origin}: warning: no rules: every image would be left as it is");
    }
    let by_kind: Vec<String> =
        RuleKind::ALL.iter().map(|&kind| format!("{} {}", rules.count(kind), kind.name())).collect();
    let count = |wanted: fn(&Problem) -> bool| loaded.diagnostics.iter().filter(|d| wanted(&d.problem)).count();
    let shadowed = count(|p| matches!(p, Problem::ShadowedByTarget { .. } | Problem::ShadowedGlob { .. }));
    let duplicated = count(|p| matches!(p, Problem::Duplicate(_)));
    let skipped = loaded.diagnostics.iter().filter(|d| d.severity == Severity::Skipped).count();
    let warnings = loaded.diagnostics.len() + usize::from(empty);
    println!(
        "{origin}: {} rule{} ({}), {} noswap wildcard{}; {shadowed} shadowed, {duplicated} duplicated, {skipped} skipped, {warnings} warning{} in all; ~{} KiB compiled",
        rules.len(),
        plural(rules.len()),
        by_kind.join(", "),
        rules.noswap_wildcards().count(),
        plural(rules.noswap_wildcards().count()),
        plural(warnings),
        rules.heap_bytes().div_ceil(1024),
    );
    Ok(if args.strict && warnings > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

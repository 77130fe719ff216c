//! `mirrorswap rewrite`: rewrite image references given as arguments or on stdin.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::RulesArgs;
use crate::rewrite::{Decision, Explanation, RuleSet, Unchanged};

/// Arguments of `mirrorswap rewrite`.
#[derive(Debug, Args)]
pub struct RewriteArgs {
    #[command(flatten)]
    pub rules: RulesArgs,
    /// Instead of the new images, print for each image the rule that decided (kind, source,
    /// target, FILE:LINE) or why none did.
    #[arg(long, env = "MIRRORSWAP_EXPLAIN")]
    pub explain: bool,
    /// Images to rewrite; `-` reads images from stdin, one a line.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Prints one line per image: the rewritten reference, or the image as given.
pub fn run(args: &RewriteArgs) -> anyhow::Result<ExitCode> {
    let loaded = match args.rules.load_or_report() {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let write_one = |out: &mut BufWriter<_>, rules: &RuleSet, image: &str| {
        if args.explain { explain_one(out, rules, image, &loaded.origin) } else { write_one(out, rules, image) }
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for image in &args.images {
        if image == "-" {
            for line in std::io::stdin().lock().lines() {
                let line = line.context("reading images from stdin")?;
                let image = line.trim();
                if !image.is_empty() {
                    write_one(&mut out, &loaded.rules, image)?;
                }
            }
        } else {
            write_one(&mut out, &loaded.rules, image)?;
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn explain_one(out: &mut impl Write, rules: &RuleSet, image: &str, origin: &str) -> anyhow::Result<()> {
    let decision = rules.rewrite(image);
    writeln!(out, "{}", Explanation { image, decision: &decision, rules, origin }).context("writing to stdout")
}

fn write_one(out: &mut impl Write, rules: &RuleSet, image: &str) -> anyhow::Result<()> {
    let decision = rules.rewrite(image);
    match &decision {
        Decision::Unchanged(Unchanged::InvalidReference(reason)) => {
            eprintln!("warning: `{image}` left unchanged: not a valid image reference: {reason}");
        }
        Decision::Unchanged(Unchanged::InvalidResult { rule, reason }) => {
            eprintln!(
                "warning: `{image}` left unchanged: rule at line {} would give an invalid reference: {reason}",
                rule.line
            );
        }
        _ => {}
    }
    writeln!(out, "{}", decision.new_image().unwrap_or(image)).context("writing to stdout")
}

//! `mirrorswap rewrite`: rewrite image references given as arguments or on stdin. With
//! `--swap-policy exists` it asks the mirrors exactly as `serve` does (all images under one
//! `--check-timeout`, pinned with `--pin-digest`, platforms required with
//! `--require-platforms`), and `--explain` lists each candidate tried and its answer.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::RulesArgs;
use crate::registry::args::PinArgs;
use crate::registry::{CheckArgs, PolicyArgs, Resolved, Resolver, SwapPolicy, Verdict};
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
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub check: CheckArgs,
    /// Images to rewrite; `-` reads images from stdin, one a line.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Prints one line per image: the rewritten reference, or the image as given.
pub fn run(args: &RewriteArgs) -> anyhow::Result<ExitCode> {
    if let Err(refused) = args.pin.check(args.policy.swap_policy) {
        eprintln!("error: {refused}");
        return Ok(ExitCode::from(2));
    }
    let loaded = match args.rules.load_or_report() {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    if args.policy.swap_policy == SwapPolicy::Exists {
        return run_exists(args, &loaded.rules, &loaded.origin);
    }
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

/// The images of the arguments, `-` expanded to stdin's lines.
fn all_images(args: &RewriteArgs) -> anyhow::Result<Vec<String>> {
    let mut images = Vec::new();
    for image in &args.images {
        if image == "-" {
            for line in std::io::stdin().lock().lines() {
                let line = line.context("reading images from stdin")?;
                if !line.trim().is_empty() {
                    images.push(line.trim().to_owned());
                }
            }
        } else {
            images.push(image.clone());
        }
    }
    Ok(images)
}

/// `--swap-policy exists`: resolve every image through the registries, then print.
fn run_exists(args: &RewriteArgs, rules: &RuleSet, origin: &str) -> anyhow::Result<ExitCode> {
    let images = all_images(args)?;
    let resolver =
        Resolver::new(&args.check, args.policy.on_check_error, usize::from(args.policy.check_max_lookups), None)?
            .with_pinning(args.pin.pinning());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    let resolved = runtime.block_on(async {
        let images: Vec<&str> = images.iter().map(String::as_str).collect();
        resolver.resolve(rules, &images).await
    });
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for image in &images {
        if args.explain {
            explain_checked(&mut out, rules, &resolved, image, origin)?;
        } else {
            match resolved.get(image) {
                None => write_one(&mut out, rules, image)?,
                Some(resolution) => match &resolution.verdict {
                    Verdict::Take(_) => {
                        let target = resolution.target().unwrap_or_else(|| image.clone());
                        writeln!(out, "{target}").context("writing to stdout")?;
                    }
                    Verdict::Keep(why) => {
                        eprintln!("warning: `{image}` kept: {why}");
                        writeln!(out, "{image}").context("writing to stdout")?;
                    }
                    Verdict::Unasked => writeln!(out, "{image}").context("writing to stdout")?,
                },
            }
        }
    }
    if let Some(warning) = resolved.limit_warning() {
        eprintln!("warning: {warning}");
    }
    out.flush().context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `--explain` with `exists`: one line per candidate tried, then the outcome.
fn explain_checked(
    out: &mut impl Write,
    rules: &RuleSet,
    resolved: &Resolved,
    image: &str,
    origin: &str,
) -> anyhow::Result<()> {
    let Some(resolution) = resolved.get(image) else {
        return explain_one(out, rules, image, origin);
    };
    for tried in &resolution.tried {
        let rule = tried.rule;
        writeln!(
            out,
            "{image}: candidate {} from {} rule `{rule}` ({origin}:{}): {}",
            tried.image,
            rule.kind.name(),
            rule.line,
            tried.answer()
        )
        .context("writing to stdout")?;
    }
    match &resolution.verdict {
        Verdict::Take(_) => {
            let chosen = resolution.target().unwrap_or_else(|| image.to_owned());
            writeln!(out, "{image} -> {chosen}")
        }
        Verdict::Keep(why) => writeln!(out, "{image} kept: {why}"),
        Verdict::Unasked => writeln!(out, "{image} kept: not asked, over --check-max-lookups"),
    }
    .context("writing to stdout")
}

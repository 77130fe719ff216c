//! `mirrorswap audit`: the rules applied to a whole set of workloads (manifests, or a live
//! cluster through the API) without changing anything, one row per distinct image.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::audit::args::RulesSourceArgs;
use crate::audit::mirror::MirrorCheck;
use crate::audit::output::{self, Columns};
use crate::audit::plan::{self, Plan, Reported};
use crate::registry::args::PinArgs;
use crate::registry::{CheckArgs, OnCheckError, SwapPolicy};
use crate::rewrite::mirrored::AllowedPrefix;

/// Arguments of `mirrorswap audit`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("rules_source").required(true)))]
pub struct AuditArgs {
    #[command(flatten)]
    pub source: RulesSourceArgs,
    /// Manifests to audit (repeatable): a file, a directory (its .yaml, .yml and .json files,
    /// recursively) or `-` for stdin; YAML streams or JSON as `helm template`, `kustomize build`
    /// or `kubectl get -o yaml|json` write them. Without -f, the live cluster is read.
    #[arg(
        short = 'f',
        long = "filename",
        env = "MIRRORSWAP_AUDIT_FILES",
        value_delimiter = ',',
        value_name = "FILE|DIR|-"
    )]
    pub files: Vec<PathBuf>,
    /// Kubeconfig for the live cluster and --rules-secret; by default the in-cluster service
    /// account, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "MIRRORSWAP_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace to read from the live cluster (repeatable); all namespaces by default.
    #[arg(
        short = 'n',
        long = "namespace",
        env = "MIRRORSWAP_AUDIT_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS"
    )]
    pub namespaces: Vec<String>,
    /// Objects per list request to the API (`limit`; the rest follows with `continue`).
    #[arg(long, env = "MIRRORSWAP_AUDIT_PAGE_SIZE", default_value_t = 500, value_name = "N")]
    pub page_size: u32,
    /// Registry or registry/path prefix (repeatable) whose images may be pulled as they are:
    /// never unmirrored. Matched on `/` boundaries against the fully qualified image
    /// (`docker.io/library` covers `nginx`).
    #[arg(long = "allow-registry", env = "MIRRORSWAP_ALLOW_REGISTRIES", value_delimiter = ',', value_name = "PREFIX",
          value_parser = AllowedPrefix::parse)]
    pub allow_registries: Vec<AllowedPrefix>,
    /// Output format.
    #[arg(short = 'o', long, env = "MIRRORSWAP_AUDIT_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Exit 1 when any image is such (comma-separated; `missing` and `error` need
    /// --check-mirror, `drifted` --check-source). A CI gate wants `missing,error`: `missing`
    /// alone passes when no lookup got an answer.
    #[arg(long, env = "MIRRORSWAP_AUDIT_FAIL_ON", value_enum, value_delimiter = ',', value_name = "WHAT")]
    pub fail_on: Vec<FailOn>,
    /// Ask each mirror whether it has the images pulled from it after the rules (a manifest
    /// HEAD, as `--swap-policy exists` asks): fills the `mirror` column. Images pulled from
    /// anywhere else are never looked up. Uses the registry flags below.
    #[arg(long, env = "MIRRORSWAP_AUDIT_CHECK_MIRROR")]
    pub check_mirror: bool,
    /// With --check-mirror, lookups in flight at once (each within --check-timeout).
    #[arg(long, env = "MIRRORSWAP_AUDIT_CHECK_CONCURRENCY", default_value_t = 16, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub check_concurrency: u16,
    /// With --output copy-list: also the path a node pulls an image from when it is not the
    /// webhook's (`docker.io/library/nginx` for `nginx` under `--docker-hub compat`), so that
    /// node-level mirrors rendered from the same rules find it too.
    #[arg(long, env = "MIRRORSWAP_AUDIT_COPY_LIST_NODE_PATHS")]
    pub copy_list_node_paths: bool,
    /// With --output copy-list: only the images the mirror lacks (needs --check-mirror or
    /// --swap-policy exists).
    #[arg(long, env = "MIRRORSWAP_AUDIT_MISSING_ONLY")]
    pub missing_only: bool,
    /// `exists`: decide each image as `serve --swap-policy exists` does, asking the mirrors for
    /// each candidate in rule order (most specific first): the report shows the candidate the
    /// server would take, or the original kept (`not_in_mirror`), and the JSON every candidate
    /// with its answer. Implies --check-mirror. `always` (default): the rules alone.
    #[arg(long, env = "MIRRORSWAP_SWAP_POLICY", value_enum, default_value_t = SwapPolicy::Always)]
    pub swap_policy: SwapPolicy,
    /// With --swap-policy exists: `keep` (a failed lookup keeps the original after trying the
    /// other candidates) or `swap` (when no candidate is present, the first whose lookup failed
    /// is taken), as the server's flag.
    #[arg(long, env = "MIRRORSWAP_ON_CHECK_ERROR", value_enum, default_value_t = OnCheckError::Keep)]
    pub on_check_error: OnCheckError,
    /// `--pin-digest` (with --swap-policy exists: `rewritten` is pinned as the server pins it;
    /// the copy list still names the tag) and `--require-platforms` (with --check-mirror or
    /// --swap-policy exists: a mirror image lacking one is `absent`; the JSON's `platforms`
    /// and `-o wide` show what each has).
    #[command(flatten)]
    pub pin: PinArgs,
    /// With --check-mirror or --swap-policy exists: also ask each rewritten image's source for
    /// the digest of its tag (a manifest HEAD, as the mirror is asked) and report `drifted` in
    /// the `mirror` column when the mirror's copy has another digest: the tag moved at the
    /// source since the copy. Sources are reached with --source-auth's credentials, never the
    /// mirror's.
    #[arg(long, env = "MIRRORSWAP_AUDIT_CHECK_SOURCE")]
    pub check_source: bool,
    /// With --check-source: Docker config JSON with the sources' credentials (each entry goes
    /// to exactly its host[:port]); anonymous without.
    #[arg(long, env = "MIRRORSWAP_SOURCE_AUTH", value_name = "FILE", requires = "check_source")]
    pub source_auth: Option<PathBuf>,
    #[command(flatten)]
    pub check: CheckArgs,
    /// Print the process's peak memory (VmHWM) on stderr before exiting: the bounds tests read
    /// it to check that a hostile manifest stays within the per-document alias bound.
    #[arg(long, env = "MIRRORSWAP_REPORT_PEAK_MEMORY", hide = true)]
    pub report_peak_memory: bool,
}

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns fitting the terminal (image, rewritten, reason, mirror, unmirrored, rule
    /// as FILE:LINE) and a summary line.
    Table,
    /// Every column (the rule as written, the locations), never cut.
    Wide,
    /// An array of objects: image, rewritten, rule, reason, why, locations, mirror,
    /// unmirrored, candidates.
    Json,
    /// `SOURCE TARGET` per rewritten image, SOURCE fully qualified, for skopeo/crane copy loops.
    CopyList,
}

/// `--fail-on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// An image pulled from outside the mirrors after the rules.
    Unmirrored,
    /// An image its mirror does not have (needs --check-mirror).
    Missing,
    /// An image whose mirror (or, with --check-source, source) gave no answer: unreachable,
    /// refused, timed out, TLS or auth error (needs --check-mirror).
    Error,
    /// An image whose source tag names other content than the mirror's copy (needs
    /// --check-source).
    Drifted,
}

/// Why the pinning and source flags cannot be used as given: `--pin-digest` needs the
/// server's policy (`--swap-policy exists`), `--require-platforms` and `--check-source` a
/// mirror that is asked, `--fail-on drifted` `--check-source`.
fn pinning_refused(args: &AuditArgs, swap: bool, asks_mirror: bool) -> Option<String> {
    let refused = if args.pin.pin_digest && !swap {
        "--pin-digest needs --swap-policy exists: it shows the pinned reference the server would write"
    } else if !args.pin.require_platforms.is_empty() && !asks_mirror {
        "--require-platforms needs --check-mirror or --swap-policy exists (nothing is looked up without them)"
    } else if args.check_source && !asks_mirror {
        "--check-source needs --check-mirror or --swap-policy exists: it compares the source's digest with the mirror's"
    } else if args.fail_on.contains(&FailOn::Drifted) && !args.check_source {
        "--fail-on drifted needs --check-source (no source is asked without it)"
    } else {
        // What is left to refuse is the number of platforms, as for `serve`.
        return args.pin.check(SwapPolicy::Exists).err();
    };
    Some(refused.to_owned())
}

/// Audits, prints the report; exit 1 when `--fail-on` finds something, 2 on errors.
pub fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let code = audit(args);
    if args.report_peak_memory {
        super::report_peak_memory();
    }
    code
}

fn audit(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let swap = args.swap_policy == SwapPolicy::Exists;
    let asks_mirror = args.check_mirror || swap;
    if let Some(what) = args.fail_on.iter().find(|what| matches!(what, FailOn::Missing | FailOn::Error))
        && !asks_mirror
    {
        let what = what.to_possible_value().map(|value| value.get_name().to_owned()).unwrap_or_default();
        eprintln!(
            "error: --fail-on {what} needs --check-mirror or --swap-policy exists (nothing is looked up without them)"
        );
        return Ok(ExitCode::from(2));
    }
    if args.missing_only && !asks_mirror {
        eprintln!(
            "error: --missing-only needs --check-mirror or --swap-policy exists (nothing is looked up without them)"
        );
        return Ok(ExitCode::from(2));
    }
    if let Some(refused) = pinning_refused(args, swap, asks_mirror) {
        eprintln!("error: {refused}");
        return Ok(ExitCode::from(2));
    }
    if args.copy_list_node_paths && args.output != OutputFormat::CopyList {
        eprintln!("error: --copy-list-node-paths adds lines to the copy list: give --output copy-list with it");
        return Ok(ExitCode::from(2));
    }
    let Some(rules) = args.source.rules_from() else {
        eprintln!("error: give the rules: --rules FILE, --rules-secret or --rules-configmap NAMESPACE/NAME[:KEY]");
        return Ok(ExitCode::from(2));
    };
    let mirror = asks_mirror.then(|| MirrorCheck {
        check: args.check.clone(),
        concurrency: usize::from(args.check_concurrency),
        swap: swap.then_some(args.on_check_error),
        pinning: args.pin.pinning(),
        sources: args.check_source.then(|| CheckArgs { registry_auth: args.source_auth.clone(), ..args.check.clone() }),
    });
    let plan = Plan {
        rules,
        format: args.source.format,
        options: args.source.engine.options(),
        files: args.files.clone(),
        images: None,
        kubeconfig: args.kubeconfig.clone(),
        namespaces: args.namespaces.clone(),
        page_size: args.page_size,
        allow_registries: args.allow_registries.clone(),
        mirror,
        palette: false,
    };
    let rows = match plan::run(&plan)? {
        Ok(audited) => audited.rows,
        Err(Reported) => return Ok(ExitCode::from(2)),
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match args.output {
        OutputFormat::Table => {
            output::table(&mut out, &rows, asks_mirror, Columns::Narrow, super::terminal::stdout_width())
        }
        OutputFormat::Wide => output::table(&mut out, &rows, asks_mirror, Columns::Wide, None),
        OutputFormat::Json => output::json(&mut out, &rows),
        OutputFormat::CopyList => output::copy_list(&mut out, &rows, args.missing_only, args.copy_list_node_paths),
    }
    .and_then(|()| out.flush())
    .context("writing to stdout")?;
    let summary = output::Summary::of(&rows);
    if summary.mirror_errors > 0 {
        let images = crate::plural::count_s(summary.mirror_errors, "image");
        eprintln!("warning: {images} could not be checked (mirror column `error`)");
    }
    if summary.source_errors > 0 {
        let images = crate::plural::count_s(summary.source_errors, "image");
        eprintln!("warning: the source of {images} could not be checked for drift");
    }
    let failed = args.fail_on.iter().any(|what| match what {
        FailOn::Unmirrored => summary.unmirrored > 0,
        FailOn::Missing => summary.missing > 0,
        FailOn::Error => summary.mirror_errors + summary.source_errors > 0,
        FailOn::Drifted => summary.drifted > 0,
    });
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

//! `mirrorswap audit`: the rules applied to a whole set of workloads (manifests, or a live
//! cluster through the API) without changing anything, one row per distinct image.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use serde_json::Value;

use futures::StreamExt;

use crate::audit::output::Columns;
use crate::audit::{CandidateAnswer, Inventory, MirrorState, RuleRef, Swap, input, json, output, stream};
use crate::credentials::RegistryInfo;
use crate::k8s::api::{self, ApiClient, ObjectKind, ObjectSource};
use crate::registry::{Answer, CheckArgs, OnCheckError, Resolution, Resolver, SwapPolicy, Tried, Verdict};
use crate::rewrite::mirrored::AllowedPrefix;
use crate::rules_file::args::EngineArgs;
use crate::rules_file::{self, Format, Loaded};

/// Arguments of `mirrorswap audit`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("rules_source").required(true)))]
pub struct AuditArgs {
    /// Rules file (maps or YAML).
    #[arg(long, env = "MIRRORSWAP_RULES", value_name = "FILE", group = "rules_source")]
    pub rules: Option<PathBuf>,
    /// Rules from a Secret, read once through the Kubernetes API: NAMESPACE/NAME[:KEY], KEY
    /// defaulting to MIRROR_REGISTRIES (Palette's `jet-system/registry-info`).
    #[arg(long, env = "MIRRORSWAP_RULES_SECRET", value_name = "NAMESPACE/NAME[:KEY]", group = "rules_source",
          value_parser = |value: &str| ObjectSource::parse(ObjectKind::Secret, value))]
    pub rules_secret: Option<ObjectSource>,
    /// As --rules-secret, from a ConfigMap.
    #[arg(long, env = "MIRRORSWAP_RULES_CONFIGMAP", value_name = "NAMESPACE/NAME[:KEY]", group = "rules_source",
          value_parser = |value: &str| ObjectSource::parse(ObjectKind::ConfigMap, value))]
    pub rules_configmap: Option<ObjectSource>,
    /// Rules format; by default .yaml/.yml files (and keys) are yaml and anything else is maps.
    #[arg(long, env = "MIRRORSWAP_FORMAT", value_enum)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub engine: EngineArgs,
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
    /// --check-mirror). A CI gate wants `missing,error`: `missing` alone passes when no lookup
    /// got an answer.
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
    /// An image whose mirror gave no answer: unreachable, refused, timed out, TLS or auth
    /// error (needs --check-mirror).
    Error,
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
    if args.copy_list_node_paths && args.output != OutputFormat::CopyList {
        eprintln!("error: --copy-list-node-paths adds lines to the copy list: give --output copy-list with it");
        return Ok(ExitCode::from(2));
    }
    let needs_api = args.files.is_empty() || args.rules.is_none();
    let runtime = if needs_api || asks_mirror {
        Some(tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?)
    } else {
        None
    };
    let client = match &runtime {
        Some(runtime) if needs_api => Some(runtime.block_on(api::client(args.kubeconfig.as_deref()))?),
        _ => None,
    };
    let (loaded, palette) = match (&runtime, &client) {
        (Some(runtime), Some(client)) if args.rules.is_none() => runtime.block_on(rules_from_api(args, client))?,
        _ => match load_file(args) {
            // Reading the file again for its mirror settings is only worth it when asking the mirror.
            Ok(loaded) => {
                let palette = args.rules.as_deref().filter(|_| asks_mirror);
                (loaded, palette.and_then(crate::credentials::palette_of_rules_file))
            }
            Err(code) => return Ok(code),
        },
    };
    loaded.messages().for_each(|message| eprintln!("{message}"));

    let mut inventory = Inventory::default();
    if args.files.is_empty() {
        if let (Some(runtime), Some(client)) = (&runtime, &client) {
            runtime.block_on(input::record_cluster(client, &args.namespaces, args.page_size, &mut inventory))?;
        }
    } else {
        for path in &args.files {
            if let Err(error) = record_path(path, &mut inventory) {
                eprintln!("error: {}", crate::error_chain::anyhow_line(&error));
                return Ok(ExitCode::from(2));
            }
        }
    }
    if let Some(note) = inventory.unread_note() {
        eprintln!("note: {note}");
    }

    let (states, swaps) = match &runtime {
        Some(runtime) if asks_mirror => {
            // The images already in a mirror are asked about; those the rules rewrite are either
            // decided by the server's policy or asked about as rewritten.
            let images = inventory.mirror_images(&loaded.rules, !swap);
            let states = runtime.block_on(check_mirrors(args, palette.clone(), &images))?;
            let swaps = if swap {
                let images = inventory.rewritten_images(&loaded.rules);
                runtime.block_on(swap_decisions(args, palette, &loaded, &images))?
            } else {
                HashMap::new()
            };
            (states, swaps)
        }
        _ => (HashMap::new(), HashMap::new()),
    };
    let rows = inventory.judge(
        &loaded.rules,
        &loaded.origin,
        &args.allow_registries,
        |pulled| states.get(pulled).copied(),
        |image| swaps.get(image).cloned(),
    );
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
    let failed = args.fail_on.iter().any(|what| match what {
        FailOn::Unmirrored => summary.unmirrored > 0,
        FailOn::Missing => summary.missing > 0,
        FailOn::Error => summary.mirror_errors > 0,
    });
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `--check-mirror`: each image asked of its registry through one resolver (cache, backoff,
/// `--check-timeout` per lookup), `--check-concurrency` at a time. A failed lookup is `error`,
/// with one line on stderr naming the image and why (never a credential).
async fn check_mirrors(
    args: &AuditArgs,
    palette: Option<RegistryInfo>,
    images: &[String],
) -> anyhow::Result<HashMap<String, MirrorState>> {
    let resolver = Resolver::new(&args.check, OnCheckError::Keep, usize::MAX, None)?;
    resolver.set_palette(palette);
    let resolver = &resolver;
    let answers: Vec<(String, MirrorState)> = futures::stream::iter(images)
        .map(|image| async move {
            let state = match resolver.presence(image).await {
                Ok(Answer::Present) => MirrorState::Present,
                Ok(Answer::Absent(_)) => MirrorState::Absent,
                Err(error) => {
                    eprintln!("warning: could not check {image}: {error}");
                    MirrorState::Error
                }
            };
            (image.clone(), state)
        })
        .buffer_unordered(usize::from(args.check_concurrency))
        .collect()
        .await;
    Ok(answers.into_iter().collect())
}

/// `--swap-policy exists`: each image the rules would rewrite, decided by the server's own
/// policy ([`Resolver::resolve`]): its candidates in rule order, the first present taken,
/// `--on-check-error` for failed lookups. Asked image by image (`--check-concurrency` at a
/// time), each with its own `--check-timeout` and every candidate it has: the server's
/// per-request `--check-max-lookups` bounds what one Pod costs the mirror, but here a shared
/// budget would leave images "not asked" depending only on their order in the input, so that
/// the report would not say what the server decides for them.
async fn swap_decisions(
    args: &AuditArgs,
    palette: Option<RegistryInfo>,
    loaded: &Loaded,
    images: &[String],
) -> anyhow::Result<HashMap<String, Swap>> {
    let resolver = Resolver::new(&args.check, args.on_check_error, usize::MAX, None)?;
    resolver.set_palette(palette);
    let (resolver, rules, origin) = (&resolver, &loaded.rules, loaded.origin.as_str());
    let decisions: Vec<Option<(String, Swap)>> = futures::stream::iter(images)
        .map(|image| async move {
            let resolved = resolver.resolve(rules, &[image.as_str()]).await;
            let resolution = resolved.get(image)?;
            Some((image.clone(), swap_of(resolution, origin)))
        })
        .buffer_unordered(usize::from(args.check_concurrency))
        .collect()
        .await;
    Ok(decisions.into_iter().flatten().collect())
}

/// A resolution as the report shows it.
fn swap_of(resolution: &Resolution<'_>, origin: &str) -> Swap {
    let candidates = resolution
        .tried
        .iter()
        .map(|tried| CandidateAnswer {
            image: tried.image.clone(),
            rule: RuleRef::of(tried.rule, origin),
            answer: tried.answer(),
        })
        .collect();
    let taken = resolution.taken().map(|tried| (tried.image.clone(), RuleRef::of(tried.rule, origin)));
    let state = match resolution.taken() {
        Some(Tried { outcome: Ok(Answer::Present), .. }) => MirrorState::Present,
        Some(_) => MirrorState::Error,
        None if resolution.tried.iter().all(|tried| matches!(tried.outcome, Ok(Answer::Absent(_)))) => {
            MirrorState::Absent
        }
        None => MirrorState::Error,
    };
    let kept_because = match &resolution.verdict {
        Verdict::Keep(why) => Some(format!("kept, as the server would keep it: {why}")),
        Verdict::Unasked => Some("kept: no candidate was asked".to_owned()),
        Verdict::Take(_) => None,
    };
    Swap { taken, state, candidates, kept_because }
}

fn load_file(args: &AuditArgs) -> Result<Loaded, ExitCode> {
    let Some(path) = &args.rules else {
        eprintln!("error: give the rules: --rules FILE, --rules-secret or --rules-configmap NAMESPACE/NAME[:KEY]");
        return Err(ExitCode::from(2));
    };
    rules_file::load_file(path, args.format, args.engine.options()).map_err(|error| {
        error.messages().iter().for_each(|message| eprintln!("{message}"));
        ExitCode::from(2)
    })
}

/// The rules from the Secret or ConfigMap the flags name, read once, and the mirror settings
/// of a Palette `registry-info` Secret (for `--check-mirror`).
async fn rules_from_api(args: &AuditArgs, api: &ApiClient) -> anyhow::Result<(Loaded, Option<RegistryInfo>)> {
    let source = args
        .rules_secret
        .as_ref()
        .or(args.rules_configmap.as_ref())
        .context("give the rules: --rules FILE, --rules-secret or --rules-configmap NAMESPACE/NAME[:KEY]")?;
    let (text, palette) = match source.kind {
        ObjectKind::Secret => {
            let secrets = kube::Api::<Secret>::namespaced(api.client.clone(), &source.namespace);
            let secret = secrets
                .get(&source.name)
                .await
                .map_err(|error| anyhow::anyhow!(api.error(&format!("reading {source}"), &error)))?;
            (source.secret_text(&secret), api::registry_info(&secret))
        }
        ObjectKind::ConfigMap => {
            let maps = kube::Api::<ConfigMap>::namespaced(api.client.clone(), &source.namespace);
            let map = maps
                .get(&source.name)
                .await
                .map_err(|error| anyhow::anyhow!(api.error(&format!("reading {source}"), &error)))?;
            (source.config_map_text(&map), None)
        }
    };
    let text = text.map_err(anyhow::Error::msg)?;
    let loaded = rules_file::load_text(&text, &source.to_string(), source.format(args.format), args.engine.options())
        .map_err(|error| anyhow::anyhow!(error.messages().join("\n")))?;
    Ok((loaded, palette))
}

/// Records every workload of a file, a directory's manifests, or stdin (`-`).
fn record_path(path: &Path, inventory: &mut Inventory) -> anyhow::Result<()> {
    if path == Path::new("-") {
        return record_reader(std::io::stdin().lock(), "-", inventory);
    }
    if path.is_dir() {
        for file in manifests_in(path)? {
            record_path(&file, inventory)?;
        }
        return Ok(());
    }
    let file = std::fs::File::open(path).map_err(|error| {
        anyhow::anyhow!("-f {}: {error}: give a manifest file, a directory of them, or - for stdin", path.display())
    })?;
    record_reader(BufReader::with_capacity(64 * 1024, file), &path.display().to_string(), inventory)
}

/// JSON when the first character that is not whitespace opens an object or array (JSON parsed
/// as YAML would not stream), YAML otherwise.
fn record_reader(mut reader: impl BufRead, origin: &str, inventory: &mut Inventory) -> anyhow::Result<()> {
    let json = loop {
        let buffer = reader.fill_buf().with_context(|| format!("reading {origin}"))?;
        match buffer.iter().position(|byte| !byte.is_ascii_whitespace()) {
            Some(at) => break matches!(buffer[at], b'{' | b'['),
            None if buffer.is_empty() => return Ok(()),
            None => {
                let all = buffer.len();
                reader.consume(all);
            }
        }
    };
    let record = |document: Value, line: u64| inventory.record(&document).map_err(|error| format!("{line}: {error}"));
    let result = if json { json::documents(reader, record) } else { stream::documents(reader, record) };
    result.map_err(|error| anyhow::anyhow!("{origin}:{error}"))
}

/// The .yaml, .yml and .json files under `dir`, sorted, recursively.
fn manifests_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading the directory {}", dir.display()))? {
            let path = entry.with_context(|| format!("reading the directory {}", dir.display()))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ["yaml", "yml", "json"].iter().any(|known| ext == *known)) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

//! `mirrorswap sync`: makes the mirrors hold what the rules send there. The images come as
//! `audit` finds them (manifests, the live cluster) or from a list (`audit -o copy-list`'s
//! `SOURCE TARGET` lines, or bare images the rules place), each copied by [`crate::sync`]'s
//! engine from its source to the rule's target (the first candidate). Progress on stderr, the
//! report on stdout; exit 0 when every image is at the mirror afterwards, 1 when any failed,
//! 2 on usage or input errors.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::audit::args::RulesSourceArgs;
use crate::audit::input::{self, ListedImage};
use crate::audit::output::copy_targets;
use crate::audit::plan::{self, Plan, Reported};
use crate::credentials::RegistryInfo;
use crate::sync::archive::read::ArchiveSource;
use crate::sync::archive::write::ArchiveWriter;
use crate::sync::args::CopyArgs;
use crate::sync::engine::all_ok;
use crate::sync::{Destination, Engine, Job, RemoteMirror, RemoteSource, Source, report};

/// Arguments of `mirrorswap sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The rules (needed unless every --images line names its TARGET).
    #[command(flatten)]
    pub source: RulesSourceArgs,
    /// Manifests whose images to copy (repeatable): a file, a directory (its .yaml, .yml and
    /// .json files, recursively) or `-` for stdin, as `audit -f` reads them. Without -f or
    /// --images, the live cluster's workloads are read.
    #[arg(
        short = 'f',
        long = "filename",
        env = "MIRRORSWAP_SYNC_FILES",
        value_delimiter = ',',
        value_name = "FILE|DIR|-",
        conflicts_with = "images"
    )]
    pub files: Vec<PathBuf>,
    /// An image list, or `-` for stdin: one `IMAGE` (copied where the rules send it) or
    /// `SOURCE TARGET` (copied to TARGET, as `audit -o copy-list` writes them) per line; `#`
    /// starts a comment.
    #[arg(long, env = "MIRRORSWAP_SYNC_IMAGES", value_name = "FILE|-")]
    pub images: Option<PathBuf>,
    /// Kubeconfig for the live cluster and --rules-secret; by default the in-cluster service
    /// account, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "MIRRORSWAP_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace to read from the live cluster (repeatable); all namespaces by default.
    #[arg(
        short = 'n',
        long = "namespace",
        env = "MIRRORSWAP_SYNC_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS"
    )]
    pub namespaces: Vec<String>,
    /// Objects per list request to the API (`limit`; the rest follows with `continue`).
    #[arg(long, env = "MIRRORSWAP_SYNC_PAGE_SIZE", default_value_t = 500, value_name = "N")]
    pub page_size: u32,
    /// Also fill the path a node pulls an image from when it is not the webhook's: under
    /// `--docker-hub compat`, an official image (`nginx`) also goes to the target's
    /// `library/` path, as node-level mirrors rendered from the same rules look it up. A tag
    /// and mounts: no byte is sent twice.
    #[arg(long, env = "MIRRORSWAP_SYNC_ALSO_NODE_PATHS")]
    pub also_node_paths: bool,
    /// Write the images into one OCI image layout archive (a tar) at FILE instead of a mirror,
    /// each under its source reference (`skopeo copy oci-archive:FILE:REF` reads one), with
    /// `FILE.sha256` beside it; the same images, platforms and referrers a sync copies. For a
    /// mirror no network reaches: carry FILE over and run `sync --from-archive FILE` there.
    #[arg(
        long,
        env = "MIRRORSWAP_SYNC_TO_ARCHIVE",
        value_name = "FILE",
        conflicts_with_all = ["from_archive", "registry_auth", "also_node_paths"]
    )]
    pub to_archive: Option<PathBuf>,
    /// Copy every image of the archive FILE (`--to-archive`'s) to where the rules given here
    /// send its source reference, contacting no source. Each blob's digest is checked: a
    /// damaged archive fails naming the file and digest, and nothing is tagged.
    #[arg(
        long,
        env = "MIRRORSWAP_SYNC_FROM_ARCHIVE",
        value_name = "FILE",
        conflicts_with_all = ["files", "images", "namespaces", "source_auth"]
    )]
    pub from_archive: Option<PathBuf>,
    /// Write nothing: list each image as `present` or `would copy`, with the bytes that
    /// would be sent.
    #[arg(long, env = "MIRRORSWAP_SYNC_DRY_RUN")]
    pub dry_run: bool,
    /// Output format of the final report (stdout).
    #[arg(short = 'o', long, env = "MIRRORSWAP_SYNC_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub copy: CopyArgs,
    /// Print the process's peak memory (VmHWM) on stderr before exiting.
    #[arg(long, env = "MIRRORSWAP_REPORT_PEAK_MEMORY", hide = true)]
    pub report_peak_memory: bool,
}

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Image, target, result (`copied`, `present`, `failed: reason`) and bytes sent, a
    /// summary line and notes.
    Table,
    /// An array of objects: image, target, also, result, reason, bytes, uploaded, mounted,
    /// present, manifests, referrers, notes.
    Json,
}

/// Copies; exit 0 when every image is at its mirror afterwards, 1 when any failed, 2 on
/// usage or input errors.
pub fn run(args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let code = sync(args);
    if args.report_peak_memory {
        super::report_peak_memory();
    }
    code
}

fn sync(args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let archive = match &args.from_archive {
        Some(path) => match ArchiveSource::open(path) {
            Ok(archive) => Some(archive),
            Err(error) => {
                eprintln!("error: {}", crate::error_chain::one_line(&error));
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    let archived = archive.as_ref().map(|archive| {
        let images = archive.images().iter().enumerate();
        images.map(|(at, source)| ListedImage { source: source.clone(), target: None, line: at as u64 + 1 }).collect()
    });
    let (mut jobs, palette) = match jobs(args, archived)? {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    if args.to_archive.is_some() {
        // The archive holds each image under its source reference.
        for job in &mut jobs {
            job.targets = vec![job.source.clone()];
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let sessions = match runtime.block_on(async { args.copy.sessions(palette.as_ref()) }) {
        Ok(sessions) => sessions,
        Err(error) => {
            eprintln!("error: {}", crate::error_chain::one_line(&error));
            return Ok(ExitCode::from(2));
        }
    };
    let (sources, mirror) = sessions;
    let timeout = args.copy.timeout;
    let settings = args.copy.settings(args.dry_run);
    let connections = usize::from(args.copy.host_connections);
    let mut failed = false;
    let reports = if let Some(archive) = archive {
        copy(&runtime, &Engine::new(archive, RemoteMirror::new(mirror, timeout), settings), &jobs)
    } else if let Some(path) = &args.to_archive {
        let writer = match ArchiveWriter::new(path, args.dry_run) {
            Ok(writer) => writer,
            Err(error) => {
                eprintln!("error: {}", crate::error_chain::one_line(&error));
                return Ok(ExitCode::from(2));
            }
        };
        let engine = Engine::new(RemoteSource::new(sources, connections, timeout), writer, settings);
        let mut reports = copy(&runtime, &engine, &jobs);
        for report in &mut reports {
            report.target = format!("{}:{}", path.display(), report.target);
        }
        if !args.dry_run {
            match engine.destination.finish() {
                Ok(written) => eprintln!(
                    "wrote {}: {} ({} index entries, {} blobs), sha256:{} in {}.sha256",
                    path.display(),
                    report::bytes(written.bytes),
                    written.entries,
                    written.blobs,
                    written.digest.trim_start_matches("sha256:"),
                    path.display()
                ),
                Err(error) => {
                    eprintln!("error: {}", crate::error_chain::one_line(&error));
                    failed = true;
                }
            }
        }
        reports
    } else {
        let source = RemoteSource::new(sources, connections, timeout);
        copy(&runtime, &Engine::new(source, RemoteMirror::new(mirror, timeout), settings), &jobs)
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match args.output {
        OutputFormat::Table => report::table(&mut out, &reports),
        OutputFormat::Json => report::json(&mut out, &reports),
    }
    .and_then(|()| out.flush())
    .context("writing to stdout")?;
    Ok(if all_ok(&reports) && !failed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Runs `engine` over `jobs` with progress on stderr.
fn copy<S: Source, D: Destination>(
    runtime: &tokio::runtime::Runtime,
    engine: &Engine<S, D>,
    jobs: &[Job],
) -> Vec<report::Report> {
    if jobs.is_empty() {
        eprintln!("nothing to copy: the rules send no image to a mirror");
        return Vec::new();
    }
    let progress = super::sync_progress::for_stderr(jobs.len());
    let reports = runtime.block_on(engine.run(jobs, std::sync::Arc::clone(&progress)));
    drop(progress);
    reports
}

/// The jobs, and the mirror settings of Palette's registry-info.
type Found = (Vec<Job>, Option<RegistryInfo>);

/// The jobs: each source image once, with every target it goes to, in input order; and the
/// mirror settings of Palette's registry-info when the rules came with them. Input problems
/// are written to stderr and give exit code 2.
fn jobs(args: &SyncArgs, archived: Option<Vec<ListedImage>>) -> anyhow::Result<Result<Found, ExitCode>> {
    let usage = |message: String| {
        eprintln!("error: {message}");
        Ok(Err(ExitCode::from(2)))
    };
    let listed = match (&args.images, archived) {
        (_, Some(archived)) => Some(archived),
        (Some(path), None) => match read_list(path) {
            Ok(listed) => Some(listed),
            Err(error) => return usage(crate::error_chain::anyhow_line(&error)),
        },
        (None, None) => None,
    };
    let (given, placed): (Vec<ListedImage>, Vec<ListedImage>) =
        listed.clone().unwrap_or_default().into_iter().partition(|image| image.target.is_some());
    let mut pairs: Vec<(String, String)> =
        given.into_iter().filter_map(|image| Some((image.source, image.target?))).collect();
    let rules = args.source.rules_from();
    let mut palette = None;
    match rules {
        None if listed.is_none() || !placed.is_empty() => {
            let what = match placed.first() {
                Some(image) => format!("--images line {} names no TARGET", image.line),
                None => "the images of manifests or the cluster go where the rules send them".to_owned(),
            };
            return usage(format!(
                "{what}: give the rules (--rules FILE, --rules-secret or --rules-configmap NAMESPACE/NAME[:KEY])"
            ));
        }
        None => {}
        Some(rules) => {
            let origin = args.from_archive.as_ref().or(args.images.as_ref());
            let origin = origin.map(|path| path.display().to_string()).unwrap_or_default();
            let plan = Plan {
                rules,
                format: args.source.format,
                options: args.source.engine.options(),
                files: args.files.clone(),
                images: listed.is_some().then(|| {
                    placed.iter().map(|image| (image.source.clone(), format!("{origin}:{}", image.line))).collect()
                }),
                kubeconfig: args.kubeconfig.clone(),
                namespaces: args.namespaces.clone(),
                page_size: args.page_size,
                allow_registries: Vec::new(),
                mirror: None,
                palette: true,
            };
            let audited = match plan::run(&plan)? {
                Ok(audited) => audited,
                Err(Reported) => return Ok(Err(ExitCode::from(2))),
            };
            let left = audited.rows.iter().filter(|row| copy_targets(row, false).is_empty()).count();
            if left > 0 {
                let images = crate::plural::count_s(left, "image");
                eprintln!(
                    "note: {images} the rules send to no mirror (left alone, already mirrored, or unmirrored): not copied"
                );
            }
            for row in &audited.rows {
                pairs.extend(
                    copy_targets(row, args.also_node_paths).into_iter().map(|target| (row.source(), target.to_owned())),
                );
            }
            palette = audited.palette;
        }
    }
    match merge(pairs) {
        Ok(jobs) => Ok(Ok((jobs, palette))),
        Err(message) => usage(message),
    }
}

/// `--images FILE|-`, read.
fn read_list(path: &std::path::Path) -> anyhow::Result<Vec<ListedImage>> {
    if path == std::path::Path::new("-") {
        return input::image_list(std::io::stdin().lock(), "-");
    }
    let file = std::fs::File::open(path).with_context(|| format!("--images {}", path.display()))?;
    input::image_list(BufReader::new(file), &path.display().to_string())
}

/// One job per source, its targets in order; a target two sources go to is an input error.
fn merge(pairs: Vec<(String, String)>) -> Result<Vec<Job>, String> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut by_source: HashMap<String, usize> = HashMap::new();
    let mut by_target: HashMap<String, String> = HashMap::new();
    for (source, target) in pairs {
        match by_target.get(&target) {
            Some(other) if *other != source => {
                return Err(format!("two images would be copied to {target}: {other} and {source}"));
            }
            Some(_) => continue,
            None => {
                by_target.insert(target.clone(), source.clone());
            }
        }
        match by_source.get(&source) {
            Some(&at) => jobs[at].targets.push(target),
            None => {
                by_source.insert(source.clone(), jobs.len());
                jobs.push(Job { source, targets: vec![target] });
            }
        }
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_flag_has_its_variable_and_help() {
        let command = crate::cli::Cli::command();
        let sync = command.find_subcommand("sync").unwrap();
        for arg in sync.get_arguments().filter(|arg| !matches!(arg.get_id().as_str(), "help")) {
            let env = arg.get_env().map(|env| env.to_string_lossy().into_owned()).unwrap_or_default();
            assert!(env.starts_with("MIRRORSWAP_"), "--{}: no MIRRORSWAP_ variable", arg.get_id());
            assert!(arg.get_help().is_some() || arg.is_hide_set(), "--{}: no help", arg.get_id());
        }
    }

    #[test]
    fn jobs_gather_each_sources_targets() {
        let pair = |source: &str, target: &str| (source.to_owned(), target.to_owned());
        let jobs = merge(vec![
            pair("docker.io/library/nginx:1", "m.io/hub/nginx:1"),
            pair("quay.io/a:2", "m.io/quay/a:2"),
            pair("docker.io/library/nginx:1", "m.io/hub/library/nginx:1"),
            pair("quay.io/a:2", "m.io/quay/a:2"),
        ])
        .unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].targets, ["m.io/hub/nginx:1", "m.io/hub/library/nginx:1"]);
        let error = merge(vec![pair("a.io/x:1", "m.io/x:1"), pair("b.io/x:1", "m.io/x:1")]).unwrap_err();
        assert_eq!(error, "two images would be copied to m.io/x:1: a.io/x:1 and b.io/x:1");
    }
}

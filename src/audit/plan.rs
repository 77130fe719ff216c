//! One audit carried out: the [`Plan`] `cli/audit.rs` (and `cli/sync.rs`) hands over (where
//! the rules and the workloads or images come from, what to ask the mirrors), and [`run`],
//! which reads the rules, records the workloads ([`super::input`]), asks the mirrors
//! ([`super::mirror`]) and judges each distinct image. Rule warnings, notes and failed
//! lookups are said on stderr on the way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::mirror::{self, MirrorCheck};
use super::{Inventory, Row, input};
use crate::credentials::{self, RegistryInfo};
use crate::k8s::api::{self, ApiClient, ObjectSource};
use crate::rewrite::Options;
use crate::rewrite::mirrored::AllowedPrefix;
use crate::rules_file::{self, Format, Loaded};

/// Where the rules come from.
#[derive(Clone, Debug)]
pub enum RulesFrom {
    /// A rules file (`--rules`).
    File(PathBuf),
    /// A Secret or ConfigMap key, read once through the API (`--rules-secret`,
    /// `--rules-configmap`).
    Object(ObjectSource),
}

/// One audit: what to read and what to ask.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The rules.
    pub rules: RulesFrom,
    /// `--format`, if given.
    pub format: Option<Format>,
    /// Engine options.
    pub options: Options,
    /// Manifests (`-f`): files, directories, `-` for stdin. None (and no `images`): the live
    /// cluster is read.
    pub files: Vec<PathBuf>,
    /// Images listed (`sync --images`), each judged as if a workload used it at `FILE:LINE`;
    /// when given, neither manifests nor the cluster are read.
    pub images: Option<Vec<(String, String)>>,
    /// `--kubeconfig`, for the live cluster and the rules object.
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces read from the live cluster; all when empty.
    pub namespaces: Vec<String>,
    /// Objects per list request to the API.
    pub page_size: u32,
    /// Prefixes whose images may be pulled as they are (`--allow-registry`).
    pub allow_registries: Vec<AllowedPrefix>,
    /// How the mirrors are asked; `None`: they are not, the rules alone decide.
    pub mirror: Option<MirrorCheck>,
    /// Read the mirror settings of Palette's `registry-info` from the rules' source even when
    /// the mirrors are not asked (`sync` writes to them).
    pub palette: bool,
}

/// What an audit found: a row per distinct image, sorted by image, and the mirror settings of
/// Palette's `registry-info` when the rules came with them (and were asked for).
#[derive(Debug)]
pub struct Audited {
    pub rows: Vec<Row>,
    pub palette: Option<RegistryInfo>,
}

/// The audit stopped on a problem it has already written to stderr: rules that do not load,
/// a manifest that cannot be read (`audit` exits 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported;

/// Carries out `plan`: one row per distinct image, sorted by image. An `Err` is a failure to
/// report as it is (the API, the runtime, the registry client); `Ok(Err(Reported))` one
/// already written out.
pub fn run(plan: &Plan) -> anyhow::Result<Result<Audited, Reported>> {
    let swap = plan.mirror.as_ref().and_then(|mirror| mirror.swap);
    let reads_cluster = plan.files.is_empty() && plan.images.is_none();
    let needs_api = reads_cluster || matches!(plan.rules, RulesFrom::Object(_));
    let runtime = if needs_api || plan.mirror.is_some() {
        Some(tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?)
    } else {
        None
    };
    let client = match &runtime {
        Some(runtime) if needs_api => Some(runtime.block_on(api::client(plan.kubeconfig.as_deref()))?),
        _ => None,
    };
    let (loaded, palette) = match (&plan.rules, &runtime, &client) {
        (RulesFrom::Object(source), Some(runtime), Some(client)) => {
            runtime.block_on(rules_from_api(plan, source, client))?
        }
        (RulesFrom::Object(_), ..) => unreachable!("a rules object needs the API: the runtime and client were made"),
        (RulesFrom::File(path), ..) => match load_file(plan, path) {
            // Reading the file again for its mirror settings is only worth it when asking the mirror.
            Ok(loaded) => {
                let wanted = plan.mirror.is_some() || plan.palette;
                (loaded, wanted.then(|| credentials::palette_of_rules_file(path)).flatten())
            }
            Err(reported) => return Ok(Err(reported)),
        },
    };
    loaded.messages().for_each(|message| eprintln!("{message}"));

    let mut inventory = Inventory::default();
    if let Some(images) = &plan.images {
        for (image, location) in images {
            inventory.record_image(image, location.clone());
        }
    } else if plan.files.is_empty() {
        if let (Some(runtime), Some(client)) = (&runtime, &client) {
            runtime.block_on(input::record_cluster(client, &plan.namespaces, plan.page_size, &mut inventory))?;
        }
    } else {
        for path in &plan.files {
            if let Err(error) = input::record_path(path, &mut inventory) {
                eprintln!("error: {}", crate::error_chain::anyhow_line(&error));
                return Ok(Err(Reported));
            }
        }
    }
    if let Some(note) = inventory.unread_note() {
        eprintln!("note: {note}");
    }

    let (states, swaps) = match (&runtime, &plan.mirror) {
        (Some(runtime), Some(asked)) => {
            // The images already in a mirror are asked about; those the rules rewrite are either
            // decided by the server's policy or asked about as rewritten.
            let images = inventory.mirror_images(&loaded.rules, swap.is_none());
            let states = runtime.block_on(mirror::check_mirrors(asked, palette.clone(), &images))?;
            let swaps = match swap {
                Some(on_check_error) => {
                    let images = inventory.rewritten_images(&loaded.rules);
                    runtime.block_on(mirror::swap_decisions(
                        asked,
                        on_check_error,
                        palette.clone(),
                        &loaded,
                        &images,
                    ))?
                }
                None => HashMap::new(),
            };
            (states, swaps)
        }
        _ => (HashMap::new(), HashMap::new()),
    };
    let mut rows = inventory.judge(
        &loaded.rules,
        &loaded.origin,
        &plan.allow_registries,
        |pulled| states.get(pulled).cloned(),
        |image| swaps.get(image).cloned(),
    );
    if let (Some(runtime), Some(MirrorCheck { sources: Some(sources), concurrency, .. })) = (&runtime, &plan.mirror) {
        runtime.block_on(mirror::check_sources(sources, *concurrency, &mut rows))?;
    }
    Ok(Ok(Audited { rows, palette }))
}

/// The rules file; its problems are written to stderr.
fn load_file(plan: &Plan, path: &Path) -> Result<Loaded, Reported> {
    rules_file::load_file(path, plan.format, plan.options).map_err(|error| {
        error.messages().iter().for_each(|message| eprintln!("{message}"));
        Reported
    })
}

/// The rules from the Secret or ConfigMap, read once, and the mirror settings of a Palette
/// `registry-info` Secret (for `--check-mirror`).
async fn rules_from_api(
    plan: &Plan,
    source: &ObjectSource,
    api: &ApiClient,
) -> anyhow::Result<(Loaded, Option<RegistryInfo>)> {
    let (text, palette) = source.read_once(api).await?;
    let loaded = rules_file::load_text(&text, &source.to_string(), source.format(plan.format), plan.options)
        .map_err(|error| anyhow::anyhow!(error.messages().join("\n")))?;
    Ok((loaded, palette))
}

//! The engine: what a run is asked ([`Job`]s: a source image and the targets to fill from
//! it), how ([`Settings`]), and [`Engine`], which copies one job ([`Engine::copy`], what
//! `serve --copy-on-miss` calls per miss) or many, `jobs` at a time ([`Engine::run`],
//! `sync`'s). The engine is shared: what it learned of where blobs are ([`super::seen`])
//! serves every later copy.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::copy::Copier;
use super::manifest::Platform;
use super::progress::Progress;
use super::report::{Outcome, Report};
use super::seen::Seen;
use super::store::{Destination, Source};

/// One image to copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The image as pulled from its source.
    pub source: String,
    /// Where the destination must hold it: the rule's target first, then other paths filled
    /// from the same copy (blobs mounted, never sent twice).
    pub targets: Vec<String>,
}

/// How a run copies.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Images copied at once.
    pub jobs: usize,
    /// Blobs of one image copied at once.
    pub blobs: usize,
    /// Further attempts after a passing failure (timeout, connection, 429, 5xx).
    pub retries: u32,
    /// The time one lookup (a manifest, a `HEAD`, a referrers list) is given.
    pub lookup_timeout: Duration,
    /// The time one blob's copy is given.
    pub blob_timeout: Duration,
    /// Only these platforms of an index (`--platform`); every one when empty.
    pub platforms: Vec<Platform>,
    /// Platforms every image must cover (`--require-platforms`); none when empty.
    pub required_platforms: Vec<crate::registry::platform::Platform>,
    /// Copy referrers and cosign signature tags along.
    pub referrers: bool,
    /// Write nothing; say what would be written.
    pub dry_run: bool,
    /// The most bytes of manifests and referrer lists one image's copy reads (and so holds):
    /// a source's index of a thousand 4 MiB children fails the image instead of filling memory.
    pub max_manifest_bytes: u64,
}

/// [`Settings::max_manifest_bytes`] for `sync`.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Self {
            jobs: 4,
            blobs: 3,
            retries: 3,
            lookup_timeout: Duration::from_secs(30),
            blob_timeout: Duration::from_secs(30 * 60),
            platforms: Vec::new(),
            required_platforms: Vec::new(),
            referrers: true,
            dry_run: false,
            max_manifest_bytes: MAX_MANIFEST_BYTES,
        }
    }
}

/// Copies images from a [`Source`] to a [`Destination`].
pub struct Engine<S, D> {
    pub source: S,
    pub destination: D,
    pub settings: Settings,
    pub(super) seen: Seen,
}

impl<S: Source, D: Destination> Engine<S, D> {
    pub fn new(source: S, destination: D, settings: Settings) -> Self {
        Self { source, destination, settings, seen: Seen::default() }
    }

    /// Copies one job (`id` names it to `progress`); never fails, the report says.
    pub async fn copy(&self, id: usize, job: &Job, progress: Arc<dyn Progress>) -> Report {
        let first = job.targets.first().cloned().unwrap_or_default();
        progress.started(id, &job.source, &first);
        let copier = Copier::new(self, id, Arc::clone(&progress));
        let result = copier.run(job).await;
        let report = copier.report(job, result);
        progress.finished(id, &report);
        report
    }

    /// Copies every job, `settings.jobs` at a time; the reports in the jobs' order.
    pub async fn run(&self, jobs: &[Job], progress: Arc<dyn Progress>) -> Vec<Report> {
        let mut reports: Vec<(usize, Report)> = futures::stream::iter(jobs.iter().enumerate())
            .map(|(id, job)| {
                let progress = Arc::clone(&progress);
                async move { (id, self.copy(id, job, progress).await) }
            })
            .buffer_unordered(self.settings.jobs.max(1))
            .collect()
            .await;
        reports.sort_by_key(|(id, _)| *id);
        reports.into_iter().map(|(_, report)| report).collect()
    }
}

/// Whether every report says the destination holds its image.
pub fn all_ok(reports: &[Report]) -> bool {
    reports.iter().all(|report| !matches!(report.outcome, Outcome::Failed(_)))
}

//! One image copied: the digest its source names now, whether each target already holds it
//! (one `HEAD` per target: a tag at the source's digest is everything, since a tag is pushed
//! last), and otherwise its manifests walked from the top (an index's children, each image's
//! config and layers) and written bottom up: blobs first (present: skipped after a `HEAD`;
//! put by this run in another repository of the same registry: mounted; else streamed and
//! verified), then child manifests by digest, then the top under its tag (a digest-only
//! reference under its anchor tag `sha256-HEX`; so is a `tag@digest` one whose tag does not
//! name that digest at the source now, so that a pinned old build never re-points a tag). Bytes are unchanged throughout, so every
//! digest is the source's; `--platform` alone makes a new index, and says so.
//!
//! Bounded against a hostile source: indexes nest at most [`MAX_DEPTH`] deep, a job reads at
//! most [`MAX_MANIFESTS`] manifests, each at most 4 MiB, and at most
//! [`super::engine::Settings::max_manifest_bytes`] of manifests and referrer lists in all
//! (what it reads of them it holds until the copy ends).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;

use super::engine::{Engine, Job};
use super::error::SyncError;
use super::manifest::{self, Descriptor, Kind, Parsed};
use super::name::{Image, anchor_tag};
use super::progress::Progress;
use super::report::{Outcome, Report};
use super::retry::{retried, within};
use super::store::{Destination, Source};
use super::verify;
use crate::registry::client::{Manifest, sha256};
use crate::registry::platform::{self, Platforms, Shape};

/// How deep indexes may nest (an index of indexes of images).
pub const MAX_DEPTH: usize = 2;
/// The most manifests one job reads from its source.
pub const MAX_MANIFESTS: usize = 1024;
/// The largest image config read for `--require-platforms` (as large as a manifest may be).
pub const MAX_CONFIG: u64 = 4 * 1024 * 1024;

/// One job's copy in progress, and its counts.
pub struct Copier<'e, S, D> {
    pub(super) engine: &'e Engine<S, D>,
    pub(super) id: usize,
    pub(super) progress: Arc<dyn Progress>,
    /// Manifests read from the source, by digest.
    fetched: Mutex<HashMap<String, Manifest>>,
    /// Digests of the manifests written or found, whose referrers come along.
    pub(super) walked: Mutex<Vec<String>>,
    pub(super) notes: Mutex<Vec<String>>,
    wrote: AtomicBool,
    bytes: AtomicU64,
    uploaded: AtomicUsize,
    mounted: AtomicUsize,
    present: AtomicUsize,
    manifests: AtomicUsize,
    pub(super) referrers: AtomicUsize,
    /// Bytes of manifests and referrer lists read, held to `max_manifest_bytes`.
    manifest_bytes: AtomicU64,
}

type Step<'a> = Pin<Box<dyn Future<Output = Result<(), SyncError>> + Send + 'a>>;

impl<'e, S: Source, D: Destination> Copier<'e, S, D> {
    pub fn new(engine: &'e Engine<S, D>, id: usize, progress: Arc<dyn Progress>) -> Self {
        Self {
            engine,
            id,
            progress,
            fetched: Mutex::new(HashMap::new()),
            walked: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
            wrote: AtomicBool::new(false),
            bytes: AtomicU64::new(0),
            uploaded: AtomicUsize::new(0),
            mounted: AtomicUsize::new(0),
            present: AtomicUsize::new(0),
            manifests: AtomicUsize::new(0),
            referrers: AtomicUsize::new(0),
            manifest_bytes: AtomicU64::new(0),
        }
    }

    /// The report of `job` whose copy came to `result`.
    pub fn report(&self, job: &Job, result: Result<(), SyncError>) -> Report {
        let outcome = match result {
            Err(error) => Outcome::Failed(error.to_string()),
            Ok(()) if !self.wrote.load(Ordering::SeqCst) => Outcome::Present,
            Ok(()) if self.engine.settings.dry_run => Outcome::WouldCopy,
            Ok(()) => Outcome::Copied,
        };
        Report {
            image: job.source.clone(),
            target: job.targets.first().cloned().unwrap_or_default(),
            also: job.targets.iter().skip(1).cloned().collect(),
            reason: match &outcome {
                Outcome::Failed(why) => Some(why.clone()),
                _ => None,
            },
            outcome,
            bytes: self.bytes.load(Ordering::SeqCst),
            uploaded: self.uploaded.load(Ordering::SeqCst),
            mounted: self.mounted.load(Ordering::SeqCst),
            present: self.present.load(Ordering::SeqCst),
            manifests: self.manifests.load(Ordering::SeqCst),
            referrers: self.referrers.load(Ordering::SeqCst),
            notes: std::mem::take(&mut *lock(&self.notes)),
        }
    }

    pub(super) fn note(&self, note: String) {
        let mut notes = lock(&self.notes);
        if !notes.contains(&note) {
            notes.push(note);
        }
    }

    /// Copies `job`.
    pub async fn run(&self, job: &Job) -> Result<(), SyncError> {
        let source = Image::parse(&job.source)?;
        let targets = job.targets.iter().map(|target| Image::parse(target)).collect::<Result<Vec<_>, _>>()?;
        if targets.is_empty() {
            return Err(SyncError::Refused("no target".into()));
        }
        let settings = &self.engine.settings;
        let filtering = !settings.platforms.is_empty();
        if filtering && source.digest.is_some() {
            return Err(SyncError::Refused(
                "referenced by digest: --platform would change the digest it is pulled by; copy it whole \
                 (without --platform)"
                    .into(),
            ));
        }
        let top = match &source.digest {
            Some(digest) => digest.clone(),
            None => self
                .lookup("source lookup", || self.engine.source.resolve(&source, source.reference()))
                .await?
                .ok_or_else(|| SyncError::NotFound(source.written.clone()))?,
        };
        let mut pushed = None;
        if filtering {
            pushed = Some(self.only_platforms(&source, &top).await?);
        }
        if !settings.required_platforms.is_empty() {
            let manifest = match &pushed {
                Some(manifest) => manifest.clone(),
                None => self.fetch(&source, &top).await?,
            };
            self.require_platforms(&source, &manifest).await?;
        }
        let digest = pushed.as_ref().map_or(top.as_str(), |manifest| manifest.digest.as_str()).to_owned();
        for target in &targets {
            if let Some(named) = target.digest.as_ref().filter(|named| **named != digest) {
                return Err(SyncError::Refused(format!(
                    "the target {} names the digest {named}, the source's is {digest}",
                    target.written
                )));
            }
        }
        let tag_trusted = self.tag_trusted(&source, &top).await;
        let tag_of = |target: &Image| match &target.tag {
            Some(tag) if tag_trusted => tag.clone(),
            _ => anchor_tag(&digest),
        };
        let mut missing = Vec::new();
        for target in &targets {
            let tag = tag_of(target);
            let held = self.lookup("mirror lookup", || self.engine.destination.manifest_digest(target, &tag)).await?;
            if held.as_deref() != Some(digest.as_str()) {
                missing.push(target);
            }
        }
        if !filtering {
            lock(&self.walked).push(top.clone());
        }
        if !missing.is_empty() {
            let manifest = match pushed {
                Some(manifest) => manifest,
                None => self.fetch(&source, &top).await?,
            };
            // One target after the other: the first sends the blobs, the next ones mount them.
            for target in missing {
                self.put_tree(&source, target, &manifest, 0).await?;
                self.put_manifest(target, &tag_of(target), &manifest).await?;
            }
        }
        if settings.referrers {
            for target in &targets {
                self.copy_referrers(&source, target).await?;
            }
        }
        Ok(())
    }

    /// Whether the targets' tags may be pushed: a reference that names a digest names its tag
    /// only as a word (`app:v1@sha256:OLD` pulls OLD whatever `v1` is), so its tag is written
    /// only when the source's tag names that digest now (one lookup); otherwise only the anchor
    /// tag `sha256-HEX` is, and an older build, an index's child or a signature never re-points
    /// a mirror's tag.
    async fn tag_trusted(&self, source: &Image, top: &str) -> bool {
        let (Some(_), Some(tag)) = (&source.digest, &source.tag) else { return true };
        let now = self.lookup("source lookup", || self.engine.source.resolve(source, tag)).await;
        if let Ok(Some(now)) = &now
            && now == top
        {
            return true;
        }
        let now = match now {
            Ok(Some(now)) => format!("names {now}"),
            Ok(None) => "is not there".to_owned(),
            Err(error) => format!("could not be read ({error})"),
        };
        self.note(format!(
            "the source's tag {tag} {now}, not the digest pulled: written under its anchor tag {} only",
            anchor_tag(top)
        ));
        false
    }

    /// `--require-platforms`: `manifest` (what would be pushed) covers every platform asked
    /// for, by its index entries or its config (read whole only up to [`MAX_CONFIG`] bytes,
    /// its digest checked); else the platform it lacks, before anything is written.
    async fn require_platforms(&self, source: &Image, manifest: &Manifest) -> Result<(), SyncError> {
        let why = |why: String| SyncError::Manifest { digest: manifest.digest.clone(), why };
        let platforms = match platform::shape(&manifest.bytes).map_err(why)? {
            Shape::Index(platforms) => platforms,
            Shape::Artifact => Platforms::default(),
            Shape::Image { config, size } => {
                if size > MAX_CONFIG {
                    return Err(why(format!("its config is {size} bytes, more than {MAX_CONFIG} are not read")));
                }
                let blob = Descriptor {
                    media_type: String::new(),
                    digest: config,
                    size,
                    platform: None,
                    artifact_type: None,
                    urls: Vec::new(),
                };
                let bytes = self
                    .lookup("source config", || async {
                        let stream = self.engine.source.blob(source, &blob).await?;
                        // The size was checked against the cap, and the stream is held to it.
                        let (stream, _, _) = verify::verified(stream, &blob.digest, blob.size, |_| {});
                        let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
                        Ok(chunks.concat())
                    })
                    .await?;
                platform::of_config(&bytes).map_err(why)?
            }
        };
        match platforms.first_missing(&self.engine.settings.required_platforms) {
            Some(lacking) => Err(SyncError::Refused(format!(
                "the source's image lacks {lacking} (--require-platforms {})",
                self.engine.settings.required_platforms.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            ))),
            None => Ok(()),
        }
    }

    /// The index `top` with only `--platform`'s entries (an image manifest as it is).
    async fn only_platforms(&self, source: &Image, top: &str) -> Result<Manifest, SyncError> {
        let manifest = self.fetch(source, top).await?;
        let parsed = manifest::parse(&manifest.bytes, top, &manifest.media_type)?;
        if !matches!(parsed.kind, Kind::Index(_)) {
            return Ok(manifest);
        }
        let platforms = &self.engine.settings.platforms;
        let asked = platforms.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let (bytes, kept) = manifest::only_platforms(&manifest.bytes, platforms)
            .map_err(|why| SyncError::Manifest { digest: top.to_owned(), why })?;
        if kept == 0 {
            return Err(SyncError::Refused(format!("no entry of its index is for --platform {asked}")));
        }
        let digest = sha256(&bytes);
        self.note(format!("--platform {asked}: the index's digest changes from {top} to {digest}"));
        Ok(Manifest { bytes, media_type: parsed.media_type, digest })
    }

    /// `step` within the lookup timeout, retried as the settings say.
    pub(super) async fn lookup<T, F, Fut>(&self, what: &'static str, step: F) -> Result<T, SyncError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SyncError>>,
    {
        let settings = &self.engine.settings;
        retried(settings.retries, || within(settings.lookup_timeout, what, step())).await
    }

    /// The manifest `digest` of `source`'s repository (read once per job).
    pub(super) async fn fetch(&self, source: &Image, digest: &str) -> Result<Manifest, SyncError> {
        self.fetch_sized(source, digest, None).await
    }

    /// [`Self::fetch`] of a manifest a descriptor says is `size` bytes: refused before it is
    /// read when it would not fit in what is left of `max_manifest_bytes`.
    pub(super) async fn fetch_sized(
        &self,
        source: &Image,
        digest: &str,
        size: Option<u64>,
    ) -> Result<Manifest, SyncError> {
        if let Some(known) = lock(&self.fetched).get(digest) {
            return Ok(known.clone());
        }
        if lock(&self.fetched).len() >= MAX_MANIFESTS {
            return Err(SyncError::Refused(format!("more than {MAX_MANIFESTS} manifests in one image")));
        }
        let left = self.manifest_budget_left();
        if left == 0 || size.is_some_and(|size| size > left) {
            return Err(self.over_manifest_budget());
        }
        let manifest = self
            .lookup("source manifest", || self.engine.source.manifest(source, digest))
            .await?
            .ok_or_else(|| SyncError::NotFound(format!("{}/{}@{digest}", source.host(), source.repository())))?;
        self.spend_manifest_bytes(manifest.bytes.len() as u64)?;
        lock(&self.fetched).insert(digest.to_owned(), manifest.clone());
        Ok(manifest)
    }

    /// Bytes of manifests and referrer lists this copy may still read.
    pub(super) fn manifest_budget_left(&self) -> u64 {
        self.engine.settings.max_manifest_bytes.saturating_sub(self.manifest_bytes.load(Ordering::SeqCst))
    }

    /// Bytes of manifests and referrer lists read so far.
    pub fn manifest_bytes(&self) -> u64 {
        self.manifest_bytes.load(Ordering::SeqCst)
    }

    pub(super) fn over_manifest_budget(&self) -> SyncError {
        SyncError::Refused(format!(
            "the manifests of this image exceed {} (its manifests and referrer lists are read whole)",
            super::report::bytes(self.engine.settings.max_manifest_bytes)
        ))
    }

    /// Counts `read` bytes of manifests or referrer lists read: an error (and what was read
    /// to be dropped) once the copy has read more than `max_manifest_bytes`.
    pub(super) fn spend_manifest_bytes(&self, read: u64) -> Result<(), SyncError> {
        let total = self.manifest_bytes.fetch_add(read, Ordering::SeqCst).saturating_add(read);
        if total > self.engine.settings.max_manifest_bytes {
            return Err(self.over_manifest_budget());
        }
        Ok(())
    }

    /// Writes what `manifest` points at into `target`: an image's blobs, an index's child
    /// manifests (each after what it points at). Not the manifest itself.
    pub(super) fn put_tree<'a>(
        &'a self,
        source: &'a Image,
        target: &'a Image,
        manifest: &'a Manifest,
        depth: usize,
    ) -> Step<'a> {
        Box::pin(async move {
            let Parsed { kind, .. } = manifest::parse(&manifest.bytes, &manifest.digest, &manifest.media_type)?;
            match kind {
                Kind::Image(blobs) => {
                    futures::stream::iter(blobs.iter().map(Ok))
                        .try_for_each_concurrent(self.engine.settings.blobs.max(1), |blob| {
                            self.put_blob(source, target, blob)
                        })
                        .await
                }
                Kind::Index(_) if depth >= MAX_DEPTH => Err(SyncError::Manifest {
                    digest: manifest.digest.clone(),
                    why: format!("indexes nested more than {MAX_DEPTH} deep"),
                }),
                Kind::Index(children) => {
                    for child in &children {
                        lock(&self.walked).push(child.digest.clone());
                        let held = self
                            .lookup("mirror lookup", || self.engine.destination.manifest_digest(target, &child.digest))
                            .await?;
                        if held.is_some() {
                            continue;
                        }
                        let bytes = self.fetch_sized(source, &child.digest, Some(child.size)).await?;
                        if bytes.bytes.len() as u64 != child.size {
                            return Err(SyncError::Manifest {
                                digest: child.digest.clone(),
                                why: format!("{} bytes where its index says {}", bytes.bytes.len(), child.size),
                            });
                        }
                        self.put_tree(source, target, &bytes, depth + 1).await?;
                        self.put_manifest(target, &child.digest, &bytes).await?;
                    }
                    Ok(())
                }
            }
        })
    }

    /// Writes `manifest` under `reference` (or, with `--dry-run`, counts it).
    pub(super) async fn put_manifest(
        &self,
        target: &Image,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), SyncError> {
        self.wrote.store(true, Ordering::SeqCst);
        self.manifests.fetch_add(1, Ordering::SeqCst);
        if self.engine.settings.dry_run {
            return Ok(());
        }
        let pushed =
            self.lookup("manifest push", || self.engine.destination.put_manifest(target, reference, manifest)).await?;
        let subject = manifest::parse(&manifest.bytes, &manifest.digest, &manifest.media_type)
            .map(|parsed| parsed.subject.is_some())
            .unwrap_or(false);
        if subject && !pushed.subject_indexed {
            self.note(format!(
                "{} does not serve the OCI referrers API (no OCI-Subject): referrers are there by digest",
                target.host()
            ));
        }
        Ok(())
    }

    /// Makes `target` hold `blob`: present (a `HEAD`), mounted from where this run put it, or
    /// streamed from the source with its digest checked on the way.
    async fn put_blob(&self, source: &Image, target: &Image, blob: &Descriptor) -> Result<(), SyncError> {
        if blob.non_distributable() {
            return Ok(());
        }
        let engine = self.engine;
        let mut held = engine.seen.hold(target.host(), &blob.digest).await;
        let here = target.repository().to_owned();
        if self.lookup("mirror blob lookup", || engine.destination.has_blob(target, &blob.digest)).await? {
            self.present.fetch_add(1, Ordering::SeqCst);
            *held = Some(here);
            return Ok(());
        }
        self.wrote.store(true, Ordering::SeqCst);
        if let Some(from) = held.clone().filter(|from| *from != here) {
            let mounted = engine.settings.dry_run
                || self.lookup("mount", || engine.destination.mount_blob(target, &blob.digest, &from)).await?;
            if mounted {
                self.mounted.fetch_add(1, Ordering::SeqCst);
                *held = Some(here);
                return Ok(());
            }
        }
        self.progress.planned(self.id, blob.size);
        if !engine.settings.dry_run {
            let settings = &engine.settings;
            retried(settings.retries, || within(settings.blob_timeout, "blob", self.stream_blob(source, target, blob)))
                .await?;
            self.uploaded.fetch_add(1, Ordering::SeqCst);
        }
        self.bytes.fetch_add(blob.size, Ordering::SeqCst);
        *held = Some(here);
        Ok(())
    }

    /// One attempt at sending `blob` from the source to `target`. The upload may last as long
    /// as the blob needs, but not stand still: a source that stops sending fails on its read
    /// timeout, a destination that stops reading (or answering once all is sent) after the
    /// lookup timeout and a second.
    async fn stream_blob(&self, source: &Image, target: &Image, blob: &Descriptor) -> Result<(), SyncError> {
        let stream = self.engine.source.blob(source, blob).await?;
        let (progress, id) = (Arc::clone(&self.progress), self.id);
        let (stream, failure, watch) =
            verify::verified(stream, &blob.digest, blob.size, move |bytes| progress.moved(id, bytes));
        let limit = self.engine.settings.lookup_timeout + Duration::from_secs(1);
        let stalled = async {
            loop {
                tokio::time::sleep(limit / 4).await;
                if watch.idle() > limit {
                    return SyncError::Timeout { what: "blob upload, nothing moved", after: limit };
                }
            }
        };
        let sent = tokio::select! {
            sent = self.engine.destination.put_blob(target, blob, stream) => sent,
            stalled = stalled => Err(stalled),
        };
        // The stream's own failure (a digest mismatch, the source's error) is the cause; the
        // destination only saw its request break.
        let cause = lock(&failure).take();
        match (sent, cause) {
            (Ok(()), None) => Ok(()),
            (_, Some(cause)) => Err(cause),
            (Err(error), None) => Err(error),
        }
    }
}

/// The value under `mutex`, poisoned or not.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::super::engine::Settings;
    use super::super::memory::{MemoryMirror, MemorySource};
    use super::super::progress::Quiet;
    use super::*;

    fn engine(source: MemorySource, mirror: MemoryMirror) -> Engine<MemorySource, MemoryMirror> {
        Engine::new(source, mirror, Settings { retries: 0, ..Settings::default() })
    }

    fn job(source: &str, target: &str) -> Job {
        Job { source: source.to_owned(), targets: vec![target.to_owned()] }
    }

    /// An index of many large children: the copy fails once what it read of manifests would
    /// pass the budget, having read no more than it.
    #[tokio::test]
    async fn manifests_past_the_budget_fail_the_image_before_they_are_read() {
        let mut source = MemorySource::default();
        let config = source.add_blob(b"{}");
        let children: Vec<serde_json::Value> = (0..64)
            .map(|n| {
                let layer = source.add_blob(format!("layer {n}").as_bytes());
                let image = serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
                                               "config": config, "layers": [layer]});
                source.add_manifest(&image, 64 * 1024)
            })
            .collect();
        let index = source.add_manifest(
            &serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": children}),
            0,
        );
        source.tags.insert("1".into(), index["digest"].as_str().unwrap_or_default().to_owned());
        let budget = 1024 * 1024;
        let settings = Settings { retries: 0, max_manifest_bytes: budget, ..Settings::default() };
        let engine = Engine::new(source, MemoryMirror::default(), settings);
        let copier = Copier::new(&engine, 0, Arc::new(Quiet));
        let job = job("src.example.org/app:1", "m.example.org/app:1");
        let report = copier.report(&job, copier.run(&job).await);
        match &report.outcome {
            Outcome::Failed(why) => assert!(why.contains("the manifests of this image exceed 1.0 MiB"), "{why}"),
            other => panic!("{other:?}"),
        }
        let read = copier.manifest_bytes();
        assert!(read <= budget && read > budget - 128 * 1024, "{read} bytes of manifests read");
        assert!(engine.destination.at("1").is_none(), "the tag was written");
    }

    /// A `tag@digest` reference writes its tag only when the source's tag names that digest
    /// now; else the anchor tag only, and the mirror's tag stays where it was.
    #[tokio::test]
    async fn a_pinned_digest_never_re_points_a_tag_the_source_moved() {
        let mut source = MemorySource::default();
        let old = source.add_image(b"old build")["digest"].as_str().unwrap_or_default().to_owned();
        let new = source.add_image(b"new build")["digest"].as_str().unwrap_or_default().to_owned();
        source.tags.insert("v1".into(), new.clone());
        // (reference's digest, the mirror's v1 before, after, the anchor tag written)
        let table = [(&old, Some(&new), Some(&new), true), (&new, None, Some(&new), false), (&old, None, None, true)];
        for (pinned, before, after, anchored) in table {
            let mirror = MemoryMirror::default();
            if let Some(before) = before {
                mirror.references.lock().unwrap().insert("v1".into(), before.clone());
            }
            let source = MemorySource {
                manifests: source.manifests.clone(),
                tags: source.tags.clone(),
                blobs: source.blobs.clone(),
                ..MemorySource::default()
            };
            let engine = engine(source, mirror);
            let report = engine
                .copy(
                    0,
                    &job(&format!("src.example.org/app:v1@{pinned}"), &format!("m.example.org/app:v1@{pinned}")),
                    Arc::new(Quiet),
                )
                .await;
            assert!(!matches!(report.outcome, Outcome::Failed(_)), "{report:?}");
            let mirror = &engine.destination;
            assert_eq!(mirror.at("v1").as_ref(), after, "v1 after copying {pinned}");
            assert_eq!(mirror.at(&anchor_tag(pinned)).is_some(), anchored, "{pinned}");
            assert_eq!(mirror.at(pinned).as_ref(), Some(pinned));
        }
    }
}

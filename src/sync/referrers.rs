//! What comes along with an image (`--referrers`, on by default): for each manifest the copy
//! wrote or found (on a run that found the image present, its top manifest only), its OCI 1.1
//! referrers (signatures, SBOMs, attestations that name it as their `subject`), each written
//! by digest with what it points at; and the cosign tag scheme's `sha256-HEX.sig`, `.att` and
//! `.sbom` tags, each written under its tag when the destination's differs (looked up only when
//! the source's tag list, read once per image, has them, or gives no list). With
//! `--platform`, the source's top index is not the one written, so its referrers stay behind.

use std::sync::atomic::Ordering;

use super::copy::{Copier, lock};
use super::error::SyncError;
use super::name::{Image, cosign_tags};
use super::store::{Destination, Source};

/// The most referrers copied per manifest.
pub const MAX_REFERRERS: usize = 256;

impl<S: Source, D: Destination> Copier<'_, S, D> {
    /// Copies the referrers and signature tags of every manifest walked into `target`.
    pub(super) async fn copy_referrers(&self, source: &Image, target: &Image) -> Result<(), SyncError> {
        let walked = lock(&self.walked).clone();
        let engine = self.engine;
        // One tag list instead of three lookups per manifest, when the source gives one.
        let listed = if walked.is_empty() { None } else { engine.source.tags(source).await };
        for digest in &walked {
            if self.manifest_budget_left() == 0 {
                return Err(self.over_manifest_budget());
            }
            let (referrers, read) = self
                .lookup("referrers lookup", || engine.source.referrers(source, digest, self.manifest_budget_left()))
                .await?;
            self.spend_manifest_bytes(read)?;
            if referrers.len() > MAX_REFERRERS {
                self.note(format!("{digest}: only the first {MAX_REFERRERS} of {} referrers", referrers.len()));
            }
            for referrer in referrers.iter().take(MAX_REFERRERS) {
                let held = self
                    .lookup("mirror lookup", || engine.destination.manifest_digest(target, &referrer.digest))
                    .await?;
                if held.is_some() {
                    continue;
                }
                let manifest = self.fetch_sized(source, &referrer.digest, Some(referrer.size)).await?;
                self.put_tree(source, target, &manifest, 1).await?;
                self.put_manifest(target, &referrer.digest, &manifest).await?;
                self.referrers.fetch_add(1, Ordering::SeqCst);
            }
            for tag in cosign_tags(digest) {
                if listed.as_ref().is_some_and(|listed| !listed.contains(&tag)) {
                    continue;
                }
                let Some(at_source) = self.lookup("source lookup", || engine.source.resolve(source, &tag)).await?
                else {
                    continue;
                };
                let held = self.lookup("mirror lookup", || engine.destination.manifest_digest(target, &tag)).await?;
                if held.as_deref() == Some(at_source.as_str()) {
                    continue;
                }
                let manifest = self.fetch(source, &at_source).await?;
                self.put_tree(source, target, &manifest, 1).await?;
                self.put_manifest(target, &tag, &manifest).await?;
                self.referrers.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

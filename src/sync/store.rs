//! Where a copy reads from and writes to, as two small traits, so that the engine copies the
//! same way between registries ([`super::remote`]) and from or into an OCI image layout
//! archive ([`super::archive`]): an implementation answers for manifests and blobs by the image they
//! belong to; the engine decides what to ask, verifies, retries and times out.
//!
//! A [`Source`]'s blob stream is never held whole: the engine wraps it in
//! [`super::verify`]'s digest check, and a [`Destination`] must commit a blob only when the
//! stream it is handed ends without an error.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use super::error::SyncError;
use super::manifest::Descriptor;
use super::name::Image;
use crate::registry::client::Manifest;
use crate::registry::manifests::Pushed;

/// A blob's bytes, chunk by chunk.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, SyncError>> + Send>>;

/// Where images are copied from.
pub trait Source: Send + Sync {
    /// The digest `reference` (a tag or digest) of `image`'s repository names now; `None`
    /// when there is no such manifest.
    fn resolve(&self, image: &Image, reference: &str)
    -> impl Future<Output = Result<Option<String>, SyncError>> + Send;

    /// The manifest `reference` names, bytes unchanged, at most 4 MiB, its digest checked;
    /// `None` when there is none.
    fn manifest(
        &self,
        image: &Image,
        reference: &str,
    ) -> impl Future<Output = Result<Option<Manifest>, SyncError>> + Send;

    /// The bytes of `blob` of `image`'s repository, streamed.
    fn blob(&self, image: &Image, blob: &Descriptor) -> impl Future<Output = Result<BlobStream, SyncError>> + Send;

    /// The OCI 1.1 referrers of `digest` (signatures, SBOMs, attestations); empty when there
    /// are none or the source keeps no such list. With the bytes read for them, at most
    /// `max_bytes` (an error past it, before more is read).
    fn referrers(
        &self,
        image: &Image,
        digest: &str,
        max_bytes: u64,
    ) -> impl Future<Output = Result<(Vec<Descriptor>, u64), SyncError>> + Send;

    /// Every tag of `image`'s repository, so that tags that are not there need not be asked
    /// for one by one; `None` (the default) when the source cannot say cheaply.
    fn tags(&self, image: &Image) -> impl Future<Output = Option<Vec<String>>> + Send {
        let _ = image;
        async { None }
    }
}

/// Where images are copied to.
pub trait Destination: Send + Sync {
    /// The digest `reference` names in `image`'s repository; `None` when absent. `Some("")`
    /// when present but the digest is not known.
    fn manifest_digest(
        &self,
        image: &Image,
        reference: &str,
    ) -> impl Future<Output = Result<Option<String>, SyncError>> + Send;

    /// Whether `image`'s repository has the blob `digest`.
    fn has_blob(&self, image: &Image, digest: &str) -> impl Future<Output = Result<bool, SyncError>> + Send;

    /// Makes `image`'s repository hold `digest` from the repository `from` of the same
    /// destination without sending its bytes; `false` when it could not.
    fn mount_blob(
        &self,
        image: &Image,
        digest: &str,
        from: &str,
    ) -> impl Future<Output = Result<bool, SyncError>> + Send;

    /// Writes `blob` from `data`, committing it only when `data` ends without an error.
    fn put_blob(
        &self,
        image: &Image,
        blob: &Descriptor,
        data: BlobStream,
    ) -> impl Future<Output = Result<(), SyncError>> + Send;

    /// Writes `manifest` unchanged under `reference` (a tag, or its digest).
    fn put_manifest(
        &self,
        image: &Image,
        reference: &str,
        manifest: &Manifest,
    ) -> impl Future<Output = Result<Pushed, SyncError>> + Send;
}

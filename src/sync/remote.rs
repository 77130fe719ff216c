//! The [`Source`] and [`Destination`] of a copy between registries, over the registry room's
//! session layer ([`crate::registry::session`]: credentials per `host[:port]`, challenges,
//! tokens per scope, TLS, `--insecure-registry`) and its protocol operations
//! ([`crate::registry::manifests`], [`crate::registry::blob`]). Each side has its own session
//! and credentials: a source is never sent the mirror's. The clients have no whole-request
//! timeout (a blob takes as long as its length); connecting and each read are bounded, and
//! the engine bounds each step.
//!
//! At most `connections` requests are in flight to one source host; a blob's stream holds its
//! slot until it ends. A source host that answers a referrers request 404 does not serve the
//! referrers API and is not asked again in the run (a rerun costs a request less per image). Built on the session layer rather than `oci-client`, which the project
//! dropped: its auth flow and its unbounded reads did not fit a peer that controls every byte
//! it answers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::copy::lock;
use super::error::SyncError;
use super::manifest::{self, Descriptor, Kind, MAX_ENTRIES};
use super::name::Image;
use super::store::{BlobStream, Destination, Source};
use crate::registry::CheckError;
use crate::registry::blob::{self, Started};
use crate::registry::client::Manifest;
use crate::registry::http::from_reqwest;
use crate::registry::manifests::{self, Pushed};
use crate::registry::refused::PushError;
use crate::registry::session::{Access, Registries};
use crate::registry::tags;

/// A transport timeout (connecting, or waiting for a read) as the time it was given: the
/// clients' own timeouts do not say it.
fn timed(error: CheckError, after: Duration) -> CheckError {
    match error {
        CheckError::Timeout(zero) if zero.is_zero() => CheckError::Timeout(after),
        other => other,
    }
}

/// Registries copied from.
pub struct RemoteSource {
    registries: Registries,
    connections: usize,
    timeout: Duration,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Hosts that answered a referrers request 404: they do not serve the API (OCI 1.1: a
    /// registry that does answers 200, an empty list when there are none), so they are not
    /// asked again this run.
    no_referrers: Mutex<HashSet<String>>,
}

impl RemoteSource {
    /// Over `registries` (the sources' credentials only, connecting and each read bounded by
    /// `timeout`), `connections` requests per host.
    pub fn new(registries: Registries, connections: usize, timeout: Duration) -> Self {
        Self {
            registries,
            connections: connections.max(1),
            timeout,
            hosts: Mutex::new(HashMap::new()),
            no_referrers: Mutex::new(HashSet::new()),
        }
    }

    fn failed(&self, image: &Image) -> impl Fn(CheckError) -> SyncError + use<> {
        let (host, timeout) = (image.host().to_owned(), self.timeout);
        move |error| SyncError::source(&host, timed(error, timeout))
    }

    async fn slot(&self, host: &str) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut hosts = lock(&self.hosts);
            Arc::clone(hosts.entry(host.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.connections))))
        };
        // The semaphore is never closed.
        match semaphore.acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("a host's semaphore is never closed"),
        }
    }
}

impl Source for RemoteSource {
    async fn resolve(&self, image: &Image, reference: &str) -> Result<Option<String>, SyncError> {
        let failed = self.failed(image);
        let _slot = self.slot(image.host()).await;
        let head = manifests::head(&self.registries, &image.repo, Access::Pull, reference).await.map_err(&failed)?;
        match head {
            None => Ok(None),
            Some(manifests::Head { digest: Some(digest) }) => Ok(Some(digest)),
            // No digest said: the bytes tell it.
            Some(_) => Ok(manifests::get(&self.registries, &image.repo, Access::Pull, reference)
                .await
                .map_err(failed)?
                .map(|manifest| manifest.digest)),
        }
    }

    async fn manifest(&self, image: &Image, reference: &str) -> Result<Option<Manifest>, SyncError> {
        let _slot = self.slot(image.host()).await;
        manifests::get(&self.registries, &image.repo, Access::Pull, reference).await.map_err(self.failed(image))
    }

    async fn blob(&self, image: &Image, blob: &Descriptor) -> Result<BlobStream, SyncError> {
        let slot = self.slot(image.host()).await;
        let failed = self.failed(image);
        let response = blob::open(&self.registries, &image.repo, &blob.digest).await.map_err(&failed)?;
        let stream = response.bytes_stream().map(move |chunk| {
            // The host's slot is held until the stream is dropped.
            let _held = &slot;
            chunk.map_err(|error| failed(from_reqwest(error)))
        });
        Ok(Box::pin(stream))
    }

    async fn referrers(
        &self,
        image: &Image,
        digest: &str,
        max_bytes: u64,
    ) -> Result<(Vec<Descriptor>, u64), SyncError> {
        let failed = self.failed(image);
        if lock(&self.no_referrers).contains(image.host()) {
            return Ok((Vec::new(), 0));
        }
        let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let pages = {
            let _slot = self.slot(image.host()).await;
            manifests::referrers(&self.registries, &image.repo, digest, max_bytes).await.map_err(failed)?
        };
        let Some(pages) = pages else {
            lock(&self.no_referrers).insert(image.host().to_owned());
            return Ok((Vec::new(), 0));
        };
        let read = pages.iter().map(|page| page.len() as u64).sum();
        let mut found = Vec::new();
        for page in pages {
            let parsed = manifest::parse(&page, digest, manifest::OCI_INDEX)?;
            if let Kind::Index(entries) = parsed.kind {
                found.extend(entries);
            }
            if found.len() > MAX_ENTRIES {
                return Err(SyncError::Manifest {
                    digest: digest.to_owned(),
                    why: format!("more than {MAX_ENTRIES} referrers"),
                });
            }
        }
        Ok((found, read))
    }

    async fn tags(&self, image: &Image) -> Option<Vec<String>> {
        let _slot = self.slot(image.host()).await;
        let listed = tokio::time::timeout(self.timeout, tags::list(&self.registries, &image.repo)).await;
        // Any failure: the tags are asked for one by one, and that says what is wrong.
        listed.ok()?.ok()?
    }
}

/// The mirror registries copied to.
pub struct RemoteMirror {
    registries: Registries,
    timeout: Duration,
}

impl RemoteMirror {
    /// Over `registries` (the mirror's credentials only, connecting and each read bounded by
    /// `timeout`).
    pub fn new(registries: Registries, timeout: Duration) -> Self {
        Self { registries, timeout }
    }

    fn failed(&self, image: &Image) -> impl Fn(PushError) -> SyncError + use<> {
        let (host, timeout) = (image.host().to_owned(), self.timeout);
        move |error| match error {
            PushError::Check(error) => SyncError::mirror(&host, timed(error, timeout)),
            other => SyncError::mirror(&host, other),
        }
    }
}

impl Destination for RemoteMirror {
    async fn manifest_digest(&self, image: &Image, reference: &str) -> Result<Option<String>, SyncError> {
        let failed = self.failed(image);
        let head = manifests::head(&self.registries, &image.repo, Access::Pull, reference)
            .await
            .map_err(|error| failed(error.into()))?;
        Ok(head.map(|head| head.digest.unwrap_or_default()))
    }

    async fn has_blob(&self, image: &Image, digest: &str) -> Result<bool, SyncError> {
        let failed = self.failed(image);
        blob::exists(&self.registries, &image.repo, Access::Pull, digest).await.map_err(|error| failed(error.into()))
    }

    async fn mount_blob(&self, image: &Image, digest: &str, from: &str) -> Result<bool, SyncError> {
        let started =
            blob::start(&self.registries, &image.repo, Some((digest, from))).await.map_err(self.failed(image))?;
        match started {
            Started::Mounted => Ok(true),
            Started::Upload(upload) => {
                blob::cancel(&self.registries, &image.repo, &upload).await;
                Ok(false)
            }
        }
    }

    async fn put_blob(&self, image: &Image, blob: &Descriptor, data: BlobStream) -> Result<(), SyncError> {
        let failed = self.failed(image);
        let upload = match blob::start(&self.registries, &image.repo, None).await.map_err(&failed)? {
            Started::Upload(upload) => upload,
            Started::Mounted => return Ok(()),
        };
        let body = Body::wrap_stream(data);
        match blob::finish(&self.registries, &image.repo, &upload, &blob.digest, blob.size, body).await {
            Ok(()) => Ok(()),
            Err(error) => {
                blob::cancel(&self.registries, &image.repo, &upload).await;
                Err(failed(error))
            }
        }
    }

    async fn put_manifest(&self, image: &Image, reference: &str, manifest: &Manifest) -> Result<Pushed, SyncError> {
        manifests::put(&self.registries, &image.repo, reference, manifest).await.map_err(self.failed(image))
    }
}

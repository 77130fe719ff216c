//! `sync --from-archive FILE`: the archive as a [`Source`]. Opening reads the tar's headers
//! once, seeking past the data, and keeps where each blob's bytes start (memory grows with
//! the number of blobs, not their size); `index.json` is read whole (at most 64 MiB) and
//! checked against `SHA256SUMS` when the tar has one. A blob is then read from its offset in
//! chunks, its SHA-256 computed on the way: bytes that are not their digest end the stream in
//! an error naming the archive, the file inside it and both digests, before the last chunk is
//! passed on, so the mirror never commits it and nothing is tagged.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Entry, Index, MAX_INDEX, REF_NAME, SOURCE, SUBJECT, SUMS, blob_path, hex_digest, media_type_of, tag_name};
use crate::registry::client::{Manifest, sha256};
use crate::registry::manifests::is_sha256;
use crate::sync::error::SyncError;
use crate::sync::manifest::Descriptor;
use crate::sync::name::Image;
use crate::sync::store::{BlobStream, Source};

/// The most blobs an archive may hold.
pub const MAX_BLOBS: usize = 1 << 20;
/// The most bytes of a manifest.
const MAX_MANIFEST: u64 = 4 << 20;
/// Bytes read at once.
const CHUNK: u64 = 256 << 10;

/// Why an archive could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("--from-archive {file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("--from-archive {file}: {why}")]
    Invalid { file: String, why: String },
}

/// An opened archive.
pub struct ArchiveSource {
    file: PathBuf,
    /// Digest → where its bytes start in the tar, and its length.
    blobs: HashMap<String, (u64, u64)>,
    /// `REF_NAME` → its entry.
    tags: HashMap<String, Entry>,
    /// Subject digest → its referrers.
    referrers: HashMap<String, Vec<Descriptor>>,
    /// The images copied into it, by source reference, in `index.json`'s order.
    images: Vec<String>,
}

impl ArchiveSource {
    /// Reads `file`'s headers and `index.json`.
    pub fn open(file: &Path) -> Result<Self, OpenError> {
        let name = file.display().to_string();
        let io = |source| OpenError::Io { file: name.clone(), source };
        let invalid = |why: String| OpenError::Invalid { file: name.clone(), why };
        let mut archive = tar::Archive::new(std::fs::File::open(file).map_err(io)?);
        let (mut blobs, mut index, mut sums) = (HashMap::new(), None, None);
        for entry in archive.entries_with_seek().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = entry.path().map_err(io)?.to_string_lossy().trim_start_matches("./").to_owned();
            let size = entry.size();
            let mut whole = |what: &str| {
                if size > MAX_INDEX {
                    return Err(invalid(format!("{what} has {size} bytes, more than {MAX_INDEX}")));
                }
                let mut bytes = Vec::new();
                entry.by_ref().take(MAX_INDEX).read_to_end(&mut bytes).map_err(io)?;
                Ok(bytes)
            };
            match path.as_str() {
                "index.json" => index = Some(whole("index.json")?),
                SUMS => sums = Some(whole(SUMS)?),
                _ => {
                    let Some(hex) = path.strip_prefix("blobs/sha256/") else { continue };
                    let digest = format!("sha256:{hex}");
                    if !is_sha256(&digest) {
                        continue;
                    }
                    if blobs.len() >= MAX_BLOBS {
                        return Err(invalid(format!("more than {MAX_BLOBS} blobs")));
                    }
                    blobs.insert(digest, (entry.raw_file_position(), size));
                }
            }
        }
        let index = index.ok_or_else(|| invalid("no index.json: not an OCI image layout archive".into()))?;
        if let Some(sums) = sums {
            let listed = String::from_utf8_lossy(&sums)
                .lines()
                .find_map(|line| line.strip_suffix("  index.json").map(|hex| format!("sha256:{hex}")));
            let got = sha256(&index);
            if let Some(listed) = listed.filter(|listed| *listed != got) {
                return Err(invalid(format!(
                    "index.json: its digest is {got}, {SUMS} says {listed}: the archive is damaged"
                )));
            }
        }
        let index: Index = serde_json::from_slice(&index).map_err(|error| invalid(format!("index.json: {error}")))?;
        let mut source =
            Self { file: file.to_owned(), blobs, tags: HashMap::new(), referrers: HashMap::new(), images: Vec::new() };
        for entry in index.manifests {
            if !is_sha256(&entry.digest) {
                return Err(invalid(format!(
                    "index.json names `{}`, not a sha256 digest",
                    crate::rewrite::excerpt(&entry.digest)
                )));
            }
            if let Some(image) = entry.annotation(SOURCE) {
                source.images.push(image.to_owned());
            }
            if let Some(subject) = entry.annotation(SUBJECT) {
                source.referrers.entry(subject.to_owned()).or_default().push(Descriptor {
                    media_type: entry.media_type.clone(),
                    digest: entry.digest.clone(),
                    size: entry.size,
                    platform: None,
                    artifact_type: None,
                    urls: Vec::new(),
                });
            }
            if let Some(name) = entry.annotation(REF_NAME) {
                source.tags.insert(name.to_owned(), entry.clone());
            }
        }
        Ok(source)
    }

    /// The images the archive was written with (their source references).
    pub fn images(&self) -> &[String] {
        &self.images
    }

    fn failed(&self, why: String) -> SyncError {
        SyncError::Archive { file: self.file.display().to_string(), why }
    }

    /// Where `digest`'s bytes are, checked to be `size` bytes when given.
    fn locate(&self, digest: &str, size: Option<u64>) -> Result<(u64, u64), SyncError> {
        let path = blob_path(digest);
        let (offset, held) =
            *self.blobs.get(digest).ok_or_else(|| self.failed(format!("{path} is not in the archive")))?;
        match size {
            Some(size) if size != held => {
                Err(self
                    .failed(format!("{path} has {held} bytes where its manifest says {size}: the archive is damaged")))
            }
            _ => Ok((offset, held)),
        }
    }

    /// A damaged blob's error: the file and both digests.
    fn damaged(&self, digest: &str, got: &str) -> SyncError {
        self.failed(format!("{}: its bytes' digest is {got}, not {digest}: the archive is damaged", blob_path(digest)))
    }

    fn stream(&self, digest: &str, offset: u64, size: u64) -> BlobStream {
        struct State {
            file: Option<tokio::fs::File>,
            path: PathBuf,
            offset: u64,
            left: u64,
            context: Option<ring::digest::Context>,
        }
        let state = State {
            file: None,
            path: self.file.clone(),
            offset,
            left: size,
            context: Some(ring::digest::Context::new(&ring::digest::SHA256)),
        };
        let (digest, name) = (digest.to_owned(), self.file.display().to_string());
        let failed = move |why: String| SyncError::Archive { file: name.clone(), why };
        let stream = futures::stream::unfold(state, move |mut state| {
            let (digest, failed) = (digest.clone(), failed.clone());
            async move {
                let context = state.context.take()?;
                if state.left == 0 {
                    let got = hex_digest(context.finish());
                    return (got != digest).then(|| {
                        let why = format!(
                            "{}: its bytes' digest is {got}, not {digest}: the archive is damaged",
                            blob_path(&digest)
                        );
                        (Err(failed(why)), state)
                    });
                }
                let read = async {
                    if state.file.is_none() {
                        let mut file = tokio::fs::File::open(&state.path).await?;
                        file.seek(std::io::SeekFrom::Start(state.offset)).await?;
                        state.file = Some(file);
                    }
                    let want = usize::try_from(state.left.min(CHUNK)).unwrap_or(CHUNK as usize);
                    let mut buffer = vec![0; want];
                    let file = state.file.as_mut().ok_or_else(|| std::io::Error::other("not open"))?;
                    let got = file.read(&mut buffer).await?;
                    if got == 0 {
                        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the archive ends early"));
                    }
                    buffer.truncate(got);
                    Ok(buffer)
                };
                match read.await {
                    Ok(buffer) => {
                        let mut context = context;
                        context.update(&buffer);
                        state.left -= buffer.len() as u64;
                        state.context = Some(context);
                        Some((Ok(Bytes::from(buffer)), state))
                    }
                    Err(error) => Some((Err(failed(format!("{}: {error}", blob_path(&digest)))), state)),
                }
            }
        });
        Box::pin(stream)
    }
}

impl Source for ArchiveSource {
    async fn resolve(&self, image: &Image, reference: &str) -> Result<Option<String>, SyncError> {
        if is_sha256(reference) {
            return Ok(self.blobs.contains_key(reference).then(|| reference.to_owned()));
        }
        let own = (image.tag.as_deref() == Some(reference)).then(|| image.written.clone());
        let found = own.into_iter().chain([tag_name(image, reference)]).find_map(|name| self.tags.get(&name));
        Ok(found.map(|entry| entry.digest.clone()))
    }

    async fn manifest(&self, image: &Image, reference: &str) -> Result<Option<Manifest>, SyncError> {
        let Some(digest) = self.resolve(image, reference).await? else { return Ok(None) };
        let (offset, size) = self.locate(&digest, None)?;
        if size > MAX_MANIFEST {
            return Err(SyncError::Manifest { digest, why: format!("{size} bytes, more than 4 MiB") });
        }
        let mut file = tokio::fs::File::open(&self.file).await.map_err(|error| self.failed(error.to_string()))?;
        file.seek(std::io::SeekFrom::Start(offset)).await.map_err(|error| self.failed(error.to_string()))?;
        let mut bytes = Vec::new();
        file.take(size).read_to_end(&mut bytes).await.map_err(|error| self.failed(error.to_string()))?;
        let got = sha256(&bytes);
        if got != digest {
            return Err(self.damaged(&digest, &got));
        }
        Ok(Some(Manifest { media_type: media_type_of(&bytes), bytes, digest }))
    }

    async fn blob(&self, _image: &Image, blob: &Descriptor) -> Result<BlobStream, SyncError> {
        let (offset, size) = self.locate(&blob.digest, Some(blob.size))?;
        Ok(self.stream(&blob.digest, offset, size))
    }

    async fn referrers(
        &self,
        _image: &Image,
        digest: &str,
        _max_bytes: u64,
    ) -> Result<(Vec<Descriptor>, u64), SyncError> {
        // Read with the archive's index when it was opened: nothing more is read here.
        Ok((self.referrers.get(digest).cloned().unwrap_or_default(), 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut tar = tar::Builder::new(file.reopen().unwrap());
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, path, *bytes).unwrap();
        }
        tar.finish().unwrap();
        file
    }

    #[test]
    fn an_archive_without_its_index_or_with_a_changed_one_is_refused() {
        let error = |file: &tempfile::NamedTempFile| ArchiveSource::open(file.path()).err().unwrap().to_string();
        let no_index = tar_of(&[("oci-layout", super::super::LAYOUT)]);
        assert!(error(&no_index).contains("no index.json"), "{}", error(&no_index));
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let sums = format!("{}  index.json\n", &sha256(b"another index")["sha256:".len()..]);
        let changed = tar_of(&[("index.json", index), (SUMS, sums.as_bytes())]);
        assert!(error(&changed).contains("SHA256SUMS says sha256:"), "{}", error(&changed));
        let bad_digest =
            tar_of(&[("index.json", br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:../x","size":1}]}"#)]);
        assert!(error(&bad_digest).contains("not a sha256 digest"), "{}", error(&bad_digest));
        let good = tar_of(&[("index.json", index)]);
        assert!(ArchiveSource::open(good.path()).unwrap().images().is_empty());
        let not_a_tar = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_a_tar.path(), b"not a tar").unwrap();
        assert!(ArchiveSource::open(not_a_tar.path()).is_err());
    }
}

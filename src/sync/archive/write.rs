//! `sync --to-archive FILE`: the archive as a [`Destination`]. Blobs stream into a staging
//! directory next to FILE (`blobs/sha256/HEX`, each written under a temporary name and renamed
//! once its stream ended without an error, so a blob is there whole or not at all; one file
//! however many images share it), manifests likewise; the references are kept in memory. At
//! the end, [`ArchiveWriter::finish`] writes the tar (`oci-layout`, the blobs, `index.json`,
//! `SHA256SUMS`) to a temporary file in FILE's directory, syncs it, renames it to FILE and
//! writes `FILE.sha256`; the staging directory is removed, also when the run fails. Memory:
//! one chunk per blob being written, and the references.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{Entry, Index, LAYOUT, REF_NAME, SOURCE, SUBJECT, SUMS, blob_path, hex_digest, tag_name};
use crate::registry::client::{Manifest, sha256};
use crate::registry::manifests::{Pushed, is_sha256};
use crate::sync::copy::lock;
use crate::sync::error::SyncError;
use crate::sync::manifest::{self, Descriptor, OCI_INDEX};
use crate::sync::name::{Image, anchor_tag};
use crate::sync::store::{BlobStream, Destination};

/// Why the archive could not be written.
#[derive(Debug, thiserror::Error)]
#[error("--to-archive {file}: {what}: {source}")]
pub struct WriteError {
    file: String,
    what: String,
    source: std::io::Error,
}

/// What [`ArchiveWriter::finish`] wrote.
#[derive(Clone, Debug)]
pub struct Written {
    /// Entries of `index.json` (images, tags that came along, referrers).
    pub entries: usize,
    /// Blobs and manifests, each once.
    pub blobs: usize,
    /// The tar's length and SHA-256.
    pub bytes: u64,
    pub digest: String,
}

/// The archive being written.
pub struct ArchiveWriter {
    file: PathBuf,
    staging: Option<PathBuf>,
    /// `REF_NAME` → its entry.
    tags: Mutex<BTreeMap<String, Entry>>,
    /// Referrers written by digest.
    referrers: Mutex<BTreeMap<String, Entry>>,
    /// Manifests written.
    manifests: Mutex<HashSet<String>>,
    temporary: AtomicU64,
}

impl ArchiveWriter {
    /// An archive to be written at `file`; with `dry_run`, nothing is ever written.
    pub fn new(file: &Path, dry_run: bool) -> Result<Self, WriteError> {
        let mut writer = Self {
            file: file.to_owned(),
            staging: None,
            tags: Mutex::default(),
            referrers: Mutex::default(),
            manifests: Mutex::default(),
            temporary: AtomicU64::new(0),
        };
        if !dry_run {
            let staging = writer.beside(".staging");
            std::fs::create_dir_all(staging.join("blobs/sha256"))
                .map_err(|source| writer.error(format!("creating {}", staging.display()), source))?;
            writer.staging = Some(staging);
        }
        Ok(writer)
    }

    fn display(&self) -> String {
        self.file.display().to_string()
    }

    fn error(&self, what: String, source: std::io::Error) -> WriteError {
        WriteError { file: self.display(), what, source }
    }

    fn failed(&self, why: impl std::fmt::Display) -> SyncError {
        SyncError::Archive { file: self.display(), why: why.to_string() }
    }

    /// `.NAME.SUFFIX-PID` in FILE's directory.
    fn beside(&self, suffix: &str) -> PathBuf {
        let name = self.file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = self.file.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        dir.join(format!(".{name}{suffix}-{}", std::process::id()))
    }

    fn staged(&self, digest: &str) -> Result<PathBuf, SyncError> {
        let staging = self.staging.as_ref().ok_or_else(|| self.failed("a dry run writes nothing"))?;
        Ok(staging.join(blob_path(digest)))
    }

    fn temporary(&self, path: &Path) -> PathBuf {
        let n = self.temporary.fetch_add(1, Ordering::SeqCst);
        path.with_extension(format!("partial-{n}"))
    }

    /// The `REF_NAME` of `reference` written for `image`: the image itself under its own tag
    /// (or a digest reference's anchor), else `HOST/REPOSITORY:TAG`; whether it is the image's.
    fn name(image: &Image, reference: &str) -> (String, bool) {
        let own = image.tag.as_deref() == Some(reference)
            || image.digest.as_deref().is_some_and(|digest| anchor_tag(digest) == reference);
        if own { (image.written.clone(), true) } else { (tag_name(image, reference), false) }
    }

    /// Writes the tar and `FILE.sha256`, and removes the staging directory.
    pub fn finish(mut self) -> Result<Written, WriteError> {
        let Some(staging) = self.staging.take() else {
            return Err(self.error("finishing".into(), std::io::Error::other("a dry run writes nothing")));
        };
        let result = self.write_tar(&staging);
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    fn write_tar(&self, staging: &Path) -> Result<Written, WriteError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| self.error(what, source)
        };
        let mut manifests: Vec<Entry> = lock(&self.tags).values().cloned().collect();
        manifests.extend(lock(&self.referrers).values().cloned());
        let index = Index { schema_version: 2, media_type: OCI_INDEX.to_owned(), manifests };
        let index_json = serde_json::to_vec_pretty(&index).map_err(|error| io("index.json")(error.into()))?;
        let mut blobs: Vec<String> = std::fs::read_dir(staging.join("blobs/sha256"))
            .map_err(io("reading the staging directory"))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| is_sha256(&format!("sha256:{name}")))
            .collect();
        blobs.sort_unstable();

        let temporary = self.beside(".tmp");
        let file = std::fs::File::create(&temporary).map_err(io("creating the temporary file"))?;
        let counted = Hashing { inner: std::io::BufWriter::with_capacity(1 << 20, file), context: new(), bytes: 0 };
        let mut tar = tar::Builder::new(counted);
        let sum = |path: &str, bytes: &[u8]| format!("{}  {path}\n", sha256(bytes).trim_start_matches("sha256:"));
        let sums = format!("{}{}", sum("oci-layout", LAYOUT), sum("index.json", &index_json));
        let append = |tar: &mut tar::Builder<Hashing>, path: &str, bytes: &[u8]| {
            tar.append_data(&mut header(bytes.len() as u64), path, bytes)
        };
        let written = (|| {
            append(&mut tar, "oci-layout", LAYOUT)?;
            for hex in &blobs {
                let path = format!("blobs/sha256/{hex}");
                let file = std::fs::File::open(staging.join(&path))?;
                let size = file.metadata()?.len();
                tar.append_data(&mut header(size), &path, file)?;
            }
            append(&mut tar, "index.json", &index_json)?;
            // The blobs' names are their digests, checked as they were written.
            let listed: String = blobs.iter().map(|hex| format!("{hex}  blobs/sha256/{hex}\n")).collect();
            let all = format!("{sums}{listed}");
            append(&mut tar, SUMS, all.as_bytes())?;
            let mut counted = tar.into_inner()?;
            counted.flush()?;
            let Hashing { inner, context, bytes } = counted;
            let file = inner.into_inner().map_err(|error| error.into_error())?;
            file.sync_all()?;
            Ok::<_, std::io::Error>((bytes, hex_digest(context.finish())))
        })();
        let (bytes, digest) = match written {
            Ok(done) => done,
            Err(source) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(self.error(format!("writing {}", temporary.display()), source));
            }
        };
        std::fs::rename(&temporary, &self.file).map_err(io("renaming the temporary file"))?;
        let name = self.file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let sum_file = PathBuf::from(format!("{}.sha256", self.file.display()));
        let sum_temporary = self.beside(".sha256.tmp");
        std::fs::write(&sum_temporary, format!("{}  {name}\n", digest.trim_start_matches("sha256:")))
            .and_then(|()| std::fs::rename(&sum_temporary, &sum_file))
            .map_err(io("writing FILE.sha256"))?;
        Ok(Written { entries: index.manifests.len(), blobs: blobs.len(), bytes, digest })
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        if let Some(staging) = self.staging.take() {
            let _ = std::fs::remove_dir_all(staging);
        }
    }
}

fn new() -> ring::digest::Context {
    ring::digest::Context::new(&ring::digest::SHA256)
}

/// A regular file's header: mode 0644, no owner, time 0, so one content makes one tar.
fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// A writer that hashes and counts what it writes (the tar's `FILE.sha256`).
struct Hashing {
    inner: std::io::BufWriter<std::fs::File>,
    context: ring::digest::Context,
    bytes: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.context.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Destination for ArchiveWriter {
    async fn manifest_digest(&self, image: &Image, reference: &str) -> Result<Option<String>, SyncError> {
        if is_sha256(reference) {
            return Ok(lock(&self.manifests).contains(reference).then(|| reference.to_owned()));
        }
        let (name, _) = Self::name(image, reference);
        Ok(lock(&self.tags).get(&name).map(|entry| entry.digest.clone()))
    }

    async fn has_blob(&self, _image: &Image, digest: &str) -> Result<bool, SyncError> {
        match &self.staging {
            Some(_) => Ok(tokio::fs::try_exists(self.staged(digest)?).await.unwrap_or(false)),
            None => Ok(false),
        }
    }

    async fn mount_blob(&self, image: &Image, digest: &str, _from: &str) -> Result<bool, SyncError> {
        self.has_blob(image, digest).await
    }

    async fn put_blob(&self, _image: &Image, blob: &Descriptor, mut data: BlobStream) -> Result<(), SyncError> {
        let path = self.staged(&blob.digest)?;
        let temporary = self.temporary(&path);
        let written = async {
            let mut file = tokio::fs::File::create(&temporary).await.map_err(|error| self.failed(error))?;
            while let Some(chunk) = data.next().await {
                file.write_all(&chunk?).await.map_err(|error| self.failed(error))?;
            }
            file.flush().await.map_err(|error| self.failed(error))?;
            drop(file);
            tokio::fs::rename(&temporary, &path).await.map_err(|error| self.failed(error))
        };
        let result = written.await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temporary).await;
        }
        result
    }

    async fn put_manifest(&self, image: &Image, reference: &str, manifest: &Manifest) -> Result<Pushed, SyncError> {
        if sha256(&manifest.bytes) != manifest.digest {
            return Err(SyncError::Manifest { digest: manifest.digest.clone(), why: "not its digest".into() });
        }
        let path = self.staged(&manifest.digest)?;
        if !lock(&self.manifests).contains(&manifest.digest) {
            let temporary = self.temporary(&path);
            tokio::fs::write(&temporary, &manifest.bytes).await.map_err(|error| self.failed(error))?;
            tokio::fs::rename(&temporary, &path).await.map_err(|error| self.failed(error))?;
            lock(&self.manifests).insert(manifest.digest.clone());
        }
        let parsed = manifest::parse(&manifest.bytes, &manifest.digest, &manifest.media_type)?;
        let mut entry = Entry {
            media_type: parsed.media_type,
            digest: manifest.digest.clone(),
            size: manifest.bytes.len() as u64,
            annotations: BTreeMap::new(),
        };
        if is_sha256(reference) {
            if let Some(subject) = parsed.subject {
                entry.annotations.insert(SUBJECT.into(), subject.digest);
                lock(&self.referrers).insert(manifest.digest.clone(), entry);
            }
        } else {
            let (name, own) = Self::name(image, reference);
            entry.annotations.insert(REF_NAME.into(), name.clone());
            if own {
                entry.annotations.insert(SOURCE.into(), image.written.clone());
            }
            lock(&self.tags).insert(name, entry);
        }
        Ok(Pushed { subject_indexed: true })
    }
}

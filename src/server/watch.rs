//! Reloads a file when it changes, through its parent directory.
//!
//! Kubernetes ConfigMap and Secret volumes replace files by swapping a
//! `..data` symlink, which a watch on the file itself misses, so the parent
//! directory is watched. Access events are dropped (inotify reports every
//! open, and re-reading the files would otherwise trigger the next event
//! forever); the rest are debounced, then the files are re-read and `reload`
//! runs only when their bytes changed. A slow poll backs up inotify on
//! filesystems that do not deliver events.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::{Event, EventKind, RecursiveMode, Watcher};
use tracing::{debug, warn};

use crate::rules_file::read_bounded_bytes;

/// How long events are gathered before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches `files` and calls `reload` (on a thread of its own) whenever any of their
/// contents change; `reload` reads the files itself. Runs until the process ends.
pub fn spawn(
    name: &'static str,
    files: Vec<PathBuf>,
    poll: Duration,
    mut reload: impl FnMut() + Send + 'static,
) -> anyhow::Result<()> {
    let (events, changes) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<Event>| match result {
        Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
        Ok(_) => {
            let _ = events.send(());
        }
        Err(error) => warn!(%error, "file watch error"),
    })?;
    let mut directories: Vec<PathBuf> = files.iter().map(|file| parent(file)).collect();
    directories.sort();
    directories.dedup();
    for directory in &directories {
        watcher.watch(directory, RecursiveMode::NonRecursive)?;
    }
    std::thread::Builder::new().name(format!("watch-{name}")).spawn(move || {
        let _keep_watching = watcher;
        let mut last = fingerprint(&files);
        loop {
            // An event, or the poll interval passing, both mean "look again".
            match changes.recv_timeout(poll) {
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Ok(()) => std::thread::sleep(DEBOUNCE),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            while changes.try_recv().is_ok() {}
            let now = fingerprint(&files);
            if now != last {
                debug!(watch = name, "files changed; reloading");
                last = now;
                reload();
            }
        }
    })?;
    Ok(())
}

fn parent(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What the files hold now, as a hash: their content, or for a file too large to read (the
/// loader refuses it anyway) its size, time and inode, or why it cannot be read (missing, a
/// symlink loop), so a change from one failure to another is noticed too. Reads are bounded.
fn fingerprint(files: &[PathBuf]) -> u64 {
    use std::io::ErrorKind;
    use std::os::unix::fs::MetadataExt;
    let mut hasher = DefaultHasher::new();
    for file in files {
        match read_bounded_bytes(file) {
            Ok(content) => content.hash(&mut hasher),
            Err(error) if error.kind() == ErrorKind::FileTooLarge => {
                let meta = std::fs::metadata(file).ok();
                meta.map(|meta| (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino())).hash(&mut hasher);
            }
            Err(error) => error.kind().hash(&mut hasher),
        }
    }
    hasher.finish()
}

//! Reloads a file when it changes, through its parent directory.
//!
//! Kubernetes ConfigMap and Secret volumes replace files by swapping a
//! `..data` symlink, which a watch on the file itself misses, so the parent
//! directory is watched. Events are debounced, then the file is re-read and
//! handed to `reload` only when its bytes changed. A slow poll backs up
//! inotify on filesystems that do not deliver events.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, new_debouncer};
use tracing::{debug, warn};

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
    let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| {
        if let Err(error) = &result {
            warn!(%error, "file watch error");
        }
        let _ = events.send(());
    })?;
    let mut directories: Vec<PathBuf> = files.iter().map(|file| parent(file)).collect();
    directories.sort();
    directories.dedup();
    for directory in &directories {
        debouncer.watcher().watch(directory, RecursiveMode::NonRecursive)?;
    }
    std::thread::Builder::new().name(format!("watch-{name}")).spawn(move || {
        let _keep_watching = debouncer;
        let mut last = fingerprint(&files);
        loop {
            // An event, or the poll interval passing, both mean "look again".
            if let Err(mpsc::RecvTimeoutError::Disconnected) = changes.recv_timeout(poll) {
                return;
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

/// A hash of the files' contents (following symlinks); unreadable files hash as absent.
fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for file in files {
        std::fs::read(file).ok().hash(&mut hasher);
    }
    hasher.finish()
}

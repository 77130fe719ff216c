//! A blob's bytes checked on their way from the source to the destination: SHA-256 computed
//! chunk by chunk (`ring`), the length held to the manifest's, and the last chunk held back
//! until both are known good. A blob whose bytes are not its digest ends in an error before
//! its last chunk is passed on, so the destination never receives it whole and never commits
//! it. Memory: one chunk held, whatever the blob's size. The stream also says when it last
//! moved ([`Watch`]): an upload that stops moving is a stalled peer, whatever its length.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;

use super::error::SyncError;
use super::store::BlobStream;

/// Where the stream says why it failed: the destination's error then names the transport,
/// while this holds the cause.
pub type Failure = Arc<Mutex<Option<SyncError>>>;

/// When a stream last moved.
pub struct Watch {
    start: Instant,
    /// Milliseconds from `start` to the last chunk (or the stream's start or end).
    last: AtomicU64,
}

impl Watch {
    fn new() -> Self {
        Self { start: Instant::now(), last: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// How long since the stream last moved.
    pub fn idle(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// `inner`, checked to be `size` bytes whose SHA-256 is `digest`; `moved` is told each chunk's
/// length as it is passed on; the [`Watch`] says when it last moved.
pub fn verified(
    inner: BlobStream,
    digest: &str,
    size: u64,
    moved: impl Fn(u64) + Send + 'static,
) -> (BlobStream, Failure, Arc<Watch>) {
    let failure = Failure::default();
    let watch = Arc::new(Watch::new());
    let stream = Verified {
        inner,
        context: ring::digest::Context::new(&ring::digest::SHA256),
        digest: digest.to_owned(),
        size,
        received: 0,
        held: None,
        done: false,
        moved: Box::new(moved),
        failure: Arc::clone(&failure),
        watch: Arc::clone(&watch),
    };
    (Box::pin(stream), failure, watch)
}

struct Verified {
    inner: BlobStream,
    context: ring::digest::Context,
    digest: String,
    size: u64,
    received: u64,
    held: Option<Bytes>,
    done: bool,
    moved: Box<dyn Fn(u64) + Send>,
    failure: Failure,
    watch: Arc<Watch>,
}

impl Verified {
    fn fail(&mut self, error: SyncError) -> Poll<Option<Result<Bytes, SyncError>>> {
        self.done = true;
        self.held = None;
        *self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.clone());
        Poll::Ready(Some(Err(error)))
    }

    fn pass(&mut self, chunk: Bytes) -> Poll<Option<Result<Bytes, SyncError>>> {
        self.watch.touch();
        (self.moved)(chunk.len() as u64);
        Poll::Ready(Some(Ok(chunk)))
    }
}

impl Stream for Verified {
    type Item = Result<Bytes, SyncError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    this.received = this.received.saturating_add(chunk.len() as u64);
                    if this.received > this.size {
                        let error =
                            SyncError::BlobSize { digest: this.digest.clone(), size: this.size, got: this.received };
                        return this.fail(error);
                    }
                    this.context.update(&chunk);
                    if let Some(previous) = this.held.replace(chunk) {
                        return this.pass(previous);
                    }
                }
                Poll::Ready(Some(Err(error))) => return this.fail(error),
                Poll::Ready(None) => {
                    if this.received != this.size {
                        let error =
                            SyncError::BlobSize { digest: this.digest.clone(), size: this.size, got: this.received };
                        return this.fail(error);
                    }
                    let context =
                        std::mem::replace(&mut this.context, ring::digest::Context::new(&ring::digest::SHA256));
                    let got = hex_digest(context.finish().as_ref());
                    if got != this.digest {
                        return this.fail(SyncError::BlobDigest { digest: this.digest.clone(), got });
                    }
                    this.done = true;
                    this.watch.touch();
                    return match this.held.take() {
                        Some(last) => this.pass(last),
                        None => Poll::Ready(None),
                    };
                }
            }
        }
    }
}

/// `sha256:` and the hex of a SHA-256 value.
fn hex_digest(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::StreamExt;

    use super::*;
    use crate::registry::client::sha256;

    fn chunks(parts: &[&'static [u8]]) -> BlobStream {
        Box::pin(futures::stream::iter(parts.iter().map(|part| Ok(Bytes::from_static(part))).collect::<Vec<_>>()))
    }

    async fn run(
        parts: &[&'static [u8]],
        digest: &str,
        size: u64,
    ) -> (Vec<Result<Bytes, SyncError>>, u64, Option<SyncError>) {
        let moved = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&moved);
        let (stream, failure, _) = verified(chunks(parts), digest, size, move |n| {
            counter.fetch_add(n, Ordering::SeqCst);
        });
        let items: Vec<_> = stream.collect().await;
        let failure = failure.lock().unwrap().clone();
        (items, moved.load(Ordering::SeqCst), failure)
    }

    #[tokio::test]
    async fn good_bytes_pass_and_bad_ones_never_end() {
        let good = sha256(b"hello world");
        let (items, moved, failure) = run(&[b"hello", b"", b" world"], &good, 11).await;
        assert_eq!(items.iter().filter(|item| item.is_ok()).count(), 2);
        assert_eq!((moved, failure), (11, None));

        // (chunks, size, error): the last chunk is never passed on when anything is wrong.
        let table: [(&[&'static [u8]], u64, &str); 3] = [
            (&[b"hello", b" WORLD"], 11, "digest is sha256:"),
            (&[b"hello", b" world!"], 11, "sent 12 bytes where the manifest says 11"),
            (&[b"hello", b" wor"], 11, "sent 9 bytes where the manifest says 11"),
        ];
        for (parts, size, why) in table {
            let (items, moved, failure) = run(parts, &good, size).await;
            let error = items.last().unwrap().as_ref().unwrap_err().to_string();
            assert!(error.contains(why) && error.ends_with("not committed"), "{error}");
            assert!(moved < 11, "{why}: the whole blob was passed on");
            assert_eq!(failure.map(|failure| failure.to_string()), Some(error));
        }
        let (items, _, failure) = run(&[], &sha256(b""), 0).await;
        assert!(items.is_empty() && failure.is_none());
    }
}

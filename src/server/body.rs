//! Reading a webhook request body whole, into one buffer sized from its `Content-Length`.
//! Collecting the frames first and joining them after (what axum's `Bytes` extractor does)
//! holds a large body twice at its peak; this holds it once plus the frame being copied, so
//! the in-flight body budget is what the bodies really occupy.

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

/// First capacity for a body that declares no length; it grows as frames arrive.
const UNDECLARED_START: usize = 64 * 1024;

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// More bytes sent than the limit: 413.
    TooLarge { limit: usize },
    /// The peer reset or broke the stream mid-body: 400.
    Broken(String),
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        match self {
            Self::TooLarge { limit } => {
                (StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is over the limit of {limit} bytes\n"))
                    .into_response()
            }
            Self::Broken(error) => {
                (StatusCode::BAD_REQUEST, format!("could not read the request body: {error}\n")).into_response()
            }
        }
    }
}

/// Reads `body` whole, refusing more than `limit` bytes. `declared` (the `Content-Length`)
/// sizes the buffer up front; a body sent longer than it declared still stops at `limit`. A
/// body declared over the limit is read up to it before the 413, so the client (still
/// writing) reads the answer instead of a broken pipe.
pub async fn read_whole(body: Body, declared: Option<u64>, limit: usize) -> Result<Bytes, BodyError> {
    let capacity = declared.map_or(UNDECLARED_START, |declared| usize::try_from(declared).unwrap_or(limit)).min(limit);
    let mut buffer = Vec::with_capacity(capacity);
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let data = chunk.map_err(|error| BodyError::Broken(error.to_string()))?;
        if buffer.len().saturating_add(data.len()) > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buffer.extend_from_slice(&data);
    }
    Ok(Bytes::from(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(chunks: &[&'static [u8]]) -> Body {
        let chunks: Vec<_> = chunks.iter().map(|chunk| Ok::<_, std::io::Error>(Bytes::from_static(chunk))).collect();
        Body::from_stream(futures::stream::iter(chunks))
    }

    /// Chunks sent, declared length, limit, and what is read.
    type Case = (&'static [&'static [u8]], Option<u64>, usize, Result<&'static [u8], BodyError>);

    #[tokio::test]
    async fn a_body_is_read_whole_or_refused_past_the_limit() {
        let cases: [Case; 7] = [
            (&[b"{}"], Some(2), 8, Ok(b"{}")),
            (&[b"ab", b"cd", b"ef"], Some(6), 6, Ok(b"abcdef")),
            (&[b"ab", b"cd"], None, 8, Ok(b"abcd")),
            (&[], Some(0), 8, Ok(b"")),
            (&[b"abcde", b"fghi"], Some(9), 8, Err(BodyError::TooLarge { limit: 8 })),
            (&[b"abcd", b"efghi"], None, 8, Err(BodyError::TooLarge { limit: 8 })),
            // Declares less than it sends: the limit still holds.
            (&[b"abcd", b"efghi"], Some(2), 8, Err(BodyError::TooLarge { limit: 8 })),
        ];
        for (chunks, declared, limit, expected) in cases {
            let read = read_whole(chunked(chunks), declared, limit).await;
            assert_eq!(read.as_deref().map_err(|error| format!("{error:?}")), expected.map_err(|e| format!("{e:?}")));
        }
    }

    #[tokio::test]
    async fn a_broken_stream_is_an_error_not_a_short_body() {
        let chunks = vec![
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer")),
        ];
        let body = Body::from_stream(futures::stream::iter(chunks));
        let error = read_whole(body, Some(4), 8).await.unwrap_err();
        assert!(matches!(&error, BodyError::Broken(text) if text.contains("reset by peer")), "{error:?}");
        assert_eq!(error.into_response().status(), StatusCode::BAD_REQUEST);
    }
}

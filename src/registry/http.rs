//! The transport under every registry request: the `reqwest` client (rustls with `ring`,
//! HTTP/1.1, keep-alive), its redirect policy (at most [`MAX_REDIRECTS`], never from `https`
//! to `http`; reqwest drops `Authorization` when a redirect leaves the origin), bodies read
//! up to a cap, `Retry-After`, and transport failures sorted into [`CheckError`]s whose
//! messages hold no URL.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_LENGTH, HeaderMap, RETRY_AFTER};
use reqwest::{Client, Response, redirect};

use super::egress::{Egress, GuardedResolver};
use super::error::CheckError;

/// The longest `Retry-After` honoured: a registry cannot shut itself out for longer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Redirects followed per request.
pub const MAX_REDIRECTS: usize = 5;

/// A client with `tls`: connections time out after `connect`; each request as a whole after
/// `whole_request` when given (a check), else each read after `connect` (a blob stream,
/// whose length is the blob's).
///
/// With `guard` ([`super::egress`]), names resolve only to the addresses it allows, every
/// redirect is checked by it, and no proxy is used.
pub fn client(
    tls: rustls::ClientConfig,
    connect: Duration,
    whole_request: Option<Duration>,
    guard: Option<Arc<Egress>>,
) -> Result<Client, reqwest::Error> {
    let mut builder = Client::builder().use_preconfigured_tls(tls);
    builder = match guard {
        Some(egress) => builder
            .dns_resolver(GuardedResolver::new(Arc::clone(&egress)))
            .redirect(guarded_redirect_policy(egress))
            .no_proxy(),
        None => builder.redirect(redirect_policy()),
    };
    let builder = builder
        .connect_timeout(connect)
        .pool_max_idle_per_host(16)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("mirrorswap/", env!("CARGO_PKG_VERSION")))
        .http1_only();
    match whole_request {
        Some(timeout) => builder.timeout(timeout),
        None => builder.read_timeout(connect),
    }
    .build()
}

/// At most [`MAX_REDIRECTS`], never from `https` to `http`. (reqwest drops the
/// `Authorization` header when a redirect leaves the origin.)
pub fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let downgrade =
            attempt.previous().last().is_some_and(|from| from.scheme() == "https") && attempt.url().scheme() != "https";
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if downgrade {
            attempt.error("a redirect from https to plain http")
        } else {
            attempt.follow()
        }
    })
}

/// [`redirect_policy`], and each redirect's URL allowed by `egress`.
fn guarded_redirect_policy(egress: Arc<Egress>) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        let downgrade =
            attempt.previous().last().is_some_and(|from| from.scheme() == "https") && attempt.url().scheme() != "https";
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if downgrade {
            attempt.error("a redirect from https to plain http")
        } else if let Err(refused) = egress.check_url(attempt.url()) {
            attempt.error(format!("a redirect refused: {refused}"))
        } else {
            attempt.follow()
        }
    })
}

/// The body, up to `limit` bytes; longer is an error, and nothing past the limit is read.
pub async fn read_capped(mut response: Response, limit: usize, what: &'static str) -> Result<Vec<u8>, CheckError> {
    if declared_length(&response).is_some_and(|length| length > limit) {
        return Err(CheckError::TooLarge { what, limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
        if body.len() + chunk.len() > limit {
            return Err(CheckError::TooLarge { what, limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads the body to its end without keeping it, up to `limit` bytes.
pub async fn drain_capped(mut response: Response, limit: usize, what: &'static str) -> Result<(), CheckError> {
    if declared_length(&response).is_some_and(|length| length > limit) {
        return Err(CheckError::TooLarge { what, limit });
    }
    let mut read = 0_usize;
    while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
        read = read.saturating_add(chunk.len());
        if read > limit {
            return Err(CheckError::TooLarge { what, limit });
        }
    }
    Ok(())
}

pub fn declared_length(response: &Response) -> Option<usize> {
    response.headers().get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// `Retry-After` as seconds or an HTTP date, at most [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(text).ok()?.duration_since(SystemTime::now()).unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Sorts a transport failure: a timeout, an untrusted certificate, another TLS failure, a
/// failed connection, or a broken exchange. The message is the innermost cause, never the
/// URL.
pub fn from_reqwest(error: reqwest::Error) -> CheckError {
    if error.is_timeout() {
        return CheckError::Timeout(Duration::ZERO);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut innermost = None;
    while let Some(cause) = source {
        if let Some(tls) = as_tls(cause) {
            return match tls {
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                    CheckError::UntrustedCertificate
                }
                other => CheckError::Tls(other.to_string()),
            };
        }
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    let message = innermost.unwrap_or_else(|| "the request failed".to_owned());
    if error.is_connect() { CheckError::Connect(message) } else { CheckError::Transport(message) }
}

/// The rustls error in `cause`, also when `io::Error`s wrap it (hyper's connector wraps
/// tokio-rustls' `io::Error` in another; an `io::Error`'s `source` skips what it wraps).
fn as_tls<'e>(cause: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut inner: &(dyn std::error::Error + 'static) = cause;
    for _ in 0..8 {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        inner = inner.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_is_read_and_capped() {
        let headers = |value: &str| {
            let mut map = HeaderMap::new();
            map.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            map
        };
        assert_eq!(retry_after(&headers("30")), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(&headers("999999")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}

//! The egress guard of a session whose registries a Pod's author names (`serve
//! --copy-on-miss` copies from the host an image says): no connection to a loopback,
//! link-local, private, shared (CGNAT), unspecified, multicast or reserved address, nor to their
//! IPv4-mapped, IPv4-compatible, NAT64 (`64:ff9b::/96`, and RFC 8215's `64:ff9b:1::/48` as a
//! /96; other lengths refused) or 6to4 forms, nor to an IPv4-translated (`::ffff:0:0:0/96`) or
//! Teredo (`2001::/32`) address, unless `--copy-allow-source` lists the host.
//!
//! The guard holds where the connection is made, so that a name resolving to a public address
//! when checked and to `127.0.0.1` when connecting (DNS rebinding) gains nothing:
//!
//! - names are resolved by [`GuardedResolver`], the clients' resolver, which hands the
//!   connector only the addresses the guard allows;
//! - an IP literal is never resolved, so every URL the session requests is checked by
//!   [`Egress::check_url`]: the registry's base, a token realm, and every redirect (the
//!   clients' redirect policy), such as a blob's to its storage host;
//! - the clients use no proxy (a proxy would resolve and connect on the guard's behalf).
//!
//! An entry of the allow list (`HOST[:PORT][/PATH]`) also says which images may be copied
//! although no explicit rule names their source ([`Egress::allows_image`]), matched on
//! path-segment boundaries. A listed IP literal is allowed on its port only; a listed name
//! may resolve to any address, and is reached (by a redirect or a realm) on its listed ports
//! only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// One `--copy-allow-source` entry: a registry (`host[:port]`, lowercase, `:443` dropped) and
/// a path prefix within it (empty: the whole registry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedSource {
    registry: String,
    path: String,
}

impl AllowedSource {
    /// Parses `HOST[:PORT][/PATH]`; no scheme, no wildcard, no empty part.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim().trim_end_matches('/');
        let refuse = |why: &str| Err(format!("`{value}`: {why}; expected HOST[:PORT][/PATH], such as ghcr.io/team"));
        if value.is_empty() {
            return refuse("empty");
        }
        if value.contains("://") || value.contains(['*', '?', '@', ' ', '\\']) {
            return refuse("no scheme, wildcard, space or digest");
        }
        let (registry, path) = split_registry(value);
        if registry.is_empty() || path.split('/').any(str::is_empty) && !path.is_empty() {
            return refuse("an empty host or path segment");
        }
        Ok(Self { registry: registry_key(registry), path: path.to_owned() })
    }

    /// Whether this entry covers `path` of `registry` (a key as [`registry_key`] makes it).
    fn covers(&self, registry: &str, path: &str) -> bool {
        registry == self.registry
            && (self.path.is_empty()
                || path.strip_prefix(&self.path).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
    }

    /// The host without its port.
    fn host(&self) -> &str {
        host_of(&self.registry)
    }
}

impl std::fmt::Display for AllowedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path.as_str() {
            "" => f.write_str(&self.registry),
            path => write!(f, "{}/{path}", self.registry),
        }
    }
}

/// The guard: what is refused, and the hosts `--copy-allow-source` lists.
#[derive(Clone, Debug, Default)]
pub struct Egress {
    allowed: Vec<AllowedSource>,
}

/// Why a connection was refused (the message names the host, never a URL's query).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Egress {
    pub fn new(allowed: Vec<AllowedSource>) -> Self {
        Self { allowed }
    }

    /// Whether an entry covers the image `path` at `registry` (`host[:port]` as written).
    pub fn allows_image(&self, registry: &str, path: &str) -> bool {
        let registry = registry_key(registry);
        self.allowed.iter().any(|entry| entry.covers(&registry, path))
    }

    /// Whether an entry names exactly this registry (`host[:port]`).
    fn lists_registry(&self, registry: &str) -> bool {
        let registry = registry_key(registry);
        self.allowed.iter().any(|entry| entry.registry == registry)
    }

    /// Whether an entry names this host, on any port.
    fn names_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        self.allowed.iter().any(|entry| entry.host() == host)
    }

    /// Whether a connection to `ip` is allowed: a public address, or any address of a host
    /// `listed` in `--copy-allow-source`.
    fn allows_ip(&self, ip: IpAddr, listed: bool) -> bool {
        listed || is_public(ip)
    }

    /// Checks a URL the session is about to request (the base, a realm, a redirect):
    /// `http`/`https` only, no IP literal the guard refuses, and a listed name on its
    /// listed ports only. Names are resolved later, by [`GuardedResolver`].
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused(format!("a {} URL", url.scheme())));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        // The url crate writes an IPv4 literal in its one dotted form (`0x7f.1` is
        // `127.0.0.1`) and an IPv6 one in brackets.
        let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
            return Err(Refused("a URL without a host".into()));
        };
        let host = host.to_ascii_lowercase();
        let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        let registry = format!("{host}:{port}");
        match ip {
            Some(ip) if self.allows_ip(ip, self.lists_registry(&registry)) => Ok(()),
            Some(ip) => Err(Refused(format!(
                "{host}: {} address, not listed in --copy-allow-source",
                describe(ip).unwrap_or("a refused")
            ))),
            None if self.names_host(&host) && !self.lists_registry(&registry) => {
                Err(Refused(format!("{registry}: --copy-allow-source lists {host} on another port")))
            }
            None => Ok(()),
        }
    }
}

/// The clients' resolver: the system's, keeping only the addresses the guard allows (every
/// address of a name `--copy-allow-source` lists).
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    egress: Arc<Egress>,
}

impl GuardedResolver {
    pub fn new(egress: Arc<Egress>) -> Self {
        Self { egress }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = Arc::clone(&self.egress);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let listed = egress.names_host(&host);
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|addr| egress.allows_ip(addr.ip(), listed)).collect();
            if allowed.is_empty() {
                let why = found.first().and_then(|addr| describe(addr.ip())).unwrap_or("no");
                let refused =
                    Refused(format!("{host} resolves to {why} address only, not listed in --copy-allow-source"));
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` is a public unicast address (what a source may be without being listed).
pub fn is_public(ip: IpAddr) -> bool {
    describe(ip).is_none()
}

/// Why `ip` is refused (`a loopback`, `a private`…), `None` for a public unicast address.
fn describe(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => describe_v4(ip),
        IpAddr::V6(ip) => describe_v6(ip),
    }
}

fn describe_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (127, ..) => "a loopback",
        (0, ..) => "an unspecified",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "a private",
        (169, 254, _) => "a link-local",
        (100, 64..=127, _) => "a shared (CGNAT)",
        (224..=239, ..) => "a multicast",
        (240..=255, ..) => "a reserved",
        (192, 0, 0) | (198, 18..=19, _) => "a reserved",
        _ => return None,
    })
}

fn describe_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return describe_v4(v4);
    }
    let segments = ip.segments();
    let first = segments[0];
    Some(match first {
        // RFC 8215's local-use NAT64 prefix as a /96 is read by `embedded_v4`; its network
        // may pick another prefix length, which puts the IPv4 address where it cannot be told
        // from the prefix, so such an address is refused.
        _ if segments[..3] == [0x64, 0xff9b, 1] => "a NAT64 local-use",
        _ if segments[..6] == [0, 0, 0, 0, 0xffff, 0] => "an IPv4-translated",
        _ if segments[..2] == [0x2001, 0] => "a Teredo",
        _ if ip.is_loopback() => "a loopback",
        _ if ip.is_unspecified() => "an unspecified",
        0xfe80..=0xfebf => "a link-local",
        0xfec0..=0xfeff => "a site-local",
        0xfc00..=0xfdff => "a private",
        0xff00..=0xffff => "a multicast",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 one stands for: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, but not `::` or `::1`), NAT64 (`64:ff9b::a.b.c.d`, and RFC 8215's
/// `64:ff9b:1::a.b.c.d` as a /96) and 6to4 (`2002:AABB:CCDD::/48` for `0xAABBCCDD`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = ip.segments();
    let v4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match segments[..6] {
        [0, 0, 0, 0, 0, 0] if !ip.is_loopback() && !ip.is_unspecified() => Some(v4(segments[6], segments[7])),
        [0x64, 0xff9b, 0 | 1, 0, 0, 0] => Some(v4(segments[6], segments[7])),
        [0x2002, high, low, ..] => Some(v4(high, low)),
        _ => None,
    }
}

/// `host[:port]` lowercase, a trailing dot and `:443` dropped: one key per registry.
pub fn registry_key(registry: &str) -> String {
    let registry = registry.to_ascii_lowercase();
    let registry = registry.strip_suffix(":443").unwrap_or(&registry);
    let (host, port) = match registry.rsplit_once(':').filter(|(host, _)| !host.ends_with(':')) {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (registry, None),
    };
    let host = host.trim_end_matches('.');
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The host of a `host[:port]` key (an IPv6 literal keeps its brackets).
fn host_of(registry: &str) -> &str {
    match registry.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') && !host.ends_with(':') => host,
        _ => registry,
    }
}

/// `HOST[:PORT]` and the path after it.
fn split_registry(value: &str) -> (&str, &str) {
    value.split_once('/').unwrap_or((value, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(entries: &[&str]) -> Egress {
        Egress::new(entries.iter().map(|entry| AllowedSource::parse(entry).unwrap()).collect())
    }

    #[test]
    fn addresses_are_public_or_refused() {
        // (address, refused as)
        let table: &[(&str, Option<&str>)] = &[
            ("1.1.1.1", None),
            ("140.82.112.3", None),
            ("127.0.0.1", Some("a loopback")),
            ("127.255.0.9", Some("a loopback")),
            ("0.0.0.0", Some("an unspecified")),
            ("10.1.2.3", Some("a private")),
            ("172.16.0.1", Some("a private")),
            ("172.31.255.255", Some("a private")),
            ("172.32.0.1", None),
            ("192.168.1.1", Some("a private")),
            ("169.254.169.254", Some("a link-local")),
            ("100.64.0.1", Some("a shared (CGNAT)")),
            ("100.127.255.255", Some("a shared (CGNAT)")),
            ("100.128.0.1", None),
            ("224.0.0.1", Some("a multicast")),
            ("255.255.255.255", Some("a reserved")),
            ("2606:4700::1111", None),
            ("::1", Some("a loopback")),
            ("::", Some("an unspecified")),
            ("fe80::1", Some("a link-local")),
            ("fd00::1", Some("a private")),
            ("fc00::1", Some("a private")),
            ("ff02::1", Some("a multicast")),
            ("::ffff:127.0.0.1", Some("a loopback")),
            ("::ffff:169.254.169.254", Some("a link-local")),
            ("::ffff:10.0.0.1", Some("a private")),
            ("::ffff:1.1.1.1", None),
            ("::127.0.0.1", Some("a loopback")),
            ("64:ff9b::a9fe:a9fe", Some("a link-local")),
            // 6to4: the IPv4 address in bits 16 to 47.
            ("2002:7f00:1::1", Some("a loopback")),
            ("2002:a9fe:a9fe::", Some("a link-local")),
            ("2002:c0a8:101:1::1", Some("a private")),
            ("2002:101:101::1", None),
            // NAT64 local-use (RFC 8215): as a /96, the IPv4 address in the last 32 bits; any
            // other prefix length (bits 48 to 95 not zero) cannot be told, and is refused.
            ("64:ff9b:1::a9fe:a9fe", Some("a link-local")),
            ("64:ff9b:1::7f00:1", Some("a loopback")),
            ("64:ff9b:1::a00:1", Some("a private")),
            ("64:ff9b:1::101:101", None),
            ("64:ff9b:1:a00:1:100::", Some("a NAT64 local-use")),
            ("64:ff9b:1:0:1:101:101:101", Some("a NAT64 local-use")),
            // IPv4-translated (RFC 2765) and Teredo: refused whatever they embed.
            ("::ffff:0:1.1.1.1", Some("an IPv4-translated")),
            ("::ffff:0:127.0.0.1", Some("an IPv4-translated")),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Some("a Teredo")),
            ("2001:db8::1", None),
        ];
        for (address, refused) in table {
            let ip: IpAddr = address.parse().unwrap();
            assert_eq!(describe(ip), *refused, "{address}");
        }
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        let guard = egress(&["127.0.0.1:5000", "registry.internal:5000/team", "[::1]:6000"]);
        // (url, allowed)
        let table: &[(&str, bool)] = &[
            ("https://ghcr.io/v2/", true),
            ("https://127.0.0.1:5000/v2/", true),
            ("https://127.0.0.1:5001/v2/", false),
            ("https://127.0.0.1/v2/", false),
            ("http://169.254.169.254/latest/meta-data/", false),
            ("https://[::1]:6000/v2/", true),
            ("https://[::1]:6001/v2/", false),
            ("https://[::ffff:127.0.0.1]:5001/v2/", false),
            ("https://[::ffff:7f00:1]:5001/v2/", false),
            // The url crate reads every IPv4 spelling as the address.
            ("https://0x7f.1:5001/v2/", false),
            ("https://2130706433:5001/v2/", false),
            ("https://registry.internal:5000/v2/", true),
            ("https://registry.internal/v2/", false),
            ("https://registry.internal:22/", false),
            ("https://REGISTRY.internal.:22/", false),
            ("ftp://ghcr.io/", false),
            ("file:///etc/passwd", false),
        ];
        for (url, allowed) in table {
            let url = Url::parse(url).unwrap();
            assert_eq!(guard.check_url(&url).is_ok(), *allowed, "{url}: {:?}", guard.check_url(&url));
        }
        assert!(Egress::default().check_url(&Url::parse("https://127.0.0.1:5000/").unwrap()).is_err());
    }

    #[test]
    fn entries_cover_images_on_path_segment_boundaries() {
        let guard = egress(&["ghcr.io/team", "Quay.io:443", "127.0.0.1:5000/"]);
        // (registry, path, allowed)
        let table: &[(&str, &str, bool)] = &[
            ("ghcr.io", "team/app", true),
            ("ghcr.io", "team", true),
            ("ghcr.io", "teammate/app", false),
            ("ghcr.io", "other/team/app", false),
            ("ghcr.io:443", "team/app", true),
            ("ghcr.io:444", "team/app", false),
            ("quay.io", "anything/at/all", true),
            ("127.0.0.1:5000", "x", true),
            ("127.0.0.1:5001", "x", false),
            ("127.0.0.1", "x", false),
        ];
        for (registry, path, allowed) in table {
            assert_eq!(guard.allows_image(registry, path), *allowed, "{registry}/{path}");
        }
        for bad in ["", "https://ghcr.io", "ghcr.io/*", "ghcr.io//x", "/team"] {
            assert!(AllowedSource::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(AllowedSource::parse("GHCR.io:443/team/").unwrap().to_string(), "ghcr.io/team");
    }

    /// A plain HTTP server answering every request with a redirect to `location`; counts the
    /// connections it accepted.
    async fn redirecting(location: String) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buffer = [0_u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let answer = format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (port, accepted)
    }

    /// A redirect is held to the guard where it leads: an unlisted loopback port, by address
    /// or by name, is never connected to; a listed one is.
    #[tokio::test]
    async fn redirects_are_held_to_the_guard() {
        use std::sync::atomic::Ordering::SeqCst;
        let (listed, listed_seen) = redirecting("http://127.0.0.1:1/never".into()).await;
        let (unlisted, unlisted_seen) = redirecting("http://127.0.0.1:1/never".into()).await;
        for (location, refused) in [
            (format!("http://127.0.0.1:{unlisted}/blob"), true),
            (format!("http://localhost:{unlisted}/blob"), true),
            (format!("http://[::ffff:127.0.0.1]:{unlisted}/blob"), true),
            (format!("http://127.0.0.1:{listed}/blob"), false),
        ] {
            let (source, _) = redirecting(location.clone()).await;
            let guard = Arc::new(egress(&[&format!("127.0.0.1:{source}"), &format!("127.0.0.1:{listed}")]));
            let timeout = std::time::Duration::from_secs(5);
            let client =
                crate::registry::http::client(crate::registry::tls::unverified(), timeout, Some(timeout), Some(guard))
                    .unwrap();
            let before = listed_seen.load(SeqCst);
            let outcome = client.get(format!("http://127.0.0.1:{source}/v2/")).send().await;
            if refused {
                assert!(outcome.is_err(), "{location}: followed");
            } else {
                assert!(listed_seen.load(SeqCst) > before, "{location}: a listed host is reached");
            }
        }
        assert_eq!(unlisted_seen.load(SeqCst), 0, "an unlisted loopback port was connected to");
    }

    #[tokio::test]
    async fn the_resolver_hands_on_only_allowed_addresses() {
        let resolve = |entries: &[&str]| {
            let resolver = GuardedResolver::new(Arc::new(egress(entries)));
            resolver.resolve("localhost".parse().unwrap())
        };
        let refused = resolve(&[]).await.err().expect("localhost refused");
        assert!(refused.to_string().contains("loopback"), "{refused}");
        let listed: Vec<SocketAddr> = resolve(&["localhost:5000"]).await.expect("listed").collect();
        assert!(listed.iter().all(|addr| addr.ip().is_loopback()) && !listed.is_empty());
    }
}

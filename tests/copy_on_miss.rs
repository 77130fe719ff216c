//! `serve --copy-on-miss` end to end: a real `mirrorswap serve` with `--swap-policy exists` in
//! front of two real registries on loopback (Debian's docker-registry, a test CA and htpasswd
//! each): the source holds an image, the mirror nothing. The first Pod is kept with a warning
//! naming the copy, a later one is rewritten, and the mirror holds the source's bytes. Sources
//! no explicit rule names, and loopback sources `--copy-allow-source` does not list, are never
//! connected to (a listener there accepts nothing); a source is never sent the mirror's
//! credentials (a recording source sees only `--source-auth`'s).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::images::inspect_digest;
use common::registry::{Auth, PASSWORD, Registry, USER, acceptor};
use common::{Protocol, TestServer, eventually, images_of, patched_object, pod, warnings_of};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A Docker config JSON with a `user:password` login for each host.
fn logins(entries: &[(&str, &str, &str)]) -> String {
    let auths: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(host, user, password)| {
            ((*host).to_owned(), json!({"auth": STANDARD.encode(format!("{user}:{password}"))}))
        })
        .collect();
    json!({ "auths": auths }).to_string()
}

/// The server's files: rules, both logins, one CA bundle.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(rules: &str, registry_auth: &str, source_auth: &str, cas: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.conf"), rules).unwrap();
        std::fs::write(dir.path().join("auth.json"), registry_auth).unwrap();
        std::fs::write(dir.path().join("source-auth.json"), source_auth).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cas.join("\n")).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    async fn serve(&self, extra: &[&str]) -> TestServer {
        let mut flags: Vec<String> = [
            "--swap-policy",
            "exists",
            "--check-timeout",
            "5s",
            "--request-timeout",
            "10s",
            "--check-negative-ttl",
            "1h",
            "--copy-on-miss",
        ]
        .map(String::from)
        .to_vec();
        flags.extend(["--registry-auth".into(), self.path("auth.json")]);
        flags.extend(["--source-auth".into(), self.path("source-auth.json")]);
        flags.extend(["--registry-ca".into(), self.path("ca.pem")]);
        flags.extend(extra.iter().map(|flag| (*flag).to_owned()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let rules = std::fs::read_to_string(self.path("rules.conf")).unwrap();
        TestServer::start_in(tempfile::tempdir().unwrap(), Some((rules.as_str(), "rules.conf")), &flags).await
    }
}

async fn admit(server: &TestServer, review: &Value) -> (Vec<String>, Vec<String>) {
    let mut client = server.connect(Protocol::Http1).await;
    let response = client.review(review).await;
    (images_of(&patched_object(review, &response)), warnings_of(&response))
}

/// A TLS source that answers every request 401 (basic) and records its `Authorization`
/// headers (`-` when none).
struct Recorder {
    addr: std::net::SocketAddr,
    ca_pem: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Self {
        let issued = mirrorswap::certs::issue("recording source CA", &["127.0.0.1".into()], 1).unwrap();
        let tls = acceptor(&issued);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tls, record) = (tls.clone(), Arc::clone(&record));
                tokio::spawn(async move {
                    let Ok(mut stream) = tls.accept(stream).await else { return };
                    let mut buffer = Vec::new();
                    let mut chunk = [0_u8; 4096];
                    while let Ok(read @ 1..) = stream.read(&mut chunk).await {
                        buffer.extend_from_slice(&chunk[..read]);
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                            buffer.drain(..end + 4);
                            let authorization = head
                                .lines()
                                .find_map(|line| {
                                    let (name, value) = line.split_once(':')?;
                                    name.eq_ignore_ascii_case("authorization").then(|| value.trim().to_owned())
                                })
                                .unwrap_or_else(|| "-".to_owned());
                            record.lock().unwrap().push(authorization);
                            let answer = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"recorder\"\r\n\
                                          Content-Length: 0\r\n\r\n";
                            if stream.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, ca_pem: issued.ca_pem, seen, task }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The first Pod is kept with the warning naming the copy; a later one is rewritten once the
/// copy is done, and the mirror serves the source's digest. A source is sent its own login,
/// never the mirror's, even when `--registry-auth` has one for its host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_copied_and_a_later_pod_rewritten() {
    let Some(source) = Registry::start(Auth::Basic).await else { return };
    let Some(mirror) = Registry::start(Auth::Basic).await else { return };
    let recorder = Recorder::start().await;
    let digest = source.push("team/app", "1").await;
    let (src, dst, rec) = (source.host(), mirror.host(), recorder.host());
    let rules = format!("{src}::{dst}/src\n{rec}::{dst}/rec\n");
    // The mirror's file also holds a login for the recording source: a shared session would send it.
    let registry_auth = logins(&[(&dst, USER, PASSWORD), (&rec, "mirror-only", "mirror-secret")]);
    let source_auth = logins(&[(&src, USER, PASSWORD), (&rec, "source-user", "source-secret")]);
    let (source_ca, mirror_ca) =
        (std::fs::read_to_string(source.ca_path()).unwrap(), std::fs::read_to_string(mirror.ca_path()).unwrap());
    let files = Files::new(&rules, &registry_auth, &source_auth, &[&source_ca, &mirror_ca, &recorder.ca_pem]);
    let allow = format!("--copy-allow-source={src},{rec}");
    let server = files.serve(&[&allow]).await;

    // A dry run has no side effects: nothing is queued.
    let mut dry_run = pod(&[&format!("{src}/team/app:dry")]);
    dry_run["request"]["dryRun"] = json!(true);
    let (_, warnings) = admit(&server, &dry_run).await;
    assert!(warnings[0].ends_with(&format!("not in {dst}/src (404)")), "{warnings:?}");

    let image = format!("{src}/team/app:1");
    let target = format!("{dst}/src/team/app:1");
    let (images, warnings) = admit(&server, &pod(&[&image])).await;
    assert_eq!(images, [image.as_str()], "the first Pod keeps its image");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].ends_with(&format!("not in {dst}/src (404); copying it to {target}")), "{warnings:?}");

    let rewritten = eventually(Duration::from_secs(60), async || {
        let (images, _) = admit(&server, &pod(&[&image])).await;
        if images == [target.as_str()] {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        false
    })
    .await;
    assert!(rewritten, "a later Pod is rewritten once the copy is done");
    assert_eq!(inspect_digest(&mirror, &target).await, digest, "the mirror serves the source's bytes");
    assert_eq!(server.metric("mirrorswap_copies_total{result=\"copied\"}").await, 1.0);
    assert!(server.metric("mirrorswap_copy_bytes_total").await > 0.0);
    assert_eq!(server.metric("mirrorswap_copy_queue_depth").await, 0.0);

    // The recording source: the copy fails (it answers 401 to everything), and what it was sent
    // is the source's login only.
    let recorded = format!("{rec}/team/tool:2");
    let (_, warnings) = admit(&server, &pod(&[&recorded])).await;
    assert!(warnings[0].ends_with(&format!("copying it to {dst}/rec/team/tool:2")), "{warnings:?}");
    let failed = eventually(Duration::from_secs(30), async || {
        server.metric("mirrorswap_copies_total{result=\"failed\"}").await == 1.0
    })
    .await;
    assert!(failed, "the copy from the recording source fails");
    let seen = recorder.seen.lock().unwrap().clone();
    let mirror_login = format!("Basic {}", STANDARD.encode("mirror-only:mirror-secret"));
    let source_login = format!("Basic {}", STANDARD.encode("source-user:source-secret"));
    assert!(!seen.is_empty(), "the recording source was asked");
    assert!(!seen.contains(&mirror_login), "the mirror's login reached a source: {seen:?}");
    assert!(seen.contains(&source_login), "the source's own login was sent: {seen:?}");
    // A failed target is not offered again at once.
    let (_, warnings) = admit(&server, &pod(&[&recorded])).await;
    assert!(warnings[0].contains("not copied: a copy to"), "{warnings:?}");
    server.stop().await;
}

/// Whether anything connected to `listener` (a connection the kernel accepted waits in its
/// backlog, so this sees every attempt since it was bound).
async fn was_contacted(listener: &TcpListener) -> bool {
    tokio::time::timeout(Duration::from_millis(300), listener.accept()).await.is_ok()
}

/// Sources the Pod names but no explicit rule does, and loopback sources not listed in
/// `--copy-allow-source` (an IP literal refused before queueing, a name refused where the copy
/// connects), are never connected to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_and_loopback_sources_are_never_contacted() {
    let Some(mirror) = Registry::start(Auth::Basic).await else { return };
    let dst = mirror.host();
    let unnamed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let loopback = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let by_name = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allowed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = |listener: &TcpListener| listener.local_addr().unwrap().port();
    let (loopback_port, name_port, allowed_port) = (port(&loopback), port(&by_name), port(&allowed));
    let rules =
        format!("127.0.0.1:{loopback_port}::{dst}/loop\nlocalhost:{name_port}::{dst}/name\ndefault::{dst}/default\n");
    let mirror_ca = std::fs::read_to_string(mirror.ca_path()).unwrap();
    let files = Files::new(&rules, &logins(&[(&dst, USER, PASSWORD)]), &logins(&[]), &[&mirror_ca]);
    // Listed, but only through `default`: an entry on another port of the same address
    // covers nothing here.
    let allow = format!("--copy-allow-source=127.0.0.1:{allowed_port}/only/this");
    let server = files.serve(&[&allow]).await;

    let unnamed_image = format!("127.0.0.1:{}/team/app:1", port(&unnamed));
    let loopback_image = format!("127.0.0.1:{loopback_port}/team/app:1");
    let name_image = format!("localhost:{name_port}/team/app:1");
    let elsewhere = format!("127.0.0.1:{allowed_port}/other/app:1");
    let (images, warnings) = admit(&server, &pod(&[&unnamed_image, &loopback_image, &name_image, &elsewhere])).await;
    assert_eq!(images, [unnamed_image.as_str(), &loopback_image, &name_image, &elsewhere], "all kept");
    assert_eq!(warnings.len(), 4, "{warnings:?}");
    assert!(
        warnings[0].ends_with(&format!("not copied: no explicit rule names 127.0.0.1:{}", port(&unnamed))),
        "{warnings:?}"
    );
    assert!(
        warnings[1].ends_with("not copied: 127.0.0.1: a loopback address, not listed in --copy-allow-source"),
        "{warnings:?}"
    );
    // A name is resolved where the copy connects: queued, and refused there.
    assert!(warnings[2].ends_with(&format!("copying it to {dst}/name/team/app:1")), "{warnings:?}");
    assert!(warnings[3].ends_with(&format!("not copied: no explicit rule names 127.0.0.1:{allowed_port}")));
    let failed = eventually(Duration::from_secs(30), async || {
        server.metric("mirrorswap_copies_total{result=\"failed\"}").await == 1.0
    })
    .await;
    assert!(failed, "the copy from localhost fails where it connects");
    assert_eq!(server.metric("mirrorswap_copies_total{result=\"refused\"}").await, 3.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (name, listener) in
        [("unnamed", &unnamed), ("loopback", &loopback), ("localhost", &by_name), ("allowed", &allowed)]
    {
        assert!(!was_contacted(listener).await, "the {name} source was contacted");
    }
    server.stop().await;
}

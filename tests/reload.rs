//! Hot reload under load: the rules file is replaced 100 times (atomic rename,
//! then Kubernetes' `..data` symlink swap) while a client keeps sending
//! requests. Every response must be well formed and use the old or the new
//! rules; the new rules must show within 1 s; a broken file keeps the last
//! good rules. The certificate is rotated the same way.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Client, Protocol, TestServer, eventually, patched_object, sample};

const VISIBLE_WITHIN: Duration = Duration::from_secs(1);

/// The tests here run one at a time: the 1 s deadlines are about the server, and the
/// 100-swap test's request stream would otherwise take the CPU the others are timed on.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn rules_to(mirror: &str) -> String {
    format!("docker.io::{mirror}/hub\nquay.io::{mirror}/quay\nregistry.k8s.io::{mirror}/k8s\n")
}

/// The nginx image the server currently turns `nginx:1.27` into.
async fn current_nginx(client: &mut Client) -> String {
    let request = sample("pod.json");
    let response = client.review(&request).await;
    patched_object(&request, &response)["spec"]["containers"][0]["image"].as_str().unwrap().to_owned()
}

fn replace_by_rename(dir: &Path, name: &str, text: &str) {
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, dir.join(name)).unwrap();
}

/// What the kubelet does for a ConfigMap volume: a new timestamped directory, a `..data_tmp`
/// symlink to it renamed over `..data`, and `name` itself a symlink to `..data/name`.
fn replace_by_symlink_swap(dir: &Path, name: &str, text: &str, generation: usize) {
    let version = format!("..v{generation}");
    std::fs::create_dir(dir.join(&version)).unwrap();
    std::fs::write(dir.join(&version).join(name), text).unwrap();
    let _ = std::fs::remove_file(dir.join("..data_tmp"));
    std::os::unix::fs::symlink(&version, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_swapped_100_times_under_load_never_fail_a_request() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Arc::new(TestServer::start_with_rules(&rules_to("m0.example.org"), "rules.conf", &[]).await);
    let dir = server.dir.path().to_path_buf();
    let mirrors: Vec<String> = (0..=100).map(|i| format!("m{i}.example.org")).collect();

    // A background client that never stops asking while the files change.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let background = {
        let (server, stop, answered, allowed) =
            (Arc::clone(&server), Arc::clone(&stop), Arc::clone(&answered), mirrors.clone());
        tokio::spawn(async move {
            let mut client = server.connect(Protocol::Http2).await;
            while !stop.load(Ordering::Relaxed) {
                let image = current_nginx(&mut client).await;
                let known = allowed.iter().any(|mirror| image == format!("{mirror}/hub/nginx:1.27"));
                assert!(known, "unexpected rewrite {image}");
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut client = server.connect(Protocol::Http1).await;
    // 50 swaps by atomic rename of a regular file.
    for (generation, mirror) in mirrors.iter().enumerate().skip(1).take(50) {
        replace_by_rename(&dir, "rules.conf", &rules_to(mirror));
        let wanted = format!("{mirror}/hub/nginx:1.27");
        assert!(
            eventually(VISIBLE_WITHIN, async || current_nginx(&mut client).await == wanted).await,
            "rename {generation}: new rules not visible within 1 s"
        );
    }
    // Switch to the ConfigMap layout, then 50 swaps of the `..data` symlink.
    replace_by_symlink_swap(&dir, "rules.conf", &rules_to(&mirrors[50]), 0);
    std::os::unix::fs::symlink("..data/rules.conf", dir.join("rules.conf.link")).unwrap();
    std::fs::rename(dir.join("rules.conf.link"), dir.join("rules.conf")).unwrap();
    for (generation, mirror) in mirrors.iter().enumerate().skip(51) {
        replace_by_symlink_swap(&dir, "rules.conf", &rules_to(mirror), generation);
        let wanted = format!("{mirror}/hub/nginx:1.27");
        assert!(
            eventually(VISIBLE_WITHIN, async || current_nginx(&mut client).await == wanted).await,
            "symlink swap {generation}: new rules not visible within 1 s"
        );
    }

    // A broken file keeps the last good rules and counts a failed reload.
    let failures = "mirrorswap_reloads_total{result=\"failure\",what=\"rules\"}";
    assert_eq!(server.metric(failures).await, 0.0);
    replace_by_symlink_swap(&dir, "rules.conf", "docker.io mirror-without-separator\n", 1000);
    assert!(eventually(Duration::from_secs(2), async || server.metric(failures).await == 1.0).await);
    assert_eq!(current_nginx(&mut client).await, format!("{}/hub/nginx:1.27", mirrors[100]));
    assert_eq!(server.admin_get("/readyz").await.0, 200, "a bad reload keeps the server ready");

    stop.store(true, Ordering::Relaxed);
    background.await.expect("every background response was well formed");
    assert!(answered.load(Ordering::Relaxed) > 100, "the background client kept being answered");
    let successes = server.metric("mirrorswap_reloads_total{result=\"success\",what=\"rules\"}").await;
    assert!(successes >= 101.0, "{successes} successful reloads");
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_to_new_connections_within_a_second() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start(&[]).await;
    let first = server.connect(Protocol::Http1).await.peer_certificate;
    let rotated = mirrorswap::certs::issue("rotated CA", &["localhost".into(), "127.0.0.1".into()], 1).unwrap();
    let trusted = format!("{}{}", server.ca.ca_pem, rotated.ca_pem);
    let rotated_leaf = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(rotated.cert_pem.as_bytes()).unwrap().to_vec()
    };
    assert_ne!(first, rotated_leaf);
    // cert-manager updates the Secret volume: key and certificate change together.
    replace_by_rename(server.dir.path(), "tls.key", &rotated.key_pem);
    replace_by_rename(server.dir.path(), "tls.crt", &rotated.cert_pem);
    let seen = eventually(VISIBLE_WITHIN, async || {
        Client::connect(server.addr, &trusted, Protocol::Http2).await.peer_certificate == rotated_leaf
    })
    .await;
    assert!(seen, "the new certificate was not served within 1 s");
    let mut client = Client::connect(server.addr, &rotated.ca_pem, Protocol::Http1).await;
    assert!(current_nginx(&mut client).await.starts_with("harbor.example.org/hub/"));
    assert!(server.metric("mirrorswap_reloads_total{result=\"success\",what=\"certificate\"}").await >= 2.0);
    server.stop().await;
}

/// Hostile rules files: oversized (a 100 MB line), deleted, replaced by a symlink loop. Each keeps
/// the last good rules and counts a failed reload; the server stays ready; a re-created file is
/// picked up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rules_files_keep_the_last_good_rules() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start_with_rules(&rules_to("first.example.org"), "rules.conf", &[]).await;
    let mut client = server.connect(Protocol::Http1).await;
    let path = server.path("rules.conf");
    let failures = "mirrorswap_reloads_total{result=\"failure\",what=\"rules\"}";
    let expected = "first.example.org/hub/nginx:1.27";
    assert_eq!(current_nginx(&mut client).await, expected);

    // A 100 MB line (sparse: nothing is written to disk) is refused without being read.
    let big = server.path(".big");
    std::fs::File::create(&big).unwrap().set_len(100 * 1024 * 1024).unwrap();
    std::fs::rename(&big, &path).unwrap();
    assert!(eventually(Duration::from_secs(2), async || server.metric(failures).await >= 1.0).await, "oversized");
    assert_eq!(current_nginx(&mut client).await, expected);

    // Deleted.
    std::fs::remove_file(&path).unwrap();
    assert!(eventually(Duration::from_secs(2), async || server.metric(failures).await >= 2.0).await, "deleted");
    assert_eq!(current_nginx(&mut client).await, expected);

    // A symlink loop in the watched directory.
    std::os::unix::fs::symlink(server.path("loop-b"), server.path("loop-a")).unwrap();
    std::os::unix::fs::symlink(server.path("loop-a"), server.path("loop-b")).unwrap();
    std::os::unix::fs::symlink(server.path("loop-a"), &path).unwrap();
    assert!(eventually(Duration::from_secs(2), async || server.metric(failures).await >= 3.0).await, "loop");
    assert_eq!(current_nginx(&mut client).await, expected);
    assert_eq!(server.admin_get("/readyz").await.0, 200, "bad files keep the server ready");

    // Re-created: picked up again.
    std::fs::remove_file(&path).unwrap();
    replace_by_rename(server.path("").as_path(), "rules.conf", &rules_to("second.example.org"));
    let wanted = "second.example.org/hub/nginx:1.27";
    assert!(eventually(VISIBLE_WITHIN, async || current_nginx(&mut client).await == wanted).await, "re-created");
    server.stop().await;
}

/// A truncate-then-write (a shell `>` redirect, a non-atomic writer) shows the watcher an empty
/// file first. That reload is refused and counted: the last good rules keep serving until the
/// new ones are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_rules_file_keeps_the_rules_until_new_ones_arrive() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start_with_rules(&rules_to("first.example.org"), "rules.conf", &[]).await;
    let mut client = server.connect(Protocol::Http1).await;
    let path = server.path("rules.conf");
    let failures = "mirrorswap_reloads_total{result=\"failure\",what=\"rules\"}";
    let expected = "first.example.org/hub/nginx:1.27";
    assert_eq!(current_nginx(&mut client).await, expected);

    // Emptied, then only comments: both hold no rules.
    for (round, text) in [(1.0, ""), (2.0, "# rules follow\n")] {
        std::fs::write(&path, text).unwrap();
        assert!(eventually(Duration::from_secs(2), async || server.metric(failures).await >= round).await, "{text:?}");
        assert_eq!(current_nginx(&mut client).await, expected, "{text:?}");
        assert_eq!(server.metric("mirrorswap_rules_loaded").await, 3.0);
        assert_eq!(server.admin_get("/readyz").await.0, 200);
    }
    std::fs::write(&path, rules_to("second.example.org")).unwrap();
    let wanted = "second.example.org/hub/nginx:1.27";
    assert!(eventually(VISIBLE_WITHIN, async || current_nginx(&mut client).await == wanted).await, "written");
    server.stop().await;
}

/// With `--allow-empty-rules` an empty file is a rule set like any other: nothing is rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_empty_rules_accepts_an_empty_file() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server =
        TestServer::start_with_rules(&rules_to("first.example.org"), "rules.conf", &["--allow-empty-rules"]).await;
    let mut client = server.connect(Protocol::Http1).await;
    assert_eq!(current_nginx(&mut client).await, "first.example.org/hub/nginx:1.27");
    std::fs::write(server.path("rules.conf"), "").unwrap();
    assert!(eventually(VISIBLE_WITHIN, async || current_nginx(&mut client).await == "nginx:1.27").await, "emptied");
    assert_eq!(server.metric("mirrorswap_rules_loaded").await, 0.0);
    assert_eq!(server.metric("mirrorswap_reloads_total{result=\"failure\",what=\"rules\"}").await, 0.0);
    server.stop().await;
}

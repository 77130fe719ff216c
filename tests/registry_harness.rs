//! The registry test harness works: basic and token auth, push, digest read-back, the
//! manifest-request counter, stop and restart.

mod common;

use common::registry::{Auth, Registry};

#[tokio::test]
async fn basic_auth_registry_serves_pushed_images() {
    let Some(mut registry) = Registry::start(Auth::Basic).await else { return };
    let digest = registry.push("airgap/nginx", "1.25").await;
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    let auth = format!("Basic {}", base64_creds());
    let (status, _) = registry.get("/v2/airgap/nginx/manifests/1.25", Some(&auth)).await.unwrap();
    assert_eq!(status, 200);
    let (status, _) = registry.get(&format!("/v2/airgap/nginx/manifests/{digest}"), Some(&auth)).await.unwrap();
    assert_eq!(status, 200);
    let (status, _) = registry.get("/v2/airgap/nginx/manifests/missing", Some(&auth)).await.unwrap();
    assert_eq!(status, 404);
    let (status, _) = registry.get("/v2/airgap/nginx/manifests/1.25", None).await.unwrap();
    assert_eq!(status, 401);
    let counted = registry.manifest_requests_matching("/v2/airgap/nginx/manifests/");
    assert!(counted >= 3, "counted {counted}");
    registry.stop();
    assert!(registry.get("/v2/", None).await.is_err());
    registry.restart().await;
    let (status, _) = registry.get("/v2/airgap/nginx/manifests/1.25", Some(&auth)).await.unwrap();
    assert_eq!(status, 200, "storage survives a restart");
    assert_eq!(registry.manifest_requests_matching("/v2/airgap/nginx/manifests/"), counted + 1);
}

#[tokio::test]
async fn token_auth_registry_serves_pushed_images() {
    let Some(registry) = Registry::start(Auth::Token).await else { return };
    let digest = registry.push("airgap/redis", "7").await;
    assert!(digest.starts_with("sha256:"), "{digest}");
    let (status, _) = registry.get("/v2/airgap/redis/manifests/7", None).await.unwrap();
    assert_eq!(status, 401);
    let issuer = registry.issuer.as_ref().unwrap();
    assert!(issuer.requests.load(std::sync::atomic::Ordering::SeqCst) > 0, "skopeo used the issuer");
}

fn base64_creds() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        common::registry::USER,
        common::registry::PASSWORD
    ))
}

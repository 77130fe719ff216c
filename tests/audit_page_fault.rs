//! `mirrorswap audit` when one page of a list fails. This test uses the loopback stand-in
//! (`common::apiserver`), not the real kube-apiserver, because a real one cannot be made to
//! answer an error to exactly the nth page: a 500 there ends the audit with an error naming the
//! listing and no partial report; a 503 once (the API server shedding load) is retried by the
//! client and the report is whole. Paging against the real API server is in tests/audit_live.rs.

mod common;

use std::process::{Command, Output};

use common::apiserver::{FakeApi, Fault};

async fn audit(api: &FakeApi) -> Output {
    let dir = tempfile::tempdir().unwrap();
    api.write_kubeconfig(&dir.path().join("kubeconfig"));
    std::fs::write(dir.path().join("rules.conf"), "docker.io::harbor.example.org/hub\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirrorswap"));
    command
        .arg("audit")
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .args(["--rules", "rules.conf", "--page-size", "2", "-o", "copy-list"])
        .current_dir(dir.path());
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_on_the_third_page() {
    let images = ["nginx:1.27", "redis:7", "busybox:1.36", "postgres:16", "nginx:1.28", "alpine:3"];
    // (fault, exit code, report)
    let cases = [
        (Fault { page: 3, status: 500, once: false }, 2, ""),
        (
            Fault { page: 3, status: 503, once: true },
            0,
            "docker.io/library/alpine:3 harbor.example.org/hub/alpine:3\n\
             docker.io/library/busybox:1.36 harbor.example.org/hub/busybox:1.36\n\
             docker.io/library/nginx:1.27 harbor.example.org/hub/nginx:1.27\n\
             docker.io/library/nginx:1.28 harbor.example.org/hub/nginx:1.28\n\
             docker.io/library/postgres:16 harbor.example.org/hub/postgres:16\n\
             docker.io/library/redis:7 harbor.example.org/hub/redis:7\n",
        ),
    ];
    for (fault, code, report) in cases {
        let api = FakeApi::start(&images, Some(fault)).await;
        let output = audit(&api).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{fault:?}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), report, "{fault:?}");
        if code == 2 {
            assert!(stderr.contains("listing pods") && stderr.contains("injected fault"), "{stderr}");
        }
        let pages = api.requests().iter().filter(|target| target.starts_with("/api/v1/pods?")).count();
        assert_eq!(pages, if fault.once { 4 } else { 3 }, "{fault:?}: {:?}", api.requests());
    }
}

// The generated rule sets and image mix shared by the rewrite benchmarks.
// Included (not a module) so that each bench binary compiles its own copy.

const DIGEST: &str = "sha256:15d3b5c4f521a84896ed1ead1b14e4774d02202d5c65ab68f30eeaf310a3b1a7";

/// Rule `i` of a generated set: four shapes in turn.
fn rule(i: usize) -> String {
    match i % 4 {
        0 => format!("reg{i}.example.com::mirror.example.org/reg{i}"),
        1 => format!("reg{i}.example.com:5000::mirror.example.org/reg{i}-5000"),
        2 => format!("gcr.io/project-{i}::mirror.example.org/gcr/project-{i}"),
        _ => format!("docker.io/org{i}/team::mirror.example.org/hub/org{i}-team"),
    }
}

/// A rules file of `n` rules plus the usual registry-level Docker Hub, quay and k8s rules.
fn rules_text(n: usize) -> String {
    let mut text = String::from(
        "docker.io::mirror.example.org/hub\nquay.io::mirror.example.org/quay-\nregistry.k8s.io::mirror.example.org/k8s\n",
    );
    for i in 0..n.saturating_sub(3) {
        text.push_str(&rule(i));
        text.push('\n');
    }
    text
}

/// The last generated index of shape `shape` below `n`, so every size gets the same shapes of hit.
fn last_of_shape(n: usize, shape: usize) -> usize {
    let top = n.saturating_sub(3).max(4) - 1;
    top - (top + 4 - shape) % 4
}

/// The image mix, each with a label saying what it exercises.
fn labelled_images(n: usize) -> Vec<(&'static str, String)> {
    let [a, b, c, d] = [0, 1, 2, 3].map(|shape| last_of_shape(n, shape));
    vec![
        ("hit-host", format!("reg{a}.example.com/app/server:1.2.3")),
        ("hit-host-port", format!("reg{b}.example.com:5000/app:2")),
        ("miss-host-without-port-rule", format!("reg{b}.example.com/app:2")),
        ("hit-path-digest", format!("gcr.io/project-{c}/tools/img@{DIGEST}")),
        ("hit-hub-path", format!("org{d}/team/app:1")),
        ("hit-hub-short", "nginx:1.27".into()),
        ("hit-hub-namespace", "bitnami/redis:7.2".into()),
        ("hit-hub-library-digest", format!("library/busybox@{DIGEST}")),
        ("hit-dash-target", "quay.io/prometheus/node-exporter:v1.8.0".into()),
        ("hit-k8s", "registry.k8s.io/kube-apiserver:v1.30.0".into()),
        ("miss-unknown", "unknown.example.net/a/b:1".into()),
        ("miss-ghcr", "ghcr.io/org/tool:v1".into()),
        ("miss-port", "registry.local:5000/z".into()),
        ("miss-digest", format!("gcr.io/other/img@{DIGEST}")),
        ("mirrored", "mirror.example.org/hub/library/nginx:1.27".into()),
        ("invalid", "Not/A/Valid:Reference!".into()),
    ]
}

/// The image mix without labels.
#[allow(dead_code)]
fn images(n: usize) -> Vec<String> {
    labelled_images(n).into_iter().map(|(_, image)| image).collect()
}

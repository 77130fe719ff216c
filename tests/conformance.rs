//! imageswap conformance: every MAPS-mode rewrite asserted by the reference
//! implementation's own tests (`tests/fixtures/imageswap/vectors.tsv`, with
//! their map files) is a row here. Deliberate deviations are listed in
//! `DEVIATIONS`, and each has its own test of the new behaviour below.

use std::path::PathBuf;

use mirrorswap::rewrite::{Decision, DockerHubMode, Options, RuleSet, Unchanged};
use mirrorswap::rules_file::{Format, load_file, load_text};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imageswap")
}

fn load_map(file: &str, lenient: bool) -> RuleSet {
    let options = Options { lenient, ..Options::default() };
    let path = fixtures().join("maps").join(file);
    match load_file(&path, Some(Format::Maps), options) {
        Ok(loaded) => loaded.rules,
        Err(error) => panic!("{}", error.messages().join("\n")),
    }
}

fn rules(text: &str) -> RuleSet {
    match load_text(text, "inline", Format::Maps, Options::default()) {
        Ok(loaded) => loaded.rules,
        Err(error) => panic!("{}", error.messages().join("\n")),
    }
}

fn rewrite(rules: &RuleSet, image: &str) -> String {
    rules.rewrite(image).new_image().unwrap_or(image).to_owned()
}

/// Vectors whose expected output mirrorswap deliberately does not produce: (case_id, why).
/// Empty: every asserted rewrite of the reference implementation holds.
const DEVIATIONS: &[(&str, &str)] = &[];

#[test]
fn every_reference_vector_holds() {
    let text = std::fs::read_to_string(fixtures().join("vectors.tsv")).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for row in text.lines().skip(1).filter(|row| !row.trim().is_empty()) {
        let fields: Vec<&str> = row.split('\t').collect();
        let [case, map_file, input, expected, lenient, _source] = fields[..] else {
            panic!("malformed row: {row}");
        };
        if DEVIATIONS.iter().any(|(id, _)| *id == case) {
            continue;
        }
        let rules = load_map(map_file, lenient == "yes");
        let got = rewrite(&rules, input);
        if got != expected {
            failures.push(format!("{case}: {input} -> {got}, expected {expected}"));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked + DEVIATIONS.len(), 62, "vectors.tsv holds the 62 asserted rewrites");
}

#[test]
fn lenient_files_fail_strict_loading_with_line_numbers() {
    let path = fixtures().join("maps/map_file.conf");
    let error = load_file(&path, Some(Format::Maps), Options::default()).unwrap_err();
    let messages = error.messages();
    let errors: Vec<&String> = messages.iter().filter(|m| !m.contains("warning:")).collect();
    assert_eq!(errors.len(), 3, "{messages:#?}");
    assert!(errors[0].ends_with(
        "map_file.conf:14: several `:` and no `::`: a port in the source or target needs the `::` separator"
    ));
    assert!(errors[1].ends_with(
        "map_file.conf:15: several `:` and no `::`: a port in the source or target needs the `::` separator"
    ));
    assert!(errors[2].ends_with("map_file.conf:16: no `::` separator between source and target"));
}

// ---- Deviations from the reference implementation, each with its new behaviour (docs/rules.md). ----

#[test]
fn localhost_and_ported_hosts_are_registries() {
    // The reference only treats a first segment with a `.` as a registry.
    let rules = rules("default::d.example.com\nlocalhost:5000::local-mirror.example.com\nmyreg:5000::m.example.com");
    assert_eq!(rewrite(&rules, "localhost:5000/app:1"), "local-mirror.example.com/app:1");
    assert_eq!(rewrite(&rules, "myreg:5000/app"), "m.example.com/app");
    assert_eq!(rewrite(&rules, "localhost/app"), "d.example.com/app");
}

#[test]
fn missing_default_still_applies_specific_rules() {
    // The reference swaps nothing at all without a `default` key.
    let rules = load_map("map_file_no_default.conf", false);
    assert_eq!(rewrite(&rules, "quay.io/solo/gloo:v1"), "quay.example3.com/solo/gloo:v1");
    assert_eq!(
        rewrite(&rules, "default.io/paulbower/hello-kubernetes:1.5"),
        "default.io/paulbower/hello-kubernetes:1.5"
    );
    assert_eq!(rules.rewrite("default.io/x").rule(), None);
}

#[test]
fn keys_match_whole_segments_not_substrings() {
    // The reference replaces every regex match of the key anywhere in the image.
    let rules = rules("gcr.io::mirror.example.com/gcr\ndefault::d.example.com");
    assert_eq!(rewrite(&rules, "gcr.io/gcr.io/app"), "mirror.example.com/gcr/gcr.io/app");
    assert_eq!(rewrite(&rules, "agcr.io/app"), "d.example.com/app");
    assert_eq!(rewrite(&rules, "gcr.iox/app"), "d.example.com/app");
}

#[test]
fn prefix_default_does_not_repeat_the_registry() {
    // The reference writes `jmsearcy-quay.io/quay.io/app`.
    let rules = rules("default::jmsearcy-");
    assert_eq!(rewrite(&rules, "quay.io/app/x:1"), "jmsearcy-quay.io/app/x:1");
    assert_eq!(rewrite(&rules, "quay.io:443/app/x"), "jmsearcy-quay.io/app/x");
}

#[test]
fn prefix_target_keeps_the_whole_path_behind_a_port() {
    // The reference's `re.sub(":.*/", "/")` also eats the path up to the last `/`.
    let rules = rules("quay.io::mirror.example.com/cache-");
    assert_eq!(rewrite(&rules, "quay.io:443/org/team/app:1"), "mirror.example.com/cache-quay.io/org/team/app:1");
}

#[test]
fn port_fallback_drops_the_port_when_the_target_has_a_path() {
    // The reference leaves `:443` inside the path: `registry.example.com/base:443/istio/istiod`.
    let rules = rules("registry.internal.twr.io::registry.example.com/base");
    assert_eq!(rewrite(&rules, "registry.internal.twr.io:443/istio/istiod"), "registry.example.com/base/istio/istiod");
}

#[test]
fn comment_ends_the_value_at_the_first_hash() {
    // The reference cuts at the last `#` that follows another character.
    let rules = rules("quay.io::q.example.com # a comment # with two hashes");
    assert_eq!(rewrite(&rules, "quay.io/app"), "q.example.com/app");
}

#[test]
fn empty_wildcard_entries_are_ignored() {
    // In the reference, `noswap_wildcards:a,` holds "", which every image contains.
    let rules = rules("default::d.example.com\nnoswap_wildcards::walrus.io,");
    assert_eq!(rewrite(&rules, "quay.io/app"), "d.example.com/app");
    assert_eq!(rewrite(&rules, "walrus.io/app"), "walrus.io/app");
}

#[test]
fn library_only_file_never_fails_a_request() {
    // The reference raises KeyError (HTTP 500) for a namespaced Docker Hub image here.
    let rules = rules("docker.io/library::harbor.example.com/library");
    assert_eq!(rewrite(&rules, "nginx:1.27"), "harbor.example.com/library/nginx:1.27");
    assert_eq!(rewrite(&rules, "bitnami/redis"), "bitnami/redis");
    assert_eq!(rewrite(&rules, "docker.io/library/nginx"), "harbor.example.com/library/nginx");
}

#[test]
fn comma_separated_lists_are_read() {
    // The reference rejects a line with several `::`.
    let rules = rules("docker.io::h.example.org/d,gcr.io::h.example.org/g,noswap_wildcards::x.io,y.io");
    assert_eq!(rewrite(&rules, "gcr.io/pause"), "h.example.org/g/pause");
    assert_eq!(rewrite(&rules, "nginx"), "h.example.org/d/nginx");
    assert_eq!(rules.noswap_wildcards().map(|(w, _)| w).collect::<Vec<_>>(), ["x.io", "y.io"]);
}

#[test]
fn rewriting_is_idempotent() {
    // The reference prefixes an already-mirrored image again on reinvocation.
    let rules = rules("default::d.example.com\ndocker.io::my.example.com/mirror-\nquay.io::q.example.com/quay");
    for image in ["nginx", "quay.io/a/b:1", "ghcr.io/x/y", "bitnami/redis"] {
        let once = rewrite(&rules, image);
        assert_ne!(once, image);
        assert_eq!(rewrite(&rules, &once), once, "{image}");
        assert!(matches!(rules.rewrite(&once), Decision::Unchanged(Unchanged::AlreadyMirrored(_))));
    }
}

#[test]
fn invalid_references_are_left_alone_with_a_reason() {
    let rules = rules("default::d.example.com");
    for (image, reason) in
        [("Nginx", "uppercase letter in repository path"), ("a b", "whitespace, control or non-ASCII character")]
    {
        match rules.rewrite(image) {
            Decision::Unchanged(Unchanged::InvalidReference(found)) => assert_eq!(found.reason(), reason),
            other => panic!("{image}: {other:?}"),
        }
    }
}

#[test]
fn canonical_docker_hub_mode_matches_what_containerd_pulls() {
    let text = "docker.io::h.example.org/hub\nindex.docker.io/bitnami::h.example.org/bitnami";
    let canonical =
        load_text(text, "inline", Format::Maps, Options { docker_hub: DockerHubMode::Canonical, lenient: false })
            .unwrap()
            .rules;
    let compat = rules(text);
    assert_eq!(rewrite(&canonical, "nginx"), "h.example.org/hub/library/nginx");
    assert_eq!(rewrite(&compat, "nginx"), "h.example.org/hub/nginx");
    assert_eq!(rewrite(&canonical, "index.docker.io/library/nginx:1"), "h.example.org/hub/library/nginx:1");
    assert_eq!(rewrite(&canonical, "registry-1.docker.io/bitnami/redis"), "h.example.org/bitnami/redis");
    assert_eq!(rewrite(&canonical, "bitnami/redis"), "h.example.org/bitnami/redis");
}

#[test]
fn empty_replace_directory_leaves_the_image_alone() {
    // The reference yields the bare last segment: `os.path.join("", "app:1")` is `app:1`.
    let rules = rules("[REPLACE]registry.example.net/*::\ndefault::d.example.com");
    assert_eq!(rewrite(&rules, "registry.example.net/team/app:1"), "registry.example.net/team/app:1");
    assert!(matches!(rules.rewrite("registry.example.net/team/app:1"), Decision::Unchanged(Unchanged::OptedOut(_))));
}

#[test]
fn a_result_that_would_be_invalid_leaves_the_image_alone() {
    let long_target = format!("m.example.com/{}", "a".repeat(200));
    let rules = rules(&format!("gcr.io::{long_target}"));
    let image = format!("gcr.io/{}/app:1", "b".repeat(60));
    match rules.rewrite(&image) {
        Decision::Unchanged(Unchanged::InvalidResult { reason, .. }) => {
            assert_eq!(reason.reason(), "name longer than 255 characters")
        }
        other => panic!("{other:?}"),
    }
}

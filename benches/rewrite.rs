//! Rewrite engine benchmarks (criterion).
//!
//! - `rewrite/trie/N`: the engine on a mix of 16 images (hits at every depth,
//!   host:port rules, Docker Hub short names, digests, misses, already
//!   mirrored) against N realistic rules; throughput is in images.
//! - `rewrite/linear/N`: the same mix through the linear-scan model, the
//!   baseline measured in the same run.
//! - `compile/N`: parsing and compiling N rules.
//!
//! `cargo bench --bench rewrite`; `scripts/bench-summary.py` turns the
//! results into per-image medians and ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mirrorswap::rewrite::model::LinearModel;
use mirrorswap::rewrite::{Options, RuleSet, compile_maps};

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
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

fn images(n: usize) -> Vec<String> {
    let [a, b, c, d] = [0, 1, 2, 3].map(|shape| last_of_shape(n, shape));
    vec![
        format!("reg{a}.example.com/app/server:1.2.3"),
        format!("reg{b}.example.com:5000/app:2"),
        format!("reg{b}.example.com/app:2"),
        format!("gcr.io/project-{c}/tools/img@{DIGEST}"),
        format!("org{d}/team/app:1"),
        "nginx:1.27".into(),
        "bitnami/redis:7.2".into(),
        format!("library/busybox@{DIGEST}"),
        "quay.io/prometheus/node-exporter:v1.8.0".into(),
        "registry.k8s.io/kube-apiserver:v1.30.0".into(),
        "unknown.example.net/a/b:1".into(),
        "ghcr.io/org/tool:v1".into(),
        "registry.local:5000/z".into(),
        format!("gcr.io/other/img@{DIGEST}"),
        "mirror.example.org/hub/library/nginx:1.27".into(),
        "Not/A/Valid:Reference!".into(),
    ]
}

fn compile(n: usize) -> RuleSet {
    compile_maps(&rules_text(n), Options::default()).expect("generated rules compile").rules
}

fn bench_rewrite(c: &mut Criterion) {
    let mut group = c.benchmark_group("rewrite");
    for n in SIZES {
        let rules = compile(n);
        let mix = images(n);
        group.throughput(Throughput::Elements(mix.len() as u64));
        group.bench_with_input(BenchmarkId::new("trie", n), &mix, |b, mix| {
            b.iter(|| {
                for image in mix {
                    black_box(rules.rewrite(black_box(image)));
                }
            })
        });
        if n <= 10_000 {
            let model = LinearModel::new(&rules);
            group.bench_with_input(BenchmarkId::new("linear", n), &mix, |b, mix| {
                b.iter(|| {
                    for image in mix {
                        black_box(model.rewrite(black_box(image)));
                    }
                })
            });
        }
    }
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for n in SIZES {
        let text = rules_text(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| compile_maps(black_box(text), Options::default()).map(|compiled| compiled.rules.len()))
        });
    }
    group.finish();
}

/// Checks, outside the timings, that the mix really exercises hits and misses at every size.
fn sanity() {
    for n in SIZES {
        let rules = compile(n);
        let rewritten = images(n).iter().filter(|image| rules.rewrite(image).new_image().is_some()).count();
        assert_eq!(rewritten, 9, "rules={n}: the mix should have 9 hits");
    }
}

fn benches(c: &mut Criterion) {
    sanity();
    bench_rewrite(c);
    bench_compile(c);
}

criterion_group!(rewrite_benches, benches);
criterion_main!(rewrite_benches);

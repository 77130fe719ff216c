//! Rewrite engine benchmarks (criterion).
//!
//! - `rewrite/trie/N`: the engine on a mix of 16 images (hits at every depth,
//!   host:port rules, Docker Hub short names, digests, misses, already
//!   mirrored) against N realistic rules; throughput is in images.
//! - `rewrite/linear/N`: the same mix through the linear-scan model, the
//!   baseline measured in the same run.
//! - `image/<label>`: each image of the mix alone, against 10k rules: the
//!   median of these is the median cost per image.
//! - `compile/N`: parsing and compiling N rules.
//!
//! `cargo bench --bench rewrite`; `scripts/bench-summary.py` turns the
//! results into per-image medians and ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mirrorswap::rewrite::model::LinearModel;
use mirrorswap::rewrite::{Options, RuleSet, compile_maps};

/// The allocator the `mirrorswap` binary ships with (src/main.rs), so the result string of a
/// hit costs here what it costs in the server; the linear baseline runs on it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
include!("common/mix.rs");

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

fn bench_each_image(c: &mut Criterion) {
    let n = 10_000;
    let rules = compile(n);
    let mut group = c.benchmark_group("image");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    for (label, image) in labelled_images(n) {
        group.bench_with_input(BenchmarkId::from_parameter(label), &image, |b, image| {
            b.iter(|| black_box(rules.rewrite(black_box(image))))
        });
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
    bench_each_image(c);
    bench_compile(c);
}

criterion_group!(rewrite_benches, benches);
criterion_main!(rewrite_benches);

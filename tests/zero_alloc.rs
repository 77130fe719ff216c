//! A counting global allocator shows that an image no rule touches is decided
//! without a single heap allocation, and that a rewrite allocates only its result.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use mirrorswap::rewrite::{Options, compile_maps};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers every operation to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const RULES: &str = "\
docker.io::harbor.example.org/airgap-images/docker.io
docker.io/bitnami::harbor.example.org/bitnami
gcr.io:443::harbor.example.org/gcr443
quay.io::mirror.example.org/cache-
ghcr.io::
noswap_wildcards::internal.example.org,10.0.0.
[EXACT]busybox:1.36::harbor.example.org/pinned/busybox:1.36.1
[REPLACE]registry.example.net/team/*::harbor.example.org/team
";

#[test]
fn unmatched_images_cost_no_allocation() {
    let rules = compile_maps(RULES, Options::default()).unwrap().rules;
    let untouched = [
        "registry.example.com/app/server:1.2.3",
        "registry.example.com:5000/a/b/c@sha256:15d3b5c4f521a84896ed1ead1b14e4774d02202d5c65ab68f30eeaf310a3b1a7",
        "gcr.io:8443/distroless/static",
        "ghcr.io/org/tool:v1",
        "internal.example.org/x",
        "harbor.example.org/airgap-images/docker.io/library/nginx",
        "Not A Reference",
    ];
    for image in untouched {
        let mut decided = None;
        let count = allocations_during(|| decided = Some(rules.rewrite(image).new_image().is_none()));
        assert_eq!(decided, Some(true), "{image} should be left alone");
        assert_eq!(count, 0, "{image}: {count} allocations");
    }
}

#[test]
fn a_rewrite_allocates_only_its_result() {
    let rules = compile_maps(RULES, Options::default()).unwrap().rules;
    for image in ["nginx:1.27", "bitnami/redis:7", "gcr.io:443/pause", "quay.io/a/b", "busybox:1.36"] {
        let mut rewritten = false;
        let count = allocations_during(|| rewritten = rules.rewrite(image).new_image().is_some());
        assert!(rewritten, "{image}");
        assert_eq!(count, 1, "{image}: {count} allocations");
    }
}

//! The reference splitter and the rewrite: never panics; a rewrite of a valid reference is a
//! valid reference; rewriting is idempotent.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mirrorswap::rewrite::{Decision, Options, RuleSet, compile_maps, reference};

/// Rules of every kind, so each code path of the engine is reachable.
const RULES: &str = "\
docker.io::mirror.example.org/hub
docker.io/library::mirror.example.org/library
quay.io::mirror.example.org/quay-
gcr.io/project::mirror.example.org/gcr/project
registry.local:5000::mirror.example.org/local
ghcr.io::
[EXACT]busybox:1.36::mirror.example.org/exact/busybox:1.36
[REPLACE]*.example.com/*/tools/*::mirror.example.org/tools
noswap_wildcards::internal,corp
default::mirror.example.org/default-
";

fn rules() -> &'static RuleSet {
    static RULES_SET: OnceLock<RuleSet> = OnceLock::new();
    RULES_SET.get_or_init(|| compile_maps(RULES, Options::default()).expect("fuzz rules compile").rules)
}

fuzz_target!(|data: &[u8]| {
    let Ok(image) = std::str::from_utf8(data) else {
        return;
    };
    let valid = reference::parse(image).is_ok();
    if let Decision::Rewritten { image: new_image, .. } = rules().rewrite(image) {
        assert!(valid, "rewrote an invalid reference {image:?}");
        assert!(reference::parse(&new_image).is_ok(), "{image:?} -> invalid {new_image:?}");
        if let Decision::Rewritten { image: again, .. } = rules().rewrite(&new_image) {
            panic!("not idempotent: {image:?} -> {new_image:?} -> {again:?}");
        }
    }
});

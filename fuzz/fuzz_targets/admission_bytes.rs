//! The admission handler on arbitrary request bodies: never panics, always answers 200 with a
//! review for the request's uid or 400 with a reason.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mirrorswap::rewrite::{Options, RuleSet, compile_maps};
use mirrorswap::server::admission::{Settings, answer};
use mirrorswap::server::metrics::Metrics;

fn fixture() -> &'static (RuleSet, Metrics) {
    static FIXTURE: OnceLock<(RuleSet, Metrics)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rules =
            compile_maps("docker.io::mirror.example.org/hub\nquay.io::mirror.example.org/quay-\n", Options::default())
                .expect("rules")
                .rules;
        (rules, Metrics::new().expect("metrics"))
    })
}

fuzz_target!(|data: &[u8]| {
    let (rules, metrics) = fixture();
    let settings = Settings { annotate_original: data.first().is_some_and(|b| b & 1 == 1), ..Default::default() };
    let response = answer(data, rules, &settings, metrics);
    match response.status.as_u16() {
        200 => {
            let review: serde_json::Value = serde_json::from_slice(&response.body).expect("a JSON review");
            assert_eq!(review["response"]["allowed"], true);
            assert!(review["response"]["uid"].as_str().is_some_and(|uid| !uid.is_empty()));
        }
        400 => assert!(response.body.ends_with(b"\n")),
        other => panic!("unexpected status {other}"),
    }
});

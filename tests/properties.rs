//! Property tests: for random rule sets and references, the trie-based
//! [`RuleSet::rewrite`] decides exactly as the linear-scan [`LinearModel`],
//! the first of [`RuleSet::candidates`] is `rewrite()`'s answer and the whole
//! list agrees with the model's, and rewriting is idempotent.
//!
//! Rules and references are drawn from small alphabets so that prefixes,
//! ports, Docker Hub names, mirror targets and wildcards collide often.

use mirrorswap::rewrite::model::LinearModel;
use mirrorswap::rewrite::{Decision, DockerHubMode, Options, RuleSet, compile_maps};
use proptest::prelude::*;

const HOSTS: &[&str] = &["a.io", "b.io", "a.io:5000", "b.io:443", "docker.io", "index.docker.io", "localhost", "m.io"];
const SEGMENTS: &[&str] = &["x", "y", "library", "p", "c-a.io"];
const TARGETS: &[&str] =
    &["", "m.io", "m.io/p", "n.io:5000/q", "ns", "m.io/p/x", "m.io/c-", "pre-", "localhost", "a.io/y"];
const WILDCARDS: &[&str] = &["x", "a.io", "5000", "y/"];
const GLOBS: &[&str] = &["*x*", "a.io/*", "*:1", "b.io/?/*", "*"];

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(items)
}

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(pick(SEGMENTS), 1..4).prop_map(|segments| segments.join("/"))
}

fn source() -> impl Strategy<Value = String> {
    (pick(HOSTS), proptest::collection::vec(pick(SEGMENTS), 0..3))
        .prop_map(|(host, segments)| std::iter::once(host).chain(segments).collect::<Vec<_>>().join("/"))
}

fn reference() -> impl Strategy<Value = String> {
    let registry = proptest::option::of(pick(HOSTS));
    let suffix = pick(&["", ":1", ":v2.0", "@sha256:15d3b5c4f521a84896ed1ead1b14e4774d02202d5c65ab68f30eeaf310a3b1a7"]);
    (registry, path(), suffix).prop_map(|(registry, path, suffix)| match registry {
        Some(registry) => format!("{registry}/{path}{suffix}"),
        None => format!("{path}{suffix}"),
    })
}

fn rule_line() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (source(), pick(TARGETS)).prop_map(|(s, t)| format!("{s}::{t}")),
        1 => pick(TARGETS).prop_map(|t| format!("default::{t}")),
        1 => pick(TARGETS).prop_map(|t| format!("all::{t}")),
        1 => proptest::collection::vec(pick(WILDCARDS), 1..3).prop_map(|w| format!("noswap_wildcards::{}", w.join(","))),
        1 => (reference(), reference()).prop_map(|(s, t)| format!("[EXACT]{s}::{t}")),
        1 => (pick(GLOBS), pick(TARGETS)).prop_map(|(g, t)| format!("[REPLACE]{g}::{}", t.trim_end_matches('-'))),
    ]
}

fn rule_set() -> impl Strategy<Value = (String, bool)> {
    (proptest::collection::vec(rule_line(), 0..12), any::<bool>())
        .prop_map(|(lines, canonical)| (lines.join("\n"), canonical))
}

fn compile(text: &str, canonical: bool) -> RuleSet {
    let docker_hub = if canonical { DockerHubMode::Canonical } else { DockerHubMode::Compat };
    // Lenient: conflicting duplicates and `all`+`default` are skipped the same way for both sides.
    compile_maps(text, Options { docker_hub, lenient: true }).expect("lenient compile never fails").rules
}

/// What must agree between the trie and the model: the new image, why it is
/// unchanged, and which rule decided (for rules that decide a rewrite).
fn summary(decision: &Decision<'_>) -> (Option<String>, &'static str, Option<u32>) {
    match decision {
        Decision::Rewritten { image, rule } => (Some(image.clone()), "rewritten", Some(rule.line)),
        Decision::Unchanged(unchanged) => {
            let deciding_rule = match unchanged.label() {
                "mirrored" => None, // several targets may cover the same image; any one is right
                _ => unchanged.rule().map(|rule| rule.line),
            };
            (None, unchanged.label(), deciding_rule)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn trie_agrees_with_linear_model((text, canonical) in rule_set(), images in proptest::collection::vec(reference(), 1..8)) {
        let rules = compile(&text, canonical);
        let model = LinearModel::new(&rules);
        for image in &images {
            prop_assert_eq!(summary(&rules.rewrite(image)), summary(&model.rewrite(image)), "rules:\n{}\nimage: {}", text, image);
        }
    }

    #[test]
    fn first_candidate_is_the_rewrite_and_candidates_agree_with_linear_model((text, canonical) in rule_set(), images in proptest::collection::vec(reference(), 1..8)) {
        let rules = compile(&text, canonical);
        let model = LinearModel::new(&rules);
        for image in &images {
            let candidates = rules.candidates(image);
            prop_assert_eq!(summary(&candidates.first_decision()), summary(&rules.rewrite(image)), "rules:\n{}\nimage: {}", text, image);
            let expected = model.candidates(image);
            let listed = |c: &mirrorswap::rewrite::Candidates<'_>| -> Vec<(String, u32)> {
                c.targets.iter().map(|candidate| (candidate.image.clone(), candidate.rule.line)).collect()
            };
            prop_assert_eq!(listed(&candidates), listed(&expected), "rules:\n{}\nimage: {}", text, image);
            prop_assert_eq!(candidates.then.label(), expected.then.label(), "rules:\n{}\nimage: {}", text, image);
        }
    }

    #[test]
    fn rewriting_is_idempotent((text, canonical) in rule_set(), images in proptest::collection::vec(reference(), 1..8)) {
        let rules = compile(&text, canonical);
        for image in &images {
            if let Some(once) = rules.rewrite(image).new_image() {
                let twice = rules.rewrite(once);
                prop_assert_eq!(twice.new_image(), None, "rules:\n{}\n{} -> {} -> {:?}", text, image, once, twice);
            }
        }
    }
}

/// Strings built from the characters references are made of (and a few they must not contain),
/// long enough to cross the 16- and 64-byte boundaries of the bitmask parser.
fn reference_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(vec!["a", "b", "z", "0", "9", "x1", "reg", "docker.io", "localhost", "library"]),
        2 => proptest::sample::select(vec!["/", ":", ".", "-", "_", "__", "--", "@", ".-", "-.", "..", "._", "_.", "___"]),
        1 => proptest::sample::select(vec!["a.-b.io/", "-a.io/", "a-.io/", "a..io/", "a.io-/", ".a.io/", "A.IO:1/", "a.io:/", "a.io:123456/"]),
        1 => proptest::sample::select(vec!["A", "Z", "[", "]", "::1", " ", "\t", "\u{0}", "é", "+", "~", ":5000"]),
        1 => proptest::sample::select(vec![
            "@sha256:15d3b5c4f521a84896ed1ead1b14e4774d02202d5c65ab68f30eeaf310a3b1a7",
            "@sha512:abc",
            ":v1.2.3",
            "reg.example.com:443/",
            "0123456789abcdef0123456789abcdef",
        ]),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20000, ..ProptestConfig::default() })]

    #[test]
    fn bitmask_parser_agrees_with_scalar_parser(raw in reference_like()) {
        use mirrorswap::rewrite::reference::{parse, parse_scalar, split_host_port, split_host_port_scalar};
        prop_assert_eq!(parse(&raw), parse_scalar(&raw), "{:?}", raw);
        let registry = raw.split('/').next().unwrap_or(&raw);
        prop_assert_eq!(split_host_port(registry), split_host_port_scalar(registry), "{:?}", registry);
    }
}

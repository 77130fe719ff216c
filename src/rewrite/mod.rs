//! The rewrite engine: image reference splitting, rule parsing and
//! validation, the prefix trie, and the per-image decision.
//!
//! Pure by design: std only (plus `thiserror` derives), no I/O, no async, no
//! Kubernetes types. The server, the reload loop and the CLI are thin shells
//! around [`RuleSet::rewrite`]. `tests/engine_purity.rs` keeps it that way.

mod candidates;
mod compile;
mod engine;
pub mod excerpt;
mod explain;
mod fxhash;
pub mod glob;
pub mod maps;
mod masks;
pub mod mirrored;
pub mod model;
pub mod reference;
mod render;
pub mod rules;
mod trie;

pub use candidates::{Candidate, Candidates};
pub use compile::{Compiled, compile};
pub use engine::{Decision, DockerHubMode, Options, RuleId, RuleSet, Unchanged};
pub use excerpt::{MAX_QUOTED, excerpt};
pub use explain::Explanation;
pub use reference::{InvalidReference, Reference};
pub use rules::{
    Budget, Diagnostic, MAX_ERRORS, MAX_RULES, MAX_WARNINGS, Problem, Rule, RuleKind, RulePair, Severity, Target,
};

/// Parses and compiles a maps-format text (one or many `SOURCE::TARGET` per line).
pub fn compile_maps(text: &str, options: Options) -> Result<Compiled, Vec<Diagnostic>> {
    let (pairs, diagnostics) = maps::parse(text);
    compile(pairs, diagnostics, options)
}

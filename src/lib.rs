//! mirrorswap: a Kubernetes mutating admission webhook that rewrites container
//! image references to mirror registries.
//!
//! - [`rewrite`]: the pure rewrite engine (reference splitting, rules, trie).
//! - [`rules_file`]: reading rule files and texts in every supported format.
//! - [`cli`]: the `mirrorswap` command line.

pub mod cli;
pub mod rewrite;
pub mod rules_file;

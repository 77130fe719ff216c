//! mirrorswap: a Kubernetes mutating admission webhook that rewrites container
//! image references to mirror registries.
//!
//! - [`rewrite`]: the pure rewrite engine (reference splitting, rules, trie).
//! - [`rules_file`]: reading rule files and texts in every supported format.
//! - [`server`]: `mirrorswap serve`, the HTTPS admission webhook.
//! - [`credentials`]: registry credentials from Palette's documents.
//! - [`certs`]: CA and serving certificates (rcgen).
//! - [`node_config`]: the rules as node-level mirror config (containerd, CRI-O, K3s).
//! - [`cli`]: the `mirrorswap` command line.
//! - [`error_chain`]: an error and its causes as one line, each said once; [`plural`]: "1 image".

pub mod audit;
pub mod certs;
pub mod cli;
pub mod credentials;
pub mod error_chain;
pub mod k8s;
pub mod node_config;
pub mod plural;
pub mod registry;
pub mod rewrite;
pub mod rules_file;
pub mod server;

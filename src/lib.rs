//! mirrorswap: a Kubernetes mutating admission webhook that rewrites container
//! image references to mirror registries.
//!
//! The rooms, from the engine up; each imports only the floors below it
//! (`docs/architecture.md`, checked by `tests/house.rs`):
//!
//! - [`rewrite`]: the pure rewrite engine (reference splitting, rules, trie).
//! - [`error_chain`]: an error and its causes as one line, each said once; [`plural`]: "1 image".
//! - [`certs`]: CA and serving certificates (rcgen).
//! - [`rules_file`]: reading rule files and texts in every supported format.
//! - [`node_config`]: the rules as node-level mirror config (containerd, CRI-O, K3s).
//! - [`credentials`]: registry credentials from Palette's documents.
//! - [`registry`]: asking registries whether they have an image (`--swap-policy exists`).
//! - [`k8s`]: the Kubernetes object model and API access the server and `audit` share.
//! - [`sync`]: the copy engine: images copied byte for byte from a source to a mirror.
//! - [`server`]: `mirrorswap serve`, the HTTPS admission webhook.
//! - [`audit`]: `mirrorswap audit`, the rules applied to manifests or a live cluster.
//! - [`cli`]: the `mirrorswap` command line.

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
pub mod sync;

//! Registry-aware swapping (`--swap-policy exists`): ask the mirror whether it has a
//! candidate image before rewriting to it. The engine (`RuleSet::candidates`) decides the
//! order; this shell asks the world.
//!
//! - [`args`]: the shared flags ([`CheckArgs`]).
//! - [`auth_file`]: `--registry-auth`, a Docker config JSON.
//! - [`client`]: one manifest lookup through `oci-client` ([`Checker`], [`Answer`], [`CheckError`]).
//! - [`cache`]: cached answers with single flight ([`CheckCache`]).
//! - [`policy`]: deadlines, backoff and the verdict per image ([`Resolver`]).
//! - [`metrics`]: the `mirrorswap_registry_*` metrics.

pub mod args;
pub mod auth_file;
pub mod cache;
pub mod client;
pub mod metrics;
pub mod policy;

pub use args::{CheckArgs, OnCheckError, PolicyArgs, SwapPolicy};
pub use auth_file::{AuthFile, AuthFileError};
pub use cache::CheckCache;
pub use client::{Answer, CheckError, Checker, ClientSettings};
pub use metrics::RegistryMetrics;
pub use policy::{CheckSettings, Choice, Resolution, Resolved, Resolver, ResolverError, Tried, Verdict};

//! Registry-aware swapping (`--swap-policy exists`): ask the mirror whether it has a
//! candidate image before rewriting to it. The engine (`RuleSet::candidates`) decides the
//! order; this shell asks the world.
//!
//! - [`args`]: the shared flags ([`CheckArgs`]).
//! - [`auth_file`]: `--registry-auth`, a Docker config JSON.
//! - [`client`]: one manifest lookup or read ([`Checker`], [`Answer`], [`client::Manifest`]),
//!   and what a present answer learned ([`found`]: the digest; [`platform`]: the platforms);
//!   [`session`]: authenticated requests to registries (credentials, challenges, tokens of
//!   [`token`], TLS of [`tls`]) over [`http`]'s transport; [`error`]: why a request gave no
//!   answer ([`CheckError`]).
//! - [`cache`]: cached answers with single flight ([`CheckCache`]), read on the warm path
//!   through [`memo`] when their values are needed.
//! - [`hosts`]: lookup slots and backoff per registry host.
//! - [`policy`]: deadlines, limits and the candidate taken per image ([`Resolver`]), whose
//!   results are [`verdict`]'s types.
//! - [`metrics`]: the `mirrorswap_registry_*` metrics.
//! - For copies (`sync`): [`manifests`] (`HEAD`, capped `GET`, `PUT`, the referrers list),
//!   [`blob`] (`HEAD`, streamed `GET`, uploads and cross-repository mounts), [`refused`] (why
//!   a write was refused), [`settings`] (the clients' settings from the flags and Palette's
//!   `registry-info`), [`tags`] (a repository's tag list); [`egress`]: the guard of a session
//!   whose hosts a Pod names (`serve --copy-on-miss`'s sources).

pub mod args;
pub mod auth_file;
pub mod blob;
pub mod cache;
pub mod client;
pub mod egress;
pub mod error;
pub mod found;
pub mod hosts;
pub mod http;
pub mod manifests;
mod memo;
pub mod metrics;
pub mod platform;
pub mod policy;
pub mod refused;
pub mod session;
pub mod settings;
pub mod tags;
pub mod tls;
pub mod token;
pub mod verdict;

pub use args::{CheckArgs, OnCheckError, PolicyArgs, SwapPolicy};
pub use auth_file::{AuthFile, AuthFileError};
pub use cache::CheckCache;
pub use client::{Answer, Checker, ClientSettings, Depth};
pub use error::{CheckError, NotAsked};
pub use found::{Digest, Found};
pub use metrics::RegistryMetrics;
pub use platform::{Platform, Platforms};
pub use policy::{CheckSettings, Choice, Pin, Pinning, Resolution, Resolved, Resolver, ResolverError, Tried, Verdict};

//! The copy engine: makes a destination hold images exactly as their source does (every
//! manifest and index pushed byte for byte, so every digest stays), only what is missing
//! moving, blobs streamed with their digest checked on the way. `sync` runs it over what the
//! rules send to the mirrors, or into and out of an OCI-layout archive; `serve --copy-on-miss`
//! will plug in here.
//!
//! - [`store`]: the two traits a side implements, [`Source`] and [`Destination`];
//!   [`remote`]: both over registries (the registry room's session layer, one session and
//!   one set of credentials per side).
//! - [`engine`]: [`Engine`] (one [`Job`] or many, `jobs` at a time) and its [`Settings`];
//!   [`copy`]: one image, manifests walked and written bottom up; [`referrers`]: what comes
//!   along; [`seen`]: where this run put each blob (mounts, one upload per blob).
//! - [`verify`]: a blob's digest and length checked on its way, the last chunk held back;
//!   [`retry`]: attempts, backoff and timeouts; [`error`]: why ([`SyncError`]).
//! - [`name`]: images, anchor and cosign tags; [`manifest`]: what a manifest points at,
//!   `--platform`.
//! - [`report`]: each image's result, the table and JSON; [`progress`]: what a copy tells
//!   as it goes; [`args`]: the copy flags.
//! - [`archive`]: the offline archive, an OCI image layout in a tar, written as a destination
//!   (`--to-archive`) and read as a source (`--from-archive`).
//! - [`miss`]: `serve --copy-on-miss`: the queue of images every mirror lacks, its worker,
//!   bounds, metrics and flags.
//!
//! Built on [`crate::registry`]'s session layer rather than `oci-client`, which the project
//! dropped because its auth flow and unbounded reads did not fit a peer that controls every
//! byte it answers: here every manifest read is capped at 4 MiB, blobs are never held whole,
//! and each step has a timeout.

pub mod archive;
pub mod args;
pub mod copy;
pub mod engine;
pub mod error;
pub mod manifest;
#[cfg(test)]
mod memory;
pub mod miss;
pub mod name;
pub mod progress;
pub mod referrers;
pub mod remote;
pub mod report;
pub mod retry;
pub mod seen;
pub mod store;
pub mod verify;

pub use engine::{Engine, Job, Settings};
pub use error::SyncError;
pub use progress::{Progress, Quiet};
pub use remote::{RemoteMirror, RemoteSource};
pub use report::{Outcome, Report};
pub use store::{BlobStream, Destination, Source};

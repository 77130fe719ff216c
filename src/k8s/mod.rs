//! Kubernetes itself, below the server and `audit`: what an AdmissionReview, a workload, a
//! pod spec and an opt-out mark are, and which images a request may change. The server
//! answers reviews with it; `audit` reads manifests and live workloads with it.
//!
//! - [`review`]: the decoded `AdmissionReview` and the object model, borrowing from the body
//! - [`workload`]: where the images are in each kind ([`workload::KINDS`]), the opt-outs
//! - [`update`]: what a request may change: on UPDATE, only new or changed images
//! - [`pointer`]: JSON pointers to fields of an object

pub mod pointer;
pub mod review;
pub mod update;
pub mod workload;

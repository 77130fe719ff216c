//! Kubernetes itself, below the server and `audit`: what an AdmissionReview, a workload, a
//! pod spec and an opt-out mark are, which images a request may change, and the API client
//! and rules object source. The server answers reviews and watches its rules with it;
//! `audit` reads manifests, live workloads and rules with it.
//!
//! - [`api`]: the API client and the Secret or ConfigMap key that holds rules
//! - [`review`]: the decoded `AdmissionReview` and the object model, borrowing from the body
//! - [`workload`]: where the images are in each kind ([`workload::KINDS`]), the opt-outs
//! - [`update`]: what a request may change: on UPDATE, only new or changed images
//! - [`pointer`]: JSON pointers to fields of an object

pub mod api;
pub mod pointer;
pub mod review;
pub mod update;
pub mod workload;

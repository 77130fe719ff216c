//! What a copy tells as it goes, for whoever shows it: the command line's progress bars or
//! lines, later the server's metrics. Every method has a default that does nothing.

use super::report::Report;

/// Told of each image's copy as it goes; `job` is the image's index in the run.
pub trait Progress: Send + Sync {
    /// The copy of `image` to `target` starts.
    fn started(&self, _job: usize, _image: &str, _target: &str) {}
    /// `bytes` more are to be sent (a blob found missing at the destination).
    fn planned(&self, _job: usize, _bytes: u64) {}
    /// `bytes` were sent (a retried blob counts again).
    fn moved(&self, _job: usize, _bytes: u64) {}
    /// The copy ended.
    fn finished(&self, _job: usize, _report: &Report) {}
}

/// Tells nobody.
pub struct Quiet;

impl Progress for Quiet {}

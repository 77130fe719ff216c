//! What `sync` shows while it copies, on stderr: on a terminal a progress bar per image being
//! copied and one for the bytes overall (indicatif), each image's line printed above them as
//! it ends; otherwise (CI, a pipe) just that line per image.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::sync::report::bytes;
use crate::sync::{Progress, Report};

/// Bars on a terminal, lines otherwise.
pub fn for_stderr(images: usize) -> Arc<dyn Progress> {
    if std::io::stderr().is_terminal() { Arc::new(Bars::new(images)) } else { Arc::new(Lines) }
}

/// `copied  SOURCE -> TARGET  3.1 MiB`, or `failed  SOURCE -> TARGET: why`.
pub fn line(report: &Report) -> String {
    let arrow = format!("{} -> {}", report.image, report.target);
    match &report.reason {
        Some(why) => format!("failed  {arrow}: {why}"),
        None => format!("{:<7} {arrow}  {}", report.outcome.label(), bytes(report.bytes)),
    }
}

/// One line per image.
struct Lines;

impl Progress for Lines {
    fn finished(&self, _: usize, report: &Report) {
        eprintln!("{}", line(report));
    }
}

/// A bar per image in flight and one for all bytes.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    images: Mutex<HashMap<usize, ProgressBar>>,
}

impl Bars {
    fn new(images: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(0));
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}");
        if let Ok(style) = style {
            total.set_style(style.progress_chars("=> "));
        }
        total.set_prefix(format!("{images} images"));
        Self { multi, total, images: Mutex::new(HashMap::new()) }
    }

    fn bar(&self, job: usize) -> Option<ProgressBar> {
        self.images.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&job).cloned()
    }
}

impl Progress for Bars {
    fn started(&self, job: usize, image: &str, _: &str) {
        let bar = self.multi.insert_before(&self.total, ProgressBar::new(0));
        if let Ok(style) = ProgressStyle::with_template("  {spinner} {msg} {bytes}/{total_bytes}") {
            bar.set_style(style);
        }
        bar.set_message(image.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        self.images.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(job, bar);
    }

    fn planned(&self, job: usize, bytes: u64) {
        if let Some(bar) = self.bar(job) {
            bar.inc_length(bytes);
        }
        self.total.inc_length(bytes);
    }

    fn moved(&self, job: usize, bytes: u64) {
        if let Some(bar) = self.bar(job) {
            bar.inc(bytes);
        }
        self.total.inc(bytes);
    }

    fn finished(&self, job: usize, report: &Report) {
        if let Some(bar) = self.images.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&job) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.println(line(report));
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.total.finish_and_clear();
    }
}

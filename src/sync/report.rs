//! What a copy of one image came to, and the run's report: an aligned table (image, target,
//! result, bytes) with a summary line and notes, or a JSON array. `copied` and `present` mean
//! the destination holds the image afterwards; `failed: reason` that it may not.

use std::io::Write;

use serde::Serialize;

use crate::plural;

/// What became of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Something was written: blobs, mounts, manifests or tags.
    Copied,
    /// The destination already held everything.
    Present,
    /// `--dry-run`: something would be written.
    WouldCopy,
    /// Why the destination may not hold it.
    Failed(String),
}

impl Outcome {
    /// `copied`, `present`, `would copy`, `failed`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Copied => "copied",
            Self::Present => "present",
            Self::WouldCopy => "would copy",
            Self::Failed(_) => "failed",
        }
    }
}

/// One image's copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The source image.
    pub image: String,
    /// Where the rules put it.
    pub target: String,
    /// Further targets filled from the same copy (`--also-node-paths`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    /// `copied`, `present`, `would copy` or `failed`.
    #[serde(rename = "result", serialize_with = "label")]
    pub outcome: Outcome,
    /// Why it failed.
    pub reason: Option<String>,
    /// Blob bytes sent (with `--dry-run`: that would be sent).
    pub bytes: u64,
    /// Blobs sent, mounted from another repository, and found present.
    pub uploaded: usize,
    pub mounted: usize,
    pub present: usize,
    /// Manifests and tags written (or that would be).
    pub manifests: usize,
    /// Referrers and signature tags copied along.
    pub referrers: usize,
    /// What the reader should know (a changed index digest, a mirror without the referrers API).
    pub notes: Vec<String>,
}

fn label<S: serde::Serializer>(outcome: &Outcome, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(outcome.label())
}

impl Report {
    /// `copied`, `present`, or `failed: reason`.
    pub fn result(&self) -> String {
        match &self.outcome {
            Outcome::Failed(why) => format!("failed: {why}"),
            other => other.label().to_owned(),
        }
    }

    /// Whether the destination holds the image afterwards.
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Copied | Outcome::Present)
    }
}

/// `12.3 MiB`, `512 B`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{count} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// The table: one row per image, a summary line, then each note.
pub fn table(out: &mut impl Write, reports: &[Report]) -> std::io::Result<()> {
    let header = ["IMAGE", "TARGET", "RESULT", "BYTES"].map(str::to_owned);
    let rows: Vec<[String; 4]> = reports
        .iter()
        .map(|report| {
            let target = match report.also.len() {
                0 => report.target.clone(),
                more => format!("{} (+{more})", report.target),
            };
            [report.image.clone(), target, report.result(), bytes(report.bytes)]
        })
        .collect();
    let mut widths = header.clone().map(|title| title.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let [image, target, result, size] = row;
        let line = format!(
            "{image:<w0$}  {target:<w1$}  {result:<w2$}  {size}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    let count = |label: &str| reports.iter().filter(|report| report.outcome.label() == label).count();
    let sent: u64 = reports.iter().map(|report| report.bytes).sum();
    let verb = if reports.iter().any(|report| report.outcome == Outcome::WouldCopy) { "to send" } else { "sent" };
    writeln!(
        out,
        "{}: {} copied, {} present, {} would copy, {} failed; {} {verb}",
        plural::count_s(reports.len(), "image"),
        count("copied"),
        count("present"),
        count("would copy"),
        count("failed"),
        bytes(sent)
    )?;
    for report in reports {
        for note in &report.notes {
            writeln!(out, "note: {}: {note}", report.image)?;
        }
    }
    Ok(())
}

/// A JSON array of the reports.
pub fn json(out: &mut impl Write, reports: &[Report]) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, reports)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(image: &str, outcome: Outcome, sent: u64) -> Report {
        Report {
            image: image.into(),
            target: format!("m.io/{image}"),
            also: Vec::new(),
            reason: match &outcome {
                Outcome::Failed(why) => Some(why.clone()),
                _ => None,
            },
            outcome,
            bytes: sent,
            uploaded: 0,
            mounted: 0,
            present: 0,
            manifests: 0,
            referrers: 0,
            notes: Vec::new(),
        }
    }

    #[test]
    fn the_table_says_each_result_and_the_total() {
        let mut failed = report("b:2", Outcome::Failed("source s.io: rate limited (429)".into()), 0);
        failed.notes.push("one note".into());
        let reports = [report("a:1", Outcome::Copied, 3 << 20), report("c:3", Outcome::Present, 0), failed];
        let mut out = Vec::new();
        table(&mut out, &reports).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "IMAGE  TARGET    RESULT                                   BYTES");
        assert_eq!(lines[1], "a:1    m.io/a:1  copied                                   3.0 MiB");
        assert_eq!(lines[3], "b:2    m.io/b:2  failed: source s.io: rate limited (429)  0 B");
        assert_eq!(lines[4], "3 images: 1 copied, 1 present, 0 would copy, 1 failed; 3.0 MiB sent");
        assert_eq!(lines[5], "note: b:2: one note");
        let mut out = Vec::new();
        json(&mut out, &reports[2..]).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value[0]["result"], "failed");
        assert_eq!(value[0]["reason"], "source s.io: rate limited (429)");
        assert!(value[0].get("also").is_none());
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}

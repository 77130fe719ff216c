//! The report's formats: an aligned table with a summary line (and notes), a JSON array of
//! [`Row`]s, and a copy list of `SOURCE TARGET` lines for `skopeo copy` / `crane copy`.

use std::io::Write;

use super::{MirrorState, Row};

/// Counts for the summary line and `--fail-on`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Distinct images.
    pub images: usize,
    /// Images the rules rewrite.
    pub rewritten: usize,
    /// Images pulled from outside the mirrors after the rules.
    pub unmirrored: usize,
    /// Images the mirror does not have (`--check-mirror`).
    pub missing: usize,
    /// Images whose mirror could not be asked.
    pub mirror_errors: usize,
}

impl Summary {
    /// Counts `rows`.
    pub fn of(rows: &[Row]) -> Self {
        let count = |test: &dyn Fn(&Row) -> bool| rows.iter().filter(|row| test(row)).count();
        Self {
            images: rows.len(),
            rewritten: count(&|row| row.rewritten.is_some()),
            unmirrored: count(&|row| row.unmirrored),
            missing: count(&|row| row.mirror == Some(MirrorState::Absent)),
            mirror_errors: count(&|row| row.mirror == Some(MirrorState::Error)),
        }
    }
}

/// Aligned columns, one row per image, the summary line, then a note for each image unmirrored
/// though the rules leave it alone or rewrite it (why, in a sentence). `checked`: whether the
/// mirror was asked, so that "0 missing" is not claimed when nothing was checked.
pub fn table(out: &mut impl Write, rows: &[Row], checked: bool) -> std::io::Result<()> {
    const HEADER: [&str; 7] = ["IMAGE", "REWRITTEN", "RULE", "REASON", "MIRROR", "UNMIRRORED", "LOCATIONS"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|row| {
            let more = row.locations.len().saturating_sub(1);
            let mut locations = row.locations.first().cloned().unwrap_or_default();
            if more > 0 {
                locations.push_str(&format!(" (+{more} more)"));
            }
            [
                row.image.clone(),
                row.rewritten.clone().unwrap_or_else(|| "-".into()),
                row.rule.clone().unwrap_or_else(|| "-".into()),
                row.reason.to_owned(),
                row.mirror.map_or("-", mirror_label).to_owned(),
                if row.unmirrored { "yes" } else { "no" }.to_owned(),
                locations,
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = HEADER.map(str::to_owned);
    for row in std::iter::once(&header).chain(&cells) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    let summary = Summary::of(rows);
    let missing = if checked { format!("{} missing", summary.missing) } else { "missing not checked".to_owned() };
    writeln!(
        out,
        "{} images, {} rewritten, {} unmirrored, {missing}",
        summary.images, summary.rewritten, summary.unmirrored
    )?;
    for row in rows {
        if let Some(why) = &row.why {
            writeln!(out, "note: {} is {}: {why}", row.image, row.reason)?;
        }
    }
    Ok(())
}

/// A JSON array of the rows.
pub fn json(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, rows)?;
    writeln!(out)
}

/// `SOURCE TARGET` per image rewritten into a mirror; `missing_only` keeps those the mirror
/// lacks. A rewrite to a registry the image chose (a port, a built host name: `unmirrored`)
/// is no mirror to copy into.
pub fn copy_list(out: &mut impl Write, rows: &[Row], missing_only: bool) -> std::io::Result<()> {
    for row in rows {
        let Some(target) = row.rewritten.as_ref().filter(|_| !row.unmirrored) else { continue };
        if missing_only && row.mirror != Some(MirrorState::Absent) {
            continue;
        }
        writeln!(out, "{} {target}", row.source())?;
    }
    Ok(())
}

fn mirror_label(state: MirrorState) -> &'static str {
    match state {
        MirrorState::Present => "present",
        MirrorState::Absent => "absent",
        MirrorState::Error => "error",
    }
}

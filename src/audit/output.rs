//! The report's formats: an aligned table (narrow, fitting the terminal, or wide, which also
//! shows the platforms the mirror has when they were read) with a summary line and notes
//! (drift included), a JSON array of [`Row`]s, and a copy list of `SOURCE TARGET` lines for
//! `skopeo copy` / `crane copy`.

use std::io::Write;

use super::{MirrorState, Row};
use crate::plural;

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
    /// Images whose source tag names other content than the mirror's (`--check-source`).
    pub drifted: usize,
    /// Images whose source was asked (`--check-source`) and answered with a digest.
    pub source_checked: usize,
    /// Images whose source was asked and gave no digest.
    pub source_errors: usize,
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
            drifted: count(&|row| row.mirror == Some(MirrorState::Drifted)),
            source_checked: count(&|row| row.source_digest.is_some()),
            source_errors: count(&|row| row.source_failed),
        }
    }
}

/// Which columns the table shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Columns {
    /// IMAGE, REWRITTEN, REASON, MIRROR (when asked), UNMIRRORED and RULE as `FILE:LINE`,
    /// long cells cut to fit the width.
    Narrow,
    /// Every column, the rule as written and the first location; never cut.
    Wide,
}

/// A column narrower than this is not cut further.
const MIN_CUT_WIDTH: usize = 16;

/// Aligned columns, one row per image, the summary line, then a note for each image that is
/// invalid, kept by `--swap-policy exists`, or unmirrored though the rules leave it alone or
/// rewrite it (why, in a sentence). `checked`: whether the mirror was asked, so that
/// "0 missing" is not claimed when nothing was checked. `width`: the terminal's, which a
/// narrow table's rows fit by cutting the image, rewritten and rule cells.
pub fn table(
    out: &mut impl Write,
    rows: &[Row],
    checked: bool,
    columns: Columns,
    width: Option<usize>,
) -> std::io::Result<()> {
    let wide = columns == Columns::Wide;
    let mut header: Vec<&str> = vec!["IMAGE", "REWRITTEN"];
    if wide {
        header.push("RULE");
    }
    header.push("REASON");
    if checked || wide {
        header.push("MIRROR");
    }
    let platforms = wide && rows.iter().any(|row| row.platforms.is_some());
    if platforms {
        header.push("PLATFORMS");
    }
    header.push("UNMIRRORED");
    header.push(if wide { "LOCATIONS" } else { "RULE" });
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut cells = vec![row.image.clone(), row.rewritten.clone().unwrap_or_else(|| "-".into())];
            if wide {
                cells.push(
                    row.rule.as_ref().map_or_else(|| "-".to_owned(), |rule| format!("{} ({})", rule.rule, rule.at)),
                );
            }
            cells.push(row.reason.to_owned());
            if checked || wide {
                cells.push(row.mirror.map_or("-", mirror_label).to_owned());
            }
            if platforms {
                cells.push(row.platforms.as_ref().map_or_else(|| "-".to_owned(), |list| list.join(",")));
            }
            cells.push(if row.unmirrored { "yes" } else { "no" }.to_owned());
            if wide {
                let more = row.locations.len().saturating_sub(1);
                let mut locations = row.locations.first().cloned().unwrap_or_default();
                if more > 0 {
                    locations.push_str(&format!(" (+{more} more)"));
                }
                cells.push(locations);
            } else {
                cells.push(row.rule.as_ref().map_or_else(|| "-".to_owned(), |rule| rule.at.clone()));
            }
            cells
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    if let (Some(limit), false) = (width, wide) {
        // The image, rewritten and rule cells give way, widest first.
        let cuttable = [0, 1, header.len() - 1];
        while widths.iter().sum::<usize>() + 2 * (widths.len() - 1) > limit {
            let Some(&widest) = cuttable.iter().filter(|&&at| widths[at] > MIN_CUT_WIDTH).max_by_key(|&&at| widths[at])
            else {
                break;
            };
            widths[widest] -= 1;
        }
    }
    let header: Vec<String> = header.iter().map(|title| (*title).to_owned()).collect();
    for row in std::iter::once(&header).chain(&cells) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            let cell = cut(cell, *width);
            if index + 1 == row.len() {
                line.push_str(&cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    let summary = Summary::of(rows);
    let missing = if checked { format!("{} missing", summary.missing) } else { "missing not checked".to_owned() };
    let asked_sources = summary.source_checked + summary.source_errors > 0;
    let drifted = if asked_sources { format!(", {} drifted", summary.drifted) } else { String::new() };
    writeln!(
        out,
        "{}, {} rewritten, {} unmirrored, {missing}{drifted}",
        plural::count_s(summary.images, "image"),
        summary.rewritten,
        summary.unmirrored
    )?;
    for row in rows {
        if let Some(why) = &row.why {
            writeln!(out, "note: {} is {}: {why}", row.image, row.reason)?;
        }
        if let (Some(MirrorState::Drifted), Some(source), Some(mirror)) = (row.mirror, &row.source_digest, &row.digest)
        {
            let target = row.target().unwrap_or("-");
            writeln!(
                out,
                "note: {} drifted: the source's tag is {source}, the mirror's {target} is {mirror} (the tag moved at the \
                 source since the copy: copy it again)",
                row.image
            )?;
        }
    }
    Ok(())
}

/// `text` in at most `width` characters: its head and tail around `…` (an image's name and
/// tag are at its end).
fn cut(text: &str, width: usize) -> std::borrow::Cow<'_, str> {
    let count = text.chars().count();
    if count <= width || width < 2 {
        return text.into();
    }
    let head = width / 3;
    let tail = width - 1 - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{start}…{end}").into()
}

/// A JSON array of the rows.
pub fn json(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, rows)?;
    writeln!(out)
}

/// `SOURCE TARGET` per image rewritten into a mirror; `missing_only` keeps those the mirror
/// lacks. A rewrite to a registry the image chose (a port, a built host name: `unmirrored`)
/// is no mirror to copy into. `node_paths`: a second line for an image a node pulls from
/// another path of the mirror (an official image under `--docker-hub compat`), so one copy
/// run serves the webhook's rewrites and the node-level mirrors.
pub fn copy_list(out: &mut impl Write, rows: &[Row], missing_only: bool, node_paths: bool) -> std::io::Result<()> {
    for row in rows {
        if missing_only && row.mirror != Some(MirrorState::Absent) {
            continue;
        }
        for target in copy_targets(row, node_paths) {
            writeln!(out, "{} {target}", row.source())?;
        }
    }
    Ok(())
}

/// Where `row`'s image must be in the mirrors, what the copy list and `sync` copy it to: the
/// rules' rewrite into a mirror (none for an image left alone, or rewritten to a registry it
/// chose itself: `unmirrored`), and with `node_paths` the other path a node pulls it from.
pub fn copy_targets(row: &Row, node_paths: bool) -> Vec<&str> {
    let Some(target) = row.target().filter(|_| !row.unmirrored) else { return Vec::new() };
    let node = row.node_pull.as_deref().filter(|_| node_paths);
    std::iter::once(target).chain(node).collect()
}

fn mirror_label(state: MirrorState) -> &'static str {
    match state {
        MirrorState::Present => "present",
        MirrorState::Absent => "absent",
        MirrorState::Error => "error",
        MirrorState::Drifted => "drifted",
    }
}

//! Reading rules from files and texts: picks the format, runs the right
//! parser, compiles with the engine, and labels every diagnostic with its
//! origin as `FILE:LINE: reason`. The only part of rule handling that does I/O.

pub mod args;
pub(crate) mod events;
pub mod yaml;

use std::fmt;
use std::path::Path;

use crate::rewrite::{self, Compiled, Diagnostic, Options, RuleSet, Severity};

/// The rule formats mirrorswap reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// imageswap maps: `SOURCE::TARGET` per line, or Palette's comma-separated list.
    Maps,
    /// A YAML mapping of `"SOURCE": "TARGET"` (Registry Connect, Edge).
    Yaml,
}

impl Format {
    /// `.yaml`/`.yml` files are YAML, anything else is maps.
    pub fn for_path(path: &Path) -> Self {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml") => Self::Yaml,
            _ => Self::Maps,
        }
    }

    /// As [`Self::for_path`], except that a `#cloud-config` file (Edge user-data, often named
    /// `user-data` with no extension) is YAML.
    pub fn for_file(path: &Path, text: &str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.starts_with("#cloud-config") { Self::Yaml } else { Self::for_path(path) }
    }
}

/// A loaded rule set and the warnings its source produced.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The compiled rules.
    pub rules: RuleSet,
    /// Warnings and skipped lines, in line order.
    pub diagnostics: Vec<Diagnostic>,
    /// Where the rules came from (a path, or a label such as `env:MIRROR_REGISTRIES`).
    pub origin: String,
    /// The key of the YAML document the rules were under (`None`: the whole text).
    pub found: Option<yaml::Found>,
}

impl Loaded {
    /// Each diagnostic as `ORIGIN:LINE: …`.
    pub fn messages(&self) -> impl Iterator<Item = String> + '_ {
        self.diagnostics.iter().map(|diagnostic| diagnostic.with_origin(&self.origin))
    }
}

/// Why rules could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io {
        /// The file.
        origin: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The text has errors; every diagnostic (warnings too) in line order.
    Invalid {
        /// The file or label.
        origin: String,
        /// All diagnostics.
        diagnostics: Vec<Diagnostic>,
    },
}

impl LoadError {
    /// Every diagnostic as `ORIGIN:LINE: …` (for an I/O error, one line): the errors first,
    /// each in line order, then the warnings, so that what stopped the load leads.
    pub fn messages(&self) -> Vec<String> {
        match self {
            Self::Io { origin, error } => vec![format!("{origin}: {error}")],
            Self::Invalid { origin, diagnostics } => {
                let (errors, rest): (Vec<&Diagnostic>, Vec<&Diagnostic>) =
                    diagnostics.iter().partition(|diagnostic| diagnostic.severity == Severity::Error);
                errors.into_iter().chain(rest).map(|diagnostic| diagnostic.with_origin(origin)).collect()
            }
        }
    }
}

impl fmt::Display for LoadError {
    /// The first error, as `FILE:LINE: reason`, and how many more there are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { origin, error } => write!(f, "{origin}: {error}"),
            Self::Invalid { origin, diagnostics } => {
                let mut errors = diagnostics.iter().filter(|d| d.severity == Severity::Error);
                match errors.next() {
                    Some(first) => write!(f, "{}", first.with_origin(origin))?,
                    None => write!(f, "{origin}: invalid rules")?,
                }
                match errors.count() {
                    0 => Ok(()),
                    more => write!(f, " (and {more} more error{})", if more == 1 { "" } else { "s" }),
                }
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// The largest rules file read (100k rules, [`rewrite::MAX_RULES`], are ≈ 6 MiB), and a bound keeps a runaway file (a 100 MB line, a log written to the wrong path) from
/// taking the server's memory.
pub const MAX_RULES_BYTES: u64 = 32 * 1024 * 1024;

/// Reads and compiles a rules file; `format` `None` picks it by extension.
pub fn load_file(path: &Path, format: Option<Format>, options: Options) -> Result<Loaded, LoadError> {
    let origin = path.display().to_string();
    let text = read_bounded(path).map_err(|error| LoadError::Io { origin: origin.clone(), error })?;
    let chosen = format.unwrap_or_else(|| Format::for_file(path, &text));
    let parsed = parse_text(&text, chosen);
    // The pairs own their strings: dropping the text before compiling keeps the peak at the
    // rules' size rather than the file's plus the rules'.
    drop(text);
    let loaded = compile_parsed(parsed, &origin, options);
    match loaded {
        // Read as maps by its name, a YAML document fails line by line: say what it is instead.
        Err(LoadError::Invalid { diagnostics, .. }) if format.is_none() && chosen == Format::Maps => {
            Err(LoadError::Invalid { diagnostics: yaml_hint(path, &diagnostics).unwrap_or(diagnostics), origin })
        }
        other => other,
    }
}

/// For a file read as maps because of its name that failed: when it reads as YAML holding
/// rules, one error saying so and what to give instead of the maps errors.
fn yaml_hint(path: &Path, maps_errors: &[Diagnostic]) -> Option<Vec<Diagnostic>> {
    let text = read_bounded(path).ok()?;
    let yaml::Parsed { pairs, diagnostics, found } = yaml::parse(text.strip_prefix('\u{feff}').unwrap_or(&text));
    if pairs.is_empty() || diagnostics.iter().any(|diagnostic| diagnostic.severity == Severity::Error) {
        return None;
    }
    let errors = maps_errors.iter().filter(|diagnostic| diagnostic.severity == Severity::Error).count();
    let at =
        found.map(|found| format!(" at {} (line {})", rewrite::excerpt(&found.path), found.line)).unwrap_or_default();
    let message = format!(
        "this is YAML with {} rules{at}, read as a maps file because only names ending in .yaml or .yml are read \
         as YAML: give --format yaml ({errors} errors as maps not shown)",
        pairs.len()
    );
    Some(vec![Diagnostic::error(1, rewrite::Problem::Yaml(message))])
}

/// Reads `path` as UTF-8, at most [`MAX_RULES_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_bounded_bytes(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
}

/// Reads `path`, refusing (`ErrorKind::FileTooLarge`) a file over [`MAX_RULES_BYTES`] before
/// and while reading (it may grow between the two). The loader and the file watcher both read
/// through this, so neither can be made to hold a runaway file.
pub fn read_bounded_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let too_large = || {
        Error::new(
            ErrorKind::FileTooLarge,
            format!("larger than the {} MiB limit for rules files", MAX_RULES_BYTES >> 20),
        )
    };
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_RULES_BYTES {
        return Err(too_large());
    }
    // Sized up front: growing by doubling would touch twice the file while copying.
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).saturating_add(1));
    file.take(MAX_RULES_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RULES_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Compiles rules from `text`, labelling diagnostics with `origin`.
pub fn load_text(text: &str, origin: &str, format: Format, options: Options) -> Result<Loaded, LoadError> {
    compile_parsed(parse_text(text, format), origin, options)
}

/// The pairs, the parser's diagnostics, and where in the document the rules were found.
type Parsed = (Vec<rewrite::RulePair>, Vec<rewrite::Diagnostic>, Option<yaml::Found>);

fn parse_text(text: &str, format: Format) -> Parsed {
    // Editors on Windows start UTF-8 files with a byte-order mark; it is not part of the rules.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Maps => {
            let (pairs, diagnostics) = rewrite::maps::parse(text);
            (pairs, diagnostics, None)
        }
        Format::Yaml => {
            let yaml::Parsed { pairs, diagnostics, found } = yaml::parse(text);
            (pairs, diagnostics, found)
        }
    }
}

fn compile_parsed((pairs, diagnostics, found): Parsed, origin: &str, options: Options) -> Result<Loaded, LoadError> {
    match rewrite::compile(pairs, diagnostics, options) {
        Ok(Compiled { rules, diagnostics }) => Ok(Loaded { rules, diagnostics, origin: origin.to_owned(), found }),
        Err(diagnostics) => Err(LoadError::Invalid { origin: origin.to_owned(), diagnostics }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.conf");
        // Sparse: 40 MiB on paper, nothing on disk.
        std::fs::File::create(&path).unwrap().set_len(MAX_RULES_BYTES + 8 * 1024 * 1024).unwrap();
        let error = load_file(&path, None, Options::default()).unwrap_err();
        assert!(error.to_string().contains("larger than the 32 MiB limit"), "{error}");
        std::fs::write(&path, "docker.io::m.example.org/hub\n").unwrap();
        assert_eq!(load_file(&path, None, Options::default()).unwrap().rules.len(), 1);
    }
}

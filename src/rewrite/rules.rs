//! Rule vocabulary shared by every rule format: the raw `source → target`
//! pairs a parser produces, the compiled [`Rule`]s, and the diagnostics
//! (errors and warnings, each tied to a line) that parsing and compiling report.

use std::fmt;

/// The special key for the fallback rule applied when no specific rule matches.
pub const KEY_DEFAULT: &str = "default";
/// The special key for substrings that stop the fallback rule.
pub const KEY_NOSWAP: &str = "noswap_wildcards";
/// The Registry Connect / Edge key that prefixes every reference, registry included.
pub const KEY_ALL: &str = "all";
/// Key prefix for whole-reference replacement.
pub const PREFIX_EXACT: &str = "[EXACT]";
/// Key prefix for glob replacement.
pub const PREFIX_REPLACE: &str = "[REPLACE]";

/// One `source → target` pair as written in a rules file, before validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulePair {
    /// 1-based line the pair was read from (0 when the source has no lines).
    pub line: u32,
    /// The key: a registry/path prefix or a special key.
    pub key: String,
    /// The value: a target, a wildcard list or empty.
    pub value: String,
}

/// What a rule matches and how it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleKind {
    /// `[EXACT]REF::TARGET`: the whole reference is replaced.
    Exact,
    /// `[REPLACE]GLOB::DIR`: the last path segment is moved under DIR.
    Replace,
    /// `registry[/path]::TARGET`: the longest matching prefix is replaced.
    Prefix,
    /// `default::TARGET`: the registry of an unmatched reference is replaced.
    Default,
    /// `all::TARGET`: an unmatched reference is put, registry and all, under TARGET.
    All,
}

impl RuleKind {
    /// Every kind, in precedence order.
    pub const ALL: [RuleKind; 5] = [Self::Exact, Self::Replace, Self::Prefix, Self::Default, Self::All];

    /// A short lowercase name for summaries and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Replace => "replace",
            Self::Prefix => "prefix",
            Self::Default => "default",
            Self::All => "all",
        }
    }
}

/// Where a matched reference goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Empty target: the reference is left alone.
    Keep,
    /// The matched part is replaced by this name prefix.
    Plain(Box<str>),
    /// A target ending in `-`: the source registry is appended to it.
    Dash(Box<str>),
}

impl Target {
    /// The target as written in the rules file.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Keep => "",
            Self::Plain(t) | Self::Dash(t) => t,
        }
    }
}

/// A validated rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Which kind of rule this is.
    pub kind: RuleKind,
    /// The key without its `[EXACT]`/`[REPLACE]` marker (`default`/`all` for fallbacks).
    pub source: Box<str>,
    /// Where matches go.
    pub target: Target,
    /// 1-based line in the rules file (0 when unknown).
    pub line: u32,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let marker = match self.kind {
            RuleKind::Exact => PREFIX_EXACT,
            RuleKind::Replace => PREFIX_REPLACE,
            _ => "",
        };
        write!(f, "{marker}{}::{}", self.source, self.target.as_str())
    }
}

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The rules are loaded regardless.
    Warning,
    /// A bad line that `--lenient` skipped.
    Skipped,
    /// A bad line; the whole load fails.
    Error,
}

/// A problem found in a rules file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// No separator at all.
    #[error("no `::` separator between source and target")]
    NoSeparator,
    /// Several single colons and no `::`: ambiguous, as a port needs `::`.
    #[error("several `:` and no `::`: a port in the source or target needs the `::` separator")]
    PortNeedsDoubleColon,
    /// `a::b::c`.
    #[error("more than one `::` separator")]
    TooManySeparators,
    /// Nothing before the separator.
    #[error("empty source")]
    EmptySource,
    /// Whitespace inside a reference.
    #[error("whitespace inside the {0}")]
    Whitespace(&'static str),
    /// A specific key that is not `registry[/path]`.
    #[error("invalid source `{key}`: {reason}")]
    InvalidSource {
        /// The key as written.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A target that would not give a valid reference.
    #[error("invalid target `{target}`: {reason}")]
    InvalidTarget {
        /// The target as written.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `[REPLACE]` pattern that does not compile.
    #[error("invalid glob `{pattern}`: {reason}")]
    BadGlob {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same source twice with different targets.
    #[error("duplicate source `{key}` with a different target (first at line {first_line})")]
    ConflictingDuplicate {
        /// The repeated key.
        key: String,
        /// Where it was first given.
        first_line: u32,
    },
    /// Both fallbacks given.
    #[error("`all` and `default` are both fallbacks: keep one (the other is at line {0})")]
    AllAndDefault(u32),
    /// A YAML document that is not a flat mapping of strings, or not YAML.
    #[error("{0}")]
    Yaml(String),
    /// The deprecated single-colon separator.
    #[error("`:` as separator is deprecated: write `::`")]
    LegacySeparator,
    /// The same rule twice.
    #[error("duplicate of line {0}")]
    Duplicate(u32),
    /// `a,,b` or a trailing comma.
    #[error("empty entry in a comma-separated list")]
    EmptyEntry,
    /// A rule that can never apply because its source lies inside a mirror target.
    #[error(
        "never applies: `{key}` lies inside the target `{target}` of line {line}, and references already there are left alone"
    )]
    ShadowedByTarget {
        /// The shadowed key.
        key: String,
        /// The target that shadows it.
        target: String,
        /// The line of that target.
        line: u32,
    },
    /// A `-` target without `/`: the registry images are pulled from is built from their own
    /// (`mirror-` makes `mirror-quay.io`), a host name the rules do not name.
    #[error(
        "the `-` target `{target}` builds registry names from the images' own (`{target}REGISTRY`), hosts these \
         rules do not name and anyone may register: audit and the leak guard count such images unmirrored unless \
         --allow-registry covers them"
    )]
    DashBuildsHost {
        /// The target as written.
        target: String,
    },
    /// A source registry one or two edits from a well-known one: probably a typo of it.
    #[error(
        "source registry `{host}` is not `{known}` but close to it: a typo? This rule never matches images from \
         {known}; if `{host}` is the registry you mean, ignore this warning"
    )]
    MisspelledRegistry {
        /// The registry as written (cut).
        host: String,
        /// The well-known registry it is close to.
        known: &'static str,
    },
    /// A `noswap_wildcards` entry naming a public registry many owners share.
    #[error(
        "`noswap_wildcards` entry `{entry}` names the public registry `{public}`, which many owners share: /mutate \
         leaves all its images alone, and the leak guard and audit admit every image under it, anyone's; to \
         leave only yours alone, write a host/path prefix (`{public}/your-org`)"
    )]
    PublicWildcard {
        /// The entry as written (cut).
        entry: String,
        /// The public registry it names.
        public: &'static str,
    },
    /// A `[REPLACE]` glob that an earlier glob always matches first.
    #[error("never applies: the earlier glob `{earlier}` at line {line} matches every reference it matches")]
    ShadowedGlob {
        /// The earlier pattern.
        earlier: String,
        /// Its line.
        line: u32,
    },
    /// More rules than one rule set may hold ([`MAX_RULES`]); reading stopped here.
    #[error("more than {0} rules: reading stopped here (mirror whole registries or paths rather than single images)")]
    TooManyRules(usize),
    /// So many errors that the text is not a rules file ([`MAX_ERRORS`]); reading stopped here.
    #[error("{0} errors: reading stopped here (is this a rules file?)")]
    TooManyErrors(usize),
    /// Warnings beyond [`MAX_WARNINGS`], counted but not listed.
    #[error("{0} more warnings not shown")]
    WarningsNotShown(usize),
}

impl Problem {
    /// A problem with the whole text rather than one line: it fails the load even with
    /// `--lenient`, which would otherwise load the part read before it.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::TooManyRules(_) | Self::TooManyErrors(_))
    }
}

/// Most rules one text may hold. Real rule sets have tens to thousands; the bound keeps
/// the memory of a load proportional to a sane file whatever a 32 MiB text holds.
pub const MAX_RULES: usize = 50_000;
/// Errors after which a text is not read further.
pub const MAX_ERRORS: usize = 1_000;
/// Warnings listed; more are counted in one [`Problem::WarningsNotShown`].
pub const MAX_WARNINGS: usize = 1_000;

/// Bounds what parsing one text may produce ([`MAX_RULES`], [`MAX_ERRORS`],
/// [`MAX_WARNINGS`]), so that its memory does not grow with the number of lines.
#[derive(Debug, Default)]
pub struct Budget {
    errors: usize,
    warnings: usize,
    dropped_warnings: usize,
}

impl Budget {
    /// Accounts for `diagnostics[seen..]`, just found on `line`, with `rules` pairs read so
    /// far: warnings over the bound are dropped and counted. True, with the error pushed,
    /// when reading must stop.
    pub fn settle(&mut self, line: u32, rules: usize, diagnostics: &mut Vec<Diagnostic>, seen: usize) -> bool {
        let mut index = seen;
        while index < diagnostics.len() {
            if diagnostics[index].severity == Severity::Error {
                self.errors += 1;
            } else if self.warnings < MAX_WARNINGS {
                self.warnings += 1;
            } else {
                diagnostics.remove(index);
                self.dropped_warnings += 1;
                continue;
            }
            index += 1;
        }
        let stop = if rules > MAX_RULES {
            Problem::TooManyRules(MAX_RULES)
        } else if self.errors >= MAX_ERRORS {
            Problem::TooManyErrors(MAX_ERRORS)
        } else {
            return false;
        };
        diagnostics.push(Diagnostic::error(line, stop));
        true
    }

    /// Ends the text: the count of warnings not listed, if any.
    pub fn finish(self, diagnostics: &mut Vec<Diagnostic>) {
        if self.dropped_warnings > 0 {
            diagnostics.push(Diagnostic::warning(0, Problem::WarningsNotShown(self.dropped_warnings)));
        }
    }
}

/// A problem and the line it is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line (0 when the problem is not tied to a line).
    pub line: u32,
    /// How serious it is.
    pub severity: Severity,
    /// What is wrong.
    pub problem: Problem,
}

impl Diagnostic {
    /// An error on `line`.
    pub fn error(line: u32, problem: Problem) -> Self {
        Self { line, severity: Severity::Error, problem }
    }

    /// A warning on `line`.
    pub fn warning(line: u32, problem: Problem) -> Self {
        Self { line, severity: Severity::Warning, problem }
    }

    /// `LINE: reason`, with `warning: `/`skipped: ` before warnings and skipped lines.
    /// Prefix it with `FILE:` for the `FILE:LINE: reason` form.
    pub fn with_origin(&self, origin: &str) -> String {
        format!("{origin}:{self}")
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "",
            Severity::Skipped => "skipped: ",
            Severity::Warning => "warning: ",
        };
        write!(f, "{}: {label}{}", self.line, self.problem)
    }
}

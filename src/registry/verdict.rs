//! What the `exists` policy decided for the images of one request: per image the verdict
//! (take a candidate, keep the original and why, or kept unasked over the request's lookup
//! limit), the digest a taken candidate is pinned to (`--pin-digest`), and every candidate
//! asked on the way, as `/mutate`, `rewrite --explain` and the tests read them.

use smallvec::SmallVec;

use super::client::{Answer, CheckError, Digest};
use crate::rewrite::Rule;

/// What to do with one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Rewrite to this candidate (an index into `RuleSet::candidates(image).targets`, and
    /// into [`Resolution::tried`], whose last entry it is).
    Take(usize),
    /// Keep the original, for this reason (`not in m.io/airgap (404)`, `mirror m.io/airgap: …`).
    Keep(String),
    /// Keep the original without a word of its own: no candidate was asked, the request had
    /// reached `--check-max-lookups` (one warning for the request says so).
    Unasked,
}

/// One candidate asked and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tried<'r> {
    /// The candidate image.
    pub image: String,
    /// The rule that produces it.
    pub rule: &'r Rule,
    /// The mirror it is in (the rule target's registry part), the metrics label.
    pub registry: &'r str,
    /// What the mirror said.
    pub outcome: Result<Answer, CheckError>,
    /// Whether the answer came from the cache.
    pub cached: bool,
}

impl Tried<'_> {
    /// What the mirror said, as `rewrite --explain` and `audit` show it: `present`,
    /// `absent (404)`, `absent: lacks linux/arm64` or `error: …`, with `, cached` when the
    /// answer was.
    pub fn answer(&self) -> String {
        let answer = match &self.outcome {
            Ok(Answer::Present(_)) => "present".to_owned(),
            Ok(Answer::Absent(status)) => format!("absent ({status})"),
            Ok(Answer::Lacks(platform)) => format!("absent: lacks {platform}"),
            Err(error) => format!("error: {error}"),
        };
        if self.cached { format!("{answer}, cached") } else { answer }
    }
}

/// What `--pin-digest` did to a taken candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pin {
    /// Nothing: pinning is off, no candidate was taken, or the candidate names its digest
    /// itself (a reference with a digest is left as it is).
    #[default]
    Off,
    /// Pinned to the digest the mirror gave for the candidate in its check.
    To(Digest),
    /// Pinning is on but the digest is not known: the candidate was taken on a failed lookup
    /// (`--on-check-error swap`), so it is rewritten unpinned.
    Unknown,
}

/// The verdict for one image and the candidates tried on the way (held inline when it is one,
/// as on a warm cache).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution<'r> {
    pub verdict: Verdict,
    pub tried: SmallVec<[Tried<'r>; 1]>,
    /// The taken candidate's pin.
    pub pin: Pin,
}

impl<'r> Resolution<'r> {
    /// The candidate taken: its image and rule (`None` when the original is kept).
    pub fn taken(&self) -> Option<&Tried<'r>> {
        match self.verdict {
            Verdict::Take(index) => self.tried.get(index),
            Verdict::Keep(_) | Verdict::Unasked => None,
        }
    }

    /// The image the original becomes: the taken candidate, `@sha256:…` appended when it is
    /// pinned (`None` when the original is kept).
    pub fn target(&self) -> Option<String> {
        let image = &self.taken()?.image;
        Some(match self.pin {
            Pin::To(digest) => digest.pinned(image),
            _ => image.clone(),
        })
    }
}

/// Resolutions by image, for the images of one request that the rules would rewrite; sorted
/// by image, borrowing the images (from the request) and the rules.
#[derive(Clone, Debug, Default)]
pub struct Resolved<'r> {
    pub(super) by_image: Vec<ImageResolution<'r>>,
    /// The request's `--check-max-lookups`, and how many images it kept unasked.
    pub(super) limit: usize,
    pub(super) unasked: usize,
}

/// One image's resolution, and how many of the fields given to [`Resolver::resolve`] have
/// that image and are still to [`Resolved::choose`].
#[derive(Clone, Debug)]
pub(super) struct ImageResolution<'r> {
    pub(super) image: &'r str,
    pub(super) resolution: Resolution<'r>,
    pub(super) uses: u32,
}

/// What one image field becomes, as [`Resolved::choose`] says.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice<'a, 'r> {
    /// The taken candidate's image (pinned when its [`Pin`] says so), the rule that made it,
    /// and the pin.
    Take(String, &'r Rule, Pin),
    /// The original stays, for this reason.
    Keep(&'a str),
    /// The original stays, unasked: [`Resolved::limit_warning`] speaks for all such images.
    Unasked,
}

impl<'r> Resolved<'r> {
    /// The resolution of `image`; `None` for an image the rules leave alone (no lookup).
    pub fn get(&self, image: &str) -> Option<&Resolution<'r>> {
        self.position(image).map(|found| &self.by_image[found].resolution)
    }

    /// What one field with `image` becomes. The taken image (pinned when the resolution says
    /// so) is copied for each field but the last of those given to [`Resolver::resolve`], which
    /// gets it moved. `None` for an image
    /// not resolved (the rules leave it alone), and for a field beyond those given, whose
    /// image was moved already: the caller answers those as the rules alone would. Once moved,
    /// the taken candidate's image in [`Resolved::get`]'s answer is empty.
    pub fn choose(&mut self, image: &str) -> Option<Choice<'_, 'r>> {
        let found = self.position(image)?;
        let entry = &mut self.by_image[found];
        match &entry.resolution.verdict {
            Verdict::Keep(why) => Some(Choice::Keep(why)),
            Verdict::Unasked => Some(Choice::Unasked),
            Verdict::Take(index) => {
                let pin = entry.resolution.pin;
                let taken = entry.resolution.tried.get_mut(*index)?;
                entry.uses = entry.uses.checked_sub(1)?;
                let image = match pin {
                    Pin::To(digest) => digest.pinned(&taken.image),
                    _ if entry.uses == 0 => std::mem::take(&mut taken.image),
                    _ => taken.image.clone(),
                };
                Some(Choice::Take(image, taken.rule, pin))
            }
        }
    }

    /// The images kept because every candidate answered a definite "absent" (no failure,
    /// timeout, limit or foreign registry among them), each with its first candidate in rule
    /// order: what `serve --copy-on-miss` may copy.
    pub fn misses(&self) -> impl Iterator<Item = (&'r str, &Tried<'r>)> + '_ {
        self.by_image.iter().filter_map(|entry| {
            let resolution = &entry.resolution;
            let all_absent = !resolution.tried.is_empty()
                && resolution.tried.iter().all(|tried| matches!(tried.outcome, Ok(Answer::Absent(_))));
            match resolution.verdict {
                Verdict::Keep(_) if all_absent => Some((entry.image, &resolution.tried[0])),
                _ => None,
            }
        })
    }

    /// Appends `more` to the reason `image` is kept (`; copying it to …`).
    pub fn add_to_reason(&mut self, image: &str, more: &str) {
        if let Some(found) = self.position(image)
            && let Verdict::Keep(why) = &mut self.by_image[found].resolution.verdict
        {
            why.push_str(more);
        }
    }

    /// The one warning for the images kept unasked, when there are any.
    pub fn limit_warning(&self) -> Option<String> {
        (self.unasked > 0).then(|| {
            format!(
                "mirrorswap kept {} image(s) of this object without asking the registries: the request reached \
                 --check-max-lookups ({}); answers cached by earlier requests are used, the rest are asked by later ones",
                self.unasked, self.limit
            )
        })
    }

    pub(super) fn position(&self, image: &str) -> Option<usize> {
        self.by_image.binary_search_by(|known| known.image.cmp(image)).ok()
    }
}

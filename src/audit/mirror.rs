//! What `audit` asks the mirrors (`--check-mirror`, `--swap-policy exists`), through the
//! registry resolver `serve` uses: whether each image pulled from a mirror is there (with its
//! digest and, under `--require-platforms`, its platforms), and what the server's policy
//! decides for each image the rules rewrite (pinned under `--pin-digest`). And, with
//! `--check-source`, what each image's source now serves for its tag ([`check_sources`]), so
//! a mirror copy whose source tag moved is `drifted`. Used by [`super::plan`].

use std::collections::HashMap;

use futures::StreamExt;

use super::{CandidateAnswer, Look, MirrorState, Row, RuleRef, Swap};
use crate::credentials::RegistryInfo;
use crate::registry::{Answer, CheckArgs, Digest, OnCheckError, Pinning, Resolution, Resolver, Tried, Verdict};
use crate::rules_file::Loaded;

/// How the mirrors are asked.
#[derive(Clone, Debug)]
pub struct MirrorCheck {
    /// The registry flags: credentials, TLS, `--check-timeout` per lookup, the answer cache.
    pub check: CheckArgs,
    /// Lookups in flight at once (`--check-concurrency`).
    pub concurrency: usize,
    /// With `--swap-policy exists`, its `--on-check-error`: the images the rules rewrite are
    /// decided as the server decides them ([`swap_decisions`]). `None` (`--check-mirror`
    /// alone): each is looked up as the rules rewrite it.
    pub swap: Option<OnCheckError>,
    /// `--pin-digest`, `--require-platforms`; digests are learned whenever sources are asked.
    pub pinning: Pinning,
    /// `--check-source`: the registry flags with `--source-auth` as the credentials, for the
    /// sources.
    pub sources: Option<CheckArgs>,
}

/// `--check-mirror`: each image asked of its registry through one resolver (cache, backoff,
/// `--check-timeout` per lookup), `--check-concurrency` at a time. A failed lookup is `error`,
/// with one line on stderr naming the image and why (never a credential).
pub async fn check_mirrors(
    mirror: &MirrorCheck,
    palette: Option<RegistryInfo>,
    images: &[String],
) -> anyhow::Result<HashMap<String, Look>> {
    let resolver = Resolver::new(&mirror.check, OnCheckError::Keep, usize::MAX, None)?.with_pinning(mirror.learns());
    resolver.set_palette(palette);
    let resolver = &resolver;
    let answers: Vec<(String, Look)> = futures::stream::iter(images)
        .map(|image| async move {
            let look = match resolver.presence(image).await {
                Ok(Answer::Present(found)) => Look { state: MirrorState::Present, found: Some(found) },
                Ok(Answer::Absent(_)) => Look { state: MirrorState::Absent, found: None },
                Ok(Answer::Lacks(platform)) => {
                    eprintln!("warning: {image} lacks {platform}");
                    Look { state: MirrorState::Absent, found: None }
                }
                Err(error) => {
                    eprintln!("warning: could not check {image}: {error}");
                    Look { state: MirrorState::Error, found: None }
                }
            };
            (image.clone(), look)
        })
        .buffer_unordered(mirror.concurrency)
        .collect()
        .await;
    Ok(answers.into_iter().collect())
}

/// `--swap-policy exists`: each image the rules would rewrite, decided by the server's own
/// policy ([`Resolver::resolve`]): its candidates in rule order, the first present taken,
/// `--on-check-error` for failed lookups. Asked image by image (`--check-concurrency` at a
/// time), each with its own `--check-timeout` and every candidate it has: the server's
/// per-request `--check-max-lookups` bounds what one Pod costs the mirror, but here a shared
/// budget would leave images "not asked" depending only on their order in the input, so that
/// the report would not say what the server decides for them.
pub async fn swap_decisions(
    mirror: &MirrorCheck,
    on_check_error: OnCheckError,
    palette: Option<RegistryInfo>,
    loaded: &Loaded,
    images: &[String],
) -> anyhow::Result<HashMap<String, Swap>> {
    let resolver = Resolver::new(&mirror.check, on_check_error, usize::MAX, None)?.with_pinning(mirror.learns());
    resolver.set_palette(palette);
    let (resolver, rules, origin) = (&resolver, &loaded.rules, loaded.origin.as_str());
    let decisions: Vec<Option<(String, Swap)>> = futures::stream::iter(images)
        .map(|image| async move {
            let resolved = resolver.resolve(rules, &[image.as_str()]).await;
            let resolution = resolved.get(image)?;
            Some((image.clone(), swap_of(resolution, origin)))
        })
        .buffer_unordered(mirror.concurrency)
        .collect()
        .await;
    Ok(decisions.into_iter().flatten().collect())
}

/// A resolution as the report shows it.
fn swap_of(resolution: &Resolution<'_>, origin: &str) -> Swap {
    let candidates = resolution
        .tried
        .iter()
        .map(|tried| CandidateAnswer {
            image: tried.image.clone(),
            rule: RuleRef::of(tried.rule, origin),
            answer: tried.answer(),
        })
        .collect();
    let taken =
        resolution.target().zip(resolution.taken()).map(|(image, tried)| (image, RuleRef::of(tried.rule, origin)));
    let found = resolution.taken().and_then(|tried| tried.outcome.as_ref().ok()?.found().cloned());
    let state = match resolution.taken() {
        Some(Tried { outcome: Ok(Answer::Present(_)), .. }) => MirrorState::Present,
        Some(_) => MirrorState::Error,
        None if resolution
            .tried
            .iter()
            .all(|tried| matches!(tried.outcome, Ok(Answer::Absent(_) | Answer::Lacks(_)))) =>
        {
            MirrorState::Absent
        }
        None => MirrorState::Error,
    };
    let kept_because = match &resolution.verdict {
        Verdict::Keep(why) => Some(format!("kept, as the server would keep it: {why}")),
        Verdict::Unasked => Some("kept: no candidate was asked".to_owned()),
        Verdict::Take(_) => None,
    };
    Swap { taken, state, found, candidates, kept_because }
}

impl MirrorCheck {
    /// What the mirrors' lookups learn: the flags' pinning, and the digests when the sources
    /// are asked (drift compares them).
    fn learns(&self) -> Pinning {
        Pinning { digests: self.sources.is_some(), ..self.pinning.clone() }
    }
}

/// `--check-source`: for each row whose image the rules send to a mirror that has it (with a
/// digest known), and which names no digest itself, the digest its source now gives for the
/// tag (`--source-auth`'s credentials, the other registry flags as for the mirrors,
/// `--check-concurrency` at a time). A different one makes the row `drifted`. A source that
/// cannot be asked, or no longer has the tag, is said on stderr and changes nothing.
pub async fn check_sources(sources: &CheckArgs, concurrency: usize, rows: &mut [Row]) -> anyhow::Result<()> {
    let pinning = Pinning { digests: true, ..Pinning::default() };
    let resolver = Resolver::new(sources, OnCheckError::Keep, usize::MAX, None)?.with_pinning(pinning);
    let resolver = &resolver;
    let asked: Vec<(usize, String)> = rows
        .iter()
        .enumerate()
        .filter(|(_, row)| row.mirror == Some(MirrorState::Present) && row.digest.is_some() && row.rewritten.is_some())
        .filter(|(_, row)| !crate::rewrite::mirrored::pinned(&row.image))
        .map(|(index, row)| (index, row.image.clone()))
        .collect();
    let answers: Vec<(usize, Option<Digest>)> = futures::stream::iter(asked)
        .map(|(index, image)| async move {
            let digest = match resolver.presence(&image).await {
                Ok(Answer::Present(found)) => found.digest,
                Ok(_) => {
                    eprintln!("warning: the source of {image} does not have it any more (404)");
                    None
                }
                Err(error) => {
                    eprintln!("warning: could not check the source of {image}: {error}");
                    None
                }
            };
            (index, digest)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (index, digest) in answers {
        let Some(row) = rows.get_mut(index) else { continue };
        let Some(digest) = digest else {
            row.source_failed = true;
            continue;
        };
        let source = digest.to_string();
        if row.digest.as_deref() != Some(source.as_str()) {
            row.mirror = Some(MirrorState::Drifted);
        }
        row.source_digest = Some(source);
    }
    Ok(())
}

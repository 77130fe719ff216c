//! What `audit` asks the mirrors (`--check-mirror`, `--swap-policy exists`), through the
//! registry resolver `serve` uses: whether each image pulled from a mirror is there, and what
//! the server's policy decides for each image the rules rewrite. Used by [`super::plan`].

use std::collections::HashMap;

use futures::StreamExt;

use super::{CandidateAnswer, MirrorState, RuleRef, Swap};
use crate::credentials::RegistryInfo;
use crate::registry::{Answer, CheckArgs, OnCheckError, Resolution, Resolver, Tried, Verdict};
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
}

/// `--check-mirror`: each image asked of its registry through one resolver (cache, backoff,
/// `--check-timeout` per lookup), `--check-concurrency` at a time. A failed lookup is `error`,
/// with one line on stderr naming the image and why (never a credential).
pub async fn check_mirrors(
    mirror: &MirrorCheck,
    palette: Option<RegistryInfo>,
    images: &[String],
) -> anyhow::Result<HashMap<String, MirrorState>> {
    let resolver = Resolver::new(&mirror.check, OnCheckError::Keep, usize::MAX, None)?;
    resolver.set_palette(palette);
    let resolver = &resolver;
    let answers: Vec<(String, MirrorState)> = futures::stream::iter(images)
        .map(|image| async move {
            let state = match resolver.presence(image).await {
                Ok(Answer::Present(_)) => MirrorState::Present,
                Ok(Answer::Absent(_) | Answer::Lacks(_)) => MirrorState::Absent,
                Err(error) => {
                    eprintln!("warning: could not check {image}: {error}");
                    MirrorState::Error
                }
            };
            (image.clone(), state)
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
    let resolver = Resolver::new(&mirror.check, on_check_error, usize::MAX, None)?;
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
    let taken = resolution.taken().map(|tried| (tried.image.clone(), RuleRef::of(tried.rule, origin)));
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
    Swap { taken, state, candidates, kept_because }
}

//! The `exists` policy: for each image, the rules' candidates in order, each asked of its
//! mirror (through the cache) until one has it. All lookups of one admission request run
//! concurrently under one deadline (`--check-timeout`); a registry that just failed is not
//! asked again for `--check-backoff`; `--on-check-error` says what a failed lookup means.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use smallvec::{SmallVec, smallvec};
use tracing::info;

use super::args::{CheckArgs, OnCheckError};
use super::auth_file::AuthFile;
use super::cache::CheckCache;
use super::client::{Answer, CheckError, Checker, ClientSettings};
use super::metrics::RegistryMetrics;
use crate::credentials::RegistryInfo;
use crate::rewrite::{Candidate, Decision, Rule, RuleSet, reference};

/// What to do with one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Rewrite to this candidate (an index into `RuleSet::candidates(image).targets`, and
    /// into [`Resolution::tried`], whose last entry it is).
    Take(usize),
    /// Keep the original, for this reason (`not in m.io/airgap (404)`, `mirror unreachable: …`).
    Keep(String),
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

/// The verdict for one image and the candidates tried on the way (held inline when it is one,
/// as on a warm cache).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution<'r> {
    pub verdict: Verdict,
    pub tried: SmallVec<[Tried<'r>; 1]>,
}

impl<'r> Resolution<'r> {
    /// The candidate taken: its image and rule (`None` when the original is kept).
    pub fn taken(&self) -> Option<&Tried<'r>> {
        match self.verdict {
            Verdict::Take(index) => self.tried.get(index),
            Verdict::Keep(_) => None,
        }
    }
}

/// Resolutions by image, for the images of one request that the rules would rewrite; sorted
/// by image, borrowing the images (from the request) and the rules.
#[derive(Clone, Debug, Default)]
pub struct Resolved<'r> {
    by_image: Vec<ImageResolution<'r>>,
}

/// One image's resolution, and how many of the fields given to [`Resolver::resolve`] have
/// that image and are still to [`Resolved::choose`].
#[derive(Clone, Debug)]
struct ImageResolution<'r> {
    image: &'r str,
    resolution: Resolution<'r>,
    uses: u32,
}

/// What one image field becomes, as [`Resolved::choose`] says.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice<'a, 'r> {
    /// The taken candidate's image, and the rule that made it.
    Take(String, &'r Rule),
    /// The original stays, for this reason.
    Keep(&'a str),
}

impl<'r> Resolved<'r> {
    /// The resolution of `image`; `None` for an image the rules leave alone (no lookup).
    pub fn get(&self, image: &str) -> Option<&Resolution<'r>> {
        self.position(image).map(|found| &self.by_image[found].resolution)
    }

    /// What one field with `image` becomes. The taken image is copied for each field but the
    /// last of those given to [`Resolver::resolve`], which gets it moved. `None` for an image
    /// not resolved (the rules leave it alone), and for a field beyond those given, whose
    /// image was moved already: the caller answers those as the rules alone would. Once moved,
    /// the taken candidate's image in [`Resolved::get`]'s answer is empty.
    pub fn choose(&mut self, image: &str) -> Option<Choice<'_, 'r>> {
        let found = self.position(image)?;
        let entry = &mut self.by_image[found];
        match &entry.resolution.verdict {
            Verdict::Keep(why) => Some(Choice::Keep(why)),
            Verdict::Take(index) => {
                let taken = entry.resolution.tried.get_mut(*index)?;
                entry.uses = entry.uses.checked_sub(1)?;
                let image = if entry.uses == 0 { std::mem::take(&mut taken.image) } else { taken.image.clone() };
                Some(Choice::Take(image, taken.rule))
            }
        }
    }

    fn position(&self, image: &str) -> Option<usize> {
        self.by_image.binary_search_by(|known| known.image.cmp(image)).ok()
    }
}

/// Timing and failure settings of the checks.
#[derive(Clone, Copy, Debug)]
pub struct CheckSettings {
    pub timeout: Duration,
    pub backoff: Duration,
    pub on_error: OnCheckError,
}

/// Decides, with the registries' help, which candidate each image gets. Cheap to share.
pub struct Resolver {
    checker: ArcSwap<Checker>,
    client: ClientSettings,
    /// `--registry-auth` and Palette's Secret, the inputs the checker is rebuilt from.
    sources: Mutex<(AuthFile, Option<RegistryInfo>)>,
    cache: CheckCache,
    failed: Mutex<HashMap<String, Instant>>,
    settings: CheckSettings,
    metrics: Option<RegistryMetrics>,
}

/// A resolver that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("--registry-ca {path}: {source}")]
    Ca { path: String, source: std::io::Error },
    #[error("--registry-ca {path}: no PEM certificate in it")]
    CaEmpty { path: String },
    #[error(transparent)]
    Auth(#[from] super::auth_file::AuthFileError),
}

impl Resolver {
    /// Builds the clients and the cache from the flags (reads `--registry-ca` and `--registry-auth`).
    /// `on_error` says what a failed lookup means for [`Self::resolve`].
    pub fn new(
        args: &CheckArgs,
        on_error: OnCheckError,
        metrics: Option<RegistryMetrics>,
    ) -> Result<Self, ResolverError> {
        let ca_pem = match &args.registry_ca {
            Some(path) => {
                let name = path.display().to_string();
                let pem = std::fs::read(path).map_err(|source| ResolverError::Ca { path: name.clone(), source })?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(ResolverError::CaEmpty { path: name });
                }
                Some(pem)
            }
            None => None,
        };
        let auth = match &args.registry_auth {
            Some(path) => AuthFile::load(path)?,
            None => AuthFile::default(),
        };
        let client = ClientSettings { ca_pem, insecure: args.insecure_registries.clone(), timeout: args.check_timeout };
        let settings = CheckSettings { timeout: args.check_timeout, backoff: args.check_backoff, on_error };
        Ok(Self {
            checker: ArcSwap::from_pointee(Checker::new(&client, auth.clone())),
            client,
            sources: Mutex::new((auth, None)),
            cache: CheckCache::new(args.check_cache_entries, args.check_cache_ttl, args.check_negative_ttl),
            failed: Mutex::new(HashMap::new()),
            settings,
            metrics,
        })
    }

    /// Swaps in new credentials (a reloaded `--registry-auth`); cached answers are dropped.
    pub fn set_auth(&self, auth: AuthFile) {
        let mut sources = self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sources.0 = auth;
        self.rebuild(&sources);
    }

    /// Uses the mirror settings of Palette's `registry-info` Secret (when the rules come from
    /// it): its credentials (unless `--registry-auth` has the registry), CA and `INSECURE`.
    /// Unchanged settings (a relist) change nothing.
    pub fn set_palette(&self, palette: Option<RegistryInfo>) {
        let mut sources = self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if sources.1 == palette {
            return;
        }
        sources.1 = palette;
        self.rebuild(&sources);
    }

    /// New clients from the current inputs; cached answers and backoffs are dropped.
    fn rebuild(&self, (auth, palette): &(AuthFile, Option<RegistryInfo>)) {
        let (mut auth, mut client) = (auth.clone(), self.client.clone());
        if let Some(palette) = palette {
            if let (None, Some(login)) = (auth.get(&palette.registry), palette.credential("registry-info")) {
                auth.insert(&palette.registry, login.username, login.password.expose().to_owned());
            }
            if let Some(pem) = &palette.ca_cert {
                let mut bundle = client.ca_pem.take().unwrap_or_default();
                bundle.push(b'\n');
                bundle.extend_from_slice(pem.expose().as_bytes());
                client.ca_pem = Some(bundle);
            }
            if palette.insecure {
                client.insecure.push(palette.registry.clone());
            }
        }
        self.checker.store(Arc::new(Checker::new(&client, auth)));
        self.cache.clear();
        self.failed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }

    /// The answer cache (for its size).
    pub fn cache(&self) -> &CheckCache {
        &self.cache
    }

    /// Resolves every image of one request that the rules would rewrite, concurrently, all
    /// within one `--check-timeout` from now.
    pub async fn resolve<'r>(&self, rules: &'r RuleSet, images: &[&'r str]) -> Resolved<'r> {
        let mut by_image: Vec<(&str, u32, Option<Resolution<'r>>)> =
            images.iter().map(|image| (*image, 1, None)).collect();
        by_image.sort_unstable_by_key(|(image, _, _)| *image);
        by_image.dedup_by(|(image, _, _), (kept, uses, _)| {
            let same = image == kept;
            *uses = uses.saturating_add(u32::from(same));
            same
        });
        let mut warm_hits = 0_usize;
        for (image, _, known) in &mut by_image {
            // The warm path: the first candidate is rewrite()'s answer, and a cached "present"
            // for it decides at once, without listing the other candidates.
            if let Decision::Rewritten { image: first, rule } = rules.rewrite(image)
                && self.cache.is_present(&first)
            {
                warm_hits += 1;
                let registry = mirror_label(rule.target.as_str());
                let tried =
                    smallvec![Tried { image: first, rule, registry, outcome: Ok(Answer::Present), cached: true }];
                *known = Some(Resolution { verdict: Verdict::Take(0), tried });
            }
        }
        // Counted once per request: the counter is shared by every worker.
        if let (Some(metrics), 1..) = (&self.metrics, warm_hits) {
            metrics.cache_hit.inc_by(warm_hits as u64);
        }
        // The rest are asked, concurrently, under one deadline (nothing is, on a warm cache).
        if warm_hits < by_image.len() {
            let deadline = tokio::time::Instant::now() + self.settings.timeout;
            let lookups =
                by_image.iter_mut().filter(|(_, _, known)| known.is_none()).filter_map(|(image, _, known)| {
                    let candidates = rules.candidates(image);
                    if candidates.targets.is_empty() {
                        return None;
                    }
                    Some(async move { *known = Some(self.resolve_one(candidates.targets, deadline).await) })
                });
            futures::future::join_all(lookups).await;
        }
        let by_image = by_image
            .into_iter()
            .filter_map(|(image, uses, known)| Some(ImageResolution { image, resolution: known?, uses }))
            .collect();
        Resolved { by_image }
    }

    /// Whether the registry `image` names has it: one lookup through the cache and the
    /// backoff, as a candidate is asked, within one `--check-timeout` from now
    /// (`audit --check-mirror`). The metrics label is the image's registry.
    pub async fn presence(&self, image: &str) -> Result<Answer, CheckError> {
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        self.check(&registry_host(image), image, deadline).await.0
    }

    /// Tries `targets` (most specific first) in order.
    async fn resolve_one<'r>(&self, targets: Vec<Candidate<'r>>, deadline: tokio::time::Instant) -> Resolution<'r> {
        let mut tried = SmallVec::with_capacity(targets.len());
        let mut reasons = Vec::new();
        for (index, Candidate { image, rule }) in targets.into_iter().enumerate() {
            let registry = mirror_label(rule.target.as_str());
            let (outcome, cached) = self.check(registry, &image, deadline).await;
            let take = match &outcome {
                Ok(Answer::Present) => true,
                Ok(Answer::Absent(status)) => {
                    reasons.push(format!("not in {registry} ({status})"));
                    false
                }
                Err(error) => {
                    reasons.push(format!("mirror {registry} unreachable: {error}"));
                    self.settings.on_error == OnCheckError::Swap
                }
            };
            tried.push(Tried { image, rule, registry, outcome, cached });
            if take {
                return Resolution { verdict: Verdict::Take(index), tried };
            }
        }
        Resolution { verdict: Verdict::Keep(reasons.join("; ")), tried }
    }

    /// One candidate: backoff, then the cache or a lookup, bounded by `deadline`.
    async fn check(
        &self,
        registry: &str,
        image: &str,
        deadline: tokio::time::Instant,
    ) -> (Result<Answer, CheckError>, bool) {
        // A known answer is served as is, even while its registry is backing off: the hot
        // path of a warm cache, and images known present stay rewritten during an outage.
        if let Some(answer) = self.cache.cached(image).await {
            if let Some(metrics) = &self.metrics {
                metrics.cache_hit.inc();
            }
            return (Ok(answer), true);
        }
        let host = registry_host(image);
        if let Some(error) = self.backing_off(&host) {
            self.count(registry, error.label());
            return (Err(error), false);
        }
        let lookup = self.lookup(registry.to_owned(), image.to_owned());
        let (outcome, cached) = match tokio::time::timeout_at(deadline, self.cache.get_or_check(image, lookup)).await {
            Ok(answer) => answer,
            Err(_) => {
                // Counted here: the lookup itself may still finish and fill the cache.
                self.count(registry, "timeout");
                (Err(CheckError::Timeout(self.settings.timeout)), false)
            }
        };
        if let Some(metrics) = &self.metrics {
            if cached { &metrics.cache_hit } else { &metrics.cache_miss }.inc();
        }
        if outcome.as_ref().is_err_and(CheckError::is_outage) {
            self.failed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(host, Instant::now());
        }
        (outcome, cached)
    }

    /// The real lookup, on its own task (it outlives a caller that gave up, and a panic in the
    /// client stays there), bounded by `--check-timeout`.
    fn lookup(&self, registry: String, image: String) -> impl Future<Output = Result<Answer, CheckError>> + use<> {
        let checker = self.checker.load_full();
        let (timeout, metrics) = (self.settings.timeout, self.metrics.clone());
        async move {
            let started = Instant::now();
            let task = tokio::spawn(async move { tokio::time::timeout(timeout, checker.check(&image)).await });
            let outcome = match task.await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err(CheckError::Timeout(timeout)),
                Err(_) => Err(CheckError::Transport("the registry client failed".into())),
            };
            let outcome = match outcome {
                Err(CheckError::Timeout(_)) => Err(CheckError::Timeout(timeout)),
                other => other,
            };
            let took = started.elapsed();
            let result = match &outcome {
                Ok(Answer::Present) => "present",
                Ok(Answer::Absent(_)) => "absent",
                Err(error) => error.label(),
            };
            if let Some(metrics) = &metrics {
                metrics.checks.with_label_values(&[&registry, result]).inc();
                metrics.duration.observe(took.as_secs_f64());
            }
            if let Err(error) = &outcome {
                info!(%registry, status = %error, took = ?took, "registry check failed");
            }
            outcome
        }
    }

    /// The backoff error while `host` is in its backoff window.
    fn backing_off(&self, host: &str) -> Option<CheckError> {
        let mut failed = self.failed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let since = *failed.get(host)?;
        let ago = since.elapsed();
        if ago >= self.settings.backoff {
            failed.remove(host);
            return None;
        }
        Some(CheckError::BackingOff { ago: round(ago), left: round(self.settings.backoff - ago) })
    }

    fn count(&self, registry: &str, result: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.checks.with_label_values(&[registry, result]).inc();
        }
    }
}

/// Milliseconds are enough for a message.
fn round(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis().try_into().unwrap_or(u64::MAX))
}

/// The mirror a rule target names: the target without a trailing `-` (`harbor.example.org/airgap-images`).
fn mirror_label(target: &str) -> &str {
    target.trim_end_matches('-').trim_end_matches('/')
}

/// The registry (`host[:port]`) of a candidate image.
fn registry_host(image: &str) -> String {
    reference::parse(image).map_or_else(|_| image.to_owned(), |parsed| parsed.registry_key().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{Options, compile_maps};

    fn resolver() -> Resolver {
        let args = CheckArgs {
            registry_auth: None,
            registry_ca: None,
            insecure_registries: Vec::new(),
            check_timeout: Duration::from_secs(1),
            check_cache_ttl: Duration::from_secs(3600),
            check_negative_ttl: Duration::from_secs(3600),
            check_cache_entries: 100,
            check_backoff: Duration::from_secs(5),
        };
        Resolver::new(&args, OnCheckError::Keep, None).expect("resolver")
    }

    /// Fields sharing an image each get the taken image (copied, then moved at the last);
    /// a field beyond those given gets `None`; a kept image says why.
    #[tokio::test]
    async fn choose_answers_every_field_given_once() {
        let rules = compile_maps("docker.io::mirror.invalid/hub\n", Options::default()).expect("rules").rules;
        let resolver = resolver();
        let target = |image: &str| match rules.rewrite(image) {
            Decision::Rewritten { image, .. } => image,
            Decision::Unchanged(reason) => panic!("{image} not rewritten: {reason:?}"),
        };
        let cache = resolver.cache();
        let (present, _) = cache.get_or_check(&target("nginx:1"), async { Ok(Answer::Present) }).await;
        let (absent, _) = cache.get_or_check(&target("redis:7"), async { Ok(Answer::Absent(404)) }).await;
        assert_eq!((present, absent), (Ok(Answer::Present), Ok(Answer::Absent(404))));

        let images = ["nginx:1", "redis:7", "nginx:1", "quay.io/left/alone:1"];
        let mut resolved = resolver.resolve(&rules, &images).await;
        let present = target("nginx:1");
        for _ in 0..2 {
            match resolved.choose("nginx:1") {
                Some(Choice::Take(image, rule)) => {
                    assert_eq!((image.as_str(), &*rule.source), (present.as_str(), "docker.io"))
                }
                other => panic!("nginx:1 taken, got {other:?}"),
            }
        }
        assert_eq!(resolved.choose("nginx:1"), None, "a third field was not given");
        assert!(matches!(resolved.choose("redis:7"), Some(Choice::Keep(why)) if why.contains("(404)")));
        assert_eq!(resolved.choose("quay.io/left/alone:1"), None, "no rule: not resolved");
        assert!(resolved.get("nginx:1").is_some_and(|resolution| resolution.verdict == Verdict::Take(0)));
    }
}

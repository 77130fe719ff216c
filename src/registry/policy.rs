//! The `exists` policy: for each image, the rules' candidates, each asked of its mirror
//! (through the cache) and the first present one in rule order taken. Every bound is here:
//!
//! - One deadline per request (`--check-timeout` from its start). The candidates of an image
//!   are asked at once, so a stalled first candidate cannot hide a healthy second one: at the
//!   deadline the stalled one counts as failed and the next present one is taken.
//! - At most `--check-max-lookups` lookups per request (the rest are decided from the cache or
//!   kept unasked, with one warning for the request), and at most `--check-host-concurrency`
//!   in flight per registry host across all requests; a lookup waits for a slot only within
//!   its request's deadline.
//! - A candidate is asked only when it is pulled from exactly its rule target's registry
//!   ([`mirrored::pulls_from_target`]): an image cannot pick the port or host that receives
//!   the mirror's credentials, nor use the warnings to scan ports.
//! - A host whose registry failed is not asked for `--check-backoff` ([`super::hosts`]);
//!   only a lookup that had its full `--check-timeout` can time its host out.
//! - `--on-check-error` says what a failed lookup means when no candidate is present.
//! - `--pin-digest` ([`Pinning`]): a taken candidate is pinned to the digest its check gave
//!   (cached with the answer); `--require-platforms`: a present candidate whose index or
//!   config lacks a required platform is `absent: lacks os/arch`, and the next is tried.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use smallvec::{SmallVec, smallvec};
use tokio::time::Instant as Deadline;
use tracing::{info, warn};

use super::args::{CheckArgs, OnCheckError};
use super::auth_file::AuthFile;
use super::cache::CheckCache;
use super::client::{Answer, CheckError, Checker, ClientError, ClientSettings, Depth, Found, NotAsked};
use super::hosts::{Host, Hosts, Pass};
use super::metrics::RegistryMetrics;
use super::platform::Platform;
use super::settings;
use super::verdict::ImageResolution;
pub use super::verdict::{Choice, Pin, Resolution, Resolved, Tried, Verdict};
use crate::credentials::RegistryInfo;
use crate::rewrite::{Candidate, Decision, RuleSet, mirrored, reference};

/// Timing, limits and failure settings of the checks.
#[derive(Clone, Copy, Debug)]
pub struct CheckSettings {
    /// `--check-timeout`: a request's deadline, and the time one lookup is given.
    pub timeout: std::time::Duration,
    /// `--check-backoff`.
    pub backoff: std::time::Duration,
    pub on_error: OnCheckError,
    /// `--check-max-lookups`: lookups one request may start.
    pub max_lookups: usize,
}

/// What the resolver learns of, and asks of, a present candidate.
#[derive(Clone, Debug, Default)]
pub struct Pinning {
    /// `--pin-digest`: a taken candidate is pinned to its digest.
    pub pin: bool,
    /// Learn each present candidate's digest even without pinning (`audit --check-source`).
    pub digests: bool,
    /// `--require-platforms`: a candidate is present only when it covers each of these.
    pub platforms: Vec<Platform>,
}

impl Pinning {
    /// How much a lookup must learn for these settings.
    pub fn depth(&self) -> Depth {
        if !self.platforms.is_empty() {
            Depth::Platforms
        } else if self.pin || self.digests {
            Depth::Digest
        } else {
            Depth::Presence
        }
    }
}

/// Decides, with the registries' help, which candidate each image gets. Cheap to share.
pub struct Resolver {
    checker: ArcSwap<Checker>,
    client: ClientSettings,
    /// `--registry-auth` and Palette's Secret, the inputs the checker is rebuilt from.
    sources: Mutex<(AuthFile, Option<RegistryInfo>)>,
    cache: CheckCache,
    hosts: Hosts,
    settings: CheckSettings,
    metrics: Option<RegistryMetrics>,
    pinning: Pinning,
    /// What lookups learn ([`Pinning::depth`]).
    depth: Depth,
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
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl Resolver {
    /// Builds the clients and the cache from the flags (reads `--registry-ca` and
    /// `--registry-auth`). `on_error` and `max_lookups` are the policy's (`serve`, `rewrite`);
    /// `audit` asks one image at a time.
    pub fn new(
        args: &CheckArgs,
        on_error: OnCheckError,
        max_lookups: usize,
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
        let settings =
            CheckSettings { timeout: args.check_timeout, backoff: args.check_backoff, on_error, max_lookups };
        Ok(Self {
            checker: ArcSwap::from_pointee(Checker::new(&client, auth.clone())?),
            client,
            sources: Mutex::new((auth, None)),
            cache: CheckCache::new(args.check_cache_entries, args.check_cache_ttl, args.check_negative_ttl),
            hosts: Hosts::new(usize::from(args.check_host_concurrency), args.check_backoff, args.check_timeout),
            settings,
            metrics,
            pinning: Pinning::default(),
            depth: Depth::Presence,
        })
    }

    /// The resolver pinning and requiring platforms as `pinning` says. Set before the first
    /// lookup: cached answers hold what lookups learned.
    pub fn with_pinning(mut self, pinning: Pinning) -> Self {
        self.depth = pinning.depth();
        self.pinning = pinning;
        self
    }

    /// Whether taken candidates are pinned, or platforms required: the warm path then reads
    /// the cached value, not only its presence.
    fn reads_values(&self) -> bool {
        self.pinning.pin || !self.pinning.platforms.is_empty()
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

    /// New clients from the current inputs; cached answers and backoffs are dropped. A client
    /// that cannot be built keeps the old one (and says so).
    fn rebuild(&self, inputs: &(AuthFile, Option<RegistryInfo>)) {
        let (client, auth) = self.merged(inputs);
        match Checker::new(&client, auth) {
            Ok(checker) => self.checker.store(Arc::new(checker)),
            Err(error) => warn!(%error, "the registry client was not rebuilt; the previous settings stay"),
        }
        self.cache.clear();
        self.hosts.reset();
    }

    /// The mirror's client settings and credentials now (`--registry-auth` as last reloaded,
    /// Palette's `registry-info`): what `serve --copy-on-miss` writes to the mirror with.
    pub fn mirror_settings(&self) -> (ClientSettings, AuthFile) {
        let inputs = self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.merged(&inputs)
    }

    /// Forgets what is cached of `image` and asks its registry again, so that the answer
    /// cache holds what a lookup learns now (an image just copied there: "present", with its
    /// digest and platforms when pinning needs them).
    pub async fn relearn(&self, image: &str) -> Result<Answer, CheckError> {
        self.cache.forget(image).await;
        self.presence(image).await
    }

    /// The settings and credentials from `--registry-auth` and Palette's Secret.
    fn merged(&self, (auth, palette): &(AuthFile, Option<RegistryInfo>)) -> (ClientSettings, AuthFile) {
        let (mut auth, mut client) = (auth.clone(), self.client.clone());
        if let Some(palette) = palette {
            settings::with_palette(&mut auth, &mut client, palette);
        }
        (client, auth)
    }

    /// The answer cache (for its size).
    pub fn cache(&self) -> &CheckCache {
        &self.cache
    }

    /// Resolves every image of one request that the rules would rewrite, all within one
    /// `--check-timeout` from now and `--check-max-lookups` lookups, in the order given.
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
        let reads_values = self.reads_values();
        for (image, _, known) in &mut by_image {
            // The warm path: the first candidate is rewrite()'s answer, and a cached "present"
            // for it decides at once, without listing the other candidates. Without pinning or
            // platforms only its presence is read (no shared write); with them, its value.
            let Decision::Rewritten { image: first, rule } = rules.rewrite(image) else { continue };
            let found = if reads_values {
                match self.cache.found(&first).await {
                    Some(found) if self.missing_platform(&found).is_none() => found,
                    // Absent, or lacking a platform: the cold path asks the other candidates.
                    _ => continue,
                }
            } else if self.cache.is_present(&first) {
                Found::default()
            } else {
                continue;
            };
            warm_hits += 1;
            let registry = mirror_label(rule.target.as_str());
            let pin = self.pin_of(&first, Some(&found));
            let outcome = Ok(Answer::Present(found));
            let tried = smallvec![Tried { image: first, rule, registry, outcome, cached: true }];
            *known = Some(Resolution { verdict: Verdict::Take(0), tried, pin });
        }
        // Counted once per request: the counter is shared by every worker.
        if let (Some(metrics), 1..) = (&self.metrics, warm_hits) {
            metrics.cache_hit.inc_by(warm_hits as u64);
        }
        let mut unasked = 0;
        if warm_hits < by_image.len() {
            unasked = self.resolve_cold(rules, images, &mut by_image).await;
        }
        let by_image = by_image
            .into_iter()
            .filter_map(|(image, uses, known)| Some(ImageResolution { image, resolution: known?, uses }))
            .collect();
        Resolved { by_image, limit: self.settings.max_lookups, unasked }
    }

    /// The images the warm path did not decide, resolved concurrently under one deadline and
    /// one lookup budget, taken in request order. Returns how many were kept unasked.
    async fn resolve_cold<'r>(
        &self,
        rules: &'r RuleSet,
        images: &[&'r str],
        by_image: &mut [(&'r str, u32, Option<Resolution<'r>>)],
    ) -> usize {
        // Planned in one pass, in request order: an image within the budget, or over it with a
        // candidate whose answer is cached, is resolved; the others are kept unasked at once
        // (no future, no lookup: a Pod with 90,000 tags costs a pass over them).
        let mut planned = vec![false; by_image.len()];
        let mut budget_left = self.settings.max_lookups;
        let mut plans: Vec<(usize, Vec<Candidate<'r>>)> = Vec::new();
        let mut unasked = 0;
        for image in images {
            let Ok(slot) = by_image.binary_search_by(|(known, _, _)| known.cmp(image)) else { continue };
            if by_image[slot].2.is_some() || std::mem::replace(&mut planned[slot], true) {
                continue;
            }
            let candidates = rules.candidates(image).targets;
            let Some(first) = candidates.first() else { continue };
            if budget_left > 0 {
                budget_left -= 1;
            } else if !candidates.iter().any(|candidate| self.cache.knows(&candidate.image)) {
                self.count(mirror_label(first.rule.target.as_str()), "limit");
                by_image[slot].2 =
                    Some(Resolution { verdict: Verdict::Unasked, tried: SmallVec::new(), pin: Pin::Off });
                unasked += 1;
                continue;
            }
            plans.push((slot, candidates));
        }
        let deadline = Deadline::now() + self.settings.timeout;
        let budget = AtomicUsize::new(self.settings.max_lookups);
        // join_all polls the images in order, so the first candidates take the budget in
        // request order.
        let budget = &budget;
        let resolutions = futures::future::join_all(
            plans
                .into_iter()
                .map(|(slot, candidates)| async move { (slot, self.resolve_one(candidates, deadline, budget).await) }),
        )
        .await;
        for (slot, resolution) in resolutions {
            unasked += usize::from(resolution.verdict == Verdict::Unasked);
            by_image[slot].2 = Some(resolution);
        }
        unasked
    }

    /// Whether the registry `image` names has it: one lookup through the cache, the host's
    /// slots and backoff, within one `--check-timeout` from now (`audit --check-mirror`, which
    /// asks only images pulled from their rule's target). The metrics label is the registry.
    pub async fn presence(&self, image: &str) -> Result<Answer, CheckError> {
        let deadline = Deadline::now() + self.settings.timeout;
        let label = registry_host(image);
        let (outcome, _) = self.check(&label, image, deadline).await;
        outcome.map(|answer| self.settle(&label, answer))
    }

    /// One image: its candidates in rule order, the first present one taken as soon as every
    /// candidate before it has answered otherwise. The next candidate is asked when the last
    /// one asked answered "no", or had no answer within a quarter of `--check-timeout` (so a
    /// stalled candidate cannot hide a healthy one behind it, while a registry that answers
    /// costs one lookup per image). A candidate not reached by the deadline is "not asked".
    async fn resolve_one<'r>(
        &self,
        candidates: Vec<Candidate<'r>>,
        deadline: Deadline,
        budget: &AtomicUsize,
    ) -> Resolution<'r> {
        let labels: Vec<&'r str> =
            candidates.iter().map(|candidate| mirror_label(candidate.rule.target.as_str())).collect();
        let hedge = self.settings.timeout / 4;
        let mut outcomes: Vec<Option<(Result<Answer, CheckError>, bool)>> = vec![None; candidates.len()];
        let mut pending = FuturesUnordered::new();
        let (mut next, mut hedge_at) = (0, Deadline::now());
        let verdict = loop {
            let done = next == candidates.len() && pending.is_empty();
            if let Some(verdict) = decide(&outcomes, self.settings.on_error, done) {
                break verdict;
            }
            let now = Deadline::now();
            if next < candidates.len() && (pending.is_empty() || now >= hedge_at) {
                if now >= deadline {
                    for outcome in &mut outcomes[next..] {
                        *outcome = Some((Err(CheckError::NotAsked(NotAsked::Deadline)), false));
                    }
                    next = candidates.len();
                } else {
                    let (index, label) = (next, labels[next]);
                    let candidate = &candidates[index];
                    pending.push(async move { (index, self.ask(candidate, label, deadline, budget).await) });
                    (next, hedge_at) = (next + 1, now + hedge);
                }
                continue;
            }
            tokio::select! {
                Some((index, outcome)) = pending.next() => outcomes[index] = Some(outcome),
                () = tokio::time::sleep_until(hedge_at.min(deadline)), if next < candidates.len() => {}
                else => break decide(&outcomes, self.settings.on_error, true).unwrap_or(Verdict::Unasked),
            }
        };
        // Candidates still pending past the taken one are dropped: their lookups go on, on
        // their own tasks, and fill the cache.
        drop(pending);
        let tried: SmallVec<[Tried<'r>; 1]> = candidates
            .into_iter()
            .zip(outcomes)
            .zip(labels)
            .map_while(|((Candidate { image, rule }, outcome), registry)| {
                let (outcome, cached) = outcome?;
                Some(Tried { image, rule, registry, outcome, cached })
            })
            .collect();
        let verdict = match verdict {
            Verdict::Keep(_) => Verdict::Keep(reasons(&tried)),
            other => other,
        };
        let pin = match &verdict {
            Verdict::Take(index) => tried.get(*index).map_or(Pin::Off, |taken| {
                self.pin_of(&taken.image, taken.outcome.as_ref().ok().and_then(Answer::found))
            }),
            Verdict::Keep(_) | Verdict::Unasked => Pin::Off,
        };
        Resolution { verdict, tried, pin }
    }

    /// The pin of a taken `candidate` whose check learned `found` (`None`: taken on a failed
    /// lookup). A candidate that names a digest itself is left as it is.
    fn pin_of(&self, candidate: &str, found: Option<&Found>) -> Pin {
        if !self.pinning.pin || candidate.contains('@') {
            return Pin::Off;
        }
        match found.and_then(|found| found.digest) {
            Some(digest) => Pin::To(digest),
            None => Pin::Unknown,
        }
    }

    /// The first required platform a present answer does not cover (all of them when its
    /// platforms were not read).
    fn missing_platform<'p>(&'p self, found: &Found) -> Option<&'p Platform> {
        let required = self.pinning.platforms.as_slice();
        match &found.platforms {
            Some(platforms) => platforms.first_missing(required),
            None => required.first(),
        }
    }

    /// A present answer judged against `--require-platforms`: [`Answer::Lacks`] the first
    /// platform it does not cover (counted for the mirror `label`), else as it is.
    fn settle(&self, label: &str, answer: Answer) -> Answer {
        let Answer::Present(found) = &answer else { return answer };
        match self.missing_platform(found) {
            None => answer,
            Some(platform) => {
                if let Some(metrics) = &self.metrics {
                    metrics.platform_misses.with_label_values(&[label, &platform.to_string()]).inc();
                }
                Answer::Lacks(platform.clone())
            }
        }
    }

    /// One candidate of a request: never when the image chose its registry, from the cache
    /// when known, else a lookup if the request's budget has one left.
    async fn ask(
        &self,
        Candidate { image, rule }: &Candidate<'_>,
        label: &str,
        deadline: Deadline,
        budget: &AtomicUsize,
    ) -> (Result<Answer, CheckError>, bool) {
        if !mirrored::pulls_from_target(rule, image) {
            let registry = registry_host(image);
            let target = mirrored::target_registry(rule).unwrap_or("a host built from the image's").to_owned();
            self.count(label, "foreign");
            return (Err(CheckError::NotAsked(NotAsked::ForeignRegistry { registry, target })), false);
        }
        if let Some(answer) = self.cache.cached(image).await {
            self.hit();
            return (Ok(self.settle(label, answer)), true);
        }
        if budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1)).is_err() {
            self.count(label, "limit");
            return (Err(CheckError::NotAsked(NotAsked::Limit(self.settings.max_lookups))), false);
        }
        let (outcome, cached) = self.check(label, image, deadline).await;
        (outcome.map(|answer| self.settle(label, answer)), cached)
    }

    /// One candidate: the cache, else a lookup (shared with concurrent requests for the same
    /// image), bounded by `deadline`. The flag is true when the answer came from the cache.
    async fn check(&self, registry: &str, image: &str, deadline: Deadline) -> (Result<Answer, CheckError>, bool) {
        // A known answer is served as is, even while its registry is backing off: images
        // known present stay rewritten during an outage.
        if let Some(answer) = self.cache.cached(image).await {
            self.hit();
            return (Ok(answer), true);
        }
        let host = self.hosts.get(&registry_host(image));
        let lookup = self.lookup(registry.to_owned(), host, image.to_owned(), deadline);
        let asked = Deadline::now();
        let (outcome, cached) = match tokio::time::timeout_at(deadline, self.cache.get_or_check(image, lookup)).await {
            Ok(answer) => answer,
            // No answer within the time this request had left (all of --check-timeout for a
            // first candidate, less for a later one). The lookup goes on, on its own task, and
            // only it reports to its host's backoff.
            Err(_) => (Err(CheckError::Timeout(round_ms(deadline.saturating_duration_since(asked)))), false),
        };
        if let Some(metrics) = &self.metrics {
            if cached { &metrics.cache_hit } else { &metrics.cache_miss }.inc();
        }
        (outcome, cached)
    }

    /// The lookup shared by the concurrent requests for one image: the host's backoff, a slot
    /// among its `--check-host-concurrency` (waited for until `deadline`), then the real
    /// lookup on its own task with its full `--check-timeout` (it outlives a caller that gave
    /// up, a panic in the client stays there), whose outcome alone feeds the host's backoff.
    fn lookup(
        &self,
        registry: String,
        host: Arc<Host>,
        image: String,
        deadline: Deadline,
    ) -> impl Future<Output = Result<Answer, CheckError>> + use<> {
        let checker = self.checker.load_full();
        let (timeout, metrics, depth) = (self.settings.timeout, self.metrics.clone(), self.depth);
        async move {
            let count = |result: &str| {
                if let Some(metrics) = &metrics {
                    metrics.checks.with_label_values(&[&registry, result]).inc();
                }
            };
            let pass = host.admit(Instant::now()).inspect_err(|error| count(error.label()))?;
            // Hands a probe's turn on if the lookup is dropped or refused before it reports.
            let pass = PassGuard::new(Arc::clone(&host), pass);
            let slot = match tokio::time::timeout_at(deadline, Arc::clone(&host.slots).acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => {
                    count("queued");
                    let (registry, limit) = (host.name.clone(), host.concurrency);
                    return Err(CheckError::NotAsked(NotAsked::Queued { registry, limit }));
                }
            };
            // The host may have failed while this lookup waited for its slot.
            if let Some(error) = host.backing_off(Instant::now()) {
                count(error.label());
                return Err(error);
            }
            let task = tokio::spawn(async move {
                let _slot = slot;
                let started = Instant::now();
                let outcome = match tokio::time::timeout(timeout, checker.look(&image, depth)).await {
                    Ok(Err(CheckError::Timeout(_))) | Err(_) => Err(CheckError::Timeout(timeout)),
                    Ok(outcome) => outcome,
                };
                pass.record(&outcome, Instant::now());
                let took = started.elapsed();
                let result = match &outcome {
                    Ok(Answer::Present(_)) => "present",
                    Ok(Answer::Absent(_) | Answer::Lacks(_)) => "absent",
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
            });
            task.await.unwrap_or_else(|_| Err(CheckError::Transport("the registry client failed".into())))
        }
    }

    fn hit(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.cache_hit.inc();
        }
    }

    fn count(&self, registry: &str, result: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.checks.with_label_values(&[registry, result]).inc();
        }
    }
}

/// The verdict once it is known: the first present candidate whose predecessors all answered
/// otherwise; when every candidate has answered (`done`) and none is present, under `swap`
/// the first whose lookup failed, else keep. `None` while an earlier candidate is pending.
fn decide(
    outcomes: &[Option<(Result<Answer, CheckError>, bool)>],
    on_error: OnCheckError,
    done: bool,
) -> Option<Verdict> {
    for (index, outcome) in outcomes.iter().enumerate() {
        match outcome {
            None => return None,
            Some((Ok(Answer::Present(_)), _)) => return Some(Verdict::Take(index)),
            Some(_) => {}
        }
    }
    if !done {
        return None;
    }
    let failed = |outcome: &Option<(Result<Answer, CheckError>, bool)>| matches!(outcome, Some((Err(error), _)) if error.may_swap());
    if on_error == OnCheckError::Swap
        && let Some(index) = outcomes.iter().position(failed)
    {
        return Some(Verdict::Take(index));
    }
    let unasked = |outcome: &Option<(Result<Answer, CheckError>, bool)>| {
        matches!(outcome, Some((Err(CheckError::NotAsked(NotAsked::Limit(_))), _)))
    };
    Some(if outcomes.iter().all(unasked) { Verdict::Unasked } else { Verdict::Keep(String::new()) })
}

/// A lookup's pass through its host's breaker: the outcome is recorded once; dropped
/// unrecorded (the request gave up, no slot was free), a probe's turn goes to the next lookup.
struct PassGuard {
    host: Arc<Host>,
    pass: Pass,
    recorded: bool,
}

impl PassGuard {
    fn new(host: Arc<Host>, pass: Pass) -> Self {
        Self { host, pass, recorded: false }
    }

    fn record(mut self, outcome: &Result<Answer, CheckError>, now: Instant) {
        self.host.record(outcome, now);
        self.recorded = true;
    }
}

impl Drop for PassGuard {
    fn drop(&mut self) {
        if !self.recorded {
            self.host.abandon(self.pass, Instant::now());
        }
    }
}

/// To the nearest 10 ms, enough for a message (a first candidate waited "1s", not "999ms").
fn round_ms(duration: std::time::Duration) -> std::time::Duration {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    std::time::Duration::from_millis(millis.saturating_add(5) / 10 * 10)
}

/// Why no candidate was taken, candidate by candidate.
fn reasons(tried: &[Tried<'_>]) -> String {
    let reasons: Vec<String> = tried
        .iter()
        .map(|tried| match &tried.outcome {
            Ok(Answer::Absent(status)) => format!("not in {} ({status})", tried.registry),
            Ok(Answer::Lacks(platform)) => format!("{} lacks {platform}", tried.registry),
            Ok(Answer::Present(_)) => format!("in {}", tried.registry),
            Err(error) => format!("mirror {}: {error}", tried.registry),
        })
        .collect();
    reasons.join("; ")
}

/// The mirror a rule target names: the target without a trailing `-` (`harbor.example.org/airgap-images`).
fn mirror_label(target: &str) -> &str {
    target.trim_end_matches('-').trim_end_matches('/')
}

/// The registry (`host[:port]`, lowercase, `:443` dropped) of a candidate image: one key per
/// registry, however the image spells it, for its slots and backoff.
fn registry_host(image: &str) -> String {
    let registry =
        reference::parse(image).map_or_else(|_| image.to_owned(), |parsed| parsed.registry_key().to_ascii_lowercase());
    match registry.strip_suffix(":443") {
        Some(host) => host.to_owned(),
        None => registry,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            check_host_concurrency: 16,
        };
        Resolver::new(&args, OnCheckError::Keep, 32, None).expect("resolver")
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
        let present = Answer::Present(Found::default());
        let (cached, _) = cache.get_or_check(&target("nginx:1"), async { Ok(present.clone()) }).await;
        let (absent, _) = cache.get_or_check(&target("redis:7"), async { Ok(Answer::Absent(404)) }).await;
        assert_eq!((cached, absent), (Ok(present), Ok(Answer::Absent(404))));

        let images = ["nginx:1", "redis:7", "nginx:1", "quay.io/left/alone:1"];
        let mut resolved = resolver.resolve(&rules, &images).await;
        let present = target("nginx:1");
        for _ in 0..2 {
            match resolved.choose("nginx:1") {
                Some(Choice::Take(image, rule, Pin::Off)) => {
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

#[cfg(test)]
mod pinning {
    use std::time::Duration;

    use super::*;
    use crate::registry::client::Digest;
    use crate::registry::platform::Platforms;
    use crate::rewrite::{Options, compile_maps};

    const RULES: &str = "src.invalid/team::mirror.invalid/specific\nsrc.invalid::mirror.invalid/general\n";

    fn resolver(pinning: Pinning, on_error: OnCheckError) -> Resolver {
        let args = CheckArgs {
            registry_auth: None,
            registry_ca: None,
            insecure_registries: Vec::new(),
            check_timeout: Duration::from_millis(200),
            check_cache_ttl: Duration::from_secs(3600),
            check_negative_ttl: Duration::from_secs(3600),
            check_cache_entries: 100,
            check_backoff: Duration::from_secs(5),
            check_host_concurrency: 16,
        };
        Resolver::new(&args, on_error, 32, None).expect("resolver").with_pinning(pinning)
    }

    fn platforms(list: &[&str]) -> Vec<Platform> {
        list.iter().map(|text| Platform::parse(text).unwrap()).collect()
    }

    fn found(digest: &[u8], covers: &[&str]) -> Answer {
        let platforms: Platforms = platforms(covers).into_iter().collect();
        Answer::Present(Found { digest: Some(Digest::of(digest)), platforms: Some(platforms) })
    }

    /// (pinning, answers cached for `specific` and `general`, on error, what `team/app:1`
    /// becomes or why it is kept)
    #[tokio::test]
    async fn candidates_are_pinned_to_their_digest_and_must_cover_the_platforms() {
        let both = ["linux/amd64", "linux/arm64"];
        let pin = Pinning { pin: true, ..Pinning::default() };
        let pin_both = Pinning { pin: true, digests: false, platforms: platforms(&both) };
        let general = format!("mirror.invalid/general/team/app:1@{}", Digest::of(b"general"));
        let specific = format!("mirror.invalid/specific/app:1@{}", Digest::of(b"specific"));
        let lacks = "mirror.invalid/specific lacks linux/arm64; mirror.invalid/general lacks linux/arm64";
        type Case<'a> = (Pinning, Option<Answer>, Option<Answer>, OnCheckError, Result<&'a str, &'a str>);
        let table: Vec<Case<'_>> = vec![
            // The warm path pins too.
            (pin.clone(), Some(found(b"specific", &[])), None, OnCheckError::Keep, Ok(&specific)),
            // Without pinning, nothing is appended.
            (
                Pinning::default(),
                Some(found(b"specific", &[])),
                None,
                OnCheckError::Keep,
                Ok("mirror.invalid/specific/app:1"),
            ),
            // A single-platform candidate is skipped for the fallback that has both.
            (
                pin_both.clone(),
                Some(found(b"specific", &["linux/amd64"])),
                Some(found(b"general", &both)),
                OnCheckError::Keep,
                Ok(&general),
            ),
            // None has arm64: kept, the reason names the platform.
            (
                pin_both.clone(),
                Some(found(b"specific", &["linux/amd64"])),
                Some(found(b"general", &["linux/amd64", "linux/arm/v7"])),
                OnCheckError::Keep,
                Err(lacks),
            ),
            // `swap` takes a failed candidate, never one lacking a platform.
            (
                pin_both,
                Some(found(b"specific", &["linux/amd64"])),
                Some(found(b"general", &["linux/amd64"])),
                OnCheckError::Swap,
                Err(lacks),
            ),
        ];
        let rules = compile_maps(RULES, Options::default()).expect("rules").rules;
        for (pinning, specific_answer, general_answer, on_error, expected) in table {
            let resolver = resolver(pinning.clone(), on_error);
            for (image, answer) in [
                ("mirror.invalid/specific/app:1", specific_answer),
                ("mirror.invalid/general/team/app:1", general_answer),
            ] {
                if let Some(answer) = answer {
                    let (cached, _) = resolver.cache().get_or_check(image, async { Ok(answer.clone()) }).await;
                    assert_eq!(cached, Ok(answer));
                }
            }
            let mut resolved = resolver.resolve(&rules, &["src.invalid/team/app:1"]).await;
            let got = match resolved.choose("src.invalid/team/app:1") {
                Some(Choice::Take(image, _, _)) => Ok(image),
                Some(Choice::Keep(why)) => Err(why.to_owned()),
                other => panic!("{other:?}"),
            };
            assert_eq!(got.as_deref().map_err(String::as_str), expected, "{pinning:?}");
        }
    }

    #[tokio::test]
    async fn a_digest_reference_stays_and_a_failed_lookup_is_taken_unpinned() {
        let rules = compile_maps(RULES, Options::default()).expect("rules").rules;
        let resolver = resolver(Pinning { pin: true, ..Pinning::default() }, OnCheckError::Swap);
        let digest = Digest::of(b"by digest");
        let image = format!("src.invalid/team/app@{digest}");
        let candidate = format!("mirror.invalid/specific/app@{digest}");
        let (cached, _) = resolver.cache().get_or_check(&candidate, async { Ok(found(b"other", &[])) }).await;
        assert!(cached.is_ok());
        let mut resolved = resolver.resolve(&rules, &[image.as_str()]).await;
        assert_eq!(
            resolved
                .choose(&image)
                .map(|choice| matches!(choice, Choice::Take(taken, _, Pin::Off) if taken == candidate)),
            Some(true)
        );
        // No registry answers for mirror.invalid: under `swap` the first candidate is taken,
        // and its digest is not known.
        let mut resolved = resolver.resolve(&rules, &["src.invalid/team/other:1"]).await;
        match resolved.choose("src.invalid/team/other:1") {
            Some(Choice::Take(image, _, Pin::Unknown)) => assert_eq!(image, "mirror.invalid/specific/other:1"),
            other => panic!("{other:?}"),
        }
    }
}

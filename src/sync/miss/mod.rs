//! `serve --copy-on-miss`: an image kept because every candidate mirror answered "absent" is
//! copied, in the background, from its source to its first candidate's target by the copy
//! engine; once copied, the resolver asks the mirror again, so the next Pod is rewritten.
//!
//! The Pod's author names the source, so this is a way into the network, and every step is
//! bounded:
//!
//! - Only a source an explicit rule (exact, replace, prefix) names literally, port included,
//!   is copied from ([`names_registry`]); one that only `default`, `all`, a replace rule's
//!   wildcard or a bare-host rule's any-port match send to a mirror, only when
//!   `--copy-allow-source` lists it. A target is only ever exactly the rule target's registry.
//! - The source session is held to [`crate::registry::egress`]'s guard (no loopback,
//!   link-local, private… address unless listed, checked where it connects) and has only the
//!   `--source-auth` credentials; the mirror's are in another session, used for the mirror.
//! - At most `--copy-queue` copies wait and `--copy-concurrency` run; one target is queued
//!   once (a copy waiting or running for it is not queued again); a target whose copy failed
//!   is not offered again for [`RETRY_AFTER`]; each copy fetches at most `--copy-max-bytes`
//!   ([`capped`]) and [`MAX_MANIFEST_BYTES`] of manifests within `--copy-timeout`.
//! - The admission request never waits: [`CopyOnMiss::offer_misses`] only queues, and says
//!   in the kept image's warning what became of it.
//!
//! [`args`]: the flags; [`metrics`]: `mirrorswap_copies_total{result}` and the queue and bytes.

pub mod args;
pub mod capped;
pub mod metrics;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tracing::{info, warn};

use super::engine::{Engine, Job, Settings};
use super::progress::Quiet;
use super::remote::{RemoteMirror, RemoteSource};
use super::report::Outcome;
use crate::registry::auth_file::AuthFile;
use crate::registry::egress::{Egress, registry_key};
use crate::registry::session::{ImageRef, Registries};
use crate::registry::{Resolved, Resolver, Tried};
use crate::rewrite::mirrored::pulls_from_target;
use crate::rewrite::reference::{fold_docker_hub, is_registry_like};
use crate::rewrite::{Rule, RuleKind};
pub use args::CopyOnMissArgs;
use capped::Capped;
pub use metrics::CopyMetrics;

/// How long a target whose copy failed is not offered again.
pub const RETRY_AFTER: Duration = Duration::from_secs(300);
/// Failed targets remembered at most (the expired, then the oldest, are forgotten past it).
const MAX_FAILED: usize = 1024;
/// The most bytes of manifests and referrer lists one copy reads and holds (`sync`'s is
/// larger): `--copy-concurrency` copies of a hostile source's index stay within the webhook's
/// memory.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// The time one lookup of a copy is given (a manifest, a `HEAD`), and connecting.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds and the sources' settings.
#[derive(Clone, Debug)]
pub struct MissSettings {
    pub queue: usize,
    pub concurrency: usize,
    pub max_bytes: u64,
    pub timeout: Duration,
    /// `--copy-allow-source`.
    pub egress: Arc<Egress>,
    /// `--source-auth` as read at start: the sources' credentials only.
    pub source_auth: AuthFile,
}

impl MissSettings {
    /// From the flags (reads `--source-auth`).
    pub fn from_args(args: &CopyOnMissArgs) -> Result<Self, crate::registry::AuthFileError> {
        let source_auth = match &args.source_auth {
            Some(path) => AuthFile::load(path)?,
            None => AuthFile::default(),
        };
        Ok(Self {
            queue: usize::from(args.copy_queue),
            concurrency: usize::from(args.copy_concurrency),
            max_bytes: args.copy_max_bytes,
            timeout: args.copy_timeout,
            egress: Arc::new(Egress::new(args.copy_allow_sources.clone())),
            source_auth,
        })
    }
}

/// One copy: the image as the Pod names it, and the first candidate.
#[derive(Debug)]
struct Miss {
    source: String,
    target: String,
}

/// What the queue and the copies share.
struct Shared {
    settings: MissSettings,
    resolver: Arc<Resolver>,
    metrics: CopyMetrics,
    /// Targets queued or being copied.
    pending: Mutex<HashSet<String>>,
    /// Targets whose copy failed, and when.
    failed: Mutex<HashMap<String, Instant>>,
    /// `--source-auth` as last read (reloaded by the server when the file changes).
    source_auth: Mutex<AuthFile>,
}

/// The copy queue; dropping it ends its worker once the queued copies are started.
pub struct CopyOnMiss {
    queue: mpsc::Sender<Miss>,
    shared: Arc<Shared>,
}

impl CopyOnMiss {
    /// Starts the worker (on the current runtime).
    pub fn start(settings: MissSettings, resolver: Arc<Resolver>, metrics: CopyMetrics) -> Self {
        let (queue, receiver) = mpsc::channel(settings.queue.max(1));
        let shared = Arc::new(Shared {
            source_auth: Mutex::new(settings.source_auth.clone()),
            settings,
            resolver,
            metrics,
            pending: Mutex::new(HashSet::new()),
            failed: Mutex::new(HashMap::new()),
        });
        tokio::spawn(work(receiver, Arc::clone(&shared)));
        Self { queue, shared }
    }

    /// Uses `auth` (a reloaded `--source-auth`) for the copies that start from now on.
    pub fn set_source_auth(&self, auth: AuthFile) {
        *lock(&self.shared.source_auth) = auth;
    }

    /// Offers every image of `resolved` kept for being absent from every candidate, and adds
    /// to its reason what became of it (`; copying it to TARGET`, `; not copied: …`).
    pub fn offer_misses(&self, resolved: &mut Resolved<'_>) {
        let said: Vec<(String, String)> =
            resolved.misses().map(|(image, first)| (image.to_owned(), self.offer(image, first))).collect();
        for (image, what) in said {
            resolved.add_to_reason(&image, &what);
        }
    }

    /// Queues the copy of `image` to its first candidate, or says why not.
    fn offer(&self, image: &str, first: &Tried<'_>) -> String {
        let shared = &self.shared;
        let target = first.image.as_str();
        if let Err(why) = self.may_copy(image, first) {
            shared.metrics.count("refused");
            return format!("; not copied: {why}");
        }
        if shared.recently_failed(target) {
            return format!(
                "; not copied: a copy to {target} failed within {}",
                humantime::format_duration(RETRY_AFTER)
            );
        }
        if !lock(&shared.pending).insert(target.to_owned()) {
            return format!("; a copy to {target} is under way");
        }
        match self.queue.try_send(Miss { source: image.to_owned(), target: target.to_owned() }) {
            Ok(()) => {
                shared.metrics.queue_depth.inc();
                format!("; copying it to {target}")
            }
            Err(_) => {
                lock(&shared.pending).remove(target);
                shared.metrics.count("dropped");
                warn!(image = %crate::rewrite::excerpt(image), %target, "not copied: the copy queue is full");
                "; not copied: the copy queue is full".to_owned()
            }
        }
    }

    /// Whether `image`'s source may be copied from: an explicit rule names its registry
    /// ([`names_registry`]) or `--copy-allow-source` lists it, and its host is no address the
    /// guard refuses (names are checked again where the copy connects); and whether the
    /// target is at exactly the registry the rule's target names (never a port or host the
    /// image chose).
    fn may_copy(&self, image: &str, first: &Tried<'_>) -> Result<(), String> {
        let egress = &self.shared.settings.egress;
        if !pulls_from_target(first.rule, &first.image) {
            return Err(format!("{} is not the registry the rule {} names", registry_of(&first.image), first.rule));
        }
        let parsed = ImageRef::parse(image).map_err(|error| error.to_string())?;
        let (registry, path) = (parsed.repo.registry.as_str(), &*parsed.repo.repository);
        if !names_registry(first.rule, registry) && !egress.allows_image(registry, path) {
            return Err(format!("no explicit rule names {}", registry_key(registry)));
        }
        let url = format!("https://{}/v2/", parsed.repo.endpoint);
        let url = reqwest::Url::parse(&url).map_err(|_| format!("{registry}: not a host"))?;
        egress.check_url(&url).map_err(|refused| refused.0)
    }
}

/// Whether `rule` names `registry` (an image's, `host[:port]`) literally, port included: an
/// exact rule's reference, a prefix rule's registry, a replace rule's pattern before its first
/// `/` when it has no wildcard there. A glob's `*` crosses `/` (`*.example.com/*` matches
/// `evil.net/a.example.com/x`), and a bare-host rule matches its host on any port
/// (`quay.io::…` matches `quay.io:8443/x`): neither names the registry the Pod chose.
fn names_registry(rule: &Rule, registry: &str) -> bool {
    let source = &*rule.source;
    let named = match rule.kind {
        RuleKind::Exact => source.to_owned(),
        RuleKind::Prefix => format!("{source}/x"),
        RuleKind::Replace => match source.split_once('/') {
            Some((first, _)) if !first.contains(['*', '?', '[']) && is_registry_like(first) => format!("{first}/x"),
            _ => return false,
        },
        RuleKind::Default | RuleKind::All => return false,
    };
    let key = |registry: &str| fold_docker_hub(&registry_key(registry)).to_owned();
    ImageRef::parse(&named).is_ok_and(|named| key(&named.repo.registry) == key(registry))
}

/// The registry of `image` (`host[:port]`), or `image` when it does not parse.
fn registry_of(image: &str) -> String {
    ImageRef::parse(image).map_or_else(|_| crate::rewrite::excerpt(image).to_string(), |parsed| parsed.repo.registry)
}

impl Shared {
    fn recently_failed(&self, target: &str) -> bool {
        let mut failed = lock(&self.failed);
        match failed.get(target) {
            Some(when) if when.elapsed() < RETRY_AFTER => true,
            Some(_) => {
                failed.remove(target);
                false
            }
            None => false,
        }
    }

    /// Holds `target` back for [`RETRY_AFTER`]; past [`MAX_FAILED`] targets, the expired ones
    /// are forgotten, then the oldest (not all: a flood of failures must not free the rest).
    fn remember_failure(&self, target: &str) {
        let mut failed = lock(&self.failed);
        if failed.len() >= MAX_FAILED && !failed.contains_key(target) {
            failed.retain(|_, when| when.elapsed() < RETRY_AFTER);
            while failed.len() >= MAX_FAILED {
                let Some(oldest) = failed.iter().min_by_key(|(_, when)| **when).map(|(target, _)| target.clone())
                else {
                    break;
                };
                failed.remove(&oldest);
            }
        }
        failed.insert(target.to_owned(), Instant::now());
    }

    /// Copies one image, counts and logs it, and on success has the resolver ask the mirror
    /// again.
    async fn copy(&self, miss: &Miss) {
        let started = Instant::now();
        let (result, bytes, reason) = match tokio::time::timeout(self.settings.timeout, self.run(miss)).await {
            Ok(outcome) => outcome,
            Err(_) => (
                "timeout",
                0,
                Some(format!("over --copy-timeout ({})", humantime::format_duration(self.settings.timeout))),
            ),
        };
        self.metrics.count(result);
        self.metrics.bytes.inc_by(bytes);
        let took = started.elapsed();
        let image = crate::rewrite::excerpt(&miss.source);
        let target = &miss.target;
        match &reason {
            None => info!(%image, %target, result, bytes, took = ?took, "copy on miss"),
            Some(reason) => warn!(%image, %target, result, bytes, took = ?took, %reason, "copy on miss failed"),
        }
        if reason.is_some() {
            self.remember_failure(target);
        } else if let Err(error) = self.resolver.relearn(target).await {
            warn!(%target, %error, "copied, but the mirror's answer could not be read again");
        }
        lock(&self.pending).remove(target);
    }

    /// The copy: the result label, the bytes sent and why it failed.
    async fn run(&self, miss: &Miss) -> (&'static str, u64, Option<String>) {
        let (mut client, mirror_auth) = self.resolver.mirror_settings();
        client.timeout = LOOKUP_TIMEOUT;
        let source = Registries::with_guard(
            &client,
            lock(&self.source_auth).clone(),
            false,
            Some(Arc::clone(&self.settings.egress)),
        );
        let mut mirror_client = client;
        mirror_client.timeout = self.settings.timeout;
        let mirror = Registries::new(&mirror_client, mirror_auth, false);
        let (source, mirror) = match (source, mirror) {
            (Ok(source), Ok(mirror)) => (source, mirror),
            (Err(error), _) | (_, Err(error)) => return ("failed", 0, Some(error.to_string())),
        };
        let source = Capped::new(RemoteSource::new(source, 4, LOOKUP_TIMEOUT), self.settings.max_bytes);
        let settings = Settings {
            jobs: 1,
            retries: 2,
            lookup_timeout: LOOKUP_TIMEOUT,
            blob_timeout: self.settings.timeout,
            max_manifest_bytes: MAX_MANIFEST_BYTES,
            ..Settings::default()
        };
        let engine = Engine::new(source, RemoteMirror::new(mirror, LOOKUP_TIMEOUT), settings);
        let job = Job { source: miss.source.clone(), targets: vec![miss.target.clone()] };
        let report = engine.copy(0, &job, Arc::new(Quiet)).await;
        match report.outcome {
            Outcome::Copied => ("copied", report.bytes, None),
            Outcome::Present => ("present", report.bytes, None),
            Outcome::WouldCopy => ("failed", 0, Some("a dry run".to_owned())),
            Outcome::Failed(reason) if engine.source.was_over() => ("too_large", report.bytes, Some(reason)),
            Outcome::Failed(reason) => ("failed", report.bytes, Some(reason)),
        }
    }
}

/// The worker: takes the queued copies in order, `--copy-concurrency` at a time, each on its
/// own task.
async fn work(mut queue: mpsc::Receiver<Miss>, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.settings.concurrency.max(1)));
    while let Some(miss) = queue.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        shared.metrics.queue_depth.dec();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _slot = slot;
            shared.copy(&miss).await;
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::registry::args::{CheckArgs, OnCheckError};
    use crate::registry::egress::AllowedSource;
    use crate::registry::{Answer, Choice};
    use crate::rewrite::{Options, compile_maps};

    const RULES: &str = "src.example.org/team::mirror.invalid/team\n1.1.1.1::mirror.invalid/ip\n\
                         127.0.0.1:5000::mirror.invalid/loop\ndefault::mirror.invalid/other\n";

    fn resolver() -> Arc<Resolver> {
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
        Arc::new(Resolver::new(&args, OnCheckError::Keep, 32, None).expect("resolver"))
    }

    pub(super) fn copier(allowed: &[&str], queue: usize) -> (CopyOnMiss, CopyMetrics) {
        let allowed = allowed.iter().map(|entry| AllowedSource::parse(entry).unwrap()).collect();
        let settings = MissSettings {
            queue,
            concurrency: 1,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(5),
            egress: Arc::new(Egress::new(allowed)),
            source_auth: AuthFile::default(),
        };
        let metrics = CopyMetrics::new(&prometheus::Registry::new()).unwrap();
        (CopyOnMiss::start(settings, resolver(), metrics.clone()), metrics)
    }

    /// What each image's kept warning gained, offered in order (on this single-threaded
    /// runtime the worker takes nothing from the queue until the test awaits).
    async fn offered(copier: &CopyOnMiss, images: &[&str]) -> Vec<String> {
        let rules = compile_maps(RULES, Options::default()).expect("rules").rules;
        let resolver = &copier.shared.resolver;
        for image in images {
            for candidate in rules.candidates(image).targets {
                let (answer, _) =
                    resolver.cache().get_or_check(&candidate.image, async { Ok(Answer::Absent(404)) }).await;
                assert_eq!(answer, Ok(Answer::Absent(404)));
            }
        }
        let mut resolved = resolver.resolve(&rules, images).await;
        copier.offer_misses(&mut resolved);
        images
            .iter()
            .map(|image| match resolved.choose(image) {
                Some(Choice::Keep(why)) => why.rsplit_once(" (404)").map_or(why, |(_, more)| more).to_owned(),
                other => panic!("{image}: {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn misses_are_queued_once_bounded_and_only_from_named_public_sources() {
        let (copier, metrics) = copier(&["quay.io/allowed"], 1);
        // (image, what its warning gains), offered one request after another.
        let table = [
            ("src.example.org/team/app:1", "; copying it to mirror.invalid/team/app:1"),
            // Queued or running: not queued again.
            ("src.example.org/team/app:1", "; a copy to mirror.invalid/team/app:1 is under way"),
            ("src.example.org/team/other:1", "; not copied: the copy queue is full"),
            ("quay.io/unnamed/app:1", "; not copied: no explicit rule names quay.io"),
            // Listed: through `default` too (and the queue is still full).
            ("quay.io/allowed/app:1", "; not copied: the copy queue is full"),
            ("127.0.0.1:5000/x:1", "; not copied: 127.0.0.1: a loopback address, not listed in --copy-allow-source"),
            ("1.1.1.1/x:1", "; not copied: the copy queue is full"),
        ];
        for (image, expected) in table {
            assert_eq!(offered(&copier, &[image]).await, [expected], "{image}");
        }
        // Two images of one request: each gets its own word.
        let said = offered(&copier, &["src.example.org/team/app:1", "quay.io/unnamed/app:1"]).await;
        assert_eq!(
            said,
            ["; a copy to mirror.invalid/team/app:1 is under way", "; not copied: no explicit rule names quay.io"]
        );
        let count = |result: &str| metrics.copies.with_label_values(&[result]).get();
        assert_eq!((count("dropped"), count("refused")), (3, 3));
        assert_eq!(metrics.queue_depth.get(), 1);
    }

    /// Past `MAX_FAILED` failures, the oldest is forgotten, not every one.
    #[tokio::test]
    async fn a_full_failure_hold_forgets_only_the_oldest() {
        let (copier, _) = copier(&[], 1);
        let shared = &copier.shared;
        for n in 0..MAX_FAILED {
            shared.remember_failure(&format!("m.invalid/app:{n}"));
            // Instants may tie on a coarse clock: keep them in order.
            std::thread::sleep(Duration::from_micros(1));
        }
        shared.remember_failure("m.invalid/app:new");
        // (target, still held)
        let table = [
            ("m.invalid/app:0", false),
            ("m.invalid/app:1", true),
            (&*format!("m.invalid/app:{}", MAX_FAILED - 1), true),
            ("m.invalid/app:new", true),
        ];
        for (target, held) in table {
            assert_eq!(shared.recently_failed(target), held, "{target}");
        }
        assert_eq!(lock(&shared.failed).len(), MAX_FAILED);
    }
}

#[cfg(test)]
mod explicit_tests {
    use super::*;
    use crate::registry::Answer;
    use crate::rewrite::{Options, compile_maps};

    const RULES: &str = "[REPLACE]*.example.com/*::mirror.example.com/lib\n\
                         [REPLACE]src.example.org/team/*::mirror.example.com/team\n\
                         [REPLACE]src.example.org:5000/*::mirror.example.com/port\n\
                         [EXACT]gcr.io/a/b:1::mirror.example.com/gcr/b:1\n\
                         quay.io::mirror.example.com/quay\nregistry.example.org:5000::mirror.example.com/five\n\
                         docker.io::mirror.example.com/hub\nother.io::mirror.example.com\ndefault::mirror.example.com/other\n";

    /// Whether the first candidate's rule lets `image` be copied; `allowed` as
    /// `--copy-allow-source`.
    async fn may_copy(image: &str, allowed: &[&str]) -> Result<(), String> {
        let rules = compile_maps(RULES, Options::default()).expect("rules").rules;
        let candidates = rules.candidates(image).targets;
        let first = candidates.first().unwrap_or_else(|| panic!("{image}: no candidate"));
        let tried = Tried {
            image: first.image.clone(),
            rule: first.rule,
            registry: "mirror.example.com",
            outcome: Ok(Answer::Absent(404)),
            cached: false,
        };
        let (copier, _) = super::tests::copier(allowed, 4);
        copier.may_copy(image, &tried)
    }

    #[tokio::test]
    async fn only_a_rule_naming_the_registry_literally_is_explicit() {
        let unnamed = |registry: &str| Err(format!("no explicit rule names {registry}"));
        // (image, --copy-allow-source, expected)
        let table: [(&str, &[&str], Result<(), String>); 15] = [
            ("src.example.org/team/app:1", &[], Ok(())),
            ("src.example.org:5000/app:1", &[], Ok(())),
            ("gcr.io/a/b:1", &[], Ok(())),
            ("quay.io/team/app:1", &[], Ok(())),
            ("quay.io:443/team/app:1", &[], Ok(())),
            // Rules match as written: only `default` sends it to a mirror.
            ("QUAY.IO/team/app:1", &[], unnamed("quay.io")),
            ("nginx:1.25", &[], Ok(())),
            ("registry.example.org:5000/app:1", &[], Ok(())),
            // The glob's `*` crossed `/`: the registry is evil.net, which the rule does not name.
            ("evil.net/a.example.com/nginx:1.25", &[], unnamed("evil.net")),
            ("evil.net/a.example.com/nginx:1.25", &["evil.net"], Ok(())),
            // A wildcard in the registry part names no registry.
            ("a.example.com/nginx:1.25", &[], unnamed("a.example.com")),
            // A bare-host rule on another port: not the rule's registry.
            ("quay.io:8443/team/app:1", &[], unnamed("quay.io:8443")),
            ("quay.io:8443/team/app:1", &["quay.io:8443"], Ok(())),
            // Through a bare-host target, the image's port would be the target's too: never.
            (
                "other.io:8443/app:1",
                &["other.io:8443"],
                Err("mirror.example.com:8443 is not the registry the rule other.io::mirror.example.com names".into()),
            ),
            ("other.example.org/app:1", &[], unnamed("other.example.org")),
        ];
        for (image, allowed, expected) in table {
            assert_eq!(may_copy(image, allowed).await, expected, "{image} {allowed:?}");
        }
    }

    #[test]
    fn a_port_fallback_match_does_not_name_the_registry() {
        let compat = compile_maps(RULES, Options::default()).expect("rules").rules;
        let canonical = Options { docker_hub: crate::rewrite::DockerHubMode::Canonical, ..Options::default() };
        let canonical = compile_maps(RULES, canonical).expect("rules").rules;
        // (rules, image, whether its first rule names its registry)
        let table = [
            (&compat, "quay.io/x:1", true),
            (&compat, "quay.io:8443/x:1", false),
            (&compat, "registry.example.org:5000/x:1", true),
            (&compat, "src.example.org:5000/x:1", true),
            (&compat, "nginx:1", true),
            (&compat, "docker.io:5000/library/nginx:1", false),
            (&compat, "evil.net/a.example.com/x:1", false),
            // Only `default` takes Docker Hub's other names, unless they fold into docker.io.
            (&compat, "index.docker.io/library/nginx:1", false),
            (&canonical, "index.docker.io/library/nginx:1", true),
            (&canonical, "registry-1.docker.io/x/y:1", true),
        ];
        for (rules, image, named) in table {
            let candidates = rules.candidates(image).targets;
            let rule = candidates.first().map(|candidate| candidate.rule).expect("a rule");
            let registry = ImageRef::parse(image).expect("an image").repo.registry;
            assert_eq!(names_registry(rule, &registry), named, "{image} through {rule}");
        }
    }
}

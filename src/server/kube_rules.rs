//! Rules from a Secret or ConfigMap, read and watched through the Kubernetes
//! API (`--rules-secret`, `--rules-configmap`), so Palette's `registry-info`
//! Secret drives mirrorswap where it already lives. The object source and the
//! API client are [`crate::k8s::api`]'s; this is `serve`'s watch over them.
//!
//! One object is watched with kube's runtime watcher and a field selector on
//! its name (which is also what lets RBAC limit the Role to that one name).
//! Every change of the key's text is compiled like a rules file: a good text
//! replaces the rules, a bad one (or one with no rules while rules are in force,
//! unless `--allow-empty-rules`) is logged and counted and the last good rules
//! stay. A deleted object (or one absent at start) means no rules. When the API
//! server is away the watcher reconnects with a capped exponential backoff and
//! relists; the rules in force stay meanwhile. Readiness waits for the first
//! answer from the API ("rules loaded once"), never for the API being up now.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::{error, info, warn};

use super::state::State;
use crate::k8s::api::{ApiClient, ObjectKind, ObjectSource, registry_info};
use crate::registry::Resolver;
use crate::rewrite::{Options, RuleSet};
use crate::rules_file::{self, Format};

/// What one watch step says the object holds: absent, a text, or why it has none.
type Observed = Option<Result<String, String>>;

/// How the object's text is read.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    /// `--format`, if given.
    pub format: Option<Format>,
    /// Engine options.
    pub options: Options,
    /// `--allow-empty-rules`: a text with no rules may replace rules in force.
    pub allow_empty: bool,
}

/// Watches `source` and keeps `state`'s rules in step with it until the process ends.
pub fn spawn(source: ObjectSource, api: ApiClient, reading: Reading, state: Arc<State>) {
    tokio::spawn(async move {
        let mut stream = observe(&source, api.client.clone(), state.resolver.clone());
        let Reading { format, options, allow_empty } = reading;
        let mut applier = Applier { format: source.format(format), options, allow_empty, last: None, source, state };
        while let Some(step) = stream.next().await {
            match step {
                // Compiling (100k rules take ~100 ms) and returning memory stay off the
                // runtime's worker threads, which serve requests.
                Ok(observed) => match tokio::task::spawn_blocking(move || applier.apply_owned(observed)).await {
                    Ok(back) => applier = back,
                    Err(error) => {
                        error!(error = %error, "the rules loader stopped; the current rules stay");
                        return;
                    }
                },
                Err(error) => {
                    let error = api.error(&applier.source.to_string(), &error);
                    warn!("Kubernetes API watch failed, retrying (the current rules stay): {error}");
                    applier.state.metrics.rules_source_errors.inc();
                }
            }
        }
    });
}

/// The object's successive states, reconnecting with backoff forever; a Secret's mirror
/// settings also go to `resolver`.
fn observe(source: &ObjectSource, client: Client, resolver: Option<Arc<Resolver>>) -> ObservedStream {
    let (namespace, name, reader) = (source.namespace.as_str(), source.name.as_str(), source.clone());
    match source.kind {
        ObjectKind::Secret => watch_one(Api::<Secret>::namespaced(client, namespace), name, move |secret| {
            if let Some(resolver) = &resolver {
                resolver.set_palette(registry_info(secret));
            }
            reader.secret_text(secret)
        }),
        ObjectKind::ConfigMap => {
            watch_one(Api::<ConfigMap>::namespaced(client, namespace), name, move |map| reader.config_map_text(map))
        }
    }
}

type ObservedStream = Pin<Box<dyn Stream<Item = Result<Observed, watcher::Error>> + Send>>;

/// Watches the object `name` of `api`, reading each version with `text`.
fn watch_one<K>(api: Api<K>, name: &str, text: impl Fn(&K) -> Result<String, String> + Send + 'static) -> ObservedStream
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug + Send + 'static,
{
    watcher::watch_object(api, name)
        .backoff(Reconnect::default())
        .map_ok(move |object| object.map(|object| text(&object)))
        .boxed()
}

/// Turns observed texts into rule swaps.
struct Applier {
    source: ObjectSource,
    format: Format,
    options: Options,
    allow_empty: bool,
    state: Arc<State>,
    /// The last observation acted on; a relist or a metadata-only edit repeats it and is skipped.
    last: Option<Observed>,
}

impl Applier {
    fn apply_owned(mut self, observed: Observed) -> Self {
        self.apply(observed);
        self
    }

    fn apply(&mut self, observed: Observed) {
        if self.last.as_ref() == Some(&observed) {
            return;
        }
        let started = std::time::Instant::now();
        let origin = self.source.to_string();
        match &observed {
            None => {
                warn!(source = %self.source, "the rules object does not exist (or was deleted): serving no rules");
                self.swap_in(RuleSet::default(), started);
            }
            Some(Ok(text)) => match rules_file::load_text(text, &origin, self.format, self.options) {
                Ok(loaded) if self.state.refuses_empty(&loaded.rules, self.allow_empty) => {
                    let keeping = self.state.rules().len();
                    error!("no rules in {origin}; keeping {keeping} rules (use --allow-empty-rules to accept)");
                    self.state.metrics.record_reload("rules", false);
                }
                Ok(loaded) => {
                    loaded.messages().for_each(|message| warn!("{message}"));
                    self.swap_in(loaded.rules, started);
                }
                Err(error) => {
                    error.messages().iter().for_each(|message| error!("{message}"));
                    self.failed();
                }
            },
            Some(Err(why)) => {
                error!("{why}");
                self.failed();
            }
        }
        self.last = Some(observed);
    }

    fn swap_in(&self, rules: RuleSet, started: std::time::Instant) {
        let count = rules.len();
        let took = self.state.install_rules(rules, started);
        info!(source = %self.source, rules = count, took = ?took, "rules loaded from the Kubernetes API");
    }

    fn failed(&self) {
        let keeping = if self.state.rules_loaded() { "keeping the last good rules" } else { "no rules loaded yet" };
        error!(source = %self.source, "rules from the Kubernetes API rejected; {keeping}");
        self.state.metrics.record_reload("rules", false);
    }
}

/// Reconnection delays: 250 ms doubling to 10 s, reset by any successful event. Shorter
/// than kube's default (0.8 s to 30 s) because one object is watched: a reconnect costs
/// the API server one small list, and rules should catch up soon after it returns.
#[derive(Debug)]
struct Reconnect {
    next: Duration,
}

impl Reconnect {
    const FIRST: Duration = Duration::from_millis(250);
    const MOST: Duration = Duration::from_secs(10);
}

impl Default for Reconnect {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for Reconnect {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (delay * 2).min(Self::MOST);
        Some(delay)
    }
}

impl Backoff for Reconnect {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut backoff = Reconnect::default();
        let delays: Vec<u64> = backoff.by_ref().take(8).map(|delay| delay.as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::from_millis(250)));
    }
}

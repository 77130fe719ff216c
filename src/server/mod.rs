//! `mirrorswap serve`: the HTTPS admission webhook. A thin shell around the
//! rewrite engine: it loads rules and the certificate, keeps both fresh,
//! serves `AdmissionReview`s, and exports metrics.
//!
//! - [`admission`]: request body in, response out (no I/O); [`patch`]: the JSON patch it writes
//! - [`validate`]: `/validate`, the leak guard
//! - [`http`]: routes and limits; [`body_budget`]: the bound on request bodies in flight
//! - [`listener`]: the webhook listener (connection cap, TLS, idle close, shutdown)
//! - [`tls`]: rustls configuration and the swappable certificate
//! - [`watch`]: reloading files through their parent directory
//! - [`kube_rules`]: rules from a Secret or ConfigMap, watched through the Kubernetes API
//! - [`metrics`], [`state`], [`logging`], [`args`]

pub mod admission;
pub mod args;
pub mod body;
pub mod body_budget;
pub mod http;
pub mod kube_rules;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod patch;
pub mod state;
pub mod tls;
pub mod validate;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum_server::Handle;
use tracing::{error, info, warn};

pub use args::ServeArgs;

use crate::credentials::palette_of_rules_file;
use crate::k8s;
use crate::registry::{AuthFile, RegistryMetrics, Resolver, SwapPolicy};
use crate::rewrite::RuleSet;
use crate::rules_file::{self, Format, LoadError};
use crate::sync::miss::{CopyMetrics, CopyOnMiss, MissSettings};
use state::State;

/// The example rule set served when no rules are given: Palette's mirror list.
pub const BUILTIN_RULES: &str = include_str!("../../examples/rules/palette-mirror-registries.conf");
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A started server.
pub struct Running {
    /// The webhook's bound address (useful with port 0).
    pub webhook_addr: SocketAddr,
    /// The admin listener's bound address.
    pub admin_addr: SocketAddr,
    /// Shared state, for tests and the load bench.
    pub state: Arc<State>,
    webhook: listener::Webhook,
    admin: Handle<SocketAddr>,
    admin_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish within `grace`, then returns.
    pub async fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        self.admin.graceful_shutdown(Some(grace));
        self.webhook.shutdown(grace).await;
        self.admin_task.await.context("admin server task")?.context("admin server")?;
        Ok(())
    }
}

/// Runs `serve` until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let _flush_logs_on_exit = logging::init(args.log_format, &args.log_level)?;
    let grace = args.shutdown_grace;
    let running = start(args).await?;
    wait_for_signal().await?;
    info!(grace = ?grace, "shutting down: finishing in-flight requests");
    running.shutdown(grace).await?;
    info!("stopped");
    Ok(())
}

/// Loads rules and certificate, binds both listeners and starts serving.
pub async fn start(args: ServeArgs) -> anyhow::Result<Running> {
    args.check_consistent()?;
    let metrics = metrics::Metrics::new().context("creating metrics")?;
    // From the API, the rules arrive with the watch's first answer: until then none, and not ready.
    let api_client = match args.rules_object() {
        Some(_) => Some(k8s::api::client(args.kubeconfig.as_deref()).await?),
        None => None,
    };
    let started = std::time::Instant::now();
    let (rules, rules_origin, rules_file) = initial_rules(&args)?;
    let settings = admission::Settings {
        annotate_original: args.annotate_original,
        rules_origin: rules_origin.into(),
        pull_secrets: args.pull_secrets.clone().into(),
        pin_digest: args.pin.pin_digest,
    };
    let resolver = resolver(&args, &metrics)?;
    let copier = copier(&args, resolver.as_ref(), &metrics)?;
    let state = Arc::new(
        State::new(settings, metrics)
            .with_resolver(resolver)
            .with_copier(copier)
            .with_validation(args.validation.settings()),
    );
    if let Some(rules) = rules {
        state.install_rules(rules, started);
    }

    let admin = Handle::new();
    // Bound here, not inside axum_server's task, so that a failure names the address and why.
    let admin_listener = std::net::TcpListener::bind(args.admin_listen)
        .and_then(axum_server::from_tcp)
        .map_err(|error| bind_error("admin", "--admin-listen", args.admin_listen, &error))?;
    let admin_task = tokio::spawn(
        admin_listener.handle(admin.clone()).serve(http::admin_router(Arc::clone(&state)).into_make_service()),
    );
    let admin_addr = listening(&admin, "admin", args.admin_listen).await?;

    let certificate = initial_certificate(&args)?;
    state.metrics.certificate_expiry.set(certificate.not_after as f64);
    state.metrics.record_reload("certificate", true);
    let certs = Arc::new(tls::SwappableCert::new(certificate.key));
    let tls = Arc::new(tls::server_config(Arc::clone(&certs))?);
    let limits = http::Limits { max_body_bytes: args.max_body_bytes, request_timeout: args.request_timeout };
    let budget = body_budget::BodyBudget::new(
        args.max_inflight_body_bytes,
        args.max_body_bytes,
        args.inflight_body_wait,
        state.metrics.clone(),
    );
    let router = http::webhook_router(Arc::clone(&state), limits, budget, args.bench_noop_route);
    // A new connection must start a request within --request-timeout (so a client that
    // connects and sends nothing cannot hold a slot), a kept-alive one within --idle-timeout.
    let connections = listener::ConnectionSettings {
        max_connections: args.max_connections,
        idle_timeout: args.idle_timeout,
        first_request_timeout: args.request_timeout,
        handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
        http2_max_concurrent_streams: args.http2_max_concurrent_streams,
    };
    let webhook = listener::Webhook::bind(args.listen, tls, router, connections, state.metrics.clone())
        .await
        .map_err(|error| bind_error("webhook", "--listen", args.listen, &error))?;
    let webhook_addr = webhook.addr;

    if let Some(path) = rules_file {
        watch_rules(path, &args, Arc::clone(&state))?;
    }
    watch_source_auth(&args, &state)?;
    if let (Some(source), Some(client)) = (args.rules_object(), api_client) {
        info!(source = %source, "watching the rules object through the Kubernetes API");
        let reading = kube_rules::Reading {
            format: args.format,
            options: args.engine.options(),
            allow_empty: args.allow_empty_rules,
        };
        kube_rules::spawn(source.clone(), client, reading, Arc::clone(&state));
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        watch_certificate(cert.clone(), key.clone(), args.reload_poll, certs, Arc::clone(&state))?;
    }
    state.set_ready();
    info!(webhook = %webhook_addr, admin = %admin_addr, rules = state.rules().len(), "mirrorswap serving");
    Ok(Running { webhook_addr, admin_addr, state, webhook, admin, admin_task })
}

/// What failed, where, why, and the flag that moves it.
fn bind_error(name: &str, flag: &str, addr: SocketAddr, error: &std::io::Error) -> anyhow::Error {
    let hint = match error.kind() {
        std::io::ErrorKind::AddrInUse => "another process listens there; ",
        std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges; ",
        _ => "",
    };
    anyhow::anyhow!("the {name} listener could not bind {addr}: {error}: {hint}choose another address with {flag}")
}

async fn listening(handle: &Handle<SocketAddr>, name: &str, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    match handle.listening().await {
        Some(addr) => Ok(addr),
        None => bail!("the {name} listener on {addr} stopped before it was ready"),
    }
}

/// The first rules, where they came from (for `FILE:LINE`), and the file to watch if any.
/// With a Kubernetes object as the source, no rules yet: the watch brings them.
fn initial_rules(args: &ServeArgs) -> anyhow::Result<(Option<RuleSet>, String, Option<PathBuf>)> {
    let options = args.engine.options();
    let loaded = if let Some(source) = args.rules_object() {
        return Ok((None, source.to_string(), None));
    } else if let Some(path) = &args.rules {
        rules_file::load_file(path, args.format, options).map_err(describe)?
    } else if let Some(var) = &args.rules_env {
        let text = std::env::var(var).with_context(|| format!("--rules-env {var}: the variable is not set"))?;
        rules_file::load_text(&text, &format!("env:{var}"), args.format.unwrap_or(Format::Maps), options)
            .map_err(describe)?
    } else {
        warn!(
            "no --rules or --rules-env: serving the built-in example rules (Palette's mirror list to harbor.example.org)"
        );
        rules_file::load_text(BUILTIN_RULES, "built-in", Format::Maps, options).map_err(describe)?
    };
    loaded.messages().for_each(|message| warn!("{message}"));
    if loaded.rules.is_empty() {
        warn!(origin = %loaded.origin, "no rules: every image is left as it is");
    }
    match &loaded.found {
        Some(found) => {
            info!(origin = %loaded.origin, rules = loaded.rules.len(), at = %found.path, line = found.line, "rules loaded")
        }
        None => info!(origin = %loaded.origin, rules = loaded.rules.len(), "rules loaded"),
    }
    Ok((Some(loaded.rules), loaded.origin, args.rules.clone()))
}

fn describe(error: LoadError) -> anyhow::Error {
    anyhow::anyhow!(error.messages().join("\n"))
}

fn initial_certificate(args: &ServeArgs) -> anyhow::Result<tls::Loaded> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return tls::from_files(cert, key);
    }
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let issued = crate::certs::issue("mirrorswap development CA", &names, 30).context("generating a certificate")?;
    let ca_path = args.dev_ca_path();
    std::fs::write(&ca_path, &issued.ca_pem)
        .with_context(|| format!("writing the development CA to {}", ca_path.display()))?;
    warn!(
        ca = %ca_path.display(),
        "NO --tls-cert/--tls-key: serving a self-signed DEVELOPMENT certificate for localhost and 127.0.0.1; \
         clients must trust the CA written to {}. Never use this in a cluster.",
        ca_path.display()
    );
    tls::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())
}

/// With `--swap-policy exists`, the registry resolver (its metrics registered, its
/// `--registry-auth` file watched); `None` with `always`: no registry is ever contacted.
fn resolver(args: &ServeArgs, metrics: &metrics::Metrics) -> anyhow::Result<Option<Arc<Resolver>>> {
    if args.policy.swap_policy != SwapPolicy::Exists {
        return Ok(None);
    }
    let registry_metrics = RegistryMetrics::new(metrics.registry()).context("creating registry metrics")?;
    let resolver = Arc::new(
        Resolver::new(
            &args.check,
            args.policy.on_check_error,
            usize::from(args.policy.check_max_lookups),
            Some(registry_metrics),
        )?
        .with_pinning(args.pin.pinning()),
    );
    if let Some(rules) = &args.rules {
        // A `registry-secret.yaml` manifest as the rules file names the mirror too.
        resolver.set_palette(palette_of_rules_file(rules));
    }
    if let Some(path) = args.check.registry_auth.clone() {
        let watched = Arc::clone(&resolver);
        let file = path.clone();
        watch::spawn("registry-auth", vec![path], args.reload_poll, move || match AuthFile::load(&file) {
            Ok(auth) => {
                info!(file = %file.display(), registries = auth.len(), "registry credentials reloaded");
                watched.set_auth(auth);
            }
            Err(error) => error!(%error, "registry credentials reload failed; keeping the current ones"),
        })?;
    }
    let platforms: Vec<String> = args.pin.require_platforms.iter().map(ToString::to_string).collect();
    info!(
        timeout = ?args.check.check_timeout,
        on_check_error = ?args.policy.on_check_error,
        pin_digest = args.pin.pin_digest,
        require_platforms = %platforms.join(","),
        "swap policy `exists`: images are rewritten only to targets the mirror has"
    );
    Ok(Some(resolver))
}

/// With `--copy-on-miss` (and so `exists`), the copy queue and its worker, its metrics
/// registered.
fn copier(
    args: &ServeArgs,
    resolver: Option<&Arc<Resolver>>,
    metrics: &metrics::Metrics,
) -> anyhow::Result<Option<CopyOnMiss>> {
    let (true, Some(resolver)) = (args.copy.copy_on_miss, resolver) else { return Ok(None) };
    let settings = MissSettings::from_args(&args.copy).context("--source-auth")?;
    let copy_metrics = CopyMetrics::new(metrics.registry()).context("creating copy metrics")?;
    let allowed: Vec<String> = args.copy.copy_allow_sources.iter().map(ToString::to_string).collect();
    info!(
        queue = settings.queue,
        concurrency = settings.concurrency,
        max_bytes = settings.max_bytes,
        timeout = ?settings.timeout,
        allow_sources = %allowed.join(","),
        "copy on miss: images no mirror has are copied from sources explicit rules name"
    );
    let copier = CopyOnMiss::start(settings, Arc::clone(resolver), copy_metrics);
    Ok(Some(copier))
}

/// Reloads `--source-auth` into the copier when the file changes.
fn watch_source_auth(args: &ServeArgs, state: &Arc<State>) -> anyhow::Result<()> {
    let (Some(path), Some(_)) = (args.copy.source_auth.clone(), &state.copier) else { return Ok(()) };
    let (file, state) = (path.clone(), Arc::clone(state));
    watch::spawn("source-auth", vec![path], args.reload_poll, move || match AuthFile::load(&file) {
        Ok(auth) => {
            info!(file = %file.display(), registries = auth.len(), "source credentials reloaded");
            if let Some(copier) = &state.copier {
                copier.set_source_auth(auth);
            }
        }
        Err(error) => error!(%error, "source credentials reload failed; keeping the current ones"),
    })
}

fn watch_rules(path: PathBuf, args: &ServeArgs, state: Arc<State>) -> anyhow::Result<()> {
    let (format, options, allow_empty) = (args.format, args.engine.options(), args.allow_empty_rules);
    let file = path.clone();
    watch::spawn("rules", vec![path], args.reload_poll, move || {
        let started = std::time::Instant::now();
        match rules_file::load_file(&file, format, options) {
            Ok(loaded) if state.refuses_empty(&loaded.rules, allow_empty) => {
                let keeping = state.rules().len();
                error!("no rules in {}; keeping {keeping} rules (use --allow-empty-rules to accept)", loaded.origin);
                state.metrics.record_reload("rules", false);
            }
            Ok(loaded) => {
                loaded.messages().for_each(|message| warn!("{message}"));
                if let Some(resolver) = &state.resolver {
                    resolver.set_palette(palette_of_rules_file(&file));
                }
                let count = loaded.rules.len();
                let took = state.install_rules(loaded.rules, started);
                info!(origin = %loaded.origin, rules = count, took = ?took, "rules reloaded");
            }
            Err(error) => {
                error.messages().iter().for_each(|message| error!("{message}"));
                error!(file = %file.display(), "rules reload failed; keeping the last good rules");
                state.metrics.record_reload("rules", false);
            }
        }
    })
}

fn watch_certificate(
    cert: PathBuf,
    key: PathBuf,
    poll: Duration,
    certs: Arc<tls::SwappableCert>,
    state: Arc<State>,
) -> anyhow::Result<()> {
    let files = vec![cert.clone(), key.clone()];
    watch::spawn("certificate", files, poll, move || match tls::from_files(&cert, &key) {
        Ok(loaded) => {
            certs.store(loaded.key);
            state.metrics.certificate_expiry.set(loaded.not_after as f64);
            state.metrics.record_reload("certificate", true);
            info!(cert = %cert.display(), "certificate reloaded");
        }
        Err(error) => {
            error!(error = format!("{error:#}"), "certificate reload failed; keeping the current certificate");
            state.metrics.record_reload("certificate", false);
        }
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM received"),
        result = tokio::signal::ctrl_c() => { result?; info!("SIGINT received"); }
    }
    Ok(())
}

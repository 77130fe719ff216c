//! Log output: tracing to stderr, as text or JSON, filtered by `--log-level`
//! or `RUST_LOG`. Lines are written by a background thread, so request
//! threads never wait on the log pipe; under extreme bursts the queue (128k
//! lines) drops lines rather than slowing admissions.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The filter `--log-level` selects. A bare level is mirrorswap's own: `debug` shows its debug
/// lines and the dependencies' at `info` (`mirrorswap=debug,info`), `warn` quiets both. kube's
/// client logs an ERROR line on every failed API call that mirrorswap's own warning already
/// reports, naming the server, so that one is off. Anything else (`mirrorswap=trace,h2=debug`)
/// is a filter, used as written.
pub fn filter_directives(level: &str) -> String {
    let own = level.trim().to_ascii_lowercase();
    let dependencies = match own.as_str() {
        "trace" | "debug" | "info" => "info",
        "warn" | "error" | "off" => own.as_str(),
        _ => return level.to_owned(),
    };
    format!("mirrorswap={own},{dependencies},kube_client::client::builder=off")
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level`
/// ([`filter_directives`]). Keep the returned guard alive until exit: dropping it flushes the
/// queued lines. A filter that does not parse is an error naming it.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) => EnvFilter::try_new(filter_directives(level)).map_err(|error| {
            anyhow::anyhow!(
                "--log-level {level:?} is neither a level (error, warn, info, debug, trace) nor a filter such as \
                 `mirrorswap=debug,info`: {error}"
            )
        })?,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_is_mirrorswaps_own_and_a_filter_is_kept() {
        let table = [
            ("debug", "mirrorswap=debug,info,kube_client::client::builder=off"),
            ("INFO", "mirrorswap=info,info,kube_client::client::builder=off"),
            ("warn", "mirrorswap=warn,warn,kube_client::client::builder=off"),
            ("mirrorswap=trace,h2=debug", "mirrorswap=trace,h2=debug"),
        ];
        for (level, expected) in table {
            assert_eq!(filter_directives(level), expected, "{level}");
            assert!(EnvFilter::try_new(filter_directives(level)).is_ok(), "{level}");
        }
    }
}

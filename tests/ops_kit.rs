//! The chart's operations kit: the alerts pass `promtool check rules` and fire, each from
//! synthetic series, in `promtool test rules`; and every metric the alerts and the dashboard
//! name is one `/metrics` exports.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::components::require;
use common::{Protocol, TestServer, sample};

const RULES: &str = "helm/mirrorswap/files/prometheus-rules.yaml";
const DASHBOARD: &str = "helm/mirrorswap/files/grafana-dashboard.json";

/// Every image to a loopback port nobody listens on: each registry lookup fails at once, so
/// the registry-check series exist without any traffic leaving the machine (and with
/// `--on-check-error swap` the images are still rewritten, so the rewrite series exist too).
/// One image of the sample Pod is left alone by an empty target, so the unchanged series
/// exist as well.
const UNREACHABLE_MIRROR: &str = "default::127.0.0.1:9/mirror\nregistry.internal.example.com::\n";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn alerts_pass_promtool_check_and_fire_from_synthetic_series() {
    let Some(promtool) = require("promtool") else { return };
    for args in [["check", "rules", RULES], ["test", "rules", "tests/prometheus/alerts.test.yaml"]] {
        let output = Command::new(&promtool).args(args).current_dir(root()).output().unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Every alert of the rules file has a test case.
    let rules = std::fs::read_to_string(root().join(RULES)).unwrap();
    let tests = std::fs::read_to_string(root().join("tests/prometheus/alerts.test.yaml")).unwrap();
    let alerts: Vec<&str> = rules.lines().filter_map(|line| line.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    for alert in alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}\n        exp_alerts:\n          - ")),
            "{alert} never fires in the test"
        );
    }
}

/// `mirrorswap_…` names in `text`, histogram series (`_bucket`, `_sum`, `_count`) by their family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"mirrorswap_[a-z_]+").unwrap();
    re.find_iter(text)
        .map(|m| {
            let name = m.as_str();
            ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name).to_owned()
        })
        .collect()
}

#[tokio::test]
async fn every_metric_in_the_alerts_and_the_dashboard_is_exported() {
    let flags =
        ["--swap-policy", "exists", "--check-timeout", "5s", "--request-timeout", "10s", "--on-check-error", "swap"];
    let server = TestServer::start_with_rules(UNREACHABLE_MIRROR, "rules.conf", &flags).await;
    let mut client = server.connect(Protocol::Http1).await;
    client.review(&sample("pod.json")).await;
    let (status, metrics) = server.admin_get("/metrics").await;
    assert_eq!(status, 200);
    server.stop().await;
    let exported: BTreeSet<String> =
        metrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next()).map(str::to_owned).collect();
    let mut named = BTreeSet::new();
    for file in [RULES, DASHBOARD] {
        named.extend(metric_names(&std::fs::read_to_string(root().join(file)).unwrap()));
    }
    assert!(named.len() >= 9, "{named:?}");
    let missing: Vec<_> = named.iter().filter(|name| !exported.contains(*name)).collect();
    assert!(missing.is_empty(), "named but not exported: {missing:?}\nexported: {exported:?}");
}

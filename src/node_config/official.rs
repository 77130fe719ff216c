//! Docker Hub's official images on the nodes and in the webhook. A runtime names `nginx:1.27`
//! `docker.io/library/nginx:1.27` and routes it by that name. The webhook with
//! `--docker-hub canonical` does the same, so the two agree; with `--docker-hub compat`
//! (imageswap's way, the default) it matches `nginx` without `library/`, so the rule
//! `docker.io::M` sends it to `M/nginx` while a node pulls `M/library/nginx`. A node sees only
//! the canonical name, so no runtime format can follow compat: the renderers say where the
//! two disagree instead, naming both paths.

use super::{Destination, Plan};
use crate::rewrite::{DockerHubMode, RuleSet};

/// The official image the comparison is made with.
pub const SAMPLE: &str = "nginx:1.27";
/// How a runtime names it.
const SAMPLE_ON_NODES: &str = "docker.io/library/nginx:1.27";

/// Where the webhook and a node send the same official image, when they differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The webhook's rewrite of [`SAMPLE`].
    pub webhook: String,
    /// Where a node pulls it through the rendered config.
    pub node: String,
    /// The webhook's Docker Hub mode.
    pub mode: DockerHubMode,
}

impl Gap {
    /// The warning, naming the image, both paths and what to do.
    pub fn warning(&self, config: &str) -> String {
        let advice = match self.mode {
            DockerHubMode::Compat => {
                "run `serve` and this command with --docker-hub canonical (the runtimes' naming), or fill both \
                 paths in the mirror (`audit -o copy-list --copy-list-node-paths`)"
            }
            DockerHubMode::Canonical => "give the docker.io rule the target the docker.io/library rule has",
        };
        let mode = match self.mode {
            DockerHubMode::Compat => "compat",
            DockerHubMode::Canonical => "canonical",
        };
        format!(
            "warning: official Docker Hub images disagree: the webhook (--docker-hub {mode}) rewrites `{SAMPLE}` to \
             `{}`, but a node pulls it as {SAMPLE_ON_NODES} through {config} from `{}`; images the webhook does not \
             see (static Pods, the kubelet's own, Pods admitted without it) come from that second path: {advice}",
            self.webhook, self.node
        )
    }
}

/// Where a node pulls [`SAMPLE`] through `plan` (only host-level routes when
/// `host_level_only`, as containerd), if to a mirror.
pub fn node_pull(plan: &Plan, host_level_only: bool) -> Option<String> {
    let repository = "library/nginx";
    let covers = |path: &str| {
        path.is_empty()
            || (!host_level_only
                && repository.strip_prefix(path).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
    };
    let route = plan
        .routes
        .iter()
        .filter(|route| route.source.host == "docker.io" && covers(&route.source.path))
        .max_by_key(|route| route.source.path.len())?;
    let rest = repository[route.source.path.len()..].trim_start_matches('/');
    match &route.to {
        Destination::Mirror(location) => Some(format!("{}:1.27", location.join(rest))),
        Destination::Upstream => None,
    }
}

/// Where the webhook (`rules`) and a node (`plan`) send [`SAMPLE`] to different mirrors.
pub fn gap(rules: &RuleSet, plan: &Plan, host_level_only: bool) -> Option<Gap> {
    let webhook = rules.rewrite(SAMPLE).new_image()?.to_owned();
    let node = node_pull(plan, host_level_only)?;
    (webhook != node).then(|| Gap { webhook, node, mode: rules.docker_hub() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{Options, compile_maps};

    fn gap_of(text: &str, mode: DockerHubMode, host_level_only: bool) -> Option<(String, String)> {
        let rules = compile_maps(text, Options { docker_hub: mode, lenient: false }).unwrap().rules;
        gap(&rules, &Plan::from_rules(&rules), host_level_only).map(|gap| (gap.webhook, gap.node))
    }

    #[test]
    fn compat_disagrees_on_official_images_and_canonical_agrees() {
        let pair = |webhook: &str, node: &str| Some((webhook.to_owned(), node.to_owned()));
        let (compat, canonical) = (DockerHubMode::Compat, DockerHubMode::Canonical);
        let table = [
            (
                "docker.io::m.example.org/hub\n",
                compat,
                true,
                pair("m.example.org/hub/nginx:1.27", "m.example.org/hub/library/nginx:1.27"),
            ),
            (
                "docker.io::m.example.org/hub\n",
                compat,
                false,
                pair("m.example.org/hub/nginx:1.27", "m.example.org/hub/library/nginx:1.27"),
            ),
            ("docker.io::m.example.org/hub\n", canonical, true, None),
            (
                "docker.io::m.example.org\n",
                compat,
                true,
                pair("m.example.org/nginx:1.27", "m.example.org/library/nginx:1.27"),
            ),
            // A docker.io/library rule: the same in both modes where paths are expressible...
            ("docker.io::m.example.org/hub\ndocker.io/library::m.example.org/official\n", compat, false, None),
            ("docker.io::m.example.org/hub\ndocker.io/library::m.example.org/official\n", canonical, false, None),
            // ...and not in containerd, which mirrors whole registries.
            (
                "docker.io::m.example.org/hub\ndocker.io/library::m.example.org/official\n",
                canonical,
                true,
                pair("m.example.org/official/nginx:1.27", "m.example.org/hub/library/nginx:1.27"),
            ),
            // The webhook leaves it alone, or the node does not mirror it: nothing to compare.
            ("docker.io::\n", compat, true, None),
            ("quay.io::m.example.org/quay\n", compat, true, None),
            ("default::m.example.org/d\n", compat, true, None),
        ];
        for (rules, mode, host_level_only, expected) in table {
            assert_eq!(gap_of(rules, mode, host_level_only), expected, "{rules} {mode:?} {host_level_only}");
        }
    }
}

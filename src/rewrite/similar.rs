//! Near misses: how many edits apart two words are, so that a misspelled registry in a rule
//! (`grc.io` for `gcr.io`) or a misspelled rules key in a Palette document
//! (`registryMapingRules`) gets a "did you mean" instead of silence.

/// The registries most rules name; a rule source one or two edits from one of them is
/// probably a typo of it.
pub const WELL_KNOWN_REGISTRIES: [&str; 7] =
    ["docker.io", "gcr.io", "ghcr.io", "quay.io", "registry.k8s.io", "mcr.microsoft.com", "public.ecr.aws"];

/// Registry domains whose hosts or paths many owners share (cloud registries: one host per
/// account under these domains, or one project per path).
pub const SHARED_REGISTRY_DOMAINS: [&str; 12] = [
    "docker.io",
    "gcr.io",
    "ghcr.io",
    "quay.io",
    "registry.k8s.io",
    "mcr.microsoft.com",
    "public.ecr.aws",
    "amazonaws.com",
    "azurecr.io",
    "pkg.dev",
    "icr.io",
    "nvcr.io",
];

/// The shared registry domain a `noswap_wildcards` entry names as a whole: the entry is that
/// domain, a parent of it, or a domain under it that still names no single owner's registry
/// (`dkr.ecr.us-east-1.amazonaws.com`, every AWS account's). An entry with a path names one
/// owner (`gcr.io/my-project`) and is fine.
pub fn shared_registry(entry: &str) -> Option<&'static str> {
    let entry = entry.trim().trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
    if entry.contains('/') || entry.is_empty() {
        return None;
    }
    let host = entry.split(':').next().unwrap_or_default();
    let under = |domain: &str, name: &str| name == domain || name.ends_with(&format!(".{domain}"));
    SHARED_REGISTRY_DOMAINS.iter().copied().find(|domain| {
        // The entry is the shared domain or a parent of it (`io` names gcr.io too) ...
        under(host, domain)
            // ... or a name under one that is a service endpoint rather than an owner's own
            // host: AWS and Azure give each account its own host, so only those are safe.
            || (under(domain, host) && !owner_host(host, domain))
    })
}

/// Whether `host`, under the shared `domain`, is one owner's own registry host.
fn owner_host(host: &str, domain: &str) -> bool {
    match domain {
        // 123456789012.dkr.ecr.REGION.amazonaws.com
        "amazonaws.com" => {
            host.split('.').next().is_some_and(|first| first.len() == 12 && first.bytes().all(|b| b.is_ascii_digit()))
        }
        // NAME.azurecr.io
        "azurecr.io" => host.matches('.').count() == 2,
        _ => false,
    }
}

/// Real registries a few edits from a well-known one (IBM's `icr.io`, NVIDIA's `nvcr.io`,
/// LinuxServer's `lscr.io`, and the well-known ones among themselves): never a typo.
const REAL_NEIGHBOURS: [&str; 6] = ["icr.io", "nvcr.io", "lscr.io", "k8s.gcr.io", "ecr.aws", "docker.com"];

/// Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`, counted
/// up to `limit`: any larger distance is `limit + 1`.
pub fn distance(a: &str, b: &str, limit: usize) -> usize {
    // Lengths first, without copying: a word far longer than the other (a 1 MB YAML key) costs
    // nothing more.
    if a.chars().count().abs_diff(b.chars().count()) > limit {
        return limit + 1;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Three rows of the optimal-string-alignment table.
    let mut before: Vec<usize> = Vec::new();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut current = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            current[j] = (previous[j] + 1).min(current[j - 1] + 1).min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                current[j] = current[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut previous, current);
    }
    previous[b.len()].min(limit + 1)
}

/// The well-known registry `host` (no port, any case) is probably a typo of: the nearest, one
/// or two edits from it, and not itself a registry.
pub fn misspelled_registry(host: &str) -> Option<&'static str> {
    let host = host.to_ascii_lowercase();
    if WELL_KNOWN_REGISTRIES.contains(&host.as_str()) || REAL_NEIGHBOURS.contains(&host.as_str()) {
        return None;
    }
    let nearest = WELL_KNOWN_REGISTRIES.into_iter().map(|known| (distance(&host, known, 2), known)).min()?;
    (1..=2).contains(&nearest.0).then_some(nearest.1)
}

/// The word of `known` that `word` is probably a typo of: one or two edits from it, or the
/// same but for case.
pub fn near<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known.iter().copied().find(|candidate| {
        *candidate != word && (candidate.eq_ignore_ascii_case(word) || distance(word, candidate, 2) <= 2)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcards_naming_shared_registries() {
        let table = [
            ("gcr.io", Some("gcr.io")),
            ("docker.io", Some("docker.io")),
            ("io", Some("docker.io")),
            ("mirror.gcr.io", Some("gcr.io")),
            ("dkr.ecr.us-east-1.amazonaws.com", Some("amazonaws.com")),
            ("us-docker.pkg.dev", Some("pkg.dev")),
            ("azurecr.io", Some("azurecr.io")),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com", None),
            ("myteam.azurecr.io", None),
            ("gcr.io/my-project", None),
            ("twr.io", None),
            ("internal.example.org", None),
            ("10.0.0.", None),
        ];
        for (entry, shared) in table {
            assert_eq!(shared_registry(entry), shared, "{entry}");
        }
    }

    use super::*;

    #[test]
    fn distances_count_edits_and_swaps() {
        let table = [
            ("gcr.io", "gcr.io", 0),
            ("grc.io", "gcr.io", 1),
            ("gcr.io", "ghcr.io", 1),
            ("qauy.io", "quay.io", 1),
            ("dokcer.io", "docker.io", 1),
            ("registryMapingRules", "registryMappingRules", 1),
            ("abc", "xyz", 3),
            ("a", "abcdefgh", 3),
        ];
        for (a, b, expected) in table {
            assert_eq!(distance(a, b, 2), expected.min(3), "{a} {b}");
        }
    }

    #[test]
    fn typos_of_well_known_registries_and_not_real_ones() {
        let table = [
            ("grc.io", Some("gcr.io")),
            ("GRC.IO", Some("gcr.io")),
            ("docker.i", Some("docker.io")),
            ("dockr.io", Some("docker.io")),
            ("qauy.io", Some("quay.io")),
            ("registry.k8.io", Some("registry.k8s.io")),
            ("ghcr.oi", Some("ghcr.io")),
            ("gcr.io", None),
            ("ghcr.io", None),
            ("icr.io", None),
            ("nvcr.io", None),
            ("eu.gcr.io", None),
            ("k8s.gcr.io", None),
            ("harbor.example.org", None),
            ("us-docker.pkg.dev", None),
        ];
        for (host, expected) in table {
            assert_eq!(misspelled_registry(host), expected, "{host}");
        }
    }
}

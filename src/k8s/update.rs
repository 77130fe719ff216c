//! What a request may change: on UPDATE, only the images that are new or changed against
//! `oldObject`, and never a field the API server treats as immutable for the kind, the
//! operation and the subresource.
//!
//! The rules, from the API server's update validation (`ValidatePodUpdate`,
//! `ValidatePodEphemeralContainersUpdate`, `ValidateJobUpdate`):
//! - CREATE: every image, pull secrets and the annotation.
//! - UPDATE of a Pod: `containers` and `initContainers` images and metadata may change;
//!   `spec.imagePullSecrets` and `ephemeralContainers` may not.
//! - UPDATE of `pods/ephemeralcontainers`: only `spec.ephemeralContainers` (metadata changes
//!   are dropped by the API server, so none are made).
//! - UPDATE of a Job: `spec.template` is immutable, so no image is rewritten.
//! - UPDATE of the other workloads (a CronJob's `jobTemplate` included): the template may change.
//! - Any other subresource (`status`, `resize`, …) cannot change images: left alone.
//!
//! An image equal to the old object's is left as it is, so an unrelated update (a label, a
//! controller's finalizer) restarts no container and rolls out nothing. A container is the old
//! object's container with the same name in the same list (names are unique in a pod, and are
//! what Kubernetes matches containers by); a nameless container is the nameless container at
//! the same index. An UPDATE without `oldObject` treats every image as changed.
//!
//! [`Changes`] puts these together for one request: `/mutate` rewrites, and the `/validate`
//! leak guard judges, exactly the fields it calls [`Verdict::Rewrite`] (`server::admission`,
//! `server::validate`). With `--pin-digest`, a changed image whose rewrite is the old image
//! without its digest keeps the old pinned reference ([`Changes::kept_pin`]).

use std::cell::OnceCell;
use std::collections::HashMap;

use kube::core::admission::Operation;

use super::review::{Container, Object, Request, Spec};
use super::workload::{self, CONTAINER_LISTS, ImageField};
use crate::rewrite::RuleSet;

/// The subresource through which debug containers are added to a running Pod.
pub const EPHEMERAL_SUBRESOURCE: &str = "ephemeralcontainers";

/// What one request may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Per entry of [`CONTAINER_LISTS`]: its images may be rewritten.
    pub lists: [bool; 3],
    /// Entries may be added to `spec.imagePullSecrets`.
    pub pull_secrets: bool,
    /// `metadata` (the original-images annotation) may change.
    pub metadata: bool,
    /// UPDATE: images are compared with the old object.
    pub update: bool,
}

impl Scope {
    const CREATE: Self = Self { lists: [true; 3], pull_secrets: true, metadata: true, update: false };
    const TEMPLATE_UPDATE: Self = Self { update: true, ..Self::CREATE };
    const POD_UPDATE: Self = Self { lists: [true, true, false], pull_secrets: false, metadata: true, update: true };
    const JOB_UPDATE: Self = Self { lists: [false; 3], pull_secrets: false, metadata: true, update: true };
    const EPHEMERAL_UPDATE: Self =
        Self { lists: [false, false, true], pull_secrets: false, metadata: false, update: true };

    /// Whether images of `list` (one of [`CONTAINER_LISTS`]) may be rewritten.
    pub fn allows(&self, list: &str) -> bool {
        CONTAINER_LISTS.iter().position(|name| *name == list).is_some_and(|index| self.lists[index])
    }
}

/// What `kind` (from [`workload::known_kind`]) may change on `operation` through `sub_resource`
/// (empty for the object itself); `None` when mirrorswap leaves the request alone.
pub fn scope(kind: &str, operation: &Operation, sub_resource: &str) -> Option<Scope> {
    match (operation, sub_resource) {
        (Operation::Create, "") => Some(Scope::CREATE),
        (Operation::Update, "") => Some(match kind {
            "Pod" => Scope::POD_UPDATE,
            "Job" => Scope::JOB_UPDATE,
            _ => Scope::TEMPLATE_UPDATE,
        }),
        (Operation::Update, EPHEMERAL_SUBRESOURCE) if kind == "Pod" => Some(Scope::EPHEMERAL_UPDATE),
        _ => None,
    }
}

/// What to do with one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New or changed in a field that may change: ask the rules.
    Rewrite,
    /// Equal to the old object's image: left alone.
    Unchanged,
    /// Changed, in a field this request may not change: left alone.
    Immutable,
}

/// The verdict for `field` in a request of `scope`, with the old object's images (UPDATE).
pub fn verdict(scope: &Scope, old: Option<&OldImages<'_, '_>>, field: &ImageField<'_>) -> Verdict {
    if scope.update && old.is_some_and(|old| old.image(field) == Some(field.image)) {
        Verdict::Unchanged
    } else if scope.allows(field.list) {
        Verdict::Rewrite
    } else {
        Verdict::Immutable
    }
}

/// One request's object, what the request may change in it, and the old object's images.
pub struct Changes<'r, 'a> {
    /// What the request may change.
    pub scope: Scope,
    /// The object being admitted.
    pub object: &'r Object<'a>,
    spec_path: &'static [&'static str],
    old: Option<OldImages<'r, 'a>>,
}

impl<'r, 'a> Changes<'r, 'a> {
    /// The changes `request` makes to an object of a known kind (`(kind, spec_path)` from
    /// [`workload::known_kind`]); `None` when mirrorswap leaves the request alone ([`scope`])
    /// or it carries no object.
    pub fn of(request: &'r Request<'a>, (kind, spec_path): (&str, &'static [&'static str])) -> Option<Self> {
        let scope = scope(kind, &request.operation, request.sub_resource.as_deref().unwrap_or(""))?;
        let object = request.object.as_ref()?;
        let old = request.old_object.as_ref().filter(|_| scope.update).map(|old| OldImages::new(old, spec_path));
        Some(Self { scope, object, spec_path, old })
    }

    /// Every image field of the object with its verdict, in [`workload::image_fields`] order.
    pub fn fields(&self) -> impl Iterator<Item = (ImageField<'r>, Verdict)> + '_ {
        workload::image_fields(self.object, self.spec_path).into_iter().map(|field| {
            let verdict = verdict(&self.scope, self.old.as_ref(), &field);
            (field, verdict)
        })
    }

    /// The old object's image of `field`'s container (UPDATE), when it had one.
    pub fn old_image(&self, field: &ImageField<'_>) -> Option<&'r str> {
        self.old.as_ref()?.image(field)
    }

    /// On UPDATE, the old pinned reference `field` keeps (`--pin-digest`): the old image has a
    /// digest, the new one has none, and the old one without its digest is the new one or one
    /// of its candidates under `rules` (their targets for it, most specific first). A GitOps
    /// tool re-applying `quay.io/team/app:1` over a stored `MIRROR/team/app:1@sha256:…` so
    /// changes nothing, even when the tag has moved since or the mirror cannot be asked now;
    /// another tag, or a digest the user wrote, is decided as any change is.
    pub fn kept_pin(&self, rules: &RuleSet, field: &ImageField<'_>) -> Option<&'r str> {
        let old = self.old_image(field)?;
        if field.image.contains('@') {
            return None;
        }
        let (unpinned, _) = old.rsplit_once('@')?;
        let names_it = unpinned == field.image
            || rules.candidates(field.image).targets.iter().any(|candidate| candidate.image == unpinned);
        names_it.then_some(old)
    }

    /// The fields to decide on ([`Verdict::Rewrite`]): new or changed, where the request may
    /// change them.
    pub fn to_decide(&self) -> impl Iterator<Item = ImageField<'r>> + '_ {
        self.fields().filter(|(_, verdict)| *verdict == Verdict::Rewrite).map(|(field, _)| field)
    }
}

/// The images of the old object's pod spec, found by container.
pub struct OldImages<'o, 'a> {
    lists: [&'o [Container<'a>]; 3],
    /// (list, name) → image, built on the first container not found at its own index.
    by_name: OnceCell<HashMap<(usize, &'o str), Option<&'o str>>>,
}

impl<'o, 'a> OldImages<'o, 'a> {
    /// The images of `old`'s pod spec at `spec_path`.
    pub fn new(old: &'o Object<'a>, spec_path: &[&str]) -> Self {
        let spec = workload::pod_spec(old, spec_path);
        let list = |pick: fn(&'o Spec<'a>) -> &'o Option<Vec<Container<'a>>>| {
            spec.and_then(|spec| pick(spec).as_deref()).unwrap_or(&[])
        };
        Self {
            lists: [
                list(|spec| &spec.containers),
                list(|spec| &spec.init_containers),
                list(|spec| &spec.ephemeral_containers),
            ],
            by_name: OnceCell::new(),
        }
    }

    /// The old image of `field`'s container, `None` when the container is new or had no image.
    pub fn image(&self, field: &ImageField<'_>) -> Option<&'o str> {
        let list_index = CONTAINER_LISTS.iter().position(|name| *name == field.list)?;
        let list = self.lists[list_index];
        let name = |container: &'o Container<'a>| container.name.as_deref().unwrap_or("");
        // Lists usually keep their order: the container at the same index is checked first.
        if let Some(same) = list.get(field.index).filter(|old| name(old) == field.container) {
            return same.image.as_deref();
        }
        if field.container.is_empty() {
            return None;
        }
        // A map, not a scan per container: a request with thousands of reordered containers
        // must not cost their square.
        let by_name = self.by_name.get_or_init(|| {
            let mut map = HashMap::new();
            for (index, list) in self.lists.iter().enumerate() {
                for container in list.iter().filter(|container| !name(container).is_empty()) {
                    map.entry((index, name(container))).or_insert(container.image.as_deref());
                }
            }
            map
        });
        by_name.get(&(list_index, field.container)).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Object<'_> {
        serde_json::from_str(json).unwrap()
    }

    const POD: &[&str] = &["spec"];

    /// (container, image, verdict) for each image of `new` against `old` in `scope`.
    fn verdicts<'n>(scope: &Scope, old: Option<&Object<'_>>, new: &'n Object<'_>) -> Vec<(&'n str, &'n str, Verdict)> {
        let old = old.map(|old| OldImages::new(old, POD));
        workload::image_fields(new, POD)
            .iter()
            .map(|field| (field.container, field.image, verdict(scope, old.as_ref(), field)))
            .collect()
    }

    #[test]
    fn scopes_follow_the_api_servers_rules() {
        let cases = [
            ("Pod", Operation::Create, "", Some(Scope::CREATE)),
            ("Deployment", Operation::Create, "", Some(Scope::CREATE)),
            ("Pod", Operation::Update, "", Some(Scope::POD_UPDATE)),
            ("Pod", Operation::Update, "ephemeralcontainers", Some(Scope::EPHEMERAL_UPDATE)),
            ("Pod", Operation::Update, "status", None),
            ("Pod", Operation::Update, "resize", None),
            ("Deployment", Operation::Update, "status", None),
            ("Deployment", Operation::Update, "ephemeralcontainers", None),
            ("Job", Operation::Update, "", Some(Scope::JOB_UPDATE)),
            ("CronJob", Operation::Update, "", Some(Scope::TEMPLATE_UPDATE)),
            ("StatefulSet", Operation::Update, "", Some(Scope::TEMPLATE_UPDATE)),
            ("Pod", Operation::Delete, "", None),
            ("Pod", Operation::Connect, "", None),
        ];
        for (kind, operation, sub_resource, expected) in cases {
            assert_eq!(scope(kind, &operation, sub_resource), expected, "{kind} {operation:?} {sub_resource}");
        }
        let pod = Scope::POD_UPDATE;
        assert!(pod.allows("containers") && pod.allows("initContainers") && !pod.allows("ephemeralContainers"));
        assert!(!pod.pull_secrets && pod.metadata);
        let ephemeral = Scope::EPHEMERAL_UPDATE;
        assert!(!ephemeral.allows("containers") && ephemeral.allows("ephemeralContainers"));
        assert!(!ephemeral.pull_secrets && !ephemeral.metadata);
        assert!(!Scope::CREATE.allows("volumes"));
    }

    #[test]
    fn only_new_or_changed_images_are_rewritten_on_update() {
        use Verdict::*;
        let old = object(
            r#"{"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}, {"name": "side", "image": "envoy"},
            {"name": "bare"}], "initContainers": [{"name": "init", "image": "busybox"}]}}"#,
        );
        // Reordered, one image changed, one container new, one image added to a container that had none.
        let new = object(
            r#"{"spec": {"containers": [{"name": "side", "image": "envoy"}, {"name": "web", "image": "nginx:1.27"},
            {"name": "cache", "image": "redis"}, {"name": "bare", "image": "alpine"}],
            "initContainers": [{"name": "init", "image": "busybox"}]}}"#,
        );
        let update = Scope::TEMPLATE_UPDATE;
        assert_eq!(
            verdicts(&update, Some(&old), &new),
            [
                ("side", "envoy", Unchanged),
                ("web", "nginx:1.27", Rewrite),
                ("cache", "redis", Rewrite),
                ("bare", "alpine", Rewrite),
                ("init", "busybox", Unchanged)
            ]
        );
        // The same name in another list is another container.
        let moved = object(r#"{"spec": {"initContainers": [{"name": "web", "image": "nginx:1.26"}]}}"#);
        assert_eq!(verdicts(&update, Some(&old), &moved), [("web", "nginx:1.26", Rewrite)]);
        // Without an old object (or on CREATE) every image is asked about.
        assert!(verdicts(&update, None, &new).iter().all(|(_, _, verdict)| *verdict == Rewrite));
        assert!(verdicts(&Scope::CREATE, Some(&new), &new).iter().all(|(_, _, verdict)| *verdict == Rewrite));
    }

    #[test]
    fn immutable_lists_are_never_rewritten() {
        use Verdict::*;
        let old = object(r#"{"spec": {"containers": [{"name": "a", "image": "x"}]}}"#);
        let new = object(r#"{"spec": {"containers": [{"name": "a", "image": "y"}, {"name": "b", "image": "z"}]}}"#);
        assert_eq!(verdicts(&Scope::JOB_UPDATE, Some(&old), &new), [("a", "y", Immutable), ("b", "z", Immutable)]);
        assert_eq!(verdicts(&Scope::JOB_UPDATE, Some(&old), &old), [("a", "x", Unchanged)]);
        let debug = object(
            r#"{"spec": {"containers": [{"name": "a", "image": "x"}], "ephemeralContainers": [{"name": "d", "image": "busybox"}]}}"#,
        );
        assert_eq!(
            verdicts(&Scope::POD_UPDATE, Some(&old), &debug),
            [("a", "x", Unchanged), ("d", "busybox", Immutable)]
        );
        assert_eq!(
            verdicts(&Scope::EPHEMERAL_UPDATE, Some(&old), &debug),
            [("a", "x", Unchanged), ("d", "busybox", Rewrite)]
        );
        assert_eq!(verdicts(&Scope::EPHEMERAL_UPDATE, Some(&debug), &debug)[1], ("d", "busybox", Unchanged));
    }

    #[test]
    fn an_old_pin_is_kept_when_the_new_image_rewrites_to_its_tag() {
        use crate::rewrite::{Options, compile_maps};
        let rules = compile_maps("quay.io/team::m.io/specific\nquay.io::m.io/general\n", Options::default())
            .expect("rules")
            .rules;
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let other = "sha256:1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        // (old image, new image, kept)
        let table = [
            // A GitOps tool re-applies the tag over the pinned rewrite: kept.
            (format!("m.io/specific/app:1@{digest}"), "quay.io/team/app:1".to_owned(), true),
            // The old pin came from the fallback rule: still one of the candidates, kept.
            (format!("m.io/general/team/app:1@{digest}"), "quay.io/team/app:1".to_owned(), true),
            // The mirror reference itself, without its digest: kept.
            (format!("m.io/specific/app:1@{digest}"), "m.io/specific/app:1".to_owned(), true),
            // Another tag: decided anew.
            (format!("m.io/specific/app:1@{digest}"), "quay.io/team/app:2".to_owned(), false),
            // A digest the user wrote: theirs.
            (format!("m.io/specific/app:1@{digest}"), format!("quay.io/team/app:1@{other}"), false),
            // The old image was not pinned.
            ("m.io/specific/app:1".to_owned(), "quay.io/team/app:1".to_owned(), false),
            // Another repository's pin.
            (format!("m.io/specific/other:1@{digest}"), "quay.io/team/app:1".to_owned(), false),
        ];
        for (old, new, kept) in table {
            let request = |image: &str| json_pod(image);
            let review = format!(
                r#"{{"uid": "u", "kind": {{"group": "", "version": "v1", "kind": "Pod"}}, "operation": "UPDATE",
                "object": {}, "oldObject": {}}}"#,
                request(&new),
                request(&old)
            );
            let request: Request<'_> = serde_json::from_str(&review).unwrap();
            let changes = Changes::of(&request, ("Pod", POD)).unwrap();
            let field = changes.to_decide().next().expect("the image changed");
            assert_eq!(changes.kept_pin(&rules, &field), kept.then_some(old.as_str()), "{old} -> {new}");
        }
    }

    fn json_pod(image: &str) -> String {
        serde_json::json!({"spec": {"containers": [{"name": "app", "image": image}]}}).to_string()
    }

    #[test]
    fn nameless_containers_match_by_index() {
        use Verdict::*;
        let old = object(r#"{"spec": {"containers": [{"image": "a"}, {"image": "b"}]}}"#);
        let new = object(r#"{"spec": {"containers": [{"image": "a"}, {"image": "c"}, {"image": "d"}]}}"#);
        let update = Scope::TEMPLATE_UPDATE;
        assert_eq!(verdicts(&update, Some(&old), &new), [("", "a", Unchanged), ("", "c", Rewrite), ("", "d", Rewrite)]);
        // A named container never matches a nameless one, and the other way round.
        let named = object(r#"{"spec": {"containers": [{"name": "x", "image": "a"}]}}"#);
        assert_eq!(verdicts(&update, Some(&old), &named), [("x", "a", Rewrite)]);
        assert_eq!(verdicts(&update, Some(&named), &old)[0], ("", "a", Rewrite));
    }
}

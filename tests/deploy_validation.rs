//! The chart's opt-in leak guard and audit ClusterRole, rendered by real `helm`: the
//! ValidatingWebhookConfiguration shares the mutating webhook's certificate, namespaceSelector
//! and resources, calls `/validate`, and the server flags it renders are ones `serve` accepts.

mod common;

use common::chart::{all_of, render, strings};
use common::serve_args;
use mirrorswap::server::validate::Mode;

#[test]
fn validation_on_mirrors_the_mutating_webhook_and_configures_the_server() {
    let documents = render(Some("validation-values.yaml"));
    let [mutating] = all_of(&documents, "MutatingWebhookConfiguration")[..] else { panic!("one mutating webhook") };
    let [validating] = all_of(&documents, "ValidatingWebhookConfiguration")[..] else {
        panic!("one validating webhook")
    };
    let (mutating, validating) = (&mutating["webhooks"], &validating["webhooks"]);
    assert_eq!(validating.as_vec().unwrap().len(), mutating.as_vec().unwrap().len());
    for (mutate, validate) in mutating.as_vec().unwrap().iter().zip(validating.as_vec().unwrap()) {
        assert_eq!(validate["clientConfig"]["caBundle"], mutate["clientConfig"]["caBundle"], "same certificate");
        assert!(validate["clientConfig"]["caBundle"].as_str().is_some_and(|ca| ca.starts_with("LS0t")));
        assert_eq!(validate["namespaceSelector"], mutate["namespaceSelector"], "same namespaces");
        assert_eq!(validate["rules"], mutate["rules"], "the pods the mutating webhook rewrites");
        assert_eq!(validate["clientConfig"]["service"]["path"].as_str(), Some("/validate"));
        assert_eq!(mutate["clientConfig"]["service"]["path"].as_str(), Some("/mutate"));
        assert_eq!(validate["failurePolicy"].as_str(), Some("Fail"));
        assert!(validate["reinvocationPolicy"].is_badvalue(), "not a field of validating webhooks");
        assert_eq!(validate["name"].as_str().map(|name| name.starts_with("validate-")), Some(true));
    }

    let [deployment] = all_of(&documents, "Deployment")[..] else { panic!("one Deployment") };
    let mut argv = vec!["mirrorswap".to_owned()];
    argv.extend(
        strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]).into_iter().map(str::to_owned),
    );
    let args = serve_args(&argv);
    assert_eq!(args.validation.unmirrored, Mode::Deny);
    let allowed: Vec<&str> = args.validation.allow_registries.iter().map(|prefix| prefix.as_str()).collect();
    assert_eq!(allowed, ["registry.internal.example.com", "docker.io/library"]);
    assert!(args.validation.guard_honors_object_opt_out);

    let [role] = all_of(&documents, "ClusterRole")[..] else { panic!("one ClusterRole") };
    let rules = role["rules"].as_vec().unwrap();
    assert!(rules.iter().all(|rule| strings(&rule["verbs"]) == ["list"]), "read-only: list only");
    let resources: Vec<&str> = rules.iter().flat_map(|rule| strings(&rule["resources"])).collect();
    assert_eq!(
        resources,
        [
            "pods",
            "podtemplates",
            "replicationcontrollers",
            "deployments",
            "statefulsets",
            "daemonsets",
            "replicasets",
            "jobs",
            "cronjobs"
        ]
    );
    let [binding] = all_of(&documents, "ClusterRoleBinding")[..] else { panic!("one ClusterRoleBinding") };
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"].as_str(), Some("platform-admins"));
}

#[test]
fn validation_and_audit_rbac_are_opt_in() {
    let documents = render(None);
    for kind in ["ValidatingWebhookConfiguration", "ClusterRole", "ClusterRoleBinding"] {
        assert!(all_of(&documents, kind).is_empty(), "{kind} only when enabled");
    }
    let [deployment] = all_of(&documents, "Deployment")[..] else { panic!("one Deployment") };
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.iter().all(|arg| !arg.starts_with("--unmirrored") && !arg.starts_with("--allow-registry")));
}

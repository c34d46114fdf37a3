//! Issue 12 (security hardening), the API and render side: each test names its item.

use std::path::Path;

use causeway_crds::manifest::load_str;
use causeway_crds::validate::{check_cidr, validate_pool};
use causeway_crds::{RenderContext, Scope, WorkerPoolSpec, render};

fn pool(ns: &str, name: &str) -> Scope {
    Scope::Pool {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn inv(text: &str) -> causeway_crds::Inventory {
    load_str(text, Path::new("/m/manifests.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

// Item 4 (render side): the pool's allowed destination CIDRs reach the worker.
#[test]
fn item4_pool_allowed_destination_cidrs_are_rendered_and_validated() {
    let text = r#"
apiVersion: causeway.dev/v1alpha1
kind: WorkerPool
metadata: {name: edge, namespace: shop}
spec:
  network:
    allowedDestinationCidrs: ["169.254.10.0/24", "fd00::/64"]
"#;
    let r = render(&inv(text), &pool("shop", "edge"), &RenderContext::default());
    assert_eq!(
        r.config.destination_allowed_cidrs,
        vec!["169.254.10.0/24", "fd00::/64"]
    );
    let json = serde_json::to_value(&r.config).unwrap();
    assert_eq!(json["destinationAllowedCidrs"][1], "fd00::/64");
    // Local mode: the one process may reach what any pool of the files allows.
    let r = render(&inv(text), &Scope::All, &RenderContext::default());
    assert_eq!(r.config.destination_allowed_cidrs.len(), 2);
    // An old config without the field still parses.
    let old: causeway_crds::WorkerConfig =
        serde_json::from_str(r#"{"version":"v","pool":"p","bridges":[],"plugins":[],"retention":{"maxAgeMs":1,"maxBytes":1}}"#).unwrap();
    assert!(old.destination_allowed_cidrs.is_empty());

    for good in ["169.254.169.254/32", "10.0.0.0/8", "::1/128", "0.0.0.0/0"] {
        assert!(check_cidr(good).is_ok(), "{good}");
    }
    for bad in [
        "169.254.0.0",
        "169.254.0.0/33",
        "fd00::/129",
        "x/8",
        "10.0.0.0/",
        "10.0.0.0/08",
        "10.0.0.0/-1",
    ] {
        assert!(check_cidr(bad).is_err(), "{bad}");
    }
    let mut spec = WorkerPoolSpec::default();
    spec.network.allowed_destination_cidrs = vec!["10.0.0.0/8".into(), "nope".into()];
    let errs = validate_pool(&spec).unwrap_err();
    assert_eq!(errs[0].path, "spec.network.allowedDestinationCidrs[1]");
}

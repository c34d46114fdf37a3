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

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn plugin(name: &str, source: &str) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  source: {source}\n  route: /p/{name}\n---\n"
    )
}

fn problems_of(r: &causeway_crds::Rendered, name: &str) -> Vec<(String, String)> {
    r.problems
        .iter()
        .filter(|p| p.name == name)
        .map(|p| (p.reason.clone(), p.message.clone()))
        .collect()
}

// Item 2: a file source reads the worker's own file system (the ServiceAccount token lives
// there): refused for a cluster pool, kept in local mode.
#[test]
fn item2_file_sources_are_refused_for_cluster_pools_and_kept_in_local_mode() {
    let text = plugin(
        "reader",
        "{file: /var/run/secrets/kubernetes.io/serviceaccount/token}",
    ) + &plugin(
        "fine",
        &format!("{{http: {{url: 'https://plugins.example.com/p.wasm', sha256: {HEX}}}}}"),
    );
    let r = render(
        &inv(&text),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    let names: Vec<&str> = r.config.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["fine"], "the file plugin is not rendered");
    let p = problems_of(&r, "reader");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "InvalidSpec");
    assert!(
        p[0].1.contains("spec.source.file") && p[0].1.contains("local mode"),
        "{}",
        p[0].1
    );
    assert!(
        !serde_json::to_string(&r.config)
            .unwrap()
            .contains("/var/run/secrets")
    );

    let r = render(&inv(&text), &Scope::All, &RenderContext::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.config.plugins.len(), 2);
}

// Item 20: an OCI source in a cluster must be pinned by digest; local mode may use tags;
// plain HTTP stays an opt-in that defaults off.
#[test]
fn item20_oci_sources_need_a_digest_in_cluster_scope() {
    let text = plugin(
        "tagged",
        "{oci: {reference: 'registry.example.com/team/p:1.2'}}",
    ) + &plugin(
        "pinned-ref",
        &format!("{{oci: {{reference: 'registry.example.com/team/p@sha256:{HEX}'}}}}"),
    ) + &plugin(
        "pinned-field",
        &format!(
            "{{oci: {{reference: 'registry.example.com/team/p:1.2', digest: 'sha256:{HEX}'}}}}"
        ),
    ) + &plugin(
        "short-digest",
        "{oci: {reference: 'registry.example.com/team/p@sha256:abc'}}",
    );
    let r = render(
        &inv(&text),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    let names: Vec<&str> = r.config.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["pinned-field", "pinned-ref"]);
    for bad in ["tagged", "short-digest"] {
        let p = problems_of(&r, bad);
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
        assert_eq!(p[0].0, "InvalidSpec");
        assert!(
            p[0].1.contains("spec.source.oci") && p[0].1.contains("digest"),
            "{}",
            p[0].1
        );
    }
    for pc in &r.config.plugins {
        assert!(
            matches!(
                pc.source,
                causeway_crds::config::SourceConfig::Oci {
                    insecure: false,
                    ..
                }
            ),
            "insecure defaults off"
        );
    }
    let r = render(&inv(&text), &Scope::All, &RenderContext::default());
    assert!(
        r.problems.is_empty(),
        "local mode may use tags: {:?}",
        r.problems
    );
}

// Item 13 (render side): an empty admin token is no token; it is never rendered as "".
#[test]
fn item13_an_empty_admin_token_is_never_rendered() {
    let text = plugin(
        "fine",
        &format!("{{http: {{url: 'https://plugins.example.com/p.wasm', sha256: {HEX}}}}}"),
    );
    for empty in ["", "  "] {
        let ctx = RenderContext {
            admin_token: Some(causeway_crds::config::SecretValue(empty.into())),
            ..RenderContext::default()
        };
        let r = render(&inv(&text), &pool("shop", "default"), &ctx);
        assert_eq!(r.config.admin_token, None, "{empty:?}");
    }
    let ctx = RenderContext {
        admin_token: Some(causeway_crds::config::SecretValue("t0k".into())),
        ..RenderContext::default()
    };
    assert_eq!(
        render(&inv(&text), &pool("shop", "default"), &ctx)
            .config
            .admin_token
            .unwrap()
            .expose(),
        "t0k"
    );
}

fn bridge(name: &str, ingress: &str) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  ingress: {ingress}\n  destinations: [{{name: a, url: 'http://sink.example.com/x'}}]\n---\n"
    )
}

const OPTED_SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: shop, labels: {causeway.dev/use: \"true\"}}\nstringData: {k: v}\n---\n";

// Item 9: presets that send a delivery id use it as the idempotency key unless the bridge
// names a header; an explicit `webhook-id` stays `webhook-id`.
#[test]
fn item9_presets_default_the_idempotency_header_to_their_delivery_id() {
    let hmac = |preset: &str| {
        format!("{{auth: {{hmac: {{preset: {preset}, secretRef: {{name: s, key: k}}}}}}}}")
    };
    let text = OPTED_SECRET.to_string()
        + &bridge("github", &hmac("github"))
        + &bridge("shopify", &hmac("shopify"))
        + &bridge("stripe", &hmac("stripe"))
        + &bridge("slack", &hmac("slack"))
        + &bridge("plain", "{}")
        + &bridge(
            "explicit",
            "{idempotencyHeader: webhook-id, auth: {hmac: {preset: github, secretRef: {name: s, key: k}}}}",
        )
        + &bridge("custom", "{idempotencyHeader: X-Request-Id}");
    let r = render(
        &inv(&text),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let got: std::collections::BTreeMap<&str, &str> = r
        .config
        .bridges
        .iter()
        .map(|b| (b.name.as_str(), b.idempotency_header.as_str()))
        .collect();
    assert_eq!(got["github"], "x-github-delivery");
    assert_eq!(got["shopify"], "x-shopify-webhook-id");
    assert_eq!(got["stripe"], "webhook-id");
    assert_eq!(got["slack"], "webhook-id");
    assert_eq!(got["plain"], "webhook-id");
    assert_eq!(
        got["explicit"], "webhook-id",
        "set explicitly: kept even with the github preset"
    );
    assert_eq!(got["custom"], "x-request-id");
    // The CRD no longer fills the field in, so "unset" and "set to webhook-id" differ.
    let crd =
        serde_json::to_string(&<causeway_crds::Bridge as kube::CustomResourceExt>::crd()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&crd).unwrap();
    let field = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["ingress"]["properties"]["idempotencyHeader"];
    assert!(field.is_object(), "{field}");
    assert!(field.get("default").is_none(), "no schema default: {field}");
}

// Item 10: in a cluster a Secret is used only when it opts in with `causeway.dev/use: "true"`;
// otherwise the object gets a clear problem and the value is not rendered. Local mode
// (the user's own files) does not need the label.
#[test]
fn item10_secrets_need_the_opt_in_label_in_cluster_scope() {
    let unlabelled = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: hunter2-value}\n---\n";
    let wrong_value = "apiVersion: v1\nkind: Secret\nmetadata: {name: half, namespace: shop, labels: {causeway.dev/use: \"yes\"}}\nstringData: {k: half-value}\n---\n";
    let text = unlabelled.to_string()
        + wrong_value
        + OPTED_SECRET
        + "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: leak, namespace: shop}\nspec:\n  destinations: [{name: a, url: 'http://sink.example.com/$env.P'}]\n  env: [{name: P, valueFrom: {secretKeyRef: {name: db, key: password}}}]\n---\n"
        + &bridge(
            "auth",
            "{auth: {basic: {username: u, passwordRef: {name: half, key: k}}}}",
        )
        + &bridge("ok", "{auth: {apiKey: {secretRef: {name: s, key: k}}}}")
        + &format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: vars, namespace: shop}}\nspec:\n  source: {{http: {{url: 'https://plugins.example.com/p.wasm', sha256: {HEX}}}}}\n  route: /vars\n  variables: [{{name: v, valueFrom: {{secretKeyRef: {{name: db, key: password}}}}}}]\n---\n"
        );
    let r = render(
        &inv(&text),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    let names: Vec<&str> = r.config.bridges.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, vec!["ok"]);
    assert!(r.config.plugins.is_empty());
    for (object, secret) in [("leak", "db"), ("auth", "half"), ("vars", "db")] {
        let p = problems_of(&r, object);
        assert_eq!(p.len(), 1, "{object}: {p:?}");
        assert_eq!(p[0].0, "SecretNotOptedIn");
        assert!(
            p[0].1.contains(&format!("Secret {secret:?}"))
                && p[0].1.contains("causeway.dev/use: \"true\""),
            "{}",
            p[0].1
        );
    }
    let all = format!(
        "{:?} {}",
        r.problems,
        serde_json::to_string(&r.config).unwrap()
    );
    assert!(
        !all.contains("hunter2-value") && !all.contains("half-value"),
        "values never rendered or quoted"
    );

    let r = render(&inv(&text), &Scope::All, &RenderContext::default());
    assert!(
        r.problems.is_empty(),
        "local mode needs no label: {:?}",
        r.problems
    );
}

// Item 11: routes fall back to the pool's internal ClusterIP Service, whose name fits a DNS
// label for the longest pool name.
#[test]
fn item11_routes_fall_back_to_the_internal_service() {
    use causeway_crds::config::internal_service_name;
    assert_eq!(internal_service_name("data"), "causeway-data-internal");
    let long = "a".repeat(causeway_crds::config::MAX_POOL_NAME);
    let name = internal_service_name(&long);
    assert!(
        name.len() <= 63 && name.starts_with("causeway-a") && name.ends_with("-internal"),
        "{name}"
    );
    assert_ne!(
        internal_service_name(&"a".repeat(50)),
        internal_service_name(&"a".repeat(51))
    );
    let text = format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: data, namespace: shop}}\nspec: {{}}\n---\napiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: store, namespace: shop}}\nspec:\n  source: {{http: {{url: 'https://plugins.example.com/p.wasm', sha256: {HEX}}}}}\n  pool: data\n"
    );
    let r = render(
        &inv(&text),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    assert_eq!(
        r.config.routes[0].urls,
        vec!["http://causeway-data-internal.shop.svc:8081"]
    );
}

// Issue 18 (pull secrets, render side): `pullSecret` names a dockerconfigjson Secret; the
// credentials for the reference's registry reach the worker's config, never its Debug
// output; a Secret without an entry for that registry, not JSON, or not opted in (in a
// cluster) keeps the plugin out with a reason, instead of pulling anonymously.
#[test]
fn pull_secret_gives_the_registry_credentials_of_the_reference() {
    use base64::Engine as _;
    use causeway_crds::config::SourceConfig;
    let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cr3t-pull");
    let secret = |name: &str, json: &str, opted_in: bool| {
        let labels = if opted_in {
            ", labels: {causeway.dev/use: \"true\"}"
        } else {
            ""
        };
        format!(
            "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/dockerconfigjson\nmetadata: {{name: {name}, namespace: shop{labels}}}\nstringData:\n  .dockerconfigjson: '{json}'\n---\n"
        )
    };
    let oci = |name: &str, reference: &str, pull_secret: &str| {
        plugin(
            name,
            &format!(
                "{{oci: {{reference: '{reference}@sha256:{HEX}', pullSecret: {pull_secret}}}}}"
            ),
        )
    };
    let text = secret(
        "regcred",
        &format!(
            r#"{{"auths": {{"https://registry.example.com/v1/": {{"auth": "{auth}"}}, "127.0.0.1:5000": {{"username": "u2", "password": "p2"}}}}}}"#
        ),
        true,
    ) + &secret(
        "hub-only",
        r#"{"auths": {"https://index.docker.io/v1/": {"auth": "eDp5"}}}"#,
        true,
    ) + &secret("garbage", "not json", true)
        + &secret("unlabelled", r#"{"auths": {}}"#, false)
        + &oci("by-auth", "registry.example.com/team/p", "regcred")
        + &oci("by-fields", "127.0.0.1:5000/team/p", "regcred")
        + &oci("hub", "library/p", "hub-only")
        + &oci("other-registry", "registry.example.com/team/p", "hub-only")
        + &oci("not-json", "registry.example.com/team/p", "garbage")
        + &oci("not-opted-in", "registry.example.com/team/p", "unlabelled")
        + &oci("missing", "registry.example.com/team/p", "nope");
    let r = render(
        &inv(&text),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    let creds = |name: &str| {
        let pc = r
            .config
            .plugins
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} not rendered: {:?}", r.problems));
        match &pc.source {
            SourceConfig::Oci {
                credentials: Some(c),
                ..
            } => (
                c.username.expose().to_string(),
                c.password.expose().to_string(),
            ),
            other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(creds("by-auth"), ("robot".into(), "s3cr3t-pull".into()));
    assert_eq!(creds("by-fields"), ("u2".into(), "p2".into()));
    assert_eq!(creds("hub"), ("x".into(), "y".into()));
    let debug = format!("{:?}", r.config);
    assert!(!debug.contains("s3cr3t-pull"), "Debug shows the password");

    let p = problems_of(&r, "other-registry");
    assert_eq!(p[0].0, "SecretNotFound", "{p:?}");
    assert!(
        p[0].1
            .contains("no credentials for registry \"registry.example.com\""),
        "{p:?}"
    );
    let p = problems_of(&r, "not-json");
    assert_eq!(p[0].0, "InvalidSpec", "{p:?}");
    assert!(
        p[0].1.contains(".dockerconfigjson") && p[0].1.contains("not JSON"),
        "{p:?}"
    );
    assert_eq!(problems_of(&r, "not-opted-in")[0].0, "SecretNotOptedIn");
    assert_eq!(problems_of(&r, "missing")[0].0, "SecretNotFound");
    for p in &r.problems {
        assert!(!p.message.contains("s3cr3t"), "{p:?}");
    }
}

// Issue 18 (OAuth2, API side): the token URL must be HTTP(S); oauth2 owns the
// Authorization header; the client secret comes from a Secret and is redacted like any.
#[test]
fn oauth2_destinations_are_validated_and_their_secret_is_redacted() {
    use causeway_crds::validate::validate_bridge;
    let spec = |extra: &str| -> causeway_crds::BridgeSpec {
        serde_yaml::from_str(&format!(
            "destinations:\n- name: api\n  url: https://api.example.com/orders\n{extra}  oauth2:\n    tokenUrl: https://auth.example.com/token\n    clientId: shop\n    clientSecretRef: {{name: oauth, key: secret}}\n"
        ))
        .unwrap()
    };
    assert!(validate_bridge(&spec("")).is_ok());
    let errs = validate_bridge(&spec("  headers: {authorization: Bearer x}\n")).unwrap_err();
    assert!(
        errs.iter().any(|e| e.path == "spec.destinations[0].oauth2"
            && e.message.contains("Authorization")),
        "{errs:?}"
    );
    let mut bad = spec("");
    bad.destinations[0].oauth2.as_mut().unwrap().token_url = "ftp://auth.example.com".into();
    let errs = validate_bridge(&bad).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.path == "spec.destinations[0].oauth2.tokenUrl"),
        "{errs:?}"
    );

    let text = r#"
apiVersion: v1
kind: Secret
metadata: {name: oauth, namespace: shop, labels: {causeway.dev/use: "true"}}
stringData: {secret: oauth-client-s3cret}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: orders, namespace: shop}
spec:
  destinations:
  - name: api
    url: https://api.example.com/orders
    oauth2:
      tokenUrl: https://auth.example.com/token
      clientId: shop
      clientSecretRef: {name: oauth, key: secret}
      clientAuth: body
"#;
    let r = render(
        &inv(text),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let o = r.config.bridges[0].destinations[0].oauth2.as_ref().unwrap();
    assert_eq!(o.client_secret.expose(), "oauth-client-s3cret");
    assert_eq!(o.client_auth, causeway_crds::config::OAuth2ClientAuth::Body);
    assert!(
        r.config.bridges[0]
            .secret_values()
            .contains(&"oauth-client-s3cret")
    );
    assert!(!format!("{:?}", r.config).contains("oauth-client-s3cret"));
}

//! `render`: what one pool's worker gets, and what is reported against which object.

use std::path::Path;

use causeway_crds::config::{AuthConfig, INTERNAL_PORT, Kind, SourceConfig, internal_service_name};
use causeway_crds::manifest::load_str;
use causeway_crds::{RenderContext, Scope, render};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn pool(ns: &str, name: &str) -> Scope {
    Scope::Pool {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn inv(text: &str) -> causeway_crds::Inventory {
    load_str(text, Path::new("/m/manifests.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

const SHOP: &str = r#"
apiVersion: causeway.dev/v1alpha1
kind: WorkerPool
metadata: {name: data, namespace: shop}
spec: {}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: orders, namespace: shop}
spec:
  ingress:
    auth:
      hmac: {preset: github, secretRef: {name: gh, key: secret}}
  steps: [{plugin: loyalty}]
  destinations:
  - name: crm
    url: https://crm.example.com/$payload.kind
    delay: 1h30m
    backoff: {policy: fixed, delays: [500ms, 2s]}
    signing: {standardWebhooks: {secretRef: {name: crm, key: signing}}}
  env:
  - {name: TOKEN, valueFrom: {secretKeyRef: {name: crm, key: token}}}
  - {name: REGION, value: eu}
---
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {name: loyalty, namespace: shop}
spec:
  source: {http: {url: 'https://plugins.example.com/loyalty.wasm', sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}
  allowedOutboundHosts: ["http://store-api.internal"]
  variables: [{name: mode, value: strict}]
---
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {name: store-api, namespace: shop}
spec:
  source: {http: {url: 'https://plugins.example.com/store-api.wasm', sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}
  pool: data
---
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {name: helper, namespace: shop}
spec:
  source: {http: {url: 'https://plugins.example.com/helper.wasm', sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}
---
apiVersion: v1
kind: Secret
metadata: {name: gh, namespace: shop, labels: {causeway.dev/use: "true"}}
stringData: {secret: gh-secret-value}
---
apiVersion: v1
kind: Secret
metadata: {name: crm, namespace: shop, labels: {causeway.dev/use: "true"}}
stringData: {token: crm-token-value, signing: whsec_c2lnbmluZw==}
"#;

#[test]
fn default_pool_gets_the_bridge_its_unplaced_step_and_a_route_to_the_placed_callee() {
    let inv = inv(SHOP);
    let mut ctx = RenderContext::default();
    ctx.pool_endpoints.insert(
        ("shop".into(), "data".into()),
        vec!["http://127.0.0.5:8081".into()],
    );
    let r = render(&inv, &pool("shop", "default"), &ctx);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let c = &r.config;
    assert_eq!((c.pool.as_str(), c.namespace.as_str()), ("default", "shop"));
    assert_eq!(c.bridges.len(), 1);
    let b = &c.bridges[0];
    assert_eq!(b.path, "/hooks/shop/orders");
    assert_eq!(b.methods, vec!["POST"]);
    assert_eq!(
        b.idempotency_header, "x-github-delivery",
        "the github preset's delivery id"
    );
    let d = &b.destinations[0];
    assert_eq!(
        (d.delay_ms, d.timeout_ms, d.retry.retries),
        (5_400_000, 10_000, 5)
    );
    assert_eq!(d.retry.delays_ms, vec![500, 2000]);
    assert_eq!(
        d.signing_secret.as_ref().unwrap().expose(),
        "whsec_c2lnbmluZw=="
    );
    assert!(
        matches!(&b.auth, Some(AuthConfig::Hmac { secrets, .. }) if secrets[0].expose() == "gh-secret-value")
    );
    assert!(b.env["TOKEN"].secret && !b.env["REGION"].secret);
    // loyalty is unplaced and used by a step here; store-api is placed in `data`; helper is
    // used by nothing here.
    let names: Vec<&str> = c.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["loyalty"]);
    assert_eq!(
        c.plugins[0].source,
        SourceConfig::Http {
            url: "https://plugins.example.com/loyalty.wasm".into(),
            sha256: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into()
        }
    );
    assert_eq!(c.plugins[0].variables["mode"].expose(), "strict");
    assert_eq!(c.routes.len(), 1);
    assert_eq!(
        (c.routes[0].plugin.as_str(), c.routes[0].pool.as_str()),
        ("store-api", "data")
    );
    assert_eq!(c.routes[0].urls, vec!["http://127.0.0.5:8081"]);
}

#[test]
fn the_placed_pool_loads_only_what_is_placed_there() {
    let r = render(&inv(SHOP), &pool("shop", "data"), &RenderContext::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(r.config.bridges.is_empty());
    let names: Vec<&str> = r.config.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["store-api"]);
    assert!(
        r.config.routes.is_empty(),
        "nothing placed elsewhere is needed here: {:?}",
        r.config.routes
    );
}

#[test]
fn unknown_endpoints_fall_back_to_the_service_name() {
    let r = render(
        &inv(SHOP),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    assert_eq!(
        r.config.routes[0].urls,
        vec![format!(
            "http://{}.shop.svc:{INTERNAL_PORT}",
            internal_service_name("data")
        )]
    );
}

#[test]
fn local_mode_loads_everything() {
    let r = render(&inv(SHOP), &Scope::All, &RenderContext::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let names: Vec<&str> = r.config.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["helper", "loyalty", "store-api"]);
    assert!(r.config.routes.is_empty());
    assert_eq!(r.config.pool, "local");
}

#[test]
fn chaining_pulls_in_unplaced_callees_transitively() {
    let text = SHOP.replace(
        "  pool: data\n",
        "  allowedOutboundHosts: [\"http://*.internal\"]\n",
    );
    let r = render(
        &inv(&text),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    let names: Vec<&str> = r.config.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["helper", "loyalty", "store-api"],
        "store-api is now unplaced and calls *.internal"
    );
}

#[test]
fn missing_references_are_problems_of_their_object_and_the_rest_still_renders() {
    let text = format!(
        "{SHOP}\n---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: broken, namespace: shop}}\nspec:\n  steps: [{{plugin: nope}}]\n---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: nosecret, namespace: shop}}\nspec:\n  destinations: [{{name: a, url: 'http://x'}}]\n  env: [{{name: T, valueFrom: {{secretKeyRef: {{name: missing, key: k}}}}}}]\n"
    );
    let r = render(
        &inv(&text),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    let got: Vec<(Kind, &str, &str, &str)> = r
        .problems
        .iter()
        .map(|p| {
            (
                p.kind,
                p.name.as_str(),
                p.reason.as_str(),
                p.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Kind::Bridge,
                "broken",
                "PluginNotFound",
                "step plugin \"nope\" not found in namespace shop"
            ),
            (
                Kind::Bridge,
                "nosecret",
                "SecretNotFound",
                "Secret \"missing\" not found in namespace shop"
            ),
        ]
    );
    assert_eq!(
        r.config
            .bridges
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        vec!["orders"]
    );
}

#[test]
fn the_older_bridge_keeps_a_contested_path() {
    let two = |first: &str, second: &str| {
        let mut inv = inv(&format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: {first}}}\nspec:\n  ingress: {{path: /hooks/shared}}\n  destinations: [{{name: a, url: 'http://x'}}]\n---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: {second}}}\nspec:\n  ingress: {{path: /hooks/shared}}\n  destinations: [{{name: a, url: 'http://x'}}]\n"
        ));
        // `second` was created first.
        let t = |s: &str| Some(Time(s.parse().unwrap()));
        std::sync::Arc::make_mut(&mut inv.bridges[0])
            .metadata
            .creation_timestamp = t("2026-01-02T00:00:00Z");
        std::sync::Arc::make_mut(&mut inv.bridges[1])
            .metadata
            .creation_timestamp = t("2026-01-01T00:00:00Z");
        render(&inv, &pool("default", "default"), &RenderContext::default())
    };
    let r = two("newer", "older");
    assert_eq!(
        r.config
            .bridges
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        vec!["older"]
    );
    assert_eq!(r.problems.len(), 1);
    assert_eq!(
        (r.problems[0].name.as_str(), r.problems[0].reason.as_str()),
        ("newer", "PathConflict")
    );
    assert_eq!(
        r.problems[0].message,
        "path /hooks/shared is already served by bridge default/older"
    );
}

#[test]
fn a_plugin_placed_in_a_missing_pool_is_reported() {
    let text = SHOP.replace(
        "metadata: {name: data, namespace: shop}\nspec: {}\n---\n",
        "",
    );
    let text = text.replacen(
        "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\n",
        "",
        1,
    );
    let r = render(
        &inv(&text),
        &pool("shop", "data"),
        &RenderContext::default(),
    );
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].reason, "PoolNotFound");
}

#[test]
fn equal_inputs_give_equal_versions_and_any_change_a_new_one() {
    let ctx = RenderContext::default();
    let a = render(&inv(SHOP), &pool("shop", "default"), &ctx).config;
    let b = render(&inv(SHOP), &pool("shop", "default"), &ctx).config;
    assert_eq!(a.version, b.version);
    assert_eq!(a.version.len(), 16);
    let c = render(
        &inv(&SHOP.replace("value: eu", "value: us")),
        &pool("shop", "default"),
        &ctx,
    )
    .config;
    assert_ne!(a.version, c.version);
}

#[test]
fn secrets_never_show_in_debug_output() {
    let r = render(
        &inv(SHOP),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    let debug = format!("{:?}", r.config);
    for secret in ["gh-secret-value", "crm-token-value", "whsec_c2lnbmluZw=="] {
        assert!(!debug.contains(secret), "{secret} leaked into Debug");
    }
    assert!(debug.contains("<redacted>"));
    // The serialised form carries them: it is stored in a Secret and read by the worker.
    let json = serde_json::to_string(&r.config).unwrap();
    assert!(json.contains("crm-token-value"));
    let back: causeway_crds::WorkerConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r.config);
    assert_eq!(r.config.bridges[0].secret_values().len(), 3);
}

#[test]
fn an_ingress_rate_limit_renders_with_burst_defaulting_to_per_second() {
    let text = r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: limited, namespace: shop}
spec:
  ingress: {rateLimit: {perSecond: 5}}
  destinations: [{name: d, url: "https://example.com/"}]
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: bursty, namespace: shop}
spec:
  ingress: {rateLimit: {perSecond: 2, burst: 20}}
  destinations: [{name: d, url: "https://example.com/"}]
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: open, namespace: shop}
spec:
  destinations: [{name: d, url: "https://example.com/"}]
"#;
    let r = render(&inv(text), &Scope::All, &RenderContext::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let limit = |name: &str| {
        r.config
            .bridges
            .iter()
            .find(|b| b.name == name)
            .unwrap()
            .ingress_rate_limit
            .clone()
            .map(|l| (l.per_second, l.burst))
    };
    assert_eq!(limit("limited"), Some((5, 5)));
    assert_eq!(limit("bursty"), Some((2, 20)));
    assert_eq!(limit("open"), None);
    // A destination's rate limit is not the ingress's.
    assert!(
        r.config
            .bridges
            .iter()
            .all(|b| b.destinations.iter().all(|d| d.rate_limit.is_none()))
    );
}

#[test]
fn the_bridge_crd_declares_the_ingress_rate_limit() {
    let crd =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("yaml/bridges.yaml"))
            .unwrap();
    let crd: serde_yaml::Value = serde_yaml::from_str(&crd).unwrap();
    let ingress = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["ingress"]["properties"];
    let limit = &ingress["rateLimit"]["properties"];
    assert_eq!(limit["perSecond"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(limit["burst"]["minimum"].as_f64(), Some(1.0));
}

/// Issue 18: a Bridge being deleted stays in its pool's config, `draining`, while the
/// operator's finalizer holds it with policy Drain; with Discard, or once the finalizer
/// is gone, it is not rendered.
#[test]
fn a_deleted_bridge_renders_draining_only_while_its_drain_finalizer_holds_it() {
    let text = r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: draining, namespace: shop}
spec:
  destinations: [{name: crm, url: "https://crm.example.com/in"}]
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: discarded, namespace: shop}
spec:
  deletion: {policy: Discard}
  destinations: [{name: crm, url: "https://crm.example.com/in"}]
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: released, namespace: shop}
spec:
  destinations: [{name: crm, url: "https://crm.example.com/in"}]
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: live, namespace: shop}
spec:
  destinations: [{name: crm, url: "https://crm.example.com/in"}]
"#;
    let mut inv = inv(text);
    let deleted = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    for b in &mut inv.bridges {
        let b = std::sync::Arc::make_mut(b);
        let name = b.metadata.name.clone().unwrap_or_default();
        if name != "live" {
            b.metadata.deletion_timestamp = deleted.clone();
        }
        if name != "released" {
            b.metadata.finalizers = Some(vec![
                "example.com/other".into(),
                causeway_crds::common::BRIDGE_FINALIZER.into(),
            ]);
        } else {
            b.metadata.finalizers = Some(vec!["example.com/other".into()]);
        }
    }
    let out = render(&inv, &pool("shop", "default"), &RenderContext::default());
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let rendered: Vec<(&str, bool)> = out
        .config
        .bridges
        .iter()
        .map(|b| (b.name.as_str(), b.draining))
        .collect();
    assert_eq!(rendered, vec![("draining", true), ("live", false)]);
    let json = serde_json::to_value(&out.config).unwrap();
    let live = json["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "live")
        .unwrap();
    assert!(
        live.get("draining").is_none(),
        "not serialised when false: configs of bridges that are not deleted stay as they were"
    );
}

/// `spec.subscriptions` renders into the worker's hub configuration: the API key from its
/// Secret, the bounds and retries with their defaults; `enabled: false` renders no hub; a
/// missing key Secret leaves the Bridge out with the reason, as for any Secret.
#[test]
fn a_bridges_hub_renders_with_its_key_and_defaults_and_not_when_disabled() {
    let hub = |enabled: bool, secret: &str| {
        format!(
            "{SHOP}\n---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: hub, namespace: shop}}\nspec:\n  destinations: [{{name: a, url: 'http://x'}}]\n  subscriptions:\n    enabled: {enabled}\n    auth: {{apiKey: {{secretRef: {{name: {secret}, key: token}}}}}}\n    allowedCallbackHosts: ['https://hooks.example.com']\n    leaseSeconds: {{max: 7200}}\n    signing: {{standardWebhooks: {{secretRef: {{name: crm, key: signing}}}}}}\n"
        )
    };
    let r = render(
        &inv(&hub(true, "crm")),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let b = r.config.bridges.iter().find(|b| b.name == "hub").unwrap();
    let s = b.subscriptions.as_ref().expect("a hub");
    match &s.auth {
        AuthConfig::ApiKey {
            header,
            query_param,
            keys,
        } => {
            assert_eq!(header.as_deref(), Some("x-api-key"));
            assert_eq!(*query_param, None);
            assert_eq!(keys.len(), 1);
            assert_eq!(keys[0].expose(), "crm-token-value");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.allowed_callback_hosts, vec!["https://hooks.example.com"]);
    assert_eq!(
        (
            s.default_lease_seconds,
            s.min_lease_seconds,
            s.max_lease_seconds
        ),
        (864_000, 60, 7_200)
    );
    assert_eq!(s.lease_for(None), 7_200, "the default is brought under max");
    assert_eq!(s.retry.retries, 5);
    assert_eq!(s.timeout_ms, 10_000);
    assert_eq!(
        s.signing_secret.as_ref().map(|k| k.expose()),
        Some("whsec_c2lnbmluZw==")
    );
    assert!(
        b.secret_values().contains(&"crm-token-value"),
        "the hub's key is redacted like the bridge's own secrets"
    );
    let r = render(
        &inv(&hub(false, "crm")),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    let b = r.config.bridges.iter().find(|b| b.name == "hub").unwrap();
    assert!(b.subscriptions.is_none(), "disabled: no hub");
    let r = render(
        &inv(&hub(true, "nope")),
        &pool("shop", "default"),
        &RenderContext::default(),
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.name == "hub" && p.reason == "SecretNotFound"),
        "{:?}",
        r.problems
    );
}

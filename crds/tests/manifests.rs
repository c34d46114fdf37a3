//! Loading manifests: every example parses, and every bad manifest gets an error naming the
//! file, the document and the field, with the exact text asserted.

use std::path::{Path, PathBuf};

use causeway_crds::manifest::{load_paths, load_str};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn err(text: &str) -> String {
    load_str(text, Path::new("m.yaml")).unwrap_err().to_string()
}

const BRIDGE_HEAD: &str =
    "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: orders, namespace: shop}\n";

#[test]
fn every_example_manifest_parses_and_renders_cleanly() {
    let examples = repo().join("examples");
    let mut dirs = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() || dir.file_name().unwrap() == "plugins" {
            continue;
        }
        dirs += 1;
        let inv = load_paths(&[&dir]).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !inv.bridges.is_empty() || !inv.plugins.is_empty(),
            "{} holds no Bridge or Plugin",
            dir.display()
        );
        let r = causeway_crds::render(&inv, &causeway_crds::Scope::All, &Default::default());
        assert!(r.problems.is_empty(), "{}: {:?}", dir.display(), r.problems);
    }
    assert!(dirs >= 1, "no example directories found");
}

#[test]
fn the_minimal_contract_parses() {
    let text = include_str!("fixtures/contract.yaml");
    let inv = load_str(text, &repo().join("crds/tests/fixtures/contract.yaml")).unwrap();
    assert_eq!(inv.bridges.len(), 1);
    let b = &inv.bridges[0];
    assert_eq!(b.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(b.spec.destinations[0].retries, 5);
    assert_eq!(b.spec.destinations[0].delay.as_deref(), Some("15m"));
    assert_eq!(
        inv.plugins[0].metadata.namespace.as_deref(),
        Some("default"),
        "namespace defaults to default"
    );
    // file paths are relative to the manifest that names them
    let file = inv.plugins[0].spec.source.file.as_deref().unwrap();
    assert!(
        file.ends_with("crds/tests/fixtures/plugins/tagger.wasm"),
        "{file}"
    );
    assert_eq!(inv.secrets.len(), 2);
}

#[test]
fn bad_manifests_name_file_document_and_field() {
    let ok_dest = "  destinations:\n  - {name: crm, url: 'https://crm.example.com'}\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'https://x', retries: five}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].retries: invalid type: string \"five\", expected u32",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'https://x', retires: 3}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].retires: unknown field `retires`, expected one of `name`, `url`, `method`, `headers`, `body`, `delay`, `timeout`, `retries`, `backoff`, `maxRetryAfter`, `maxConcurrency`, `rateLimit`, `signing`, `deadLetter`, `format`, `cloudEvents`, `oauth2`, `tls`, `circuitBreaker`, `nats`",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  ingres: {{}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.ingres: unknown field `ingres`, expected one of `pool`, `suspend`, `whenPluginNotReady`, `ingress`, `filter`, `steps`, `stepRetry`, `destinations`, `env`, `templates`, `schema`, `streams`, `subscriptions`, `notifications`, `deletion`",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  subscriptions: {{enabled: true, auth: {{apiKey: {{secretRef: {{name: s, key: k}}}}}}, leaseSeconds: {{min: 600, max: 60}}}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.subscriptions.leaseSeconds: min (600) must not exceed max (60)",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  subscriptions: {{enabled: true, auth: {{apiKey: {{secretRef: {{name: s, key: k}}}}}}, allowedCallbackHosts: [hooks.example.com]}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.subscriptions.allowedCallbackHosts[0]: \"hooks.example.com\" needs a scheme, such as https://api.example.com",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  subscriptions: {{enabled: true}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.subscriptions: missing field `auth`",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  deletion: {{drainTimeout: 5 minutes}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.deletion.drainTimeout: invalid duration \"5 minutes\": unknown unit (write e.g. 500ms, 30s, 15m, 1h, 1d or 1h30m)",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  deletion: {{drainTimeout: 0s}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.deletion.drainTimeout: must be longer than 0 (policy: Discard removes at once)",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  deletion: {{policy: Discard, drainTimeout: 1m}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.deletion.drainTimeout: applies to policy: Drain only (Discard removes at once)",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  deletion: {{policy: Keep}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.deletion.policy: unknown variant `Keep`, expected `Drain` or `Discard`",
        ),
        (
            format!("{BRIDGE_HEAD}specc: {{}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): specc: unknown field (expected apiVersion, kind, metadata, spec)",
        ),
        (
            format!("{BRIDGE_HEAD}spec: {{}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec: a bridge needs at least one destination or one step",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'ftp://x'}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].url: url must be http://, https:// or nats:// (or start with a template reference such as $env.BASE_URL)",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: q, url: 'nats://user:pw@nats:4222/orders'}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].url: a nats url carries no credentials: give them from a Secret in the destination's nats section",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: q, url: 'nats://nats:4222'}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].url: a nats url needs a subject: nats://host:port/subject",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: q, url: 'nats://nats:4222/orders.>'}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].url: a nats subject to publish to has no wildcard (* or >)",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: q, url: 'nats://nats:port/orders'}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].url: a nats url's host is a name or an address with an optional numeric port: nats://host:port/subject",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: q, url: 'https://x', nats: {{tokenRef: {{name: s, key: t}}}}}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].nats: nats needs a nats:// url",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: q, url: 'nats://nats/orders', method: PUT}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0]: a nats destination takes no oauth2, tls or method",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: q, url: 'nats://nats/orders', nats: {{user: u, tokenRef: {{name: s, key: t}}}}}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].nats: user and passwordRef go together",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: q, url: 'nats://nats/orders', nats: {{tokenRef: {{name: s, key: t}}, nkeySeedRef: {{name: s, key: n}}}}}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].nats: set at most one of passwordRef, tokenRef, nkeySeedRef, credentialsRef",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: q, url: 'nats://nats/orders', nats: {{password: x}}}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].nats.password: unknown field `password`, expected one of `user`, `passwordRef`, `tokenRef`, `nkeySeedRef`, `credentialsRef`",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'https://x', delay: 15 minutes}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].delay: invalid duration \"15 minutes\": unknown unit (write e.g. 500ms, 30s, 15m, 1h, 1d or 1h30m)",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'https://x'}}\n  - {{name: crm, url: 'https://y'}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[1].name: destination names must be unique (\"crm\" repeats)",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  ingress:\n    auth:\n      basic: {{username: u, passwordRef: {{name: s, key: p}}}}\n      apiKey: {{secretRef: {{name: s, key: k}}}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.ingress.auth: set at most one of standardWebhooks, hmac, jwt, basic, apiKey",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  ingress:\n    auth:\n      hmac: {{preset: gitlab, secretRef: {{name: s, key: k}}}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.ingress.auth.hmac.preset: unknown variant `gitlab`, expected one of `github`, `stripe`, `shopify`, `slack`",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'https://x', circuitBreaker: {{consecutiveFailures: 0}}}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].circuitBreaker.consecutiveFailures: must be at least 1",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'https://x', circuitBreaker: {{openFor: 0s}}}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].circuitBreaker.openFor: must be longer than 0s",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'https://x', circuitBreaker: {{disableAfter: 5 days}}}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].circuitBreaker.disableAfter: invalid duration \"5 days\": unknown unit (write e.g. 500ms, 30s, 15m, 1h, 1d or 1h30m)",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'https://x', circuitBreaker: {{failureRate: {{percent: 150}}}}}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].circuitBreaker.failureRate.percent: must be between 1 and 100 (got 150)",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'https://x', circuitBreaker: {{failureRate: {{percent: 50, minAttempts: 0}}}}}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].circuitBreaker.failureRate.minAttempts: must be at least 1",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'https://x', circuitBreaker: {{consecutive: 3}}}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].circuitBreaker.consecutive: unknown field `consecutive`, expected one of `consecutiveFailures`, `failureRate`, `openFor`, `disableAfter`",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  notifications: {{url: 'ftp://ops'}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.notifications.url: url must be http:// or https://",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  notifications: {{url: 'https://ops', events: [endpoint.disabled]}}\n{ok_dest}"),
            "m.yaml: document 1 (Bridge shop/orders): spec.notifications.events[0]: unknown variant `endpoint.disabled`, expected one of `destination.paused`, `destination.opened`, `destination.closed`, `destination.disabled`",
        ),
        (
            format!("{BRIDGE_HEAD}spec:\n  destinations:\n  - {{name: crm, url: 'https://x', backoff: {{policy: fixed}}}}\n"),
            "m.yaml: document 1 (Bridge shop/orders): spec.destinations[0].backoff: the fixed policy needs a delays list",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {name: p}\nspec:\n  source: {file: a.wasm, http: {url: 'https://x/a.wasm', sha256: '0000000000000000000000000000000000000000000000000000000000000000'}}\n".into(),
            "m.yaml: document 1 (Plugin default/p): spec.source: set exactly one of file, http, oci, configMap",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {name: p}\nspec:\n  source: {http: {url: 'https://x/a.wasm'}}\n".into(),
            "m.yaml: document 1 (Plugin default/p): spec.source.http: missing field `sha256`",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {name: p}\nspec:\n  source: {file: a.wasm}\n  allowedOutboundHosts: ['api.example.com']\n".into(),
            "m.yaml: document 1 (Plugin default/p): spec.allowedOutboundHosts[0]: \"api.example.com\" needs a scheme, such as https://api.example.com",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {name: p}\nspec:\n  source: {file: a.wasm}\n  limits: {memory: 64MB}\n".into(),
            "m.yaml: document 1 (Plugin default/p): spec.limits.memory: invalid quantity \"64MB\": unknown suffix \"MB\" (use Ki, Mi, Gi, k, M, G)",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: w}\nspec: {replicas: 3}\n".into(),
            "m.yaml: document 1 (WorkerPool default/w): spec: embedded storage serves one replica; use postgres storage for more",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: w}\nspec: {autoscaling: {maxReplicas: 3}}\n".into(),
            "m.yaml: document 1 (WorkerPool default/w): spec: autoscaling needs postgres storage (embedded storage has one writer)",
        ),
        (
            format!("apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: {}}}\nspec: {{}}\n", "p".repeat(55)),
            "m.yaml: document 1 (WorkerPool default/ppppppppppppppppppppppppppppppppppppppppppppppppppppppp): metadata.name: a WorkerPool name has at most 54 characters",
        ),
        (
            "apiVersion: causeway.dev/v1\nkind: Bridge\nmetadata: {name: b}\nspec: {}\n".into(),
            "m.yaml: document 1 (Bridge default/b): apiVersion: \"causeway.dev/v1\" is not served; use causeway.dev/v1alpha1",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n".into(),
            "m.yaml: document 1 (Deployment default/d): kind: \"Deployment\" is not supported here (supported: Bridge, Plugin, WorkerPool (causeway.dev/v1alpha1), Secret, ConfigMap (v1))",
        ),
        (
            "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {namespace: x}\nspec: {}\n".into(),
            "m.yaml: document 1 (Bridge x/?): metadata.name: missing",
        ),
        (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {token: 'not base64!'}\n".into(),
            "m.yaml: document 1 (Secret default/s): data.token: Invalid symbol 32, offset 3.",
        ),
        (
            "---\n# nothing here\n---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: b}\nspec:\n  suspend: maybe\n".into(),
            "m.yaml: document 2 (Bridge default/b): spec.suspend: invalid type: string \"maybe\", expected a boolean",
        ),
        (
            "- just\n- a list\n".into(),
            "m.yaml: document 1: expected a Kubernetes object (a mapping with apiVersion and kind)",
        ),
        (
            "kind: Bridge\n".into(),
            "m.yaml: document 1: apiVersion: missing",
        ),
        (
            "key: [unclosed\n".into(),
            "m.yaml: document 1: invalid YAML: did not find expected ',' or ']' at line 2 column 1, while parsing a flow sequence at line 1 column 6",
        ),
    ];
    let mut failures = Vec::new();
    for (text, want) in &cases {
        let got = err(text);
        if &got != want {
            failures.push(format!("input:\n{text}\n  want: {want}\n  got:  {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn an_object_defined_twice_names_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let doc = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\n";
    std::fs::write(dir.path().join("a.yaml"), doc).unwrap();
    std::fs::write(dir.path().join("b.yml"), doc).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    std::fs::create_dir(dir.path().join(".hidden")).unwrap();
    std::fs::write(dir.path().join(".hidden/c.yaml"), "broken: [").unwrap();
    let e = load_paths(&[dir.path()]).unwrap_err();
    let a = dir.path().join("a.yaml").display().to_string();
    let b = dir.path().join("b.yml").display().to_string();
    assert_eq!(
        e.to_string(),
        format!("{b}: document 1 (Secret default/s): defined twice (first in {a} document 1)")
    );
}

#[test]
fn a_missing_path_is_a_clear_error() {
    let e = load_paths(&["/nonexistent/causeway"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/nonexistent/causeway: cannot read: No such file or directory (os error 2)"
    );
}

#[test]
fn secrets_combine_data_and_string_data() {
    let inv = load_str(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: shop}\ndata: {a: aGVsbG8=}\nstringData: {b: world}\n",
        Path::new("s.yaml"),
    )
    .unwrap();
    let s = &inv.secrets[&("shop".to_string(), "s".to_string())];
    assert_eq!(s["a"], b"hello");
    assert_eq!(s["b"], b"world");
}

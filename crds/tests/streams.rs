//! `Bridge.spec.streams`: bad input gets an error naming the field, the CRD carries the
//! rules the API server enforces, and a stream renders with its auth resolved from Secrets
//! by the same code as the ingress auth.

use std::path::Path;

use causeway_crds::config::{AuthConfig, StreamConfig};
use causeway_crds::manifest::load_str;
use causeway_crds::{Scope, render};

const HEAD: &str = "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: orders, namespace: shop}\nspec:\n  destinations:\n  - {name: crm, url: 'https://crm.example.com'}\n";

fn err(streams: &str) -> String {
    let text = format!("{HEAD}  streams:\n{streams}");
    load_str(&text, Path::new("m.yaml"))
        .map(|_| "no error".to_string())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn bad_streams_name_the_field() {
    let pre = "m.yaml: document 1 (Bridge shop/orders): ";
    let cases = [
        (
            "  - {name: Live}\n",
            "spec.streams[0].name: \"Live\" must be a lower-case DNS label",
        ),
        (
            "  - {name: live}\n  - {name: live}\n",
            "spec.streams[1].name: stream names must be unique (\"live\" repeats)",
        ),
        (
            "  - {name: live, auth: {}}\n",
            "spec.streams[0].auth: set exactly one of jwt, basic, apiKey",
        ),
        (
            "  - name: live\n    auth:\n      basic: {username: u, passwordRef: {name: s, key: p}}\n      apiKey: {secretRef: {name: s, key: k}}\n",
            "spec.streams[0].auth: set exactly one of jwt, basic, apiKey",
        ),
        (
            "  - name: live\n    auth: {hmac: {preset: github, secretRef: {name: s, key: k}}}\n",
            "spec.streams[0].auth.hmac: unknown field `hmac`, expected one of `jwt`, `basic`, `apiKey`",
        ),
        (
            "  - name: live\n    auth: {jwt: {algorithms: [HS256], secretRef: {name: s, key: k}, dedupeJti: true}}\n",
            "spec.streams[0].auth.jwt.dedupeJti: a stream consumer reconnects with its token: dedupeJti applies to ingress only",
        ),
        (
            "  - name: live\n    auth: {apiKey: {header: x-key, queryParam: key, secretRef: {name: s, key: k}}}\n",
            "spec.streams[0].auth.apiKey: set header or queryParam, not both",
        ),
        (
            "  - {name: live, limits: {maxConnections: 0}}\n",
            "spec.streams[0].limits.maxConnections: must be at least 1",
        ),
        (
            "  - {name: live, buffer: {maxEvents: 0}}\n",
            "spec.streams[0].buffer.maxEvents: must be at least 1",
        ),
        (
            "  - {name: live, buffer: {stallTimeout: soon}}\n",
            "spec.streams[0].buffer.stallTimeout: invalid duration \"soon\": expected a number (write e.g. 500ms, 30s, 15m, 1h, 1d or 1h30m)",
        ),
        (
            "  - {name: live, retention: 2 days}\n",
            "spec.streams[0].retention: invalid duration \"2 days\": unknown unit (write e.g. 500ms, 30s, 15m, 1h, 1d or 1h30m)",
        ),
        (
            "  - {name: live, heartbeat: 0s}\n",
            "spec.streams[0].heartbeat: must be longer than 0",
        ),
        (
            "  - {name: live, bufer: {}}\n",
            "spec.streams[0].bufer: unknown field `bufer`, expected one of `name`, `auth`, `limits`, `buffer`, `retention`, `heartbeat`",
        ),
    ];
    for (streams, want) in cases {
        assert_eq!(err(streams), format!("{pre}{want}"), "for {streams:?}");
    }
}

#[test]
fn the_crd_keys_streams_by_name_and_checks_the_auth_scheme() {
    let yaml =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("yaml/bridges.yaml"))
            .unwrap();
    let crd: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    let streams = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["streams"];
    assert_eq!(streams["x-kubernetes-list-type"], "map");
    assert_eq!(streams["x-kubernetes-list-map-keys"][0], "name");
    let auth = &streams["items"]["properties"]["auth"];
    let rules = auth["x-kubernetes-validations"].to_string();
    assert!(
        rules.contains("set exactly one of jwt, basic, apiKey"),
        "{rules}"
    );
    assert!(rules.contains("dedupeJti"), "{rules}");
}

#[test]
fn a_stream_renders_with_its_secrets_and_defaults() {
    let text = format!(
        "{HEAD}  streams:\n  - name: live\n    auth: {{apiKey: {{secretRef: {{name: consumers, key: key}}}}}}\n    limits: {{maxConnectionsPerConsumer: 2, eventsPerSecond: 50}}\n    buffer: {{maxEvents: 64, stallTimeout: 5s}}\n    retention: 1h\n  - name: open\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: consumers, namespace: shop}}\nstringData: {{key: k-123}}\n"
    );
    let inv = load_str(&text, Path::new("m.yaml")).unwrap();
    let r = render(&inv, &Scope::All, &Default::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let b = r
        .config
        .bridges
        .iter()
        .find(|b| b.name == "orders")
        .unwrap();
    assert_eq!(b.streams.len(), 2);
    let live = &b.streams[0];
    assert_eq!(live.name, "live");
    match &live.auth {
        Some(AuthConfig::ApiKey { header, keys, .. }) => {
            assert_eq!(header.as_deref(), Some("x-api-key"));
            assert_eq!(keys[0].expose(), "k-123");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(live.max_connections_per_consumer, 2);
    assert_eq!(live.max_connections, 0);
    assert_eq!(live.events_per_second, 50);
    assert_eq!(live.buffer_events, 64);
    assert_eq!(live.stall_timeout_ms, 5_000);
    assert_eq!(live.retention_ms, 3_600_000);
    let open = &b.streams[1];
    assert!(open.auth.is_none());
    assert_eq!(open.buffer_events, StreamConfig::DEFAULT_BUFFER_EVENTS);
    assert_eq!(open.retention_ms, StreamConfig::DEFAULT_RETENTION_MS);
    assert_eq!(open.heartbeat_ms, StreamConfig::DEFAULT_HEARTBEAT_MS);
    assert_eq!(
        open.stall_timeout_ms,
        StreamConfig::DEFAULT_STALL_TIMEOUT_MS
    );
    // The stream's key is a secret of the bridge: redacted wherever the bridge's are.
    assert!(b.secret_values().contains(&"k-123"));
}

#[test]
fn a_stream_whose_secret_is_missing_is_reported_against_the_bridge() {
    let text = format!(
        "{HEAD}  streams:\n  - name: live\n    auth: {{basic: {{username: app, passwordRef: {{name: nope, key: p}}}}}}\n"
    );
    let inv = load_str(&text, Path::new("m.yaml")).unwrap();
    let r = render(&inv, &Scope::All, &Default::default());
    let msg = format!("{:?}", r.problems);
    assert!(msg.contains("Secret \\\"nope\\\" not found"), "{msg}");
}

//! Issue 17, payload schemas: a bridge with `spec.schema` answers 202 for a payload that
//! matches, 422 with the first violations (path and message) for one that does not, stores
//! nothing for it and counts it; a schema that does not compile is refused before it runs.

mod common;

use std::process::Command;

use common::*;

fn bridge_yaml(sink: &str) -> String {
    format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: orders, namespace: shop}}
spec:
  destinations:
  - {{name: sink, url: "{sink}", retries: 0}}
  schema:
    configMapRef: {{name: schemas, key: order.yaml}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: schemas, namespace: shop}}
data:
  order.yaml: |
    type: object
    required: [id, amount]
    properties:
      id: {{type: string, minLength: 1}}
      amount: {{type: number, minimum: 0}}
      items:
        type: array
        items: {{type: object, required: [sku]}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: inline, namespace: shop}}
spec:
  destinations:
  - {{name: sink, url: "{sink}", retries: 0}}
  schema:
    inline: {{type: object, required: [kind], properties: {{kind: {{enum: [a, b]}}}}}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_payloads_are_accepted_and_invalid_ones_get_422_and_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let m = manifests(dir.path(), &bridge_yaml(&sink.url("/in")));
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();

    let (s, body) = post(
        &c,
        &w.url("/hooks/shop/orders"),
        r#"{"id": "o1", "amount": 12.5, "items": [{"sku": "a"}]}"#,
        &[],
    )
    .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(
        sink.wait_for("/in", 1, std::time::Duration::from_secs(20))
            .await,
        1
    );
    let (s, _) = post(&c, &w.url("/hooks/shop/inline"), r#"{"kind": "a"}"#, &[]).await;
    assert_eq!(s, 202);
    assert_eq!(stored_events(&c, &w).await, 2);

    // Several violations: each with its path, at most five.
    let (s, body) = post(
        &c,
        &w.url("/hooks/shop/orders"),
        r#"{"amount": -3, "items": [{"name": "no sku"}]}"#,
        &[],
    )
    .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(
        body["error"],
        "the payload does not match the bridge's schema"
    );
    let violations = body["violations"].as_array().unwrap();
    let at = |path: &str| {
        violations
            .iter()
            .find(|v| v["path"] == path)
            .unwrap_or_else(|| panic!("no violation at {path:?}: {body}"))["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(at("").contains("\"id\" is a required property"), "{body}");
    assert!(at("/amount").contains("minimum of 0"), "{body}");
    assert!(
        at("/items/0").contains("\"sku\" is a required property"),
        "{body}"
    );

    // Not JSON at all, and the inline schema.
    let (s, body) = post(&c, &w.url("/hooks/shop/orders"), "id=o1", &[]).await;
    assert_eq!(s, 422);
    assert_eq!(body["violations"][0]["message"], "the payload is not JSON");
    let (s, body) = post(&c, &w.url("/hooks/shop/inline"), r#"{"kind": "c"}"#, &[]).await;
    assert_eq!(s, 422);
    assert_eq!(body["violations"][0]["path"], "/kind");

    // Nothing was stored for them, nothing delivered, and each was counted.
    assert_eq!(stored_events(&c, &w).await, 2);
    assert_eq!(sink.count("/in"), 2);
    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"causeway_events_rejected_total{bridge="shop/orders",reason="invalid_payload"} 2"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"causeway_events_rejected_total{bridge="shop/inline",reason="invalid_payload"} 1"#
    ));
}

fn render_strict(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), yaml);
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["render", "--strict", "-f"])
        .arg(&m)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_schema_that_does_not_compile_is_refused() {
    let good = bridge_yaml("http://127.0.0.1:9/in");
    assert!(render_strict(&good).0, "{}", render_strict(&good).1);

    // From a ConfigMap: the renderer compiles it and reports the bridge.
    let (ok, stderr) = render_strict(&good.replace("minimum: 0", "minimum: zero"));
    assert!(!ok);
    assert!(
        stderr.contains("Bridge shop/orders: InvalidSpec: spec.schema: invalid JSON Schema"),
        "{stderr}"
    );

    // Inline: refused by validation when the manifests load.
    let (ok, stderr) = render_strict(&good.replace("enum: [a, b]", "enum: 7"));
    assert!(!ok);
    assert!(
        stderr.contains("spec.schema.inline: invalid JSON Schema"),
        "{stderr}"
    );
}

//! `spec.schema`: how the renderer resolves a bridge's payload schema (inline or from a
//! ConfigMap key), and what it reports when it cannot.

use std::path::Path;

use causeway_crds::config::reason;
use causeway_crds::manifest::load_str;
use causeway_crds::{RenderContext, Scope, render};

fn render_all(text: &str) -> causeway_crds::Rendered {
    let inv = load_str(text, Path::new("/m/manifests.yaml")).unwrap_or_else(|e| panic!("{e}"));
    render(&inv, &Scope::All, &RenderContext::default())
}

const BRIDGE: &str = r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: orders, namespace: shop}
spec:
  destinations: [{name: crm, url: "https://crm.example.com/in"}]
"#;

fn with_schema(schema: &str) -> String {
    format!("{BRIDGE}  schema:\n{schema}")
}

#[test]
fn an_inline_schema_is_rendered_as_json() {
    let r = render_all(&with_schema(
        "    inline: {type: object, required: [id], properties: {id: {type: string}}}\n",
    ));
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let schema: serde_json::Value =
        serde_json::from_str(r.config.bridges[0].schema.as_deref().unwrap()).unwrap();
    assert_eq!(schema["required"], serde_json::json!(["id"]));
}

#[test]
fn a_config_map_schema_is_read_as_json_or_yaml() {
    for data in [
        r#"'{"type": "object", "required": ["sku"]}'"#,
        "|\n      type: object\n      required: [sku]",
    ] {
        let text = format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: schemas, namespace: shop}}\ndata:\n  order.json: {data}\n",
            with_schema("    configMapRef: {name: schemas, key: order.json}\n")
        );
        let r = render_all(&text);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let schema: serde_json::Value =
            serde_json::from_str(r.config.bridges[0].schema.as_deref().unwrap()).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["sku"]), "{data}");
    }
}

#[test]
fn a_missing_config_map_or_key_leaves_the_bridge_out_with_the_reason() {
    let r = render_all(&with_schema(
        "    configMapRef: {name: schemas, key: order.json}\n",
    ));
    assert!(r.config.bridges.is_empty());
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].reason, reason::CONFIG_MAP_NOT_FOUND);
    assert!(
        r.problems[0]
            .message
            .contains("ConfigMap \"schemas\" not found in namespace shop"),
        "{}",
        r.problems[0].message
    );

    let text = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: schemas, namespace: shop}}\ndata: {{other.json: '{{}}'}}\n",
        with_schema("    configMapRef: {name: schemas, key: order.json}\n")
    );
    let r = render_all(&text);
    assert_eq!(r.problems[0].reason, reason::CONFIG_MAP_NOT_FOUND);
    assert!(r.problems[0].message.contains("has no key \"order.json\""));
}

#[test]
fn a_schema_that_does_not_compile_is_refused_with_the_reason() {
    // Inline: the manifest loader validates it, as the renderer does.
    let text = with_schema("    inline: {type: integr}\n");
    let err = load_str(&text, Path::new("/m/manifests.yaml"))
        .map(|inv| {
            render(&inv, &Scope::All, &RenderContext::default())
                .problems
                .into_iter()
                .map(|p| p.message)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|e| e.to_string());
    assert!(
        err.contains("spec.schema.inline: invalid JSON Schema"),
        "{err}"
    );

    // From a ConfigMap: the renderer compiles it.
    let text = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: schemas, namespace: shop}}\ndata: {{s.json: '{{\"minimum\": \"zero\"}}'}}\n",
        with_schema("    configMapRef: {name: schemas, key: s.json}\n")
    );
    let r = render_all(&text);
    assert!(r.config.bridges.is_empty());
    assert_eq!(r.problems[0].reason, reason::INVALID_SPEC);
    assert!(
        r.problems[0]
            .message
            .contains("spec.schema: invalid JSON Schema"),
        "{}",
        r.problems[0].message
    );

    // Both or neither source.
    let text = with_schema("    inline: {type: object}\n    configMapRef: {name: s, key: k}\n");
    let err = load_str(&text, Path::new("/m/manifests.yaml"))
        .map(|inv| {
            format!(
                "{:?}",
                render(&inv, &Scope::All, &RenderContext::default()).problems
            )
        })
        .unwrap_or_else(|e| e.to_string());
    assert!(
        err.contains("set exactly one of inline and configMapRef"),
        "{err}"
    );
}

#[test]
fn cloud_events_needs_the_cloudevents_format() {
    let text = BRIDGE.replace(
        r#"url: "https://crm.example.com/in"}"#,
        r#"url: "https://crm.example.com/in", cloudEvents: {mode: structured}}"#,
    );
    let err = load_str(&text, Path::new("/m/manifests.yaml"))
        .map(|inv| {
            format!(
                "{:?}",
                render(&inv, &Scope::All, &RenderContext::default()).problems
            )
        })
        .unwrap_or_else(|e| e.to_string());
    assert!(
        err.contains("cloudEvents needs format: cloudevents"),
        "{err}"
    );

    let text = BRIDGE.replace(
        r#"url: "https://crm.example.com/in"}"#,
        r#"url: "https://crm.example.com/in", format: cloudevents, cloudEvents: {mode: structured, type: "com.example.$payload.kind"}}"#,
    );
    let r = render_all(&text);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let ce = r.config.bridges[0].destinations[0]
        .cloud_events
        .clone()
        .unwrap();
    assert_eq!(ce.mode, causeway_crds::config::CloudEventsMode::Structured);
    assert_eq!(ce.r#type.as_deref(), Some("com.example.$payload.kind"));
}

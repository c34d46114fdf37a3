//! Issue 17, AsyncAPI 3.0: the documents `causeway asyncapi -f` prints for every example in
//! `examples/`, and the one a running worker serves at `GET /asyncapi/<namespace>`, pass
//! the official AsyncAPI parser (`@asyncapi/parser` from npm, installed by
//! `scripts/asyncapi.sh` when missing) with no error, and hold no secret.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Run the official parser over `files`; panics with its report on any error.
fn parser_check(files: &[PathBuf]) -> String {
    let out = Command::new(repo().join("scripts/asyncapi.sh"))
        .arg("check")
        .args(files)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "@asyncapi/parser found errors:\n{report}"
    );
    report
}

fn asyncapi_cli(args: &[&str], dir: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .arg("asyncapi")
        .args(args)
        .arg("-f")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_documents_of_every_example_pass_the_asyncapi_parser() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap() != "plugins")
        .collect();
    examples.sort();
    assert!(examples.len() >= 5, "{examples:?}");
    for dir in &examples {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for (suffix, args) in [("json", vec![]), ("yaml", vec!["--yaml"])] {
            let (ok, doc, stderr) = asyncapi_cli(&args, dir);
            assert!(ok, "{name}: {stderr}");
            assert!(stderr.is_empty(), "{name}: a bridge was left out: {stderr}");
            let file = tmp.path().join(format!("{name}.{suffix}"));
            std::fs::write(&file, &doc).unwrap();
            files.push(file);
        }
        // The example's Secrets never reach its document.
        let (_, doc, _) = asyncapi_cli(&[], dir);
        for secret in secret_values(dir) {
            assert!(
                !doc.contains(&secret),
                "{name}: a Secret value is in the document"
            );
        }
    }
    let report = parser_check(&files);
    assert_eq!(report.matches(": ok (").count(), files.len(), "{report}");

    // What the cloudevents example's document says.
    let (_, doc, _) = asyncapi_cli(&[], &repo().join("examples/cloudevents"));
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        doc["channels"]["shop__orders__ingress"]["address"],
        "/hooks/shop/orders"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["shop__orders__auth"],
        serde_json::json!({"type": "httpApiKey", "in": "header", "name": "x-api-key"})
    );
    assert_eq!(
        doc["components"]["messages"]["shop__orders__event"]["payload"]["schema"]["required"],
        serde_json::json!(["id", "amount"])
    );
    let out = &doc["components"]["messages"]["shop__orders__fulfilment__event"];
    assert_eq!(out["contentType"], "application/cloudevents+json");
    assert_eq!(
        out["payload"]["schema"]["properties"]["data"]["required"],
        serde_json::json!(["id", "amount"])
    );
}

/// Every `stringData` value of the Secrets in an example's manifests.
fn secret_values(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in text.split("\n---") {
            let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(doc) else {
                continue;
            };
            if v["kind"] == "Secret"
                && let Some(m) = v["stringData"].as_mapping()
            {
                out.extend(m.values().filter_map(|v| v.as_str()).map(str::to_string));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_serves_each_namespace_s_document() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: orders, namespace: shop}}
spec:
  ingress:
    methods: [POST, PUT]
    auth: {{basic: {{username: shop, passwordRef: {{name: creds, key: password}}}}}}
  schema:
    inline: {{type: object, required: [id]}}
  destinations:
  - {{name: crm, url: "{crm}", headers: {{authorization: "Bearer $env.TOKEN"}}}}
  - {{name: events, url: "{events}", format: cloudevents, cloudEvents: {{mode: binary}}}}
  env:
  - {{name: TOKEN, valueFrom: {{secretKeyRef: {{name: creds, key: token}}}}}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: invoices, namespace: billing}}
spec:
  destinations: [{{name: ledger, url: "{crm}"}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: shop}}
stringData: {{password: pa55-word-xyz, token: tok-secret-123}}
"#,
        crm = sink.url("/crm?key=query-secret-456"),
        events = sink.url("/events"),
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();

    let resp = c.get(w.admin_url("/asyncapi/shop")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    for secret in ["pa55-word-xyz", "tok-secret-123", "query-secret-456"] {
        assert!(!text.contains(secret), "{secret} is in the document");
    }
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut channels: Vec<&String> = doc["channels"].as_object().unwrap().keys().collect();
    channels.sort();
    assert_eq!(
        channels,
        [
            "shop__orders__crm",
            "shop__orders__events",
            "shop__orders__ingress"
        ]
    );
    assert_eq!(
        doc["servers"]["ingress"]["host"],
        format!("127.0.0.1:{}", w.listen.port())
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["shop__orders__auth"]["scheme"],
        "basic"
    );
    let file = dir.path().join("shop.json");
    std::fs::write(&file, &text).unwrap();
    parser_check(&[file]);

    // Another namespace has its own; one with no bridge here is 404.
    let billing = get_json(&c, &w.admin_url("/asyncapi/billing")).await;
    assert!(billing["channels"]["billing__invoices__ingress"].is_object());
    assert!(billing["channels"].get("shop__orders__ingress").is_none());
    let resp = c.get(w.admin_url("/asyncapi/nope")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

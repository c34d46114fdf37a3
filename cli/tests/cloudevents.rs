//! Issue 17, CloudEvents 1.0: events made by the CloudEvents SDK for Python are accepted in
//! binary and structured mode, their attributes reach filters and templates, malformed ones
//! get 400 and are not stored; events the worker sends in both modes are parsed by that SDK
//! in a sink (a real HTTP server on loopback). The SDK is installed by
//! `scripts/cloudevents.sh` when missing.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The Python that has the SDK (installed when missing).
fn sdk_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/cloudevents.sh"))
        .arg("install")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/cloudevents.sh install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cloudevents-sdk")
        .join(name)
}

/// Send one SDK-made event; returns (status, response body, the event's id).
fn sdk_send(py: &Path, url: &str, mode: &str) -> (u16, serde_json::Value, String) {
    let out = Command::new(py)
        .arg(script("send.py"))
        .args([url, mode])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["status"].as_u64().unwrap() as u16,
        serde_json::from_str(v["body"].as_str().unwrap()).unwrap_or_default(),
        v["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_events_are_accepted_in_both_modes_and_their_attributes_reach_filters_and_templates() {
    let py = sdk_python();
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: events, namespace: shop}}
spec:
  filter: cloudevent.type == "com.example.order.created" && payload.amount >= 1000
  schema:
    inline: {{type: object, required: [amount]}}
  destinations:
  - name: sink
    url: "{}"
    retries: 0
    body: |
      {{"type": "$event.cloudevent.type", "source": "$event.cloudevent.source",
        "subject": "$event.cloudevent.subject", "tenant": "$event.cloudevent.tenant",
        "ceid": "$event.cloudevent.id", "amount": "$payload.amount"}}
"#,
        sink.url("/in")
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let url = w.url("/hooks/shop/events");

    for mode in ["binary", "structured"] {
        let (status, body, _) = sdk_send(&py, &url, mode);
        assert_eq!(status, 202, "{mode}: {body}");
    }
    assert_eq!(sink.wait_for("/in", 2, Duration::from_secs(20)).await, 2);
    for r in sink.requests("/in") {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "com.example.order.created", "source": "https://shop.example/orders",
                "subject": "order 42", "tenant": "acme", "ceid": "o-42", "amount": 1500
            })
        );
    }

    // The filter sees the attributes: another type is recorded as filtered, not delivered.
    let (s, body) = post(
        &c,
        &url,
        r#"{"amount": 5000}"#,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "x-1"),
            ("ce-source", "/elsewhere"),
            ("ce-type", "com.example.order.deleted"),
        ],
    )
    .await;
    assert_eq!(s, 202);
    let ev = wait_status(
        &c,
        &w,
        body["id"].as_str().unwrap(),
        "filtered",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(ev["status"], "filtered", "{ev}");

    // Malformed CloudEvents: 400 with the reason, nothing stored.
    let before = stored_events(&c, &w).await;
    let binary = |specversion: &'static str| {
        vec![
            ("ce-specversion", specversion),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ]
    };
    let (s, body) = post(&c, &url, r#"{"amount": 1}"#, &binary("0.3")).await;
    assert_eq!(s, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("specversion \"0.3\" is not supported"),
        "{body}"
    );
    let (s, body) = post(&c, &url, r#"{"amount": 1}"#, &binary("1.0")[1..]).await;
    assert_eq!(s, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("ce-specversion is missing"),
        "{body}"
    );
    let structured = |doc: &str| {
        c.post(&url)
            .header("content-type", "application/cloudevents+json")
            .body(doc.to_string())
            .send()
    };
    let resp = structured(r#"{"specversion": "1.0", "id": "1", "source": "/s", "data": {}}"#)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("attribute type is missing"),
        "{body}"
    );
    let resp = structured("not json").await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = c
        .post(&url)
        .header("content-type", "application/cloudevents-batch+json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    assert_eq!(stored_events(&c, &w).await, before);
}

/// `sink.py` on loopback: the SDK parses every request and writes what it parsed.
struct SdkSink {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl SdkSink {
    fn start(py: &Path, dir: &Path) -> SdkSink {
        let out = dir.join("parsed.jsonl");
        let mut child = Command::new(py)
            .arg(script("sink.py"))
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        SdkSink {
            child,
            port: line.trim().parse().unwrap(),
            out,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What the SDK parsed, once `n` requests arrived (bounded wait).
    fn parsed(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SdkSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_worker_sends_in_both_modes_are_parsed_by_the_sdk() {
    let py = sdk_python();
    let dir = tempfile::tempdir().unwrap();
    let sdk = SdkSink::start(&py, dir.path());
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: out, namespace: shop}}
spec:
  destinations:
  - name: binary
    url: "{binary}"
    retries: 0
    format: cloudevents
    cloudEvents: {{mode: binary, type: "com.example.$payload.kind"}}
  - name: structured
    url: "{structured}"
    retries: 0
    format: cloudevents
    cloudEvents: {{mode: structured, subject: "$payload.id", source: "https://causeway.example/shop"}}
"#,
        binary = sdk.url("/binary"),
        structured = sdk.url("/structured"),
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();

    // A plain JSON webhook: attributes derived from the event and the templates.
    let (s, body) = post(
        &c,
        &w.url("/hooks/shop/out"),
        r#"{"kind": "order", "id": "o-7", "amount": 5}"#,
        &[],
    )
    .await;
    assert_eq!(s, 202);
    let event_id = body["id"].as_str().unwrap().to_string();
    let parsed = sdk.parsed(2);
    assert_eq!(parsed.len(), 2, "{parsed:?}");
    for p in &parsed {
        assert_eq!(p["ok"], true, "the SDK refused what the worker sent: {p}");
        assert_eq!(
            p["data"],
            serde_json::json!({"kind": "order", "id": "o-7", "amount": 5}),
            "{p}"
        );
        assert_eq!(p["attributes"]["specversion"], "1.0");
        assert_eq!(p["attributes"]["id"], event_id.as_str());
        assert!(
            p["attributes"]["time"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{p}"
        );
    }
    let at = |path: &str| parsed.iter().find(|p| p["path"] == path).unwrap().clone();
    let b = at("/binary");
    assert_eq!(b["mode"], "binary");
    assert_eq!(b["attributes"]["type"], "com.example.order");
    assert_eq!(b["attributes"]["source"], "/hooks/shop/out");
    let st = at("/structured");
    assert_eq!(st["mode"], "structured");
    assert_eq!(st["attributes"]["type"], "dev.causeway.event");
    assert_eq!(st["attributes"]["subject"], "o-7");
    assert_eq!(st["attributes"]["source"], "https://causeway.example/shop");

    // An SDK-made CloudEvent passes through: its id, source, type, subject and extensions
    // travel on, in either mode, and the data is its data.
    for mode in ["binary", "structured"] {
        let (status, body, _) = sdk_send(&py, &w.url("/hooks/shop/out"), mode);
        assert_eq!(status, 202, "{body}");
    }
    let parsed = sdk.parsed(6);
    assert_eq!(parsed.len(), 6, "{parsed:?}");
    for p in &parsed[2..] {
        assert_eq!(p["ok"], true, "{p}");
        assert_eq!(p["attributes"]["id"], "o-42", "{p}");
        assert_eq!(p["attributes"]["tenant"], "acme");
        assert_eq!(
            p["data"],
            serde_json::json!({"id": "o-42", "amount": 1500}),
            "{p}"
        );
        if p["path"] == "/structured" {
            // The templates win over the inbound event.
            assert_eq!(p["attributes"]["subject"], "o-42");
            assert_eq!(p["attributes"]["source"], "https://causeway.example/shop");
            assert_eq!(p["attributes"]["type"], "com.example.order.created");
        } else {
            assert_eq!(p["attributes"]["subject"], "order 42");
            assert_eq!(p["attributes"]["source"], "https://shop.example/orders");
            // `$payload.kind` is missing here: it renders empty inside the text.
            assert_eq!(p["attributes"]["type"], "com.example.");
        }
    }
}

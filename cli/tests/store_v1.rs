//! The worker, started on a store written before the issue 13 redesign
//! (`runtime/tests/fixtures/store-v1`, see its README), delivers what that store holds.
//! The store-level tests of the same fixture are in `runtime/tests/store_contract.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

const E1: &str = "019ad735-87e8-7000-8000-000000000001";
const E2: &str = "019ad735-8bd0-7000-8000-000000000002";
const E5: &str = "019ad735-9788-7000-8000-000000000005";
/// `child_id(E6, "0")`, as the fixture holds it.
const C6: &str = "019ad735-9b70-8961-8f55-255bf48dfaad";

/// A copy of the fixture in `dir` (never the committed file: opening writes to it).
fn copy_fixture(dir: &Path) {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../runtime/tests/fixtures/store-v1/events.redb");
    std::fs::create_dir_all(dir).expect("store dir");
    std::fs::copy(fixture, dir.join("events.redb")).expect("copy the fixture");
}

/// The worker, started on a copy of the fixture, delivers its pending jobs: the destination
/// job, the retrying one, the steps job (through its step) and the fanned-out child; the
/// paused destination waits for its resume; the idempotency key still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_delivers_the_pending_jobs_of_a_v1_store() {
    use common::*;
    let wasm =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/dist/tagger.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run `make plugins` first",
        wasm.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    // `Worker::start` uses `<dir>/data`; the store lives in `<data>/store`.
    copy_fixture(&dir.path().join("data/store"));
    let sink = Sink::ok().await;
    // The bridges and destinations the fixture's jobs name; delivery takes each URL from
    // the configuration in effect.
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: tagger}}
spec:
  source: {{file: "{wasm}"}}
  variables: [{{name: tag, value: blue}}]
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: orders}}
spec:
  destinations:
  - {{name: sink, url: "{orders}"}}
  - {{name: hold, url: "{hold}"}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: enrich}}
spec:
  steps: [{{plugin: tagger}}]
  destinations:
  - {{name: out, url: "{enrich}"}}
"#,
        wasm = wasm.display(),
        orders = sink.url("/orders"),
        hold = sink.url("/hold"),
        enrich = sink.url("/enrich"),
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let wait = Duration::from_secs(30);
    assert_eq!(
        sink.wait_for("/orders", 2, wait).await,
        2,
        "{}",
        w.log_text()
    );
    assert_eq!(
        sink.wait_for("/enrich", 2, wait).await,
        2,
        "{}",
        w.log_text()
    );
    let by_id = |path: &str| -> Vec<(String, serde_json::Value)> {
        let mut v: Vec<_> = sink
            .requests(path)
            .iter()
            .map(|r| {
                let id = r
                    .headers
                    .get("causeway-event-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                (id, serde_json::from_slice(&r.body).expect("a JSON body"))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(
        by_id("/orders"),
        vec![
            (E1.to_string(), serde_json::json!({"order": 1})),
            (E5.to_string(), serde_json::json!({"order": 5})),
        ],
        "the pending and the retrying job, with the stored bodies"
    );
    assert_eq!(
        by_id("/enrich"),
        vec![
            (
                E2.to_string(),
                serde_json::json!({"order": 2, "tagged": true, "tag": "blue"})
            ),
            (C6.to_string(), serde_json::json!({"item": 0})),
        ],
        "the steps job ran its step; the fanned-out child was delivered as stored"
    );
    // The destination paused by a 410 stays paused until resumed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.count("/hold"), 0, "a paused destination is held");
    let r = admin_post(
        &c,
        &w.admin_url("/api/v1/bridges/default/orders/destinations/hold/resume"),
    )
    .await;
    assert_eq!(r["requeued"], 1, "{r}");
    assert_eq!(sink.wait_for("/hold", 1, wait).await, 1, "{}", w.log_text());
    assert_eq!(
        by_id("/hold"),
        vec![(E1.to_string(), serde_json::json!({"order": 1}))]
    );
    // The stored idempotency key still answers with the fixture's event.
    let (s, v) = post(
        &c,
        &w.url("/hooks/default/orders"),
        r#"{"order":1}"#,
        &[("webhook-id", "fixture-msg-1")],
    )
    .await;
    assert_eq!(s, 202);
    assert_eq!(v["id"], E1);
    // Nothing was delivered twice, and the dead and delivered jobs were left alone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (
            sink.count("/orders"),
            sink.count("/enrich"),
            sink.count("/hold")
        ),
        (2, 2, 1)
    );
}

//! The quickstart as `make dev` runs it: a bridge delivering to the public `inbox` plugin
//! in-process (`http://inbox.internal`), its route on the ingress port, and its keyvalue
//! state in the worker's store across a restart. Needs `make plugins` (examples/plugins/dist).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

fn quickstart() -> PathBuf {
    built_plugin("inbox.wasm");
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")
}

async fn inbox(c: &reqwest::Client, w: &Worker) -> Vec<serde_json::Value> {
    let v: serde_json::Value = c
        .get(w.url("/inbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_delivers_to_the_inbox_plugin_and_its_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Worker::start(dir.path(), &quickstart(), &[]);
    let c = client();
    let log = w.log_text();
    assert!(
        log.contains("bridge default/orders") && log.contains("plugin default/inbox"),
        "{log}"
    );

    let (s, v) = post(
        &c,
        &w.url("/hooks/default/orders"),
        r#"{"action":"created","order":{"id":"A-1","amount":42}}"#,
        &[],
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (s, _) = post(
        &c,
        &w.url("/hooks/default/orders"),
        r#"{"action":"deleted","order":{"id":"A-2"}}"#,
        &[],
    )
    .await;
    assert_eq!(s, 202);

    let ev = wait_status(&c, &w, &id, "delivered", Duration::from_secs(30)).await;
    assert_eq!(ev["status"], "delivered", "{ev:#}\n{}", w.log_text());
    let items = inbox(&c, &w).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let body = &items[0]["body"];
    assert_eq!(body["order"], "A-1");
    assert_eq!(body["amount"], 42);
    assert_eq!(body["region"], "eu-west");
    assert_eq!(items[0]["key"], format!("event:{id}"));

    // keyvalue lives in the store: it survives a restart.
    assert!(w.terminate().success());
    w.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let items = inbox(&c, &w).await;
        if items.len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "inbox lost its items: {items:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A private plugin path that no route serves is 404.
    assert_eq!(
        c.get(w.url("/not-a-route"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_run_after_the_durable_write_transform_the_event_and_retry_then_dead_letter() {
    let wasm = built_plugin("tagger.wasm");
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
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
metadata: {{name: tagged}}
spec:
  steps: [{{plugin: tagger}}]
  stepRetry: {{retries: 1, backoff: {{policy: none}}}}
  destinations:
  - {{name: sink, url: "{url}"}}
"#,
        wasm = wasm.display(),
        url = sink.url("/tagged")
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let (s, _) = post(&c, &w.url("/hooks/default/tagged"), r#"{"order":1}"#, &[]).await;
    assert_eq!(s, 202);
    assert_eq!(
        sink.wait_for("/tagged", 1, Duration::from_secs(30)).await,
        1,
        "{}",
        w.log_text()
    );
    let got: serde_json::Value = serde_json::from_slice(&sink.requests("/tagged")[0].body).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"order": 1, "tagged": true, "tag": "blue"})
    );

    // Not an object: the step answers 400, is retried once, then the event is dead.
    let (s, v) = post(&c, &w.url("/hooks/default/tagged"), "[1,2]", &[]).await;
    assert_eq!(s, 202);
    let ev = wait_status(
        &c,
        &w,
        v["id"].as_str().unwrap(),
        "dead",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(ev["status"], "dead", "{ev:#}");
    let steps = &ev["deliveries"][0];
    assert_eq!(steps["destination"], "(steps)");
    assert_eq!(steps["attempts"].as_array().unwrap().len(), 2);
    assert!(
        ev["reason"].as_str().unwrap().contains("step tagger"),
        "{ev:#}"
    );
    assert_eq!(sink.count("/tagged"), 1);
}

/// Issue 15: a step's deliveries start as its result is queued for commit, before it is
/// on disk (the embedded store applies writes in order). One destination takes them at
/// once; the other is rate-limited, so most of its jobs are held back and wait for the
/// scheduler. Each event reaches each destination exactly once, with the step's body,
/// and every event ends delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_deliveries_start_before_its_result_commits_each_once_held_ones_later() {
    const N: usize = 20;
    let wasm = built_plugin("tagger.wasm");
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: tagger}}
spec:
  source: {{file: "{wasm}"}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: early}}
spec:
  steps: [{{plugin: tagger}}]
  destinations:
  - {{name: now, url: "{now}"}}
  - {{name: limited, url: "{limited}", rateLimit: {{perSecond: 20, burst: 1}}}}
"#,
        wasm = wasm.display(),
        now = sink.url("/now"),
        limited = sink.url("/limited")
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let mut ids = Vec::new();
    for n in 0..N {
        let (s, v) = post(
            &c,
            &w.url("/hooks/default/early"),
            &format!(r#"{{"n":{n}}}"#),
            &[],
        )
        .await;
        assert_eq!(s, 202);
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    for path in ["/now", "/limited"] {
        assert_eq!(
            sink.wait_for(path, N, Duration::from_secs(60)).await,
            N,
            "{path}: {}",
            w.log_text()
        );
    }
    for id in &ids {
        let ev = wait_status(&c, &w, id, "delivered", Duration::from_secs(30)).await;
        assert_eq!(ev["status"], "delivered", "{ev:#}");
    }
    // Settled: no delivery was made twice (a job started early and again by a pass).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for path in ["/now", "/limited"] {
        let got = sink.requests(path);
        assert_eq!(got.len(), N, "{path}");
        let mut seen = std::collections::HashSet::new();
        for r in &got {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["tagged"], true, "{path}: {v}");
            assert!(seen.insert(v["n"].as_u64().unwrap()), "{path}: {v} twice");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_port_serves_plugins_to_holders_of_the_namespace_token() {
    let wasm = built_plugin("tagger.wasm");
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: tagger}}
spec:
  source: {{file: "{wasm}"}}
  variables: [{{name: tag, value: green}}]
"#,
        wasm = wasm.display(),
    );
    let m = manifests(dir.path(), &yaml);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["render", "-f", m.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    cfg["internalTokens"] = serde_json::json!({"default": "int-t0ken"});
    let file = dir.path().join("config.json");
    std::fs::write(&file, cfg.to_string()).unwrap();
    let internal = format!("127.0.0.1:{}", free_port());
    let w = Worker::start_worker(dir.path(), &file, &["--internal", &internal]);
    let c = client();
    let url = format!("http://{internal}/internal/default/tagger/");

    let ok = c
        .post(&url)
        .header("causeway-internal-token", "int-t0ken")
        .body(r#"{"order":7}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200, "{}", w.log_text());
    let got: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(
        got,
        serde_json::json!({"order": 7, "tagged": true, "tag": "green"})
    );

    for token in [None, Some("wrong"), Some("")] {
        let mut rb = c.post(&url).body(r#"{"order":7}"#);
        if let Some(t) = token {
            rb = rb.header("causeway-internal-token", t);
        }
        assert_eq!(rb.send().await.unwrap().status().as_u16(), 401, "{token:?}");
    }
    // Only /internal/ is served there; the ingress port does not serve /internal/.
    let other = c
        .get(format!("http://{internal}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    let on_ingress = c
        .post(w.url("/internal/default/tagger/"))
        .header("causeway-internal-token", "int-t0ken")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(on_ingress.status().as_u16(), 404);
}

/// The loyalty scenario (examples/loyalty) in local mode: the `loyalty` step asks
/// `store-api` (chained in-process) and fans a loyal customer's order out into the enriched
/// order and an email request, each its own event with its own delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_fans_an_event_out_into_events_with_their_own_deliveries() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dist = root.join("examples/plugins/dist");
    for p in ["loyalty.wasm", "store-api.wasm"] {
        assert!(
            dist.join(p).exists(),
            "{p} is missing: run `make plugins` first"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: WorkerPool
metadata: {{name: data, namespace: shop}}
spec:
  replicas: 1
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: orders, namespace: shop}}
spec:
  steps:
  - plugin: loyalty
  stepRetry: {{retries: 3, backoff: {{policy: none}}}}
  destinations:
  - name: fulfilment
    url: "{url}"
---
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: loyalty, namespace: shop}}
spec:
  source: {{file: "{dist}/loyalty.wasm"}}
  allowedOutboundHosts: ["http://store-api.internal"]
---
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: store-api, namespace: shop}}
spec:
  source: {{file: "{dist}/store-api.wasm"}}
  pool: data
"#,
        dist = dist.display(),
        url = sink.url("/fulfilment")
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();

    let loyal = r#"{"customer":{"id":"c-loyal","email":"loyal@example.test"},"orderId":"o-1"}"#;
    let (s, v) = post(&c, &w.url("/hooks/shop/orders"), loyal, &[]).await;
    assert_eq!(s, 202, "{v}");
    let parent = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        sink.wait_for("/fulfilment", 2, Duration::from_secs(30))
            .await,
        2,
        "{}",
        w.log_text()
    );
    let bodies: Vec<serde_json::Value> = sink
        .requests("/fulfilment")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let order = bodies
        .iter()
        .find(|b| b["orderId"] == "o-1" && b.get("kind").is_none())
        .unwrap_or_else(|| panic!("{bodies:?}"));
    assert_eq!(order["loyal"], true, "{order}");
    let code = order["discountCode"].as_str().unwrap();
    let email = bodies
        .iter()
        .find(|b| b["kind"] == "email")
        .unwrap_or_else(|| panic!("{bodies:?}"));
    assert_eq!(email["to"], "loyal@example.test");
    assert_eq!(email["code"], code);

    // The parent records its children, each child its parent; both children delivered.
    let ev = wait_status(&c, &w, &parent, "delivered", Duration::from_secs(10)).await;
    let children: Vec<String> = ev["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(children.len(), 2, "{ev:#}");
    for child in &children {
        let cv = wait_status(&c, &w, child, "delivered", Duration::from_secs(10)).await;
        assert_eq!(cv["parent"], parent.as_str(), "{cv:#}");
        assert_eq!(cv["deliveries"][0]["destination"], "fulfilment");
    }
    let ids: Vec<String> = sink
        .requests("/fulfilment")
        .iter()
        .map(|r| {
            r.headers
                .get("causeway-event-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for child in &children {
        assert!(ids.contains(child), "{ids:?} {children:?}");
    }

    // A new customer: the order goes on unchanged, one event, one delivery.
    let new = r#"{"customer":{"id":"c-new","email":"new@example.test"},"orderId":"o-2"}"#;
    let (s, v) = post(&c, &w.url("/hooks/shop/orders"), new, &[]).await;
    assert_eq!(s, 202);
    let id = v["id"].as_str().unwrap().to_string();
    let ev = wait_status(&c, &w, &id, "delivered", Duration::from_secs(30)).await;
    assert_eq!(ev["children"].as_array().map(Vec::len), Some(0), "{ev:#}");
    assert_eq!(sink.count("/fulfilment"), 3);
    let last: serde_json::Value =
        serde_json::from_slice(&sink.requests("/fulfilment")[2].body).unwrap();
    assert_eq!(
        last,
        serde_json::from_str::<serde_json::Value>(new).unwrap()
    );
}

//! Issue 18: a Bridge whose plugin is not loaded. By default (`Hold`) its events are
//! accepted and wait, their retries untouched, until the plugin loads, and then they are
//! delivered: nothing is lost. With `Reject` the ingress answers 503 with `Retry-After`.
//! A plugin behind an `http://<plugin>.internal` destination is held the same way.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(30);

fn wasm(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plugins/dist")
        .join(format!("{name}.wasm"))
}

fn manifests_with(plugin_file: &std::path::Path, sink: &Sink) -> String {
    format!(
        r#"apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: tagger}}
spec:
  source: {{file: "{file}"}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: held}}
spec:
  steps: [{{plugin: tagger}}]
  stepRetry: {{retries: 0, backoff: {{policy: none}}}}
  destinations: [{{name: sink, url: "{held}"}}]
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: via-internal}}
spec:
  destinations:
  - {{name: plugin, url: "http://tagger.internal/", retries: 0, backoff: {{policy: none}}}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: refused}}
spec:
  whenPluginNotReady: Reject
  steps: [{{plugin: tagger}}]
  destinations: [{{name: sink, url: "{refused}"}}]
"#,
        file = plugin_file.display(),
        held = sink.url("/held"),
        refused = sink.url("/refused"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_a_plugin_that_is_not_loaded_and_are_delivered_when_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    // The plugin's file is not there yet: its load fails.
    let plugin_file = dir.path().join("plugins/tagger.wasm");
    let m = manifests(dir.path(), &manifests_with(&plugin_file, &sink));
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();

    let (s, v) = post(&c, &w.url("/hooks/default/held"), r#"{"n":1}"#, &[]).await;
    assert_eq!(s, 202, "Hold accepts: {v}");
    let held = v["id"].as_str().unwrap().to_string();
    let (s, v) = post(&c, &w.url("/hooks/default/via-internal"), r#"{"n":2}"#, &[]).await;
    assert_eq!(s, 202, "{v}");
    let internal = v["id"].as_str().unwrap().to_string();

    let resp = c
        .post(w.url("/hooks/default/refused"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "10");
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("plugin tagger is not ready"),
        "the answer names the plugin: {body}"
    );

    // Held, not failed: several hold periods pass without an attempt being spent.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for id in [&held, &internal] {
        let ev = get_json(&c, &w.admin_url(&format!("/api/v1/events/{id}"))).await;
        assert_eq!(ev["status"], "pending", "{ev:#}");
        let attempts: usize = ev["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d["attempts"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(attempts, 0, "no retry was spent while held: {ev:#}");
    }
    assert_eq!(sink.count("/held"), 0);

    // The user fixes the source (the component where the manifest now points): reloaded.
    let fixed = dir.path().join("plugins/tagger-fixed.wasm");
    std::fs::create_dir_all(fixed.parent().unwrap()).unwrap();
    std::fs::copy(wasm("tagger"), &fixed).unwrap();
    let text = std::fs::read_to_string(m.join("bridges.yaml")).unwrap();
    std::fs::write(
        m.join("bridges.yaml"),
        text.replace(
            &plugin_file.display().to_string(),
            &fixed.display().to_string(),
        ),
    )
    .unwrap();

    assert_eq!(sink.wait_for("/held", 1, WAIT).await, 1, "{}", w.log_text());
    let body: serde_json::Value = serde_json::from_slice(&sink.requests("/held")[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"n": 1, "tagged": true}));
    let deadline = Instant::now() + WAIT;
    loop {
        let ev = get_json(&c, &w.admin_url(&format!("/api/v1/events/{internal}"))).await;
        if ev["status"] == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "{ev:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _) = post(&c, &w.url("/hooks/default/refused"), "{}", &[]).await;
    assert_eq!(s, 202, "Reject accepts again once the plugin is loaded");
}

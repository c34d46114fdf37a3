//! Misbehaving plugins as bridge steps: an infinite loop, a memory bomb, a trap and a call to
//! a loopback host the plugin was not allowed. Each is stopped or refused for that call only,
//! with a clear error in the attempt log and a metric, while the worker keeps accepting and
//! delivering another bridge's events.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(60);

fn wasm(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `make plugins` first",
        p.display()
    );
    p.display().to_string()
}

fn metric(text: &str, name: &str, plugin: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("plugin=\"{plugin}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plugins_fail_their_own_calls_while_other_bridges_keep_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    // A sink the forbidden plugin tries to reach; it must never see a request.
    let forbidden_sink = Sink::ok().await;
    let mut yaml = String::new();
    for (name, limits) in [
        ("fx-loop", "{timeout: 300ms}"),
        ("fx-membomb", "{memory: 16Mi, timeout: 5s}"),
        ("fx-trap", "{timeout: 2s}"),
        ("fx-forbidden", "{timeout: 2s}"),
    ] {
        yaml.push_str(&format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: {name}}}\nspec:\n  source: {{file: \"{}\"}}\n  limits: {limits}\n---\n\
             apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: {name}}}\nspec:\n  steps: [{{plugin: {name}}}]\n  stepRetry: {{retries: 0, backoff: {{policy: none}}}}\n  destinations: [{{name: sink, url: \"{}\"}}]\n---\n",
            wasm(name),
            sink.url(&format!("/{name}")),
        ));
    }
    yaml.push_str(&format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: tagger}}\nspec:\n  source: {{file: \"{}\"}}\n---\n\
         apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: good}}\nspec:\n  steps: [{{plugin: tagger}}]\n  destinations: [{{name: sink, url: \"{}\"}}]\n",
        wasm("tagger"),
        sink.url("/good"),
    ));
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();

    // Start every bad call, and while they run send the good bridge twenty events.
    let mut bad = Vec::new();
    for name in ["fx-loop", "fx-membomb", "fx-trap", "fx-forbidden"] {
        let body = if name == "fx-forbidden" {
            forbidden_sink.url("/steal")
        } else {
            "{}".to_string()
        };
        let (s, v) = post(&c, &w.url(&format!("/hooks/default/{name}")), &body, &[]).await;
        assert_eq!(s, 202, "{name}");
        bad.push((name, v["id"].as_str().unwrap().to_string()));
    }
    for i in 0..20 {
        let (s, _) = post(
            &c,
            &w.url("/hooks/default/good"),
            &format!(r#"{{"n":{i}}}"#),
            &[],
        )
        .await;
        assert_eq!(s, 202, "good event {i} refused while bad plugins ran");
    }
    assert_eq!(
        sink.wait_for("/good", 20, WAIT).await,
        20,
        "{}",
        w.log_text()
    );
    for r in sink.requests("/good") {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["tagged"], true);
    }

    // Each bad event is dead with its reason in the attempt log; nothing reached its sink.
    let mut reasons = Vec::new();
    for (name, id) in &bad {
        let ev = wait_status(&c, &w, id, "dead", WAIT).await;
        assert_eq!(ev["status"], "dead", "{name}: {ev:#}");
        let attempt = &ev["deliveries"][0]["attempts"][0];
        let error = attempt["error"].as_str().unwrap_or_default().to_lowercase();
        reasons.push((name.to_string(), error));
        assert_eq!(sink.count(&format!("/{name}")), 0, "{name} delivered");
    }
    let reason = |n: &str| {
        reasons
            .iter()
            .find(|(name, _)| name == n)
            .unwrap()
            .1
            .clone()
    };
    assert!(
        reason("fx-loop").contains("timed out") || reason("fx-loop").contains("timeout"),
        "{reasons:?}"
    );
    assert!(reason("fx-membomb").contains("memory"), "{reasons:?}");
    assert!(
        reason("fx-trap").contains("trap") || reason("fx-trap").contains("panic"),
        "{reasons:?}"
    );
    assert!(
        reason("fx-forbidden").contains("refused") || reason("fx-forbidden").contains("denied"),
        "{reasons:?}"
    );
    assert_eq!(
        forbidden_sink
            .total
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the guard let a request through"
    );

    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(
            &metrics,
            "causeway_plugin_timeouts_total",
            "default/fx-loop"
        ) == 1.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "causeway_plugin_oom_total", "default/fx-membomb") == 1.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "causeway_plugin_traps_total", "default/fx-trap") == 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "causeway_plugin_outbound_refused_total",
            "default/fx-forbidden"
        ) == 1.0,
        "{metrics}"
    );
}

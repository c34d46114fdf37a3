//! Scenario 4: editing a Bridge changes what it does within seconds, and no pod
//! restarts (same pod UID, same restart count): workers swap configuration live.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use causeway_crds::Bridge;
use causeway_e2e::harness::http::{Sink, post};
use causeway_e2e::harness::{
    DELIVERY_TIMEOUT, READY_TIMEOUT, Stack, TestNs, Want, eventually, ingress_url, ready_pool_pod,
    restart_count, wait_condition,
};
use kube::{Api, ResourceExt};

/// How quickly an edit must take effect ("within seconds"; generous for a loaded machine).
const EDIT_DEADLINE: Duration = Duration::from_secs(30);

fn bridge(sink: &Sink, version: u32, filter: Option<&str>) -> String {
    let filter = filter
        .map(|f| format!("  filter: \"{f}\"\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: orders}}\nspec:\n{filter}  destinations:\n  - name: out\n    url: {}\n    body: '{{\"v\": {version}, \"id\": \"$payload.id\"}}'\n    retries: 2\n",
        sink.url(&format!("/v{version}"))
    )
}

#[tokio::test]
async fn s4_editing_a_bridge_takes_effect_live_without_restarts() -> Result<()> {
    let ns = TestNs::new("edit").await?;
    let client = Stack::get()?.client().await?;
    let sink = Sink::start()?;
    ns.apply(&bridge(&sink, 1, None))?;
    wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "orders",
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    let pod = ready_pool_pod(&client, &ns.name, "default").await?;
    let (uid, restarts) = (pod.uid(), restart_count(&pod));
    let hook = ingress_url(&pod, &format!("/hooks/{}/orders", ns.name))?;

    let r = post(
        &hook,
        r#"{"id": "a"}"#,
        &[("content-type", "application/json")],
    )
    .await?;
    ensure!(r.status == 202, "{} {}", r.status, r.body);
    let got = sink.wait_for(Some("/v1"), 1, DELIVERY_TIMEOUT).await?;
    ensure!(
        got[0].json()? == serde_json::json!({"v": 1, "id": "a"}),
        "v1 body: {}",
        String::from_utf8_lossy(&got[0].body)
    );

    // The edit: another URL, another body, and a filter.
    let edited = Instant::now();
    ns.apply(&bridge(&sink, 2, Some("payload.keep == true")))?;
    let mut n = 0;
    eventually("the edited bridge to deliver v2", EDIT_DEADLINE, || {
        n += 1;
        let hook = hook.clone();
        let sink = &sink;
        async move {
            let body = format!(r#"{{"id": "e{n}", "keep": true}}"#);
            let r = post(&hook, &body, &[("content-type", "application/json")]).await?;
            ensure!(r.status == 202, "{} {}", r.status, r.body);
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok((!sink.at("/v2").is_empty()).then_some(()))
        }
    })
    .await?;
    eprintln!(
        "[e2e] s4: the edit took effect after {:?}",
        edited.elapsed()
    );
    let v2 = sink.at("/v2")[0].json()?;
    ensure!(
        v2["v"] == 2 && v2["id"].as_str().is_some_and(|s| s.starts_with('e')),
        "v2 body: {v2}"
    );

    // The new filter holds: keep=false is accepted but not delivered.
    let before = sink.at("/v2").len() + sink.at("/v1").len();
    let r = post(
        &hook,
        r#"{"id": "dropped", "keep": false}"#,
        &[("content-type", "application/json")],
    )
    .await?;
    ensure!(r.status == 202, "{} {}", r.status, r.body);
    let r = post(
        &hook,
        r#"{"id": "last", "keep": true}"#,
        &[("content-type", "application/json")],
    )
    .await?;
    ensure!(r.status == 202, "{} {}", r.status, r.body);
    let delivered = |id: &'static str| {
        let sink = &sink;
        move || async move {
            Ok(sink
                .received()
                .iter()
                .filter_map(|r| r.json().ok())
                .any(|b| b["id"] == id)
                .then_some(()))
        }
    };
    eventually(
        "the last event delivered",
        DELIVERY_TIMEOUT,
        delivered("last"),
    )
    .await?;
    let all: Vec<serde_json::Value> = sink
        .received()
        .iter()
        .filter_map(|r| r.json().ok())
        .collect();
    ensure!(
        !all.iter().any(|b| b["id"] == "dropped"),
        "the filter let keep=false through"
    );
    ensure!(
        all.iter().any(|b| b["id"] == "last" && b["v"] == 2),
        "keep=true after the edit: {all:?} (before: {before})"
    );

    // No restart: the same pod, the same process count.
    let now = ready_pool_pod(&client, &ns.name, "default").await?;
    ensure!(
        now.uid() == uid,
        "the pod was replaced ({:?} -> {:?})",
        uid,
        now.uid()
    );
    ensure!(
        restart_count(&now) == restarts,
        "the worker restarted ({restarts} -> {})",
        restart_count(&now)
    );
    let b = Api::<Bridge>::namespaced(client.clone(), &ns.name)
        .get("orders")
        .await?;
    ensure!(
        b.status.as_ref().and_then(|s| s.observed_generation) == b.metadata.generation,
        "observedGeneration {:?} != generation {:?}",
        b.status.as_ref().and_then(|s| s.observed_generation),
        b.metadata.generation
    );
    ns.pass();
    Ok(())
}

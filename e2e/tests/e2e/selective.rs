//! Scenario 5: selective deployment. A bridge in pool A has a step that names a plugin
//! placed in pool B: the call crosses pools, authenticated with the namespace token.
//! Moving the plugin to pool A keeps the bridge working, with no restart. A call to pool
//! B's internal port without the token is refused.

use anyhow::{Context, Result, ensure};
use causeway_crds::Plugin;
use causeway_e2e::harness::http::{FileServer, Sink, post};
use causeway_e2e::harness::{
    DELIVERY_TIMEOUT, READY_TIMEOUT, Stack, TestNs, Want, ingress_url, internal_url, kubectl,
    ready_pool_pod, restart_count, wait_condition,
};
use kube::{Api, ResourceExt};

fn tagger(files: &FileServer, pool: &str) -> Result<String> {
    Ok(format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: tagger}}\nspec:\n  source: {}\n  pool: {pool}\n  variables: [{{name: tag, value: blue}}]\n",
        files.source("tagger.wasm")?
    ))
}

#[tokio::test]
async fn s5_bridge_in_one_pool_calls_a_plugin_in_another_and_survives_a_move() -> Result<()> {
    let ns = TestNs::new("selective").await?;
    let client = Stack::get()?.client().await?;
    let files = FileServer::plugins()?;
    let sink = Sink::start()?;
    let bridge = format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: orders}}\nspec:\n  pool: a\n  steps: [{{plugin: tagger}}]\n  destinations: [{{name: out, url: \"{}\"}}]\n",
        sink.url("/tagged")
    );
    ns.apply(&format!(
        "{}---\n{}---\n{}---\n{bridge}",
        crate::pool("a"),
        crate::pool("b"),
        tagger(&files, "b")?
    ))?;
    wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "orders",
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    wait_condition(
        &client,
        &ns.name,
        "Plugin",
        "tagger",
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    let pod_a = ready_pool_pod(&client, &ns.name, "a").await?;
    let pod_b = ready_pool_pod(&client, &ns.name, "b").await?;
    let plugins: Api<Plugin> = Api::namespaced(client.clone(), &ns.name);
    let pools = plugins
        .get("tagger")
        .await?
        .status
        .map(|s| s.pools)
        .unwrap_or_default();
    ensure!(
        pools == vec!["b".to_string()],
        "Plugin status should name pool b as serving it: {pools:?}"
    );

    let hook = ingress_url(&pod_a, &format!("/hooks/{}/orders", ns.name))?;
    let r = post(
        &hook,
        r#"{"order": 1}"#,
        &[("content-type", "application/json")],
    )
    .await?;
    ensure!(r.status == 202, "{} {}", r.status, r.body);
    let got = sink.wait_for(Some("/tagged"), 1, DELIVERY_TIMEOUT).await?;
    ensure!(
        got[0].json()? == serde_json::json!({"order": 1, "tagged": true, "tag": "blue"}),
        "tagged in pool b: {}",
        String::from_utf8_lossy(&got[0].body)
    );

    // Pool B's internal port: refused without the namespace token or with a wrong one,
    // served with the right one.
    let url = internal_url(&pod_b, &format!("/internal/{}/tagger/", ns.name))?;
    let none = post(&url, r#"{"x": 1}"#, &[]).await?;
    ensure!(
        none.status == 401 || none.status == 403,
        "no token: {} {}",
        none.status,
        none.body
    );
    let wrong = post(
        &url,
        r#"{"x": 1}"#,
        &[("causeway-internal-token", "not-the-token")],
    )
    .await?;
    ensure!(
        wrong.status == 401 || wrong.status == 403,
        "wrong token: {} {}",
        wrong.status,
        wrong.body
    );
    let token = kubectl(&[
        "get",
        "secret",
        "causeway-internal-token",
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.data.token}",
    ])?
    .ok()?;
    use base64::Engine;
    let token = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .context("token")?,
    )?;
    let ok = post(
        &url,
        r#"{"x": 1}"#,
        &[
            ("causeway-internal-token", &token),
            ("causeway-caller", &format!("{}/test", ns.name)),
        ],
    )
    .await?;
    ensure!(
        ok.status == 200,
        "with the token: {} {}",
        ok.status,
        ok.body
    );
    ensure!(ok.json()?["tagged"] == true, "{}", ok.body);

    // Move the plugin to pool a: the bridge keeps working, nothing restarts.
    ns.apply(&tagger(&files, "a")?)?;
    causeway_e2e::harness::eventually("the Plugin served by pool a", READY_TIMEOUT, || async {
        let p = plugins.get("tagger").await?;
        let Some(s) = p.status else { return Ok(None) };
        let ready = s
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        Ok((ready
            && s.pools == vec!["a".to_string()]
            && s.observed_generation == p.metadata.generation)
            .then_some(()))
    })
    .await?;
    let r = post(
        &hook,
        r#"{"order": 2}"#,
        &[("content-type", "application/json")],
    )
    .await?;
    ensure!(r.status == 202, "{} {}", r.status, r.body);
    let got = sink.wait_for(Some("/tagged"), 2, DELIVERY_TIMEOUT).await?;
    let second = got
        .iter()
        .filter_map(|r| r.json().ok())
        .find(|b| b["order"] == 2)
        .context("order 2")?;
    ensure!(
        second == serde_json::json!({"order": 2, "tagged": true, "tag": "blue"}),
        "after the move: {second}"
    );
    let now_a = ready_pool_pod(&client, &ns.name, "a").await?;
    ensure!(
        now_a.uid() == pod_a.uid() && restart_count(&now_a) == restart_count(&pod_a),
        "pool a's worker restarted on the move"
    );
    ns.pass();
    Ok(())
}

//! Scenario 7: a bad reference is a condition, visible in `kubectl get`, never a crash
//! loop: a Plugin whose component does not match its sha256 is `Ready=False` with reason
//! `DigestMismatch`; a Bridge whose Secret is missing is `Ready=False` with reason
//! `SecretNotFound`, and becomes Ready once the Secret exists.

use anyhow::{Result, ensure};
use causeway_e2e::harness::http::{FileServer, Sink};
use causeway_e2e::harness::{
    READY_TIMEOUT, Stack, TestNs, Want, kubectl, ready_pool_pod, restart_count, wait_condition,
};
use kube::ResourceExt;

/// `kubectl get KIND NAME -o wide` must show the condition's status and reason.
fn shown_by_kubectl_get(ns: &str, kind: &str, name: &str, reason: &str) -> Result<()> {
    let out = kubectl(&["get", kind, name, "-n", ns, "-o", "wide"])?.ok()?;
    ensure!(
        out.contains("False"),
        "`kubectl get {kind} -o wide` does not show Ready False:\n{out}"
    );
    ensure!(
        out.contains(reason),
        "`kubectl get {kind} -o wide` does not show the reason {reason}:\n{out}"
    );
    Ok(())
}

#[tokio::test]
async fn s7_wrong_digest_is_ready_false_with_the_reason() -> Result<()> {
    let ns = TestNs::new("digest").await?;
    let client = Stack::get()?.client().await?;
    let files = FileServer::plugins()?;
    // tagger.wasm's URL with inbox.wasm's digest.
    ns.apply(&format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: bad}}\nspec:\n  source: {{http: {{url: \"{}\", sha256: \"{}\"}}}}\n  route: /bad\n",
        files.url("tagger.wasm"),
        files.sha256("inbox.wasm")?
    ))?;
    let cond = wait_condition(
        &client,
        &ns.name,
        "Plugin",
        "bad",
        Want::not_ready("DigestMismatch"),
        READY_TIMEOUT,
    )
    .await?;
    ensure!(
        cond.message.contains(&files.sha256("inbox.wasm")?[..12])
            || cond.message.contains("sha256"),
        "message: {}",
        cond.message
    );
    // The worker serving it stays up: a bad plugin is reported, not a crash loop.
    let pod = ready_pool_pod(&client, &ns.name, "default").await?;
    ensure!(
        restart_count(&pod) == 0,
        "the worker restarted {} times",
        restart_count(&pod)
    );
    shown_by_kubectl_get(&ns.name, "plugin", "bad", "DigestMismatch")?;
    ns.pass();
    Ok(())
}

#[tokio::test]
async fn s7_missing_secret_is_secret_not_found_until_it_exists() -> Result<()> {
    let ns = TestNs::new("secret").await?;
    let client = Stack::get()?.client().await?;
    let sink = Sink::start()?;
    ns.apply(&format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: needs-secret}}\nspec:\n  destinations:\n  - name: out\n    url: \"{}\"\n    headers: {{Authorization: \"Bearer $env.TOKEN\"}}\n  env:\n  - name: TOKEN\n    valueFrom: {{secretKeyRef: {{name: api, key: token}}}}\n",
        sink.url("/out")
    ))?;
    let cond = wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "needs-secret",
        Want::not_ready("SecretNotFound"),
        READY_TIMEOUT,
    )
    .await?;
    ensure!(
        cond.message.contains("api"),
        "the message should name the Secret: {}",
        cond.message
    );
    shown_by_kubectl_get(&ns.name, "bridge", "needs-secret", "SecretNotFound")?;
    let pod_before = ready_pool_pod(&client, &ns.name, "default").await.ok();

    // Issue 12 item 10: a Secret without the opt-in label is not used, and the condition
    // says which label to add; the value never shows.
    ns.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: api}\nstringData: {token: t0k3n}\n")?;
    let cond = wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "needs-secret",
        Want::not_ready("SecretNotOptedIn"),
        READY_TIMEOUT,
    )
    .await?;
    ensure!(
        cond.message.contains("causeway.dev/use") && cond.message.contains("api"),
        "{}",
        cond.message
    );
    ensure!(
        !cond.message.contains("t0k3n"),
        "the value leaked into the condition"
    );
    ns.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: api, labels: {causeway.dev/use: \"true\"}}\nstringData: {token: t0k3n}\n")?;
    wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "needs-secret",
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    if let Some(before) = pod_before {
        let after = ready_pool_pod(&client, &ns.name, "default").await?;
        ensure!(
            before.uid() == after.uid() && restart_count(&after) == restart_count(&before),
            "the Secret rolled the pod"
        );
    }
    ns.pass();
    Ok(())
}

/// Issue 18: a Bridge whose step plugin is not loaded is itself `Ready=False`
/// (`PluginNotReady`, naming the plugin), accepts events (`whenPluginNotReady: Hold`, the
/// default) and holds them; once the Plugin is fixed it becomes Ready and the held event is
/// delivered, through the plugin.
#[tokio::test]
async fn s7_a_bridge_whose_plugin_is_not_loaded_holds_its_events_until_it_loads() -> Result<()> {
    let ns = TestNs::new("plugin-hold").await?;
    let client = Stack::get()?.client().await?;
    let files = FileServer::plugins()?;
    let sink = Sink::start()?;
    let plugin = |sha: &str| {
        format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: tagger}}\nspec:\n  source: {{http: {{url: \"{}\", sha256: \"{sha}\"}}}}\n",
            files.url("tagger.wasm"),
        )
    };
    ns.apply(&format!(
        "{}---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: held}}\nspec:\n  steps: [{{plugin: tagger}}]\n  destinations: [{{name: out, url: \"{}\"}}]\n",
        plugin(&files.sha256("inbox.wasm")?),
        sink.url("/held")
    ))?;
    let cond = wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "held",
        Want::not_ready("PluginNotReady"),
        READY_TIMEOUT,
    )
    .await?;
    ensure!(
        cond.message.contains("plugin tagger is not ready"),
        "message: {}",
        cond.message
    );
    shown_by_kubectl_get(&ns.name, "bridge", "held", "PluginNotReady")?;

    let pod = ready_pool_pod(&client, &ns.name, "default").await?;
    let url = causeway_e2e::harness::ingress_url(&pod, &format!("/hooks/{}/held", ns.name))?;
    let r = causeway_e2e::harness::http::post(&url, r#"{"held":true}"#, &[]).await?;
    ensure!(r.status == 202, "Hold accepts: {} {}", r.status, r.body);

    ns.apply(&plugin(&files.sha256("tagger.wasm")?))?;
    wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "held",
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    let got = sink
        .wait_for(Some("/held"), 1, std::time::Duration::from_secs(60))
        .await?;
    let body = got[0].json()?;
    ensure!(
        body == serde_json::json!({"held": true, "tagged": true}),
        "the held event went through the plugin: {body}"
    );
    ns.pass();
    Ok(())
}

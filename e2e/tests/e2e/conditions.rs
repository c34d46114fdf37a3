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

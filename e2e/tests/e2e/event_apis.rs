//! Issue 17, payload schemas in a cluster: a Bridge whose `spec.schema` names a ConfigMap
//! that does not exist is `Ready=False` with reason `ConfigMapNotFound` (shown by
//! `kubectl get`); once the ConfigMap is created it becomes Ready without a pod restart, and
//! its worker answers 202 for a matching payload and 422 with the violations for another.

use anyhow::{Result, ensure};
use causeway_e2e::harness::http::{Sink, post};
use causeway_e2e::harness::{
    READY_TIMEOUT, Stack, TestNs, Want, ingress_url, kubectl, ready_pool_pod, wait_condition,
};

#[tokio::test]
async fn s17_a_schema_config_map_is_resolved_and_its_absence_is_a_condition() -> Result<()> {
    let ns = TestNs::new("schema").await?;
    let client = Stack::get()?.client().await?;
    let sink = Sink::start()?;
    ns.apply(&format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: orders}}\nspec:\n  destinations:\n  - {{name: out, url: \"{}\"}}\n  schema:\n    configMapRef: {{name: order-schemas, key: order.yaml}}\n",
        sink.url("/out")
    ))?;
    let cond = wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "orders",
        Want::not_ready("ConfigMapNotFound"),
        READY_TIMEOUT,
    )
    .await?;
    ensure!(
        cond.message.contains("order-schemas"),
        "the message should name the ConfigMap: {}",
        cond.message
    );
    let shown = kubectl(&["get", "bridge", "orders", "-n", &ns.name, "-o", "wide"])?.ok()?;
    ensure!(
        shown.contains("False") && shown.contains("ConfigMapNotFound"),
        "`kubectl get bridge -o wide` does not show the reason:\n{shown}"
    );

    ns.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: order-schemas}\ndata:\n  order.yaml: |\n    type: object\n    required: [id]\n    properties: {amount: {type: number, minimum: 0}}\n",
    )?;
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
    let hook = ingress_url(&pod, &format!("/hooks/{}/orders", ns.name))?;
    let json = [("content-type", "application/json")];
    let r = post(&hook, r#"{"id": "o-1", "amount": 5}"#, &json).await?;
    ensure!(r.status == 202, "POST {hook}: {} {}", r.status, r.body);
    let r = post(&hook, r#"{"amount": -1}"#, &json).await?;
    ensure!(r.status == 422, "POST {hook}: {} {}", r.status, r.body);
    let v = r.json()?;
    let paths: Vec<&str> = v["violations"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["path"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        paths.contains(&"") && paths.contains(&"/amount"),
        "violations: {}",
        r.body
    );
    ns.pass();
    Ok(())
}

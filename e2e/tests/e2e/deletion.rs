//! Scenario 9: deleting a Bridge stops its endpoint (404) while its neighbours keep
//! working; deleting a WorkerPool garbage-collects its children (and, on the local
//! stack, its worker process stops) but keeps its data claim (issue 18: the default
//! `persistentVolumeClaimRetentionPolicy` is Retain): a pool of the same name picks the
//! claim up and delivers what the deleted one had accepted. With `whenDeleted: Delete` the
//! claim goes with the pool.

use std::time::Duration;

use anyhow::{Result, ensure};
use causeway_e2e::harness::http::{Sink, post};
use causeway_e2e::harness::{
    Mode, READY_TIMEOUT, Stack, TestNs, Want, container_pid, eventually, ingress_url, kubectl,
    pid_alive, ready_pool_pod, wait_condition,
};
use kube::ResourceExt;

use crate::names;

fn bridge(name: &str, sink: &Sink) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: {name}}}\nspec:\n  pool: gone\n  destinations: [{{name: out, url: \"{}\", retries: 100, backoff: {{policy: fixed, delays: [1s]}}}}]\n",
        sink.url(&format!("/{name}"))
    )
}

#[tokio::test]
async fn s9_deleting_a_bridge_404s_and_deleting_a_pool_collects_its_children() -> Result<()> {
    let ns = TestNs::new("delete").await?;
    let stack = Stack::get()?;
    let client = stack.client().await?;
    let sink = Sink::start()?;
    ns.apply(&format!(
        "{}---\n{}---\n{}",
        crate::pool("gone"),
        bridge("first", &sink),
        bridge("second", &sink)
    ))?;
    for b in ["first", "second"] {
        wait_condition(&client, &ns.name, "Bridge", b, Want::ready(), READY_TIMEOUT).await?;
    }
    let pod = ready_pool_pod(&client, &ns.name, "gone").await?;
    let first = ingress_url(&pod, &format!("/hooks/{}/first", ns.name))?;
    let second = ingress_url(&pod, &format!("/hooks/{}/second", ns.name))?;
    ensure!(
        post(&first, "{}", &[]).await?.status == 202,
        "first before deletion"
    );

    kubectl(&["delete", "bridge", "first", "-n", &ns.name])?.ok()?;
    eventually(
        "404 from the deleted bridge",
        Duration::from_secs(30),
        || async {
            let r = post(&first, "{}", &[]).await?;
            Ok((r.status == 404).then_some(()))
        },
    )
    .await?;
    let r = post(&second, "{}", &[]).await?;
    ensure!(
        r.status == 202,
        "the other bridge still answers: {} {}",
        r.status,
        r.body
    );

    // An event accepted while the destination fails: it waits in the pool's store.
    sink.respond_with(503);
    let pending = post(&second, r#"{"kept":true}"#, &[]).await?;
    ensure!(pending.status == 202, "{} {}", pending.status, pending.body);
    let pending_id = pending.json()?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    sink.wait_for(Some("/second"), 2, Duration::from_secs(30))
        .await?;

    let pid = match stack.mode {
        Mode::Local { .. } => Some(container_pid(stack, &ns.name, &pod.name_any(), "worker")?),
        Mode::External => None,
    };
    let children_sel = "causeway.dev/pool=gone";
    ensure!(
        !names(&ns.name, "deployments", children_sel)?.is_empty(),
        "the pool has a Deployment before deletion"
    );
    kubectl(&[
        "delete",
        "workerpool",
        "gone",
        "-n",
        &ns.name,
        "--wait=false",
    ])?
    .ok()?;
    eventually(
        "the pool's children garbage-collected",
        Duration::from_secs(120),
        || async {
            let mut left = Vec::new();
            for kind in [
                "deployments",
                "replicasets",
                "pods",
                "services",
                "networkpolicies",
                "serviceaccounts",
                "roles",
                "rolebindings",
            ] {
                left.extend(names(&ns.name, kind, children_sel)?);
            }
            for s in ["causeway-gone-config", "causeway-gone-admin"] {
                if kubectl(&["get", "secret", s, "-n", &ns.name])?.code == Some(0) {
                    left.push(format!("secret/{s}"));
                }
            }
            if left.is_empty() {
                Ok(Some(()))
            } else {
                Err(anyhow::anyhow!("left: {left:?}"))
            }
        },
    )
    .await?;
    if let Some(pid) = pid {
        eventually(
            "the worker process stopped",
            Duration::from_secs(30),
            || async { Ok((!pid_alive(pid)).then_some(())) },
        )
        .await?;
    }
    // Retain (the default): the claim stays, with no owner.
    let owners = kubectl(&[
        "get",
        "pvc",
        "causeway-gone-data",
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.metadata.ownerReferences}",
    ])?
    .ok()?;
    ensure!(
        owners.trim().is_empty(),
        "the retained claim has owners: {owners}"
    );

    // A pool of the same name adopts it and delivers the event the old one accepted.
    sink.respond_with(200);
    let before = sink.at("/second").len();
    ns.apply(&crate::pool("gone"))?;
    wait_condition(
        &client,
        &ns.name,
        "Bridge",
        "second",
        Want::ready(),
        READY_TIMEOUT,
    )
    .await?;
    eventually(
        "the event accepted before the pool was deleted is delivered by its successor",
        Duration::from_secs(120),
        || async {
            let delivered = sink.at("/second").iter().skip(before).any(|r| {
                r.headers
                    .get("causeway-event-id")
                    .and_then(|v| v.to_str().ok())
                    == Some(pending_id.as_str())
            });
            Ok(delivered.then_some(()))
        },
    )
    .await?;

    // Delete: the claim is owned again and goes with the pool.
    ns.apply(
        "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: gone}\nspec: {replicas: 1, persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete}}\n",
    )?;
    eventually(
        "the claim owned by the pool",
        Duration::from_secs(60),
        || async {
            let owners = kubectl(&[
                "get",
                "pvc",
                "causeway-gone-data",
                "-n",
                &ns.name,
                "-o",
                "jsonpath={.metadata.ownerReferences[0].kind}",
            ])?
            .ok()?;
            Ok((owners.trim() == "WorkerPool").then_some(()))
        },
    )
    .await?;
    kubectl(&[
        "delete",
        "workerpool",
        "gone",
        "-n",
        &ns.name,
        "--wait=false",
    ])?
    .ok()?;
    eventually(
        "the claim collected with the pool",
        Duration::from_secs(120),
        || async {
            let left = names(&ns.name, "persistentvolumeclaims", children_sel)?;
            Ok(left.is_empty().then_some(()))
        },
    )
    .await?;
    ns.pass();
    Ok(())
}
